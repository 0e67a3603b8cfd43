"""HGT: Heterogeneous Graph Transformer (Hu, Dong, Wang, Sun, WWW 2020). Work in progress.

Only the layer and the relative temporal encoding exist so far (``layer.py``); the method is not
registered yet (no training recipe, presets or README), so ``paperzoo list`` does not show it.
"""
from paperzoo.methods.hgt.layer import HGTLayer, RelTemporalEncoding

__all__ = ["HGTLayer", "RelTemporalEncoding"]

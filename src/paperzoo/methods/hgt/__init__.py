"""HGT: Heterogeneous Graph Transformer (Hu, Dong, Wang, Sun, WWW 2020). Work in progress.

So far: the layer and the relative temporal encoding (``layer.py``) and HGSampling
(``sampler.py``). The method is not registered yet (no training recipe, presets or README), so
``paperzoo list`` does not show it.
"""
from paperzoo.methods.hgt.layer import HGTLayer, RelTemporalEncoding
from paperzoo.methods.hgt.sampler import HGSampler, SampledSubgraph

__all__ = ["HGTLayer", "RelTemporalEncoding", "HGSampler", "SampledSubgraph"]

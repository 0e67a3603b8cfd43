"""Bilinear attention networks (Kim, Jun, Zhang, NeurIPS 2018).

Public API::

    from paperzoo.methods.ban import BAN, BilinearAttentionMap, GroundingModel

    model = BAN(vocab_size=V, num_answers=A, v_dim=2048, hidden=1024, glimpses=8, counter=True)
    logits, att = model({"v": features, "tokens": tokens, "boxes": boxes})   # att: (b, G, boxes, tokens)

The run pipeline (:mod:`.run`) trains BAN, co-attention and single-modality attention side by side on
easy-vqa, a generated relational VQA set, a generated phrase-grounding set, or VQA 2.0 / Flickr30k
Entities with the user's bottom-up features, and reports accuracy by question type, the glimpse
ablation, grounding Recall@k and attention maps.
"""
from paperzoo.api import MethodSpec, deferred, lazy_attributes
from paperzoo.methods.ban.config import PRESETS, BANConfig

run = deferred("paperzoo.methods.ban.run:run")
evaluate = deferred("paperzoo.methods.ban.run:evaluate")
report_section = deferred("paperzoo.methods.ban.report:report_section")

CITATION = """@inproceedings{kim2018bilinear,
  title     = {Bilinear Attention Networks},
  author    = {Kim, Jin-Hwa and Jun, Jaehyun and Zhang, Byoung-Tak},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  pages     = {1564--1574},
  year      = {2018},
}"""

SPEC = MethodSpec(
    name="ban",
    paper="Bilinear Attention Networks",
    citation=CITATION,
    url="https://arxiv.org/abs/1805.07932",
    config_cls=BANConfig,
    presets=PRESETS,
    run=run,
    evaluate=evaluate,
    headline="test/accuracy",
    table_metrics=("test/attention/accuracy", "test/coattention/accuracy", "test/ban/accuracy",
                   "test/ban/accuracy_relational", "test/ban/recall_at_1"),
    variant_fields=("models", "dataset", "glimpses", "features"),
    report_section=report_section,
)

_LAZY = {"attention": ("BilinearAttentionMap", "BilinearPooling", "bilinear_logits", "bilinear_pool",
                       "naive_bilinear_logits", "naive_bilinear_pool"),
         "models": ("BAN", "CoAttention", "SingleAttention", "GroundingModel", "build_vqa_model"),
         "counting": ("Counter",),
         "features": ("ObjectEncoder", "GridEncoder", "pretrain_object_encoder", "encode_objects")}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = ["PRESETS", "SPEC", "BANConfig", "evaluate", "report_section", "run",  # noqa: RUF022
           "BilinearAttentionMap", "BilinearPooling", "bilinear_logits", "bilinear_pool", "naive_bilinear_logits",
           "naive_bilinear_pool", "BAN", "CoAttention", "SingleAttention", "GroundingModel", "build_vqa_model",
           "Counter", "ObjectEncoder", "GridEncoder", "pretrain_object_encoder", "encode_objects"]

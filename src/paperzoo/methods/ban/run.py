"""Train and evaluate: ``run(cfg, run_dir)`` trains BAN and its attention baselines side by side,
``evaluate(run_dir)`` re-scores a finished run, ``report_section`` (in :mod:`.report`) summarises runs.

Every model of a run sees the same batches in the same order; one Adamax optimizer holds all of them
(their parameters are disjoint and Adamax is per-parameter, so these are independent runs) and each
model's gradient norm is clipped on its own. The learning rate follows the official schedule
(:meth:`BANConfig.lr_factor`). The epoch loop is :func:`paperzoo.core.loop.train` (``last.pt`` after
every epoch, exact resume); the final weights are evaluated, as the official code's fixed schedule does.

Metrics. VQA: ``test/<model>/accuracy`` (VQA score: the soft score of the predicted answer, the exact
accuracy on one-hot sets), ``accuracy_<question type>``, ``entropy_g<k>`` (mean attention entropy of
glimpse k). Grounding: ``test/<model>/recall_at_{1,5,10}`` and ``test/recall_upper_bound``.
``test/<metric>`` without a model are the headline model's (the last of ``cfg.models``).
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from paperzoo.api import RunResult
from paperzoo.core import loop
from paperzoo.core.runs import RunDir
from paperzoo.data.text import tokenize
from paperzoo.methods.ban.attention import attention_entropy, empty_box_mask
from paperzoo.methods.ban.config import BANConfig
from paperzoo.methods.ban.features import (
    GridEncoder,
    box_geometry,
    encode_objects,
    grid_boxes,
    pretrain_object_encoder,
)
from paperzoo.methods.ban.models import PAD, GroundingModel, build_vqa_model

log = logging.getLogger(__name__)
METHOD = "ban"
UNK = 1


@dataclass
class Vocabulary:
    """Training words -> ids (0 = padding, 1 = unknown), in first-seen order."""

    words: list[str]

    @classmethod
    def build(cls, texts: list[str]) -> Vocabulary:
        seen: dict[str, None] = {}
        for t in texts:
            seen.update(dict.fromkeys(tokenize(t)))
        return cls(["<pad>", "<unk>", *seen])

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, texts: list[str], max_tokens: int) -> torch.Tensor:
        """(N, max_tokens) long, right-padded with 0, truncated to ``max_tokens`` (at least one token: an
        empty text becomes ``<unk>``)."""
        out = torch.full((len(texts), max_tokens), PAD, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [self.index.get(w, UNK) for w in tokenize(t)][:max_tokens] or [UNK]
            out[i, :len(ids)] = torch.tensor(ids)
        return out


def glove_init(vocab: Vocabulary, data_root: str | None, dim: int, seed: int) -> torch.Tensor:
    """(len(vocab), dim) embeddings: GloVe for known words, N(0, 0.1^2) for the rest, 0 for padding."""
    from paperzoo.data.text import load_glove

    wv = load_glove(data_root)
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(len(vocab), dim, generator=g) * 0.1
    known = [(i, wv.index[w]) for i, w in enumerate(vocab.words) if w in wv.index]
    if known:
        rows, src = zip(*known)
        out[list(rows)] = wv.vectors[list(src)]
    out[PAD] = 0
    log.info("GloVe: %d of %d words known", len(known), len(vocab) - 2)
    return out


@dataclass
class Split:
    """One split, ready for batching: tokens and targets per question, the visual table per image."""

    tokens: torch.Tensor
    image_index: torch.Tensor
    targets: torch.Tensor
    """VQA: (N, A) soft answer scores; grounding: (N, B) 0/1 box targets (IoU >= 0.5)."""
    table: torch.Tensor
    """(I, B, D) object features, or (I, 3, S, S) uint8 images for grid features."""
    v_mask: torch.Tensor | None
    boxes: torch.Tensor | None
    """(I, B, 4) boxes normalised to [0, 1] (the counter's input)."""
    raw: Any = None
    """The VQAData / GroundingData it came from (figures, grounding metrics)."""

    def __len__(self) -> int:
        return len(self.tokens)

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = self.image_index[idx]
        out = {"v": self.table[rows], "tokens": self.tokens[idx]}
        if self.v_mask is not None:
            out["v_mask"] = self.v_mask[rows]
        if self.boxes is not None:
            out["boxes"] = self.boxes[rows]
        return out


@dataclass
class Data:
    train: Split
    val: Split
    test: Split
    vocab: Vocabulary
    answers: list[str] = field(default_factory=list)
    qtype_names: tuple[str, ...] = ()
    v_dim: int = 0
    encoder_stats: dict[str, float] = field(default_factory=dict)


def _raw_splits(cfg: BANConfig, data_root: str | None) -> dict[str, Any]:
    """The dataset's train / val / test as VQAData or GroundingData."""
    if cfg.dataset == "relational":
        from paperzoo.data.vqa import make_relational_vqa

        return {s: make_relational_vqa(s, n, questions_per_image=cfg.questions_per_image, size=cfg.image_size,
                                       seed=cfg.data_seed, num_objects=cfg.num_objects)
                for s, n in (("train", cfg.train_images), ("val", cfg.val_images), ("test", cfg.test_images))}
    if cfg.dataset == "grounding":
        from paperzoo.data.grounding import make_grounding

        return {s: make_grounding(s, n, phrases_per_image=cfg.questions_per_image, size=cfg.image_size,
                                  seed=cfg.data_seed)
                for s, n in (("train", cfg.train_images), ("val", cfg.val_images), ("test", cfg.test_images))}
    if cfg.dataset == "easy_vqa":
        from paperzoo.data.vqa import load_easy_vqa

        train = load_easy_vqa("train", data_root, limit=cfg.limit or None)
        test = load_easy_vqa("test", data_root, limit=cfg.limit // 4 or None)
        # validation: the questions of the last 10 % of the training images (no image in both)
        cut = int(train.num_images * 0.9)
        held = train.image_index >= cut
        return {"train": train.subset(torch.nonzero(~held).flatten()),
                "val": train.subset(torch.nonzero(held).flatten()), "test": test}
    if cfg.dataset == "vqa2":
        from paperzoo.data.vqa import load_vqa_v2

        train = load_vqa_v2("train", data_root, limit=cfg.limit or None, min_answer_count=cfg.min_answer_count)
        val = load_vqa_v2("val", data_root, answers=train.answers, limit=cfg.limit // 4 or None)
        return {"train": train, "val": val, "test": val}
    from paperzoo.data.grounding import load_flickr30k_entities

    return {s: load_flickr30k_entities(s, data_root, limit=(cfg.limit if s == "train" else cfg.limit // 4) or None)
            for s in ("train", "val", "test")}


def _normalised_boxes(raw: Any) -> torch.Tensor | None:
    if raw.boxes is None:
        return None
    if raw.image_size is not None:
        w, h = raw.image_size[:, 0, None], raw.image_size[:, 1, None]
    elif raw.images is not None:
        w = h = float(raw.images.shape[-1])
    else:  # feature files without image sizes: the boxes' own extent stands in
        w = raw.boxes[..., 2].amax(-1, keepdim=True).clamp_min(1.0)
        h = raw.boxes[..., 3].amax(-1, keepdim=True).clamp_min(1.0)
    return box_geometry(raw.boxes, w, h)[..., :4]


def load_data(cfg: BANConfig, data_root: str | None = None) -> Data:
    """Tokenised questions, targets and the visual tables of the three splits (object features are
    pretrained and extracted here; grid models encode the images themselves)."""
    raw = _raw_splits(cfg, data_root)
    grounding = cfg.task == "grounding"
    texts = {s: (r.phrases if grounding else r.questions) for s, r in raw.items()}
    vocab = Vocabulary.build(texts["train"])
    stats: dict[str, float] = {}
    tables: dict[str, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]] = {}
    if cfg.features == "grid" and raw["train"].images is not None:
        cells = box_geometry(grid_boxes(cfg.image_size, cfg.grid), cfg.image_size, cfg.image_size)[:, :4]
        for s, r in raw.items():
            tables[s] = (r.images, None, cells.expand(r.images.shape[0], -1, -1))
        v_dim = 0
    elif raw["train"].features is not None:  # bottom-up features from the dataset's files
        for s, r in raw.items():
            f = r.features
            boxes = _normalised_boxes(r)
            if cfg.spatial and boxes is not None:
                x0, y0, x1, y1 = boxes.unbind(-1)
                geo = torch.stack([x0, y0, x1, y1, x1 - x0, y1 - y0], -1)
                f = torch.cat([f, geo * r.box_mask[..., None]], -1)
            tables[s] = (f, r.box_mask, boxes)
        v_dim = int(tables["train"][0].shape[-1])
    else:
        from paperzoo.data.vqa import COLORS, SHAPES

        tr = raw["train"]
        encoder, stats = pretrain_object_encoder(
            tr.images, tr.boxes, tr.box_mask, tr.box_labels, (len(COLORS), len(SHAPES)), dim=cfg.feature_dim,
            width=cfg.encoder_width, crop_size=cfg.crop_size, epochs=cfg.encoder_epochs, seed=cfg.data_seed)
        for s, r in raw.items():
            tables[s] = (encode_objects(encoder, r.images, r.boxes, r.box_mask, spatial=cfg.spatial), r.box_mask,
                         _normalised_boxes(r))
        # the CNN part to unit mean norm over the training boxes (it comes out ~50-100, the spatial part ~1)
        train_f, train_m = tables["train"][0], tables["train"][1]
        scale = float(train_f[train_m][:, :cfg.feature_dim].norm(dim=-1).mean())
        for table, _, _ in tables.values():
            table[..., :cfg.feature_dim] /= max(scale, 1e-12)
        stats["feature_scale"] = scale
        v_dim = int(tables["train"][0].shape[-1])
    splits = {}
    for s, r in raw.items():
        if grounding:
            from paperzoo.data.grounding import proposal_hits

            targets = proposal_hits(r).float()
        else:
            targets = r.answer_scores
        table, v_mask, boxes = tables[s]
        splits[s] = Split(vocab.encode(texts[s], cfg.max_tokens), r.image_index, targets, table, v_mask, boxes, r)
    tr = raw["train"]
    return Data(splits["train"], splits["val"], splits["test"], vocab,
                answers=[] if grounding else list(tr.answers),
                qtype_names=() if grounding else tuple(tr.qtype_names), v_dim=v_dim, encoder_stats=stats)


def build_models(cfg: BANConfig, data: Data, word_vectors: torch.Tensor | None) -> torch.nn.ModuleDict:
    """One model per ``cfg.models``, each built right after ``torch.manual_seed(cfg.seed)``."""
    models = {}
    for name in cfg.models:
        torch.manual_seed(cfg.seed)
        common = {"vocab_size": len(data.vocab), "hidden": cfg.hidden, "embed_dim": cfg.embed_dim,
                  "word_vectors": word_vectors, "dropout": cfg.dropout, "rank_multiplier": cfg.rank_multiplier,
                  "attention_dropout": cfg.attention_dropout}
        if cfg.task == "grounding":
            models[name] = GroundingModel(name, v_dim=data.v_dim, query=cfg.grounding_query, **common)
            continue
        encoder = (GridEncoder(cfg.feature_dim, cfg.encoder_width, cfg.image_size, cfg.grid, cfg.spatial)
                   if data.v_dim == 0 else None)
        models[name] = build_vqa_model(name, num_answers=len(data.answers), v_dim=data.v_dim, glimpses=cfg.glimpses,
                                       classifier_dropout=cfg.classifier_dropout, encoder=encoder,
                                       counter=cfg.counter, counter_objects=cfg.counter_objects, **common)
    return torch.nn.ModuleDict(models)


def vqa_loss(logits: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """The official loss: mean BCE-with-logits over (question, answer) x the number of answers."""
    return F.binary_cross_entropy_with_logits(logits, scores) * scores.size(1)


def grounding_loss(box_logits: torch.Tensor, targets: torch.Tensor, v_mask: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits summed over each phrase's real proposals, averaged over phrases (the official
    Flickr30k loss)."""
    logits = box_logits.masked_fill(~v_mask, 0.0)
    per = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * v_mask
    return per.sum() / box_logits.size(0)


def run(cfg: BANConfig, run_dir: RunDir) -> RunResult:
    """Train every model of ``cfg`` (resuming from ``run_dir``'s last checkpoint) and evaluate them."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    t0 = time.perf_counter()
    data = load_data(cfg, run_dir.data_root)
    log.info("%s: %d / %d / %d %s, vocabulary %d, %s", cfg.dataset, len(data.train), len(data.val), len(data.test),
             "phrases" if cfg.task == "grounding" else "questions", len(data.vocab),
             "grid features" if data.v_dim == 0 else f"{data.v_dim}-d object features")
    word_vectors = glove_init(data.vocab, run_dir.data_root, cfg.embed_dim, cfg.data_seed) if cfg.glove else None
    models = build_models(cfg, data, word_vectors)
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    torch.manual_seed(cfg.seed + 2)  # dropout
    opt = torch.optim.Adamax(models.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cfg.lr_factor)
    stats: dict[str, float] = {}

    def train_epoch() -> float:
        models.train()
        order = torch.randperm(len(data.train), generator=generator)
        sums: dict[str, float] = {}
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            batch = data.train.batch(idx)
            targets = data.train.targets[idx]
            loss = torch.zeros(())
            for name, model in models.items():
                out, _ = model(batch)
                if cfg.task == "grounding":
                    lm = grounding_loss(out, targets, batch.get("v_mask", empty_box_mask(batch["v"])))
                else:
                    lm = vqa_loss(out, targets)
                    score = targets.gather(1, out.argmax(1, keepdim=True)).sum()
                    sums[f"{name}/train_score"] = sums.get(f"{name}/train_score", 0.0) + float(score)
                sums[f"{name}/loss"] = sums.get(f"{name}/loss", 0.0) + float(lm.detach()) * len(idx)
                loss = loss + lm
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for name, model in models.items():
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                sums[f"{name}/grad_norm"] = sums.get(f"{name}/grad_norm", 0.0) + float(norm) * len(idx)
            opt.step()
            total += float(loss.detach()) * len(idx)
        stats.clear()
        stats.update({k: v / len(order) for k, v in sums.items()})
        return total / len(order)

    def validate() -> tuple[float, dict[str, float]]:
        row = dict(stats)
        for name, model in models.items():
            for k, v in split_metrics(model, data.val, cfg, data).items():
                if k in ("accuracy", "recall_at_1"):
                    row[f"{name}/val_{k}"] = v
        return float(sched.last_epoch), row  # the final weights are evaluated: best.pt = the last epoch

    state = loop.train(run_dir, model=models, optimizer=opt, scheduler=sched, generators={"train": generator},
                       schedule=loop.Schedule(epochs=cfg.epochs), train_epoch=train_epoch, validate=validate,
                       desc=f"{METHOD} {cfg.dataset}")
    run_dir.write_history(state["history"])
    metrics = test_metrics(models, data, cfg)
    metrics.update(loop.summary(state, models))
    metrics.update({f"encoder/{k}": v for k, v in data.encoder_stats.items()})
    metrics["wall_seconds"] = time.perf_counter() - t0
    if state["history"]:
        metrics.update({f"train/{k}": v for k, v in state["history"][-1].items() if "/" in k})
    from paperzoo.methods.ban.figures import plot_attention

    artifacts = {"best": "checkpoints/best.pt",
                 "attention": plot_attention(models, data, cfg, run_dir.path / "attention.png")}
    return RunResult(metrics=metrics, history=[dict(r) for r in state["history"]], artifacts=artifacts)


@torch.no_grad()
def predict(model: torch.nn.Module, split: Split, batch_size: int = 512) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Eval-mode outputs over a split: (answer or box logits (N, .), attention maps per batch)."""
    model.eval()
    outs, atts = [], []
    for start in range(0, len(split), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(split)))
        out, att = model(split.batch(idx))
        outs.append(out)
        atts.append(att)
    return torch.cat(outs), atts


def split_metrics(model: torch.nn.Module, split: Split, cfg: BANConfig, data: Data) -> dict[str, float]:
    """VQA: accuracy (VQA score), per question type, attention entropy per glimpse. Grounding: Recall@k."""
    if len(split) == 0:
        return {}
    out, atts = predict(model, split)
    if cfg.task == "grounding":
        from paperzoo.data.grounding import recall_at_k

        return {f"recall_at_{k}": v for k, v in recall_at_k(out, split.raw).items()}
    score = split.targets.gather(1, out.argmax(1, keepdim=True))[:, 0]
    m = {"accuracy": float(score.mean())}
    qtype = split.raw.qtype
    for t, name in enumerate(data.qtype_names):
        sel = qtype == t
        if sel.any():
            m[f"accuracy_{_slug(name)}"] = float(score[sel].mean())
    if getattr(split.raw, "qkind", None) is not None:
        for t, name in enumerate(split.raw.qkind_names):
            sel = split.raw.qkind == t
            if sel.any():
                m[f"accuracy_kind_{_slug(name)}"] = float(score[sel].mean())
    ent = sum(attention_entropy(a) for a in atts) / len(split)
    for g, e in enumerate(ent.tolist()):
        m[f"entropy_g{g + 1}"] = e
    return m


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def test_metrics(models: torch.nn.ModuleDict, data: Data, cfg: BANConfig) -> dict[str, float]:
    """``test/<model>/<metric>`` for every model, ``test/<metric>`` for the headline one."""
    out: dict[str, float] = {}
    for name, model in models.items():
        for k, v in split_metrics(model, data.test, cfg, data).items():
            out[f"test/{name}/{k}"] = v
    if cfg.task == "grounding":
        from paperzoo.data.grounding import recall_upper_bound

        out["test/recall_upper_bound"] = recall_upper_bound(data.test.raw)
    head = f"test/{cfg.headline_model}/"
    out.update({f"test/{k[len(head):]}": v for k, v in list(out.items()) if k.startswith(head)})
    return out


def evaluate(run_dir: RunDir) -> dict[str, float]:
    """Re-score a finished run from ``best.pt`` (its final weights) on the regenerated / re-read test set."""
    cfg: BANConfig = run_dir.config
    best = run_dir.finished_checkpoint("best")
    data = load_data(cfg, run_dir.data_root)
    models = build_models(cfg, data, None)
    models.load_state_dict(best["model"])
    return test_metrics(models, data, cfg)

"""Attention figures: boxes drawn on the image with their attention, and BAN's token x box maps."""
from __future__ import annotations

import textwrap
from pathlib import Path

import torch

from paperzoo.core.report import pyplot, save_figure

EXAMPLES = 4


def pick_examples(qtype: torch.Tensor, count: int = EXAMPLES) -> list[int]:
    """Test items to show, chosen without looking at the predictions: the first items of each question
    type in turn (so relational and non-relational questions both appear)."""
    queues = [(qtype == t).nonzero().flatten().tolist() for t in sorted(set(qtype.tolist()))]
    chosen: list[int] = []
    while len(chosen) < count and any(queues):
        for q in queues:
            if q and len(chosen) < count:
                chosen.append(q.pop(0))
    return chosen


def _pixel_boxes(split, i: int, size: int) -> torch.Tensor:
    """(B, 4) pixel boxes of test item ``i``'s image (grid cells for grid features)."""
    return split.boxes[split.image_index[i]] * size


def _draw(ax, image: torch.Tensor, boxes: torch.Tensor, weight: torch.Tensor, valid: torch.Tensor,
          colour: str = "red") -> None:
    """The image with each valid box outlined, opacity and width by its attention (scaled to the max)."""
    ax.imshow(image.permute(1, 2, 0).numpy())
    top = float(weight[valid].max()) if valid.any() else 1.0
    for b in torch.nonzero(valid).flatten().tolist():
        w = float(weight[b]) / (top or 1.0)
        if w < 0.05:
            continue
        x0, y0, x1, y1 = boxes[b].tolist()
        ax.add_patch(_rect(x0 - 0.5, y0 - 0.5, x1 - x0, y1 - y0, colour, w))
    ax.set_xticks([])
    ax.set_yticks([])


def _rect(x, y, w, h, colour, strength):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, edgecolor=colour, alpha=max(strength, 0.15), linewidth=0.5 + 2.5 * strength)


def plot_attention(models: torch.nn.ModuleDict, data, cfg, path: Path) -> str:
    """A row per example test item. VQA: each model's attention over boxes (summed over tokens and averaged
    over glimpses) on the image, and BAN's first-glimpse token x box map; grounding: the target box
    (green), each model's top-1 box and BAN's token x box map."""
    from paperzoo.methods.ban.run import predict, tokenize

    plt = pyplot()
    split = data.test
    raw = split.raw
    grounding = cfg.task == "grounding"
    kinds = raw.kind if grounding and raw.kind is not None else (torch.zeros(len(split), dtype=torch.long)
                                                                 if grounding else raw.qtype)
    items = pick_examples(kinds)
    if raw.images is None or split.boxes is None or not items:
        return ""
    sub = torch.tensor(items)
    outputs = {}
    for name, model in models.items():
        small = _subset(split, sub)
        out, atts = predict(model, small)
        outputs[name] = (out, atts[0])
    names = list(models)
    token_map = "ban" in names and outputs["ban"][1].dim() == 4  # (b, G, V, Q): a map over (box, word)
    cols = len(names) + int(token_map)
    fig, axes = plt.subplots(len(items), cols, figsize=(2.6 * cols + 0.6, 2.5 * len(items)), squeeze=False)
    size = raw.images.shape[-1]
    texts = raw.phrases if grounding else raw.questions
    for r, i in enumerate(items):
        image = raw.images[raw.image_index[i]]
        boxes = _pixel_boxes(split, i, size)
        valid = (split.v_mask[split.image_index[i]] if split.v_mask is not None
                 else torch.ones(len(boxes), dtype=torch.bool))
        for c, name in enumerate(names):
            out, att = outputs[name]
            weight = att[r].mean(0)  # over glimpses
            if weight.dim() == 2:
                weight = weight.sum(-1)  # over tokens
            ax = axes[r, c]
            _draw(ax, image, boxes, weight, valid)
            if grounding:
                for t in torch.nonzero(raw.target_mask[i]).flatten().tolist():
                    x0, y0, x1, y1 = raw.target_boxes[i, t].tolist()
                    ax.add_patch(_rect(x0 - 0.5, y0 - 0.5, x1 - x0, y1 - y0, "lime", 1.0))
                top = int(out[r].argmax())
                hit = bool(split.targets[i, top])
                label = f"{name}: top-1 {'hit' if hit else 'miss'}"
            else:
                pred = data.answers[int(out[r].argmax())]
                label = f"{name}: {pred}"
            ax.set_title(label, fontsize=7, loc="left")
            if c == 0:
                truth = "" if grounding else f" [{data.answers[int(split.targets[i].argmax())]}]"
                ax.set_ylabel("\n".join(textwrap.wrap(texts[i] + truth, 34)), fontsize=7)
        if token_map:
            ax = axes[r, -1]
            att = outputs["ban"][1][r, 0]  # (V, Q) first glimpse
            words = tokenize(texts[i])[: att.size(1)]
            keep = torch.nonzero(valid).flatten()
            heat = att[keep][:, : len(words)].T
            ax.imshow(heat.numpy(), aspect="auto", cmap="viridis")
            ax.set_yticks(range(len(words)), words, fontsize=6)
            ax.set_xticks(range(len(keep)), [str(int(k)) for k in keep], fontsize=5)
            ax.set_xlabel("box", fontsize=7)
            ax.set_title("ban glimpse 1: token x box", fontsize=7, loc="left")
    kind = "phrase grounding" if grounding else "VQA"
    fig.suptitle(f"{cfg.dataset} ({kind}), seed {cfg.seed}: attention over boxes (darker/thicker = more)"
                 + ("; green = ground truth" if grounding else "; [answer]"), fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    return path.name


def _subset(split, idx: torch.Tensor):
    from paperzoo.methods.ban.run import Split

    return Split(split.tokens[idx], split.image_index[idx], split.targets[idx], split.table, split.v_mask, split.boxes)


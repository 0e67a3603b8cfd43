"""The run's figures: what top-layer filters fire on, and the spread of their location instability."""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from paperzoo.core.report import pyplot, save_figure

IMAGES_PER_FILTER = 5
FILTERS_SHOWN = 6


def pick_filters(per_filter: torch.Tensor, category: torch.Tensor, count: int = FILTERS_SHOWN) -> list[int]:
    """Filters to show, chosen without looking at the pictures: per category (in turn), the scored filter
    at the MEDIAN location instability of that category's filters, then the next ones around it."""
    queues = []
    for c in sorted(set(category.tolist())):
        f = [int(i) for i in (category == c).nonzero().flatten() if not math.isnan(float(per_filter[i]))]
        f.sort(key=lambda i: float(per_filter[i]))
        mid = len(f) // 2
        # median first, then alternately just above and below it
        order = [f[mid]] if f else []
        for k in range(1, len(f)):
            for j in (mid + k, mid - k):
                if 0 <= j < len(f) and f[j] not in order:
                    order.append(f[j])
        queues.append(order)
    chosen: list[int] = []
    while len(chosen) < count and any(queues):
        for q in queues:
            if q and len(chosen) < count:
                chosen.append(q.pop(0))
    return chosen


def plot_filters(scored: dict[str, dict], data, cfg, path: Path) -> str:
    """Per variant, a few filters (:func:`pick_filters`), each with its top-activating test images of its
    category: the image, the filter's map upsampled as a heat overlay, a cross at the peak and dots at
    the category's part landmarks."""
    plt = pyplot()
    variants = list(scored)
    rows = FILTERS_SHOWN
    cols = IMAGES_PER_FILTER * len(variants)
    fig, axes = plt.subplots(rows, cols, figsize=(1.25 * cols + 0.4 * len(variants), 1.45 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    size = data.image_size
    for v, name in enumerate(variants):
        s = scored[name]
        for r, f in enumerate(pick_filters(s["per_filter"], s["category"], rows)):
            c = int(s["category"][f])
            imgs = (data.test_y == c).nonzero().flatten()
            top = imgs[torch.argsort(s["scores"][imgs, f], descending=True)[:IMAGES_PER_FILTER]]
            peak = float(s["scores"][top, f].max()) or 1.0
            for k, i in enumerate(top.tolist()):
                ax = axes[r, v * IMAGES_PER_FILTER + k]
                heat = F.interpolate(s["maps"][i:i + 1, f:f + 1].float(), size=(size, size), mode="bilinear",
                                     align_corners=False)[0, 0] / peak
                ax.imshow(data.test_x[i].permute(1, 2, 0).numpy())
                ax.imshow(heat.clamp(0, 1).numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
                x, y = s["positions"][i, f].tolist()
                ax.plot([x - 0.5], [y - 0.5], "w+", ms=9, mew=2)
                lm = data.test_landmarks[i]
                ok = ~torch.isnan(lm).any(-1)
                ax.plot((lm[ok, 0] - 0.5).numpy(), (lm[ok, 1] - 0.5).numpy(), "o", ms=2.5, mfc="white",
                        mec="black", mew=0.5)
                ax.set_xlim(-0.5, size - 0.5)
                ax.set_ylim(size - 0.5, -0.5)
                if k == 0:
                    ax.set_title(f"{name} #{f}: {data.categories[c]}, LI {float(s['per_filter'][f]):.3f}",
                                 fontsize=7, loc="left")
    fig.suptitle(f"{cfg.backbone}, seed {cfg.seed}: top-{IMAGES_PER_FILTER} test images of filters at the median "
                 "location instability (LI) of each category; + = peak, dots = landmarks", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    return path.name


def plot_instability(scored: dict[str, dict], cfg, path: Path) -> str:
    """Histogram of per-filter location instability, one colour per variant."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    values = {n: s["per_filter"][~torch.isnan(s["per_filter"])].numpy() for n, s in scored.items()}
    top = max((float(v.max()) for v in values.values() if len(v)), default=1.0)
    for name, v in values.items():
        ax.hist(v, bins=30, range=(0, top), alpha=0.55,
                label=f"{name}: mean {v.mean():.3f} ({len(v)} filters)" if len(v) else name)
    ax.set(xlabel="location instability (lower = one part)", ylabel="filters",
           title=f"{cfg.dataset}, {cfg.backbone}, seed {cfg.seed}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    return path.name

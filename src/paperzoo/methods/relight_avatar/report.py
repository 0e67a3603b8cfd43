"""The method's report section: PSNR / SSIM of the full appearance model vs the linear model vs SH-only
specular on held-out lights, expressions and views and under unseen environment maps; the ordering verdicts;
renders, a relighting sweep, environment relighting and a turntable GIF."""
from __future__ import annotations

from itertools import pairwise

from paperzoo.api import Figure, ReportSection, overall_verdict
from paperzoo.core.metrics.image import LPIPS_UNAVAILABLE
from paperzoo.core.report import mean_std, mean_std_cell
from paperzoo.core.runs import RunDir, finished_runs
from paperzoo.methods.relight_avatar.config import MODELS, PAPER_ABLATION

CLAIM = ("Learnable radiance transfer - SH diffuse transfer (RGB to order 3, monochrome to order 8) plus a "
         "spherical-Gaussian specular lobe around the reflection about a view-dependent normal - relights "
         "Gaussian head avatars better on held-out lights than a linear appearance model and than SH-only "
         "specular (PSNR 34.04 vs 32.83 vs 30.84), and also holds on held-out expressions.")
SPLITS = (("test_lights", "held-out lights"), ("test_expressions", "held-out expressions"),
          ("test_views", "held-out views"), ("env_sky", "sky map"), ("env_studio", "studio map"))
SEEDS = 3
"""Seeds per table row in the README (the paper preset)."""
TOLERANCE = 0.05
"""dB: a mean PSNR within this of the next model's still counts as 'at or above' (seed noise)."""


def _vals(runs, split: str, model: str, metric: str) -> list[float]:
    key = f"{split}/{model}/{metric}"
    return [float(m[key]) for _, m in runs if key in m]


def judge_ordering(means: dict[str, float], order: tuple[str, ...] = ("full", "linear", "sh_spec"),
                   what: str = "held-out lights") -> str:
    """Reproduced when the models' mean PSNRs follow ``order`` (each at or above the next, within
    :data:`TOLERANCE`); otherwise not reproduced, saying whether the full model is at least the best."""
    present = [m for m in order if m in means]
    if len(present) < 2:
        return f"not reproduced: fewer than two appearance models on {what}"
    facts = ", ".join(f"{m} {means[m]:.2f} dB" for m in present)
    ok = all(means[a] >= means[b] - TOLERANCE for a, b in pairwise(present))
    if ok:
        return f"reproduced on {what}: {facts}"
    best = max(present, key=lambda m: means[m])
    if best == present[0]:
        return f"not reproduced in full on {what} (the full model is best, the baselines swap): {facts}"
    return f"not reproduced on {what}: {facts}"


def report_section(run_dirs: list[RunDir]) -> ReportSection:
    """One table per capture size / UV resolution, the ordering verdicts and the run's figures."""
    finished = finished_runs(run_dirs)
    groups: dict[tuple, list] = {}
    for rd, m in finished:
        c = rd.config
        groups.setdefault((c.image_size, c.n_lights, c.uv_resolution, c.steps, c.eyes, tuple(c.models)),
                          []).append((rd, m))
    parts: list[str] = []
    verdicts: list[tuple[str, str]] = []
    figures: list[Figure] = []
    for (size, n_lights, uv, steps, eyes, models), runs in sorted(groups.items(), key=str):
        n_g = int(runs[0][1].get("num_gaussians", 0))
        parts += [(f"**{size} px capture, {n_lights} lights, UV {uv}x{uv} ({n_g} Gaussians"
                   f"{', explicit eyes' if eyes else ''}), {steps} steps** ({len(runs)} run(s); "
                   "PSNR dB / SSIM, mean ± std over seeds):"), "",
                  "| model | " + " | ".join(label for _, label in SPLITS) + " |", "|---|" + "---|" * len(SPLITS)]
        for model in models:
            cells = []
            for split, _ in SPLITS:
                p = _vals(runs, split, model, "psnr")
                s = _vals(runs, split, model, "ssim")
                cells.append(f"{mean_std_cell(p, 1, 2)} / {mean_std_cell(s, 1, 3)}" if p else "-")
            parts.append(f"| {model} | " + " | ".join(cells) + " |")
        paper = " / ".join(f"{m} {PAPER_ABLATION[m][0]:.2f}" for m in MODELS)
        parts += [f"| *paper, held-out lights* | {paper} | | | | |", ""]
        for split, label in SPLITS[:2]:
            means = {m: mean_std(_vals(runs, split, m, "psnr"))[0] for m in models if _vals(runs, split, m, "psnr")}
            if means:
                wins = sum(float(m.get(f"{split}/full/psnr", 0)) >= max(float(m.get(f"{split}/{b}/psnr", 0))
                                                                        for b in models if b != "full")
                           for _, m in runs) if "full" in models and len(models) > 1 else 0
                text = judge_ordering(means, what=label)
                if "full" in models and len(models) > 1:
                    text += f"; full model best in {wins}/{len(runs)} run(s)"
                if len(runs) < SEEDS:
                    text += f" ({len(runs)} seed(s); the README's table has {SEEDS})"
                verdicts.append((f"{size}px, {n_lights} lights, {label}", text))
        rd = runs[0][0]
        for name, caption in (("environment.png", "relighting under environment maps never seen in training"),
                              ("heldout_lights.png", "held-out lights: capture vs models"),
                              ("relight_sweep.png", "a light circling the head, positions not on the stage"),
                              ("heldout_expressions.png", "held-out expressions"),
                              ("turntable.gif", "turntable of the full model under the sky map"),
                              ("gaze.png", "explicit eye model: gaze set by hand")):
            path = rd.path / name
            if path.is_file() and len(figures) < 7:
                figures.append(Figure(path.resolve(), f"{rd.path.name}: {caption}"))
    if not verdicts:
        verdicts = [("held-out lights", "not reproduced: no finished run (preset paper_ict_olat)")]
    parts.append(f"The published numbers are on real light-stage captures, not available offline; the simulated "
                 f"ICT light stage tests the same ordering. One short run (the quick preset) cannot separate the "
                 f"models, whose margins here are ~0.1 dB: the README's 3-seed tables (preset paper_ict_olat, "
                 f"128 and 32 lights) are the method's result. {LPIPS_UNAVAILABLE}.")
    return ReportSection(claim=CLAIM, verdict=overall_verdict(verdicts), markdown="\n".join(parts),
                         figures=tuple(figures))

"""Figures of a relightable-avatar run: held-out lights and expressions, a relighting sweep, unseen
environment maps, and a turntable GIF. Images are linear radiance shown with ``clamp(x, 0, 1) ** (1 / 2.2)``.

``python -m paperzoo.methods.relight_avatar.figures RUN_DIR`` (re)writes them for a finished run.
"""
from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import numpy as np
import torch

from paperzoo.core import io
from paperzoo.core.cameras import look_at
from paperzoo.core.report import pyplot, save_figure
from paperzoo.methods.relight_avatar.config import ENVMAPS

# the package attribute `run` is the deferred entry point, so the module is imported by its full name
R = importlib.import_module("paperzoo.methods.relight_avatar.run")
LABELS = {"full": "full (SH + SG)", "linear": "linear", "sh_spec": "SH-only specular"}


def display(img: torch.Tensor) -> np.ndarray:
    """Linear radiance (H, W, 3) -> displayable [0, 1] array (gamma 2.2)."""
    return img.detach().clamp(0, 1).pow(1 / 2.2).cpu().numpy()


def _grid(rows: list[list[torch.Tensor]], col_titles: list[str], row_titles: list[str], path: Path,
          title: str = "") -> Path:
    plt = pyplot()
    n_r, n_c = len(rows), len(rows[0])
    fig, axes = plt.subplots(n_r, n_c, figsize=(1.9 * n_c, 1.9 * n_r + 0.4), squeeze=False)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            ax = axes[i][j]
            ax.imshow(display(img))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col_titles[j], fontsize=8)
            if j == 0:
                ax.set_ylabel(row_titles[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _psnr_label(pred: torch.Tensor, gt: torch.Tensor) -> str:
    from paperzoo.core.metrics.image import psnr

    return f"{float(psnr(pred.clamp(0, 1), gt.clamp(0, 1))):.1f} dB"


def heldout_grid(models, data: R.Data, split: str, path: Path, n: int = 4) -> Path | None:
    """Rows: images of one held-out split; columns: the capture, then each model (PSNR in the row title)."""
    triples = data.eval_sets.get(split)
    if triples is None or not len(triples):
        return None
    triples = triples[:n]
    preds = {name: R.predict(m, data, triples) for name, m in models.items()}
    rows, titles = [], []
    for i, (e, c, l) in enumerate(triples.tolist()):
        gt = data.image(e, c, l)
        rows.append([gt] + [preds[name][i] for name in models])
        titles.append(f"e{e} c{c} l{l}\n" + " / ".join(_psnr_label(preds[nm][i], gt) for nm in models))
    return _grid(rows, ["capture"] + [LABELS[n] for n in models], titles, path,
                 f"{split.replace('_', ' ')}: capture vs models")


def relight_sweep(models, data: R.Data, path: Path, n: int = 8) -> Path:
    """A point light circling the head at 30 degrees elevation, positions never in the stage: the capture's
    renderer vs the full model (and the baselines)."""
    from paperzoo.data.olat import head_frame, render_lights

    s = data.capture.split
    e, c = s["train_expressions"][0], s["train_cameras"][len(s["train_cameras"]) // 2]
    centre = torch.as_tensor(head_frame(data.mesh, data.olat_cfg.materials)[0], dtype=torch.float32)
    dist = float((data.capture.light_positions - centre).norm(dim=-1).mean())   # the stage's radius
    pos = []
    for k in range(n):
        az = 2 * math.pi * k / n
        el = math.radians(30)
        pos.append([dist * math.cos(el) * math.sin(az), dist * math.sin(el), dist * math.cos(el) * math.cos(az)])
    pos = torch.tensor(pos) + centre
    inten = data.capture.light_intensity[:1].expand(n, 3)
    gt, _ = render_lights(data.capture.vertices[e], [data.capture.cameras[c]], pos, inten, data.olat_cfg,
                          mesh=data.mesh)
    lights = [R.Lighting(positions=pos[k:k + 1], radiance=inten[k:k + 1]) for k in range(n)]
    triples = torch.tensor([(e, c, 0)] * n)
    rows = [[gt[0, k] for k in range(n)]]
    names = ["capture"]
    for name, m in models.items():
        rows.append(list(R.predict(m, data, triples, lights)))
        names.append(LABELS[name])
    return _grid(rows, [f"{360 * k // n} deg" for k in range(n)], names, path,
                 "relighting sweep: a light circling the head (positions not on the stage)")


def environment_grid(models, data: R.Data, env_gt: dict[str, torch.Tensor], path: Path) -> Path:
    """For each unseen environment map and view: the map, the ground truth and every model."""
    views = R.env_views(data)
    rows, titles = [], []
    for env_name in ENVMAPS:
        env = R.environment(env_name)
        thumb = env.image / env.image.max().clamp_min(1e-6) * 2
        preds = {name: R.env_renders(m, data, env_name, views) for name, m in models.items()}
        for i, (e, c) in enumerate(views):
            gt = env_gt[env_name][i]
            rows.append([thumb, gt] + [preds[name][i] for name in models])
            titles.append(f"{env_name}, e{e} c{c}\n" + " / ".join(_psnr_label(preds[n][i], gt) for n in models))
    return _grid(rows, ["environment", "ground truth"] + [LABELS[n] for n in models], titles, path,
                 "relighting under environment maps never seen in training")


def turntable(model, data: R.Data, path: Path, env_name: str = "sky", frames: int = 36) -> Path:
    """A GIF of the full model turning under an environment map (a held-out expression if there is one)."""
    import imageio.v3 as iio

    s = data.capture.split
    e = (s["test_expressions"] or s["train_expressions"])[0]
    cam0 = data.capture.cameras[0]
    target = tuple(float(v) for v in data.capture.vertices[e].mean(0))
    radius = float((cam0.center - torch.tensor(target)).norm())
    fov = math.degrees(2 * math.atan(cam0.height / (2 * cam0.fy)))
    light = R.env_lighting(env_name)
    out = []
    with torch.no_grad():
        dec = model.decode(model.encode(data.tracked[e:e + 1])[0])
        for k in range(frames):
            az = 2 * math.pi * k / frames
            eye = (target[0] + radius * math.sin(az), target[1] + 0.15 * radius, target[2] + radius * math.cos(az))
            cam = look_at(eye, target, fov_deg=fov, width=cam0.width * 2, height=cam0.height * 2)
            g = model.splat_inputs(dec, cam.center, light, tracked=data.tracked[e:e + 1])
            img = R.render_batch(g["means"], g["quats"], g["scales"], g["opacities"], g["colors"], [cam]).image[0]
            out.append((display(img) * 255).astype(np.uint8))
    with io.atomic_path(path) as tmp:
        iio.imwrite(tmp, np.stack(out), extension=".gif", duration=80, loop=0)
    return path


def gaze_grid(model, data: R.Data, path: Path) -> Path | None:
    """Explicit gaze control (avatars with the eye model): the same expression and light, eyes turned."""
    if model.eyes is None:
        return None
    s = data.capture.split
    e, l = s["train_expressions"][0], s["train_lights"][0]
    centre = model.eyes.g.center.mean(0)
    cam0 = data.capture.cameras[0]
    eye_pos = (float(centre[0]), float(centre[1]), float(centre[2]) + 25.0)
    cam = look_at(eye_pos, tuple(float(v) for v in centre), fov_deg=12, width=2 * cam0.width, height=cam0.height)
    light = data.light(l)
    angles = [(-0.35, 0.0), (0.0, 0.0), (0.35, 0.0), (0.0, 0.3), (0.0, -0.3)]
    imgs = []
    with torch.no_grad():
        dec = model.decode(model.encode(data.tracked[e:e + 1])[0])
        for yaw, pitch in angles:
            gaze = torch.tensor([[[yaw, pitch], [yaw, pitch]]])
            g = model.splat_inputs(dec, cam.center, light, gaze=gaze)
            imgs.append(R.render_batch(g["means"], g["quats"], g["scales"], g["opacities"], g["colors"],
                                       [cam]).image[0])
    return _grid([imgs], [f"yaw {y:+.2f}, pitch {p:+.2f}" for y, p in angles], ["full + eyes"], path,
                 "explicit gaze control (the capture never rotates the eyes: gaze is set, not learned)")


def write_figures(models, data: R.Data, cfg, out_dir: Path, env_gt: dict[str, torch.Tensor]) -> dict[str, str]:
    """All figures of a run into ``out_dir``; returns artifact name -> file name."""
    out_dir = Path(out_dir)
    made = {"heldout_lights": heldout_grid(models, data, "test_lights", out_dir / "heldout_lights.png"),
            "heldout_expressions": heldout_grid(models, data, "test_expressions", out_dir / "heldout_expressions.png"),
            "relight_sweep": relight_sweep(models, data, out_dir / "relight_sweep.png"),
            "environment": environment_grid(models, data, env_gt, out_dir / "environment.png")}
    lead = next(iter(models))
    made["turntable"] = turntable(models[lead], data, out_dir / "turntable.gif")
    made["gaze"] = gaze_grid(models[lead], data, out_dir / "gaze.png")
    return {k: Path(v).name for k, v in made.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    """Write the figures of a finished run folder from its final weights."""
    from paperzoo.core.runs import RunDir

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m paperzoo.methods.relight_avatar.figures RUN_DIR", file=sys.stderr)
        return 2
    run_dir = RunDir.open(args[0])
    cfg = run_dir.config
    best = run_dir.finished_checkpoint("best")
    data = R.load_data(cfg, run_dir.data_root)
    models = R.build_models(cfg, data)
    models.load_state_dict(best["model"])
    for name, file in write_figures(models, data, cfg, run_dir.path, R.env_ground_truths(data, cfg)).items():
        print(f"{name}: {run_dir.path / file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Train the three appearance models side by side on a simulated light stage and evaluate them.

One step draws ``batch_size`` training images (expression x camera x light), and every model encodes the
tracked meshes, decodes its Gaussians, shades them for that light and view, splats them and takes
L1 + SSIM (+ KL on z + the decoded mesh's error) against the capture. Evaluation renders, with each
expression's mean code, three held-out splits - lights, expressions, views - and two environment maps
the models never saw (ground truth from the capture's renderer with the map as median-cut distant lights).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache

import torch

from paperzoo.api import RunResult
from paperzoo.core import loop
from paperzoo.core.metrics.image import psnr, ssim, ssim_loss
from paperzoo.core.runs import RunDir
from paperzoo.methods.relight_avatar.config import ENVMAPS, RelightAvatarConfig
from paperzoo.methods.relight_avatar.lights import EnvironmentMap
from paperzoo.methods.relight_avatar.model import (
    HEAD_MATERIALS,
    SH_DEGREE,
    AvatarTemplate,
    Lighting,
    RelightableAvatar,
)
from paperzoo.methods.relight_avatar.splat import render_batch

log = logging.getLogger(__name__)
METHOD = "relight_avatar"
#: Irradiance an environment map delivers on a surface facing the cameras (as one stage light does).
ENV_FRONT_IRRADIANCE = 3.0


@dataclass
class Data:
    """The capture and what the models need from it."""

    capture: object               # paperzoo.data.olat.OLATCapture
    olat_cfg: object              # its OLATConfig
    mesh: object                  # the full FaceMesh (ground-truth renders)
    head: object                  # its head submesh (the avatar's materials)
    template: AvatarTemplate
    tracked: torch.Tensor         # (E, V_head, 3) tracked head meshes
    eval_sets: dict[str, torch.Tensor]  # split -> (n, 3) (expression, camera, light) triples

    def image(self, e: int, c: int, l: int) -> torch.Tensor:
        return self.capture.images[e, c, l].float()

    def light(self, l: int) -> Lighting:
        return Lighting(positions=self.capture.light_positions[l:l + 1],
                        radiance=self.capture.light_intensity[l:l + 1], reference_distance=1.0)


def olat_config(cfg: RelightAvatarConfig):
    from paperzoo.data.olat import OLATConfig

    return OLATConfig(image_size=cfg.image_size, n_cameras=cfg.n_cameras, n_lights=cfg.n_lights,
                      shadow_samples=cfg.shadow_samples, n_train_expressions=cfg.n_train_expressions,
                      n_test_expressions=cfg.n_test_expressions, heldout_light_fraction=cfg.heldout_light_fraction,
                      heldout_camera_fraction=cfg.heldout_camera_fraction, seed=cfg.capture_seed)


def _triples(es, cs, ls) -> torch.Tensor:
    return torch.cartesian_prod(torch.as_tensor(es), torch.as_tensor(cs), torch.as_tensor(ls)).reshape(-1, 3)


def load_data(cfg: RelightAvatarConfig, data_root: str | None = None) -> Data:
    """Load (or generate and cache) the capture, and build the avatar template from the ICT head."""
    from paperzoo.data.face import load_face
    from paperzoo.data.olat import load_or_generate_olat

    mesh = load_face(data_root)
    ocfg = olat_config(cfg)
    cap = load_or_generate_olat(ocfg, mesh=mesh, progress=True)
    head = mesh.submesh(list(HEAD_MATERIALS))
    template = AvatarTemplate.from_mesh(head, cfg.uv_resolution)
    tracked = cap.vertices[:, head.vertex_ids].float()
    s = cap.split
    g = torch.Generator().manual_seed(cfg.capture_seed + 17)
    sets = {"test_lights": _triples(s["train_expressions"], s["train_cameras"], s["test_lights"]),
            "test_expressions": _triples(s["test_expressions"], s["train_cameras"], s["train_lights"]),
            "test_views": _triples(s["train_expressions"], s["test_cameras"], s["train_lights"])}
    eval_sets = {}
    for name, t in sets.items():
        if len(t):
            eval_sets[name] = t[torch.randperm(len(t), generator=g)[:cfg.eval_images]]
    return Data(cap, ocfg, mesh, head, template, tracked, eval_sets)


def build_models(cfg: RelightAvatarConfig, data: Data) -> torch.nn.ModuleDict:
    """One avatar per appearance model, each with its own encoder and decoders, seeded identically."""
    eyes = None
    if cfg.eyes:
        from paperzoo.methods.relight_avatar.eyes import EyeGeometry

        eyes = EyeGeometry.from_template(data.head, data.template)
    models = torch.nn.ModuleDict()
    for name in cfg.models:
        torch.manual_seed(cfg.seed)
        models[name] = RelightableAvatar(data.template, name, z_dim=cfg.z_dim, channels=cfg.channels, eyes=eyes)
    return models


def shade_batch(model: RelightableAvatar, dec: dict, triples: list[tuple[int, int, int]], data: Data,
                lights: list[Lighting] | None = None) -> dict[str, torch.Tensor]:
    """Colours of decoded sample ``b`` for triple ``b``'s camera and light: the splatting inputs (B, M, ...)."""
    parts = []
    for b, (e, c, l) in enumerate(triples):
        one = {k: v[b:b + 1] for k, v in dec.items()}
        light = lights[b] if lights is not None else data.light(l)
        parts.append(model.splat_inputs(one, data.capture.cameras[c].center, light, tracked=data.tracked[e:e + 1]))
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def splat_all(parts: list[dict[str, torch.Tensor]], cameras: list) -> torch.Tensor:
    """One batched splatting call for every image of every model: (sum of B, H, W, 3)."""
    cat = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return render_batch(cat["means"], cat["quats"], cat["scales"], cat["opacities"], cat["colors"], cameras).image


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over z, averaged over the batch."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1).mean()


def step_losses(models: torch.nn.ModuleDict, data: Data, batch: torch.Tensor, cfg: RelightAvatarConfig,
                generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """Every model's L1 + ssim_weight (1 - SSIM) + kl_weight KL + geometry_weight mesh MSE on one batch of
    (expression, camera, light) triples; their sum (the models share no parameters) and the parts."""
    triples = [tuple(t) for t in batch.tolist()]
    es = batch[:, 0]
    gt = torch.stack([data.image(*t) for t in triples])
    cams = [data.capture.cameras[c] for _, c, _ in triples]
    parts, extra = [], {}
    for name, model in models.items():
        mu, logvar = model.encode(data.tracked[es])
        eps = torch.randn(mu.shape, generator=generator)
        dec = model.decode(mu + eps * (0.5 * logvar).exp())
        parts.append(shade_batch(model, dec, triples, data))
        tracked = data.tracked[es][:, data.template.vertex_subset]
        extra[name] = (kl_divergence(mu, logvar), (dec["mesh"] - tracked).pow(2).sum(-1).mean())
    images = splat_all(parts, cams * len(models)).split(len(triples))
    total = torch.zeros(())
    logs: dict[str, float] = {}
    for (name, _), pred in zip(models.items(), images):
        l1 = (pred - gt).abs().mean()
        s = ssim_loss(pred.permute(0, 3, 1, 2), gt.permute(0, 3, 1, 2))
        kl, geo = extra[name]
        total = total + l1 + cfg.ssim_weight * s + cfg.kl_weight * kl + cfg.geometry_weight * geo
        logs.update({f"{name}/l1": float(l1.detach()), f"{name}/ssim_loss": float(s.detach()),
                     f"{name}/kl": float(kl.detach()), f"{name}/mesh_mse": float(geo.detach())})
    return total, logs


@torch.no_grad()
def predict(model: RelightableAvatar, data: Data, triples: torch.Tensor, lights: list[Lighting] | None = None,
            chunk: int = 16) -> torch.Tensor:
    """Renders (n, H, W, 3) for (expression, camera, light) triples, with each expression's mean code
    (``lights`` overrides the triples' stage lights, e.g. with environment maps)."""
    model.eval()
    out = []
    rows = [tuple(t) for t in triples.tolist()]
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        es = torch.tensor([e for e, _, _ in part])
        dec = model.decode(model.encode(data.tracked[es])[0])
        shaded = shade_batch(model, dec, part, data, None if lights is None else lights[start:start + chunk])
        out.append(splat_all([shaded], [data.capture.cameras[c] for _, c, _ in part]))
    return torch.cat(out)


def split_metrics(model: RelightableAvatar, data: Data, triples: torch.Tensor) -> dict[str, float]:
    pred = predict(model, data, triples).clamp_min(0)
    gt = torch.stack([data.image(*t) for t in triples.tolist()])
    peak = 1.0
    return {"psnr": float(psnr(pred.clamp_max(peak), gt.clamp_max(peak), peak).mean()),
            "ssim": float(ssim(pred.clamp_max(peak), gt.clamp_max(peak), peak).mean()),
            "l1": float((pred - gt).abs().mean())}


# -- environment maps -------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def environment(name: str) -> EnvironmentMap:
    """An environment map no model saw in training, scaled so a surface facing the cameras (+z) receives
    ``ENV_FRONT_IRRADIANCE`` (about what one stage light delivers)."""
    env = EnvironmentMap.sky() if name == "sky" else EnvironmentMap.studio()
    d, w = env.directions(), env.solid_angles()
    front = float(((env.image * w[..., None]).sum(-1) / 3 * d[..., 2].clamp_min(0)).sum())
    return EnvironmentMap(env.image * (ENV_FRONT_IRRADIANCE / max(front, 1e-12)), name=name)


def env_lighting(name: str) -> Lighting:
    env = environment(name)
    return Lighting(env_sh=env.to_sh(SH_DEGREE).float(), env_specular=env.specular)


def env_ground_truth(data: Data, name: str, e: int, c: int, n_samples: int) -> torch.Tensor:
    """The capture's renderer under the map (median-cut directional lights, hard shadows)."""
    from paperzoo.data.olat import render_directional

    lights = environment(name).to_directional(n_samples)
    img, _ = render_directional(data.capture.vertices[e], data.capture.cameras[c], lights.directions,
                                lights.radiance, data.olat_cfg, mesh=data.mesh)
    return img.float()


def env_renders(model: RelightableAvatar, data: Data, name: str, views: list[tuple[int, int]]) -> torch.Tensor:
    """The model's renders of (expression, camera) views under environment map ``name``."""
    light = env_lighting(name)
    return predict(model, data, torch.tensor([(e, c, 0) for e, c in views]), [light] * len(views))


def env_views(data: Data) -> list[tuple[int, int]]:
    """(expression, camera) pairs for environment relighting: a training and a held-out expression / view."""
    s = data.capture.split
    e_test = (s["test_expressions"] or s["train_expressions"])[0]
    c_test = (s["test_cameras"] or s["train_cameras"])[0]
    return [(s["train_expressions"][0], s["train_cameras"][len(s["train_cameras"]) // 2]), (e_test, c_test)]


def env_ground_truths(data: Data, cfg: RelightAvatarConfig) -> dict[str, torch.Tensor]:
    """Ground truth of every environment map at :func:`env_views`: map name -> (views, H, W, 3)."""
    views = env_views(data)
    return {name: torch.stack([env_ground_truth(data, name, e, c, cfg.envmap_samples) for e, c in views])
            for name in ENVMAPS}


def test_metrics(models: torch.nn.ModuleDict, data: Data, cfg: RelightAvatarConfig,
                 env_gt: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for split, triples in data.eval_sets.items():
        for name, model in models.items():
            for k, v in split_metrics(model, data, triples).items():
                metrics[f"{split}/{name}/{k}"] = v
    views = env_views(data)
    env_gt = env_gt or env_ground_truths(data, cfg)
    for env_name in ENVMAPS:
        gt = env_gt[env_name]
        for name, model in models.items():
            pred = env_renders(model, data, env_name, views).clamp(0, 1)
            metrics[f"env_{env_name}/{name}/psnr"] = float(psnr(pred, gt.clamp(0, 1)).mean())
            metrics[f"env_{env_name}/{name}/ssim"] = float(ssim(pred, gt.clamp(0, 1)).mean())
    return metrics


def run(cfg: RelightAvatarConfig, run_dir: RunDir) -> RunResult:
    """Train every appearance model of ``cfg`` (resuming from ``run_dir``'s last checkpoint) and evaluate."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    t0 = time.perf_counter()
    data = load_data(cfg, run_dir.data_root)
    log.info("capture: %s images, %d Gaussians per avatar", tuple(data.capture.images.shape),
             data.template.n_gaussians)
    models = build_models(cfg, data)
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    s = data.capture.split
    train_e, train_c, train_l = (torch.as_tensor(s[k]) for k in ("train_expressions", "train_cameras", "train_lights"))
    opt = torch.optim.Adam(models.parameters(), lr=cfg.lr)
    gamma = cfg.lr_final ** (1.0 / max(cfg.steps, 1))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: gamma ** (epoch * cfg.steps_per_epoch))
    epochs = math.ceil(cfg.steps / cfg.steps_per_epoch)
    stats: dict[str, float] = {}

    def train_epoch() -> float:
        models.train()
        sums: dict[str, float] = {}
        total = 0.0
        for _ in range(cfg.steps_per_epoch):
            idx = torch.stack([train_e[torch.randint(len(train_e), (cfg.batch_size,), generator=generator)],
                               train_c[torch.randint(len(train_c), (cfg.batch_size,), generator=generator)],
                               train_l[torch.randint(len(train_l), (cfg.batch_size,), generator=generator)]], 1)
            loss, parts = step_losses(models, data, idx, cfg, generator)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        stats.clear()
        stats.update({k: v / cfg.steps_per_epoch for k, v in sums.items()})
        return total / cfg.steps_per_epoch

    monitor = _triples(train_e, train_c, train_l)
    monitor = monitor[torch.randperm(len(monitor), generator=torch.Generator().manual_seed(5))[:8]]

    def validate() -> tuple[float, dict[str, float]]:
        row = dict(stats)
        for name, model in models.items():  # training images: the held-out splits stay unseen until the end
            row[f"{name}/train_psnr"] = split_metrics(model, data, monitor)["psnr"]
        # the final weights are what the tables use (best.pt = the last epoch)
        return float(sched.last_epoch), row

    state = loop.train(run_dir, model=models, optimizer=opt, scheduler=sched, generators={"train": generator},
                       schedule=loop.Schedule(epochs=epochs), train_epoch=train_epoch, validate=validate,
                       desc=f"{METHOD} {cfg.image_size}px")
    run_dir.write_history(state["history"])
    env_gt = env_ground_truths(data, cfg)
    metrics = test_metrics(models, data, cfg, env_gt)
    metrics.update(loop.summary(state, models))
    metrics["num_gaussians"] = data.template.n_gaussians
    metrics["wall_seconds"] = time.perf_counter() - t0
    artifacts = {"best": "checkpoints/best.pt"}
    if cfg.figures:
        from paperzoo.methods.relight_avatar.figures import write_figures

        artifacts.update(write_figures(models, data, cfg, run_dir.path, env_gt))
    return RunResult(metrics=metrics, history=[dict(r) for r in state["history"]], artifacts=artifacts)


def evaluate(run_dir: RunDir) -> dict[str, float]:
    """Re-score a finished run from ``best.pt`` (its final weights) on the regenerated capture."""
    cfg: RelightAvatarConfig = run_dir.config
    best = run_dir.finished_checkpoint("best")
    data = load_data(cfg, run_dir.data_root)
    models = build_models(cfg, data)
    models.load_state_dict(best["model"])
    return test_metrics(models, data, cfg)

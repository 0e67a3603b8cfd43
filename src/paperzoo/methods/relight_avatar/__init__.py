"""Relightable Gaussian codec avatars (Saito, Schwartz, Simon, Li, Nam, CVPR 2024).

Public API::

    from paperzoo.core.cameras import look_at
    from paperzoo.methods.relight_avatar import render, RelightableAvatar, AvatarTemplate, Lighting

    out = render(means, quats, scales, opacities, colors, camera)     # CPU/CUDA Gaussian splatting
    avatar = RelightableAvatar(AvatarTemplate.from_mesh(head, 64), "full")
    dec = avatar.decode(avatar.encode(tracked_mesh[None])[0])          # Gaussians for an expression
    colors = avatar.shade(dec, camera.center, Lighting(positions=p, radiance=I))

The run pipeline (:mod:`.run`) simulates a light stage from the ICT FaceKit head
(:mod:`paperzoo.data.olat`), trains the full appearance model, the linear model and SH-only specular side
by side, and evaluates them on held-out lights, expressions and views and under unseen environment maps.
"""
from paperzoo.api import MethodSpec, deferred, lazy_attributes
from paperzoo.methods.relight_avatar.config import PRESETS, RelightAvatarConfig

run = deferred("paperzoo.methods.relight_avatar.run:run")
evaluate = deferred("paperzoo.methods.relight_avatar.run:evaluate")
report_section = deferred("paperzoo.methods.relight_avatar.report:report_section")

CITATION = """@inproceedings{saito2024relightable,
  title     = {Relightable Gaussian Codec Avatars},
  author    = {Saito, Shunsuke and Schwartz, Gabriel and Simon, Tomas and Li, Junxuan and Nam, Giljoo},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {130--141},
  year      = {2024},
}"""

SPEC = MethodSpec(
    name="relight_avatar",
    paper="Relightable Gaussian Codec Avatars",
    citation=CITATION,
    url="https://arxiv.org/abs/2312.03704",
    config_cls=RelightAvatarConfig,
    presets=PRESETS,
    run=run,
    evaluate=evaluate,
    headline="test_lights/full/psnr",
    extras={"avatar": ("torchmetrics", "imageio", "trimesh", "embreex")},
    table_metrics=("test_lights/full/psnr", "test_lights/linear/psnr", "test_lights/sh_spec/psnr",
                   "test_expressions/full/psnr", "test_views/full/psnr", "env_sky/full/psnr"),
    variant_fields=("models", "uv_resolution", "image_size", "eyes"),
    report_section=report_section,
)

_LAZY = {"splat": ("render", "render_reference", "project_gaussians", "rasterize"),
         "model": ("RelightableAvatar", "AvatarTemplate", "Lighting"),
         "lights": ("EnvironmentMap", "PointLights", "DirectionalLights", "sg_lobe", "reflect"),
         "sh": ("sh_basis", "sh_eval", "project_equirect")}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = ["PRESETS", "SPEC", "RelightAvatarConfig", "evaluate", "report_section", "run",  # noqa: RUF022
           "render", "render_reference", "project_gaussians", "rasterize", "RelightableAvatar", "AvatarTemplate",
           "Lighting", "EnvironmentMap", "PointLights", "DirectionalLights", "sg_lobe", "reflect", "sh_basis",
           "sh_eval", "project_equirect"]

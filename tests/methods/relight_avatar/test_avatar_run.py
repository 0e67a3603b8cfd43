"""The run pipeline end to end on the tiny preset, with the figures the main job writes."""
from paperzoo import runner


def test_tiny_run_with_figures_and_explicit_eyes(tmp_path):
    result = runner.execute(runner.prepare("relight_avatar", "tiny", run_dir=tmp_path / "run",
                                           overrides={"figures": True, "eyes": True, "uv_resolution": 32}))
    m = result.metrics
    for split in ("test_lights", "test_expressions", "test_views", "env_sky", "env_studio"):
        for model in ("full", "linear", "sh_spec"):
            assert 0 < m[f"{split}/{model}/psnr"] < 100 and 0 < m[f"{split}/{model}/ssim"] <= 1
    for name in ("heldout_lights.png", "relight_sweep.png", "environment.png", "turntable.gif", "gaze.png"):
        assert (tmp_path / "run" / name).stat().st_size > 1000, name

"""The contract every registered method meets (one registry-driven test, no exclusion list)."""
import dataclasses
import math

import pytest

from paperzoo import registry, runner
from paperzoo.core import config as cfglib
from paperzoo.core.runs import RunDir

METHODS = registry.names()


class _Crash(RuntimeError):
    pass


def _run_tiny(name, path, **overrides):
    return runner.execute(runner.prepare(name, "tiny", run_dir=path, overrides=overrides))


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two uninterrupted tiny runs per method with the same seed."""
    out = {}
    for name in METHODS:
        base = tmp_path_factory.mktemp(name)
        out[name] = (_run_tiny(name, base / "a"), _run_tiny(name, base / "b"), base)
    return out


@pytest.mark.parametrize("name", METHODS)
def test_tiny_preset_finishes_with_finite_metrics(name, tiny_runs):
    result, _, base = tiny_runs[name]
    spec = registry.get(name)
    assert spec.headline in result.metrics
    # what the run returned is what it wrote to metrics.json
    assert RunDir.open(base / "a").read_metrics() == dict(result.metrics)
    for key, value in result.metrics.items():
        assert math.isfinite(float(value)), f"{key} = {value}"


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_metrics(name, tiny_runs):
    a, b, _ = tiny_runs[name]
    timing = {k for k in a.metrics if "seconds" in k}
    assert {k: v for k, v in a.metrics.items() if k not in timing} == \
           {k: v for k, v in b.metrics.items() if k not in timing}


def test_a_runs_thread_setting_does_not_leak(tmp_path):
    import torch

    before = torch.get_num_threads()
    _run_tiny("conve", tmp_path / "one", num_threads=before % 2 + 1)   # a count different from the current one
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("name", METHODS)
def test_crash_then_resume_matches_uninterrupted(name, tiny_runs, monkeypatch):
    reference, _, base = tiny_runs[name]
    path = base / "crashed"
    original = RunDir.save_checkpoint
    calls = {"last": 0}

    def crashing(self, state, name="last"):
        original(self, state, name)
        if name == "last":
            calls["last"] += 1
            if calls["last"] == 2:
                raise _Crash("simulated crash right after the second checkpoint")

    monkeypatch.setattr(RunDir, "save_checkpoint", crashing)
    with pytest.raises(_Crash):
        _run_tiny(name, path)
    monkeypatch.setattr(RunDir, "save_checkpoint", original)
    assert RunDir.open(path).load_checkpoint("last") is not None
    resumed = runner.execute(runner.prepare(resume=path))
    keys = [k for k in reference.metrics if "seconds" not in k]
    assert {k: resumed.metrics[k] for k in keys} == {k: reference.metrics[k] for k in keys}
    # no completed epoch is lost or repeated in the log
    epochs = [row["epoch"] for row in RunDir.open(path).read_history()]
    assert epochs == sorted(set(epochs)) and len(epochs) == len(reference.history)


@pytest.mark.parametrize("name", METHODS)
def test_eval_reproduces_final_metrics(name, tiny_runs):
    reference, _, base = tiny_runs[name]
    metrics = registry.get(name).evaluate(RunDir.open(base / "a"))
    assert registry.get(name).headline in metrics  # otherwise the loop below could check nothing
    for key, value in metrics.items():
        assert reference.metrics[key] == pytest.approx(value), key


@pytest.mark.parametrize("name", METHODS)
def test_spec_is_complete(name):
    spec = registry.get(name)
    assert spec.citation.lstrip().startswith("@") and spec.url.startswith("http")
    docs = cfglib.field_docs(spec.config_cls)
    undocumented = [f.name for f in dataclasses.fields(spec.config_cls) if not docs.get(f.name)]
    assert not undocumented, f"config fields without a docstring: {undocumented}"
    for preset in spec.presets.values():
        # every preset survives a YAML round trip through the validating loader
        again = cfglib.from_dict(spec.config_cls, cfglib.to_dict(preset.config))
        assert again == preset.config
    readme = spec.readme.read_text(encoding="utf-8")
    assert spec.url in readme, "README must cite the paper"
    assert "## Deviations" in readme, "README must list deviations from the paper"

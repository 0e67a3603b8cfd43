"""The method contract pieces of sky_broker: the tiny preset's run and evaluate."""
import math
from dataclasses import replace

import pytest

from paperzoo.core.runs import RunDir
from paperzoo.methods.sky_broker import SPEC
from paperzoo.methods.sky_broker.config import SkyBrokerConfig

pytest.importorskip("scipy")


def _run(tmp_path, cfg, data_root=None):
    run_dir = RunDir(tmp_path / "run", method="sky_broker", preset="tiny", config=cfg, data_root=data_root)
    run_dir.path.mkdir(parents=True)
    return run_dir, SPEC.run(cfg, run_dir)


def test_tiny_run_agrees_with_bruteforce_and_reports_savings(tmp_path):
    cfg = replace(SPEC.preset("tiny").config, num_dags=8)  # the contract test runs the full preset
    run_dir, result = _run(tmp_path, cfg)
    m = result.metrics
    assert m["agree/dags"] == cfg.num_dags and m["agree/cost_frac"] == 1.0 and m["agree/time_frac"] == 1.0
    assert all(math.isfinite(v) for v in m.values())
    for name in ("data_region", "single_region_best", "data_cloud", "single_cloud_best"):
        # a baseline solves the same problem on a subset of the catalog: never cheaper than the broker
        assert m[f"savings/{name}_x"] >= 1.0 - 1e-9 and m[f"speedup/{name}_x"] >= 1.0 - 1e-9
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert (run_dir.path / "plan.md").read_text().startswith("Plan for 'training'")
    evaluated = SPEC.evaluate(run_dir)
    assert not [k for k in evaluated if "seconds" in k]
    assert {k: pytest.approx(v) for k, v in evaluated.items()} == {k: m[k] for k in evaluated}


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="SkyBrokerConfig.dag_tasks: must be in 1..8"):
        SkyBrokerConfig(dag_tasks=20)
    with pytest.raises(ValueError, match="SkyBrokerConfig.data_location"):
        SkyBrokerConfig(data_location="us-east-1")

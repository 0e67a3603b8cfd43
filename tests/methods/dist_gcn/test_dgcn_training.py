"""The optimisers (simulation): gradient tracking, DGD, centralized; config validation."""
import dataclasses

import numpy as np
import pytest
import torch

from paperzoo.core.config import ConfigError, from_dict
from paperzoo.core.runs import RunDir
from paperzoo.methods.dist_gcn import PRESETS, DistGCNConfig, trainer
from paperzoo.methods.dist_gcn.comm import SimComm
from paperzoo.methods.dist_gcn.run import evaluate, load_graph, run


def _cfg(**kw):
    base = {"dataset": "sbm", "sbm_nodes": 120, "sbm_blocks": 3, "num_agents": 4, "hidden": 8, "dropout": 0.0,
                "iterations": 60, "eval_every": 20, "fmmc_steps": 50, "topology": "ring"}
    return DistGCNConfig(**{**base, **kw})


def _train(cfg):
    ctx = trainer.build_context(cfg, load_graph(cfg), SimComm(cfg.agents))
    state = trainer.initial_state(ctx)
    rows = [trainer.step(ctx, state) for _ in range(cfg.iterations)]
    return ctx, state, rows


def test_gradient_tracking_reaches_consensus_and_the_centralized_loss():
    _, _, gt = _train(_cfg(algorithm="gt", iterations=80))
    _, _, dgd = _train(_cfg(algorithm="dgd", iterations=80))
    _, _, cen = _train(_cfg(algorithm="centralized", iterations=80))
    assert gt[0]["loss"] == pytest.approx(cen[0]["loss"], abs=1e-5)  # same start, same objective
    # exact gradients (no dropout): tracking drives disagreement to ~0, DGD keeps an O(lr) floor
    assert gt[-1]["consensus_error"] < 1e-5
    assert gt[-1]["consensus_error"] < 1e-2 * dgd[-1]["consensus_error"]
    assert gt[-1]["loss"] == pytest.approx(cen[-1]["loss"], rel=0.05)
    assert gt[-1]["loss"] < 0.8 * gt[0]["loss"]


def test_average_of_tracked_gradients_is_the_centralized_gradient():
    cfg = _cfg(algorithm="gt")
    ctx, state, _ = _train(dataclasses.replace(cfg, iterations=5))
    # y averages the local gradients at every iteration (tracking invariant, W doubly stochastic)
    _, _, grads = trainer.local_gradients(ctx, state.x, None, 0.0)
    y = {a: state.y_mixed[a] + grads[a] - state.g_prev[a] for a in ctx.comm.agents}
    torch.testing.assert_close(sum(y.values()) / 4, sum(grads.values()) / 4, atol=1e-5, rtol=0)


def test_average_model_loss_is_the_centralized_loss_of_the_mean_weights():
    ctx, state, _ = _train(_cfg(algorithm="dgd", iterations=5))   # DGD: the agents still disagree
    assert trainer.consensus_error(ctx, state.x) > 1e-8
    mean = sum(state.x.values()) / 4
    cen_cfg = _cfg(algorithm="centralized")
    cen = trainer.build_context(cen_cfg, load_graph(cen_cfg), SimComm(1))
    losses, _, _ = trainer.local_gradients(cen, {0: mean}, None, 0.0)
    assert trainer.average_model_loss(ctx, state.x) == pytest.approx(float(losses[0]), abs=1e-6)
    # and differs from the sum of the agents' losses at their own weights
    own, _, _ = trainer.local_gradients(ctx, state.x, None, 0.0)
    assert abs(float(sum(own.values())) - float(losses[0])) > 1e-6


def test_run_loop_records_the_average_model_loss_outside_the_step_accounting(tmp_path):
    cfg = _cfg(algorithm="gt", iterations=4, eval_every=4)
    ctx = trainer.build_context(cfg, load_graph(cfg), SimComm(4))
    state, history = trainer.initial_state(ctx), []
    trainer.run_loop(ctx, state, history, {}, lambda row: None)
    plain = _train(cfg)[2]
    for row, ref in zip(history, plain):
        assert row["bytes_exchange"] == ref["bytes_exchange"] and row["loss"] == pytest.approx(ref["loss"])
    assert history[0]["average_loss"] == pytest.approx(history[0]["loss"], abs=1e-6)  # same start
    off = dataclasses.replace(cfg, monitor_average_loss=False)
    ctx = trainer.build_context(off, load_graph(off), SimComm(4))
    history = []
    trainer.run_loop(ctx, trainer.initial_state(ctx), history, {}, lambda row: None)
    assert "average_loss" not in history[0]


def test_bytes_accounting_per_iteration():
    ctx, _, rows = _train(_cfg(algorithm="gt", iterations=2))
    p = ctx.layout.size
    links = len(ctx.topology.links)
    # one message of [x - lr y, y] per link and direction, averaged over agents
    assert rows[-1]["bytes_mix"] == pytest.approx(2 * links * 2 * p * 4 / 4)
    assert rows[-1]["bytes_exchange"] == pytest.approx(
        2 * ctx.stats["boundary_rows"] * (ctx.layout.hidden + ctx.layout.num_classes) * 4 / 4)


def test_run_writes_a_complete_run_folder_and_evaluate_matches(tmp_path):
    cfg = PRESETS["tiny"].config
    run_dir = RunDir.create(tmp_path, method="dist_gcn", preset="tiny", config=cfg)
    result = run(cfg, run_dir)
    for name in ("log.csv", "curves.png", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (tmp_path / name).exists(), name
    again = evaluate(run_dir)
    assert {"test/accuracy", "valid/accuracy"} <= set(again)  # otherwise the loop could check nothing
    for key, value in again.items():
        assert result.metrics[key] == pytest.approx(value, abs=1e-6)
    # 3 SBM blocks: chance is 1/3 (measured .89 after 20 iterations)
    assert result.metrics["test/accuracy"] > 0.6
    assert result.metrics["bytes_exchange_per_iteration"] == result.metrics["exchange_lower_bound_bytes"]


@pytest.mark.parametrize("field,value,match", [
    ("num_agents", 0, "num_agents: must be >= 1"),
    ("dropout", 1.0, "dropout: must be in"),
    ("links", 2, "links: must be between"),
    ("nprocs", 3, "nprocs: real mode runs one agent per process"),
    ("algorithm", "adam", "algorithm: 'adam' is not one of"),
])
def test_config_errors_name_the_field(field, value, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(DistGCNConfig, {field: value}, base=PRESETS["quick"].config)


def test_designed_topology_is_built_from_a_sketch_of_the_initial_gradients():
    cfg = _cfg(topology="designed", num_agents=6, design_sketch=16, design_proposals=300)
    ctx = trainer.build_context(cfg, load_graph(cfg), SimComm(6))
    h = trainer.design_signal(ctx)
    assert h.shape == (6, 16)
    assert len(ctx.topology.links) == 6 and ctx.stats["topology/design_bytes_per_agent"] > 16 * 4
    full = trainer.design_signal(trainer.build_context(dataclasses.replace(cfg, design_sketch=0), load_graph(cfg),
                                                       SimComm(6)))
    _, _, grads = trainer.local_gradients(ctx, {a: ctx.layout.init(cfg.seed, ctx.dtype) for a in range(6)}, None, 0.0)
    np.testing.assert_allclose(full, torch.stack([grads[a] for a in range(6)]).double().numpy(), atol=1e-6)
    # the design step's traffic stays out of the per-iteration accounting
    rows = [trainer.step(ctx, s) for s in [trainer.initial_state(ctx)]]
    ring = trainer.build_context(dataclasses.replace(cfg, topology="ring"), load_graph(cfg), SimComm(6))
    assert rows[0]["bytes_exchange"] == trainer.step(ring, trainer.initial_state(ring))["bytes_exchange"]

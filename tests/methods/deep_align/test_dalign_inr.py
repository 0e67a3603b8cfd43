"""The sine-wave INR zoo: SIREN training, function-space barriers, and the harness end to end."""
import json
import math

import pytest
import torch

from paperzoo.methods.deep_align import interp, matching
from paperzoo.methods.deep_align import perm as P
from paperzoo.methods.deep_align import zoo as Z
from paperzoo.methods.deep_align.inr import sine_task
from paperzoo.methods.deep_align.nets import MLPArch, stack, unbatch

ARCH = MLPArch((1, 16, 16, 1), activation="sine", w0=10.0)


@pytest.fixture(scope="module")
def fitted():
    task = sine_task((1.0, 4.0), n_train=256, n_test=300)
    params, meta = Z.train_shard(ARCH, task, 4, epochs=40, batch_size=64, lr=1e-3,
                                 generator=torch.Generator().manual_seed(0))
    return task, params, meta


def test_sirens_fit_their_own_sine_waves(fitted):
    task, params, meta = fitted
    freqs = torch.tensor([m["frequency"] for m in meta])
    assert ((freqs >= 1.0) & (freqs <= 4.0)).all() and len(set(freqs.tolist())) == 4
    # each network fits its own wave (signal variance ~0.5) and not the others'
    out = ARCH.forward(params, task.x_test)
    for i, m in enumerate(meta):
        assert m["test_loss"] < 0.01
        own = (out[i] - torch.sin(freqs[i] * task.x_test)).pow(2).mean()
        assert own == pytest.approx(m["test_loss"], rel=1e-4)
    others = (out[0] - torch.sin(freqs[1] * task.x_test)).pow(2).mean()
    assert others > 10 * meta[0]["test_loss"]


def test_test_points_lie_between_training_points():
    task = sine_task(n_train=5, n_test=4)
    assert torch.allclose(task.x_train[:, 0], torch.linspace(-math.pi, math.pi, 5))
    assert torch.allclose(task.x_test[:, 0], torch.linspace(-math.pi, math.pi, 5)[:-1] + math.pi / 4)
    with pytest.raises(ValueError, match="freq_range"):
        sine_task((0.0, 1.0))


def test_output_curve_is_zero_for_a_permuted_copy_once_aligned(fitted):
    task, params, _ = fitted
    a = unbatch(params, 0)
    g = P.random_perms(ARCH.spec().sizes(a), torch.Generator().manual_seed(1))
    moved = P.apply(ARCH.spec(), g, a)  # the same function, other neuron order
    aligned = task.pair_curve(ARCH, a, P.apply(ARCH.spec(), P.invert(g), moved), 5, 300)
    assert aligned.losses.abs().max() < 1e-10
    naive = task.pair_curve(ARCH, a, moved, 5, 300)
    assert naive.losses[0] < 1e-10 and naive.losses[-1] < 1e-10  # both ends represent f_a exactly
    assert naive.barrier > 0.01
    wm, _ = matching.weight_matching(ARCH.spec(), a, moved)
    assert all(torch.equal(wm[k], P.invert(g)[k]) for k in g)


def test_output_curve_measures_distance_to_the_interpolated_functions(fitted):
    task, params, _ = fitted
    a, b = unbatch(params, 0), unbatch(params, 1)
    curve = interp.output_curve(a, b, lambda p: ARCH.forward(p, task.x_test), num=3)
    with torch.no_grad():
        fa, fb = ARCH.forward(stack([a]), task.x_test)[0], ARCH.forward(stack([b]), task.x_test)[0]
        mid = ARCH.forward(stack([interp.interpolate(a, b, 0.5)]), task.x_test)[0]
    assert curve.losses[1].item() == pytest.approx((mid - (fa + fb) / 2).pow(2).mean().item(), rel=1e-5)
    assert curve.barrier == pytest.approx(curve.losses.max().item())


def test_mid_loss_targets_the_interpolation_of_the_end_functions(fitted):
    task, params, _ = fitted
    a, b = {k: v[:2] for k, v in params.items()}, {k: v[2:] for k, v in params.items()}
    gen = torch.Generator().manual_seed(0)
    assert task.mid_loss(ARCH, a, a, b, torch.ones(2), gen, 64) < 1e-12  # lambda = 1 is network a
    assert task.mid_loss(ARCH, b, a, b, torch.zeros(2), gen, 64) < 1e-12
    mid = {k: v.clone().requires_grad_(True) for k, v in a.items()}
    task.mid_loss(ARCH, mid, a, b, torch.full((2,), 0.5), gen, 64).backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in mid.values())


def test_zoo_settings_record_the_frequency_range(tmp_path):
    task = sine_task((1.0, 2.0), n_train=64, n_test=32)
    settings = Z.ZooSettings(task="sine", arch=Z.arch_to_dict(ARCH), num_networks=3, shard_size=3, epochs=1,
                             batch_size=32, lr=1e-3, seed=0, task_options={"freq_range": [1.0, 2.0]})
    zoo = Z.build_zoo(tmp_path, ARCH, task, settings)
    assert zoo.arch == ARCH and all(1.0 <= m["frequency"] <= 2.0 for m in zoo.meta)
    other = Z.ZooSettings(**{**settings.__dict__, "task_options": {"freq_range": [1.0, 3.0]}})
    with pytest.raises(Z.ZooError, match="other settings"):
        Z.build_zoo(tmp_path, ARCH, task, other)


def test_sine_run_end_to_end(tmp_path):
    from paperzoo import runner

    overrides = {"task": "sine", "hidden_sizes": (8, 8), "num_networks": 8, "shard_size": 8, "zoo_epochs": 2,
                 "zoo_batch_size": 128, "eval_examples": 100, "epochs": 1, "steps_per_epoch": 2,
                 "batch_size": 2, "data_batch": 32, "test_pairs": 2, "val_pairs": 1, "am_examples": 64,
                 "rebasin_steps": 2, "rebasin_batch": 16, "num_lambdas": 3}
    result = runner.execute(runner.prepare("deep_align", "tiny", run_dir=tmp_path / "run",
                                           overrides=overrides))
    m = result.metrics
    assert "zoo/test_mse" in m and "zoo/test_acc" not in m
    pairs = json.loads((tmp_path / "run" / "test_pairs.json").read_text())
    for method in ("naive", "weight_matching", "activation_matching", "sinkhorn", "deep_align",
                   "deep_align+weight_matching", "deep_align+sinkhorn"):
        # the table's number is the mean of the per-pair barriers written next to it, and positive: two
        # SIRENs of different signals never interpolate exactly along the line of their functions
        per_pair = pairs["barrier"][method]
        assert m[f"test/barrier/{method}"] == pytest.approx(sum(per_pair) / len(per_pair))
        assert m[f"test/barrier/{method}"] > 1e-4

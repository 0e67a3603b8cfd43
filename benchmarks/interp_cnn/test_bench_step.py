"""Checks that the benchmark times what it says (run: ``python -m pytest -q benchmarks/interp_cnn``; not part
of the default test run). The peer test runs only where ``ICNN_CONV_MASK`` names the official file."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_step as bench

from paperzoo.methods.interp_cnn.filters import InterpretableLayer, interpretable_layers


def _batch(n: int = 6, size: int = 32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.arange(n) % bench.CLASSES
    return x, y, F.one_hot(y, bench.CLASSES).float().reshape(n, bench.CLASSES, 1, 1)


@pytest.mark.parametrize("backbone", ["vgg", "resnet"])
def test_mask_variant_is_the_interpretable_forward_without_the_loss(backbone):
    torch.set_num_threads(1)
    x, _, _ = _batch()
    ours = bench.build("loss", backbone, 4, 8)
    mask = bench.build("mask", backbone, 4, 8)
    torch.testing.assert_close(mask(x), ours(x))  # same seed, same weights, same masked forward
    (inner,) = [m for _, m in interpretable_layers(mask)]  # the wrapper, held inside MaskOnly
    (layer,) = [m for _, m in interpretable_layers(ours)]
    assert isinstance(inner, InterpretableLayer) and inner.training
    assert inner.loss is None and layer.loss is not None  # training mode, grad on: only ours has a loss


def test_loss_variant_adds_the_filter_loss_gradient():
    torch.set_num_threads(1)
    x, y, onehot = _batch()
    grads = {}
    for variant in ("mask", "loss"):
        model = bench.build(variant, "vgg", 4, 8)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        bench.train_step(variant, model, opt, x, y, onehot)
        params = dict(model.named_parameters())
        top = next(p for n, p in params.items() if n.endswith("module.weight"))  # top[.layer].module.weight
        grads[variant] = params["fc.weight"].grad.clone(), top.grad.clone()
    torch.testing.assert_close(grads["mask"][0], grads["loss"][0])  # the head does not see the filter loss
    assert not torch.allclose(grads["mask"][1], grads["loss"][1])  # the top layer does


def test_floor_counts_the_convs_of_a_step():
    torch.set_num_threads(1)
    x, y, _ = _batch()
    model = bench.build("plain", "vgg", 4, 8)
    flops = bench.step_flops(model, x, y)
    # forward conv FLOPs of the first conv alone: 2 * 3 * 9 * 4 outputs-channels * 32 * 32 * batch
    assert flops > 3 * 2 * 3 * 9 * 4 * 32 * 32 * len(x)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.skipif(not os.environ.get("ICNN_CONV_MASK"), reason="set ICNN_CONV_MASK to the official conv_mask.py")
def test_peer_runs_on_cpu_and_stays_finite():
    torch.set_num_threads(1)
    x, y, onehot = _batch(32, 64)
    icnn = bench.load_icnn(os.environ["ICNN_CONV_MASK"])
    # the benchmark's smaller size: from He init some of its 64 top filters are zero on a whole class,
    # where the official backward gives a NaN mask_weight gradient (the benchmark zeroes it)
    model = bench.build("icnn", "vgg", 16, 64, icnn)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        loss = bench.train_step("icnn", model, opt, x, y, onehot)
    assert torch.isfinite(torch.tensor(loss))
    assert all(torch.isfinite(p).all() for p in model.parameters())

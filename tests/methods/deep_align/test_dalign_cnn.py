"""Deep-Align on CNN weights (DWS channel version): layers and levels, soft application of Sinkhorn
matrices, and training steps on a tiny image zoo. The exact symmetries, for MLPs and CNNs alike, are in
``test_dalign_model.py``."""
import pytest
import torch

from paperzoo.methods.deep_align import matching
from paperzoo.methods.deep_align import train as T
from paperzoo.methods.deep_align import zoo as Z
from paperzoo.methods.deep_align.model import DeepAlign, layer_keys, level_sizes
from paperzoo.methods.deep_align.nets import CNNArch

ARCH = CNNArch(3, (4, 5, 6), 3)
SPEC = ARCH.spec()


def test_layer_keys_and_levels_follow_the_architecture():
    assert layer_keys(ARCH) == [("conv0.weight", "conv0.bias"), ("conv1.weight", "conv1.bias"),
                                ("conv2.weight", "conv2.bias"), ("fc.weight", "fc.bias")]
    assert level_sizes(ARCH) == (3, 4, 5, 6, 3)
    model = DeepAlign(ARCH, hidden=6, depth=3, out_dim=10, input_proj=5)
    # the input level has 3 channels: no input projection; kernels lifted to the hidden width
    assert model.encoder.input_proj is None and model.encoder.lift is not None
    assert [lin.in_features for lin in model.encoder.lift.w] == [9, 9, 9, 1]


def test_soft_apply_mixes_channels_at_every_kernel_position():
    """Doubly stochastic (not hard) matrices on a batch of CNNs, against the formulas written out:
    ``W_m -> M_m W_m M_{m-1}^T`` per kernel position, ``b_m -> M_m b_m``, head columns by the last."""
    gen = torch.Generator().manual_seed(0)
    v = ARCH.init(2, gen, torch.float64)
    m = [torch.softmax(torch.randn(2, c, c, generator=gen, dtype=torch.float64), -1) for c in ARCH.channels]
    soft = matching.soft_apply(SPEC, {f"P{lv}": x for lv, x in enumerate(m)}, v, batched=True)
    expected = {}
    for lv in range(len(m)):
        w = torch.einsum("nij,njkxy->nikxy", m[lv], v[f"conv{lv}.weight"])
        if lv > 0:
            w = torch.einsum("nikxy,nlk->nilxy", w, m[lv - 1])
        expected[f"conv{lv}.weight"] = w
        expected[f"conv{lv}.bias"] = torch.einsum("nij,nj->ni", m[lv], v[f"conv{lv}.bias"])
    expected["fc.weight"] = torch.einsum("nck,nlk->ncl", v["fc.weight"], m[-1])
    expected["fc.bias"] = v["fc.bias"]
    for key, value in expected.items():
        assert torch.allclose(soft[key], value, atol=1e-12), key


def _image_task():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 3, 8, 8, generator=g)
    y = torch.randint(0, 3, (48,), generator=g)
    return Z.Task("toy_images", x, y, x[:16], y[:16], 3)


def test_train_steps_on_a_cnn_zoo_are_finite_and_update_parameters():
    task = _image_task()
    torch.manual_seed(0)
    model = DeepAlign(ARCH, hidden=4, depth=2, out_dim=8)
    zoo = ARCH.init(6, torch.Generator().manual_seed(0))
    model.fit_scales(zoo)
    assert set(model.tensor_scales()) == set(zoo)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, amsgrad=True)
    before = [p.detach().clone() for p in model.parameters()]
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        out = T.train_step(model, opt, zoo, task, T.LossWeights(), T.Augment(),
                           T.StepSettings(batch_size=4, data_batch=16), gen)
        assert set(out) == {"loss", "supervised", "alignment", "interpolation"}
        assert out["loss"] == pytest.approx(out["supervised"] + out["alignment"] + out["interpolation"])
        assert out["supervised"] > 0 and out["alignment"] > 0 and out["interpolation"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))

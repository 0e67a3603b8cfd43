"""Input validation of every Deep-Align entry point: mismatched networks name the offending tensor (no
silent truncation to common layers), and a broken zoo folder gives one line naming the file."""
import json

import pytest
import torch

from paperzoo.core import io
from paperzoo.methods.deep_align import interp, matching
from paperzoo.methods.deep_align import perm as P
from paperzoo.methods.deep_align import zoo as Z
from paperzoo.methods.deep_align.model import DeepAlign
from paperzoo.methods.deep_align.nets import CNNArch, MLPArch, stack, unbatch
from paperzoo.methods.deep_align.perm import NetworkMismatchError

ARCH = MLPArch((6, 5, 4, 3))
WIDER = MLPArch((6, 7, 4, 3))  # first hidden layer 7 wide instead of 5


def _net(arch=ARCH, seed=0):
    return unbatch(arch.init(1, torch.Generator().manual_seed(seed)), 0)


def _never(*_args):
    raise AssertionError("validation must fail before any work")


# ------------------------------------------------------------------------------- shared validator
def test_check_compatible_names_missing_extra_shape_and_nan_tensors():
    spec, a = ARCH.spec(), _net()
    b = _net(seed=1)
    P.check_compatible(spec, a, b)  # a matching pair passes
    with pytest.raises(NetworkMismatchError, match=r"tensor layer1\.bias is in network a but not in network b"):
        P.check_compatible(spec, a, {k: v for k, v in b.items() if k != "layer1.bias"})
    with pytest.raises(NetworkMismatchError, match=r"tensor extra\.weight is in network b but not in network a"):
        P.check_compatible(spec, a, {**b, "extra.weight": torch.zeros(2)})
    with pytest.raises(NetworkMismatchError, match=r"tensor layer0\.weight has shape \(5, 6\) in network a "
                                                   r"but \(7, 6\) in network b"):
        P.check_compatible(spec, a, _net(WIDER))
    nan = dict(b, **{"layer2.weight": b["layer2.weight"].clone()})
    nan["layer2.weight"][0, 0] = float("nan")
    with pytest.raises(NetworkMismatchError, match=r"network b: tensor layer2\.weight holds NaN/inf"):
        P.check_compatible(spec, a, nan)
    # both networks agree with each other but not with the spec's architecture (one layer more)
    deep = MLPArch((6, 5, 4, 4, 3))
    with pytest.raises(NetworkMismatchError, match=r"network a: tensor layer3\.weight is not part of"):
        P.check_compatible(spec, _net(deep), _net(deep, 1))
    with pytest.raises(NetworkMismatchError, match=r"network a: tensor layer3\.weight is missing"):
        P.check_compatible(deep.spec(), a, b)
    # consistent names and shapes between a and b, but P0's axes disagree within each network
    odd = dict(a, **{"layer1.weight": torch.zeros(4, 3)})
    with pytest.raises(NetworkMismatchError, match=r"permutation P0 acts on axes of different lengths"):
        P.check_compatible(spec, odd, dict(odd))


def test_check_params_against_architecture_shapes():
    params = ARCH.init(2, torch.Generator().manual_seed(0))
    ARCH.check(params)
    with pytest.raises(NetworkMismatchError, match=r"tensor layer0\.weight has shape \(7, 6\), the "
                                                   r"architecture expects \(5, 6\)"):
        ARCH.check(WIDER.init(2, torch.Generator().manual_seed(0)))
    params["layer1.bias"] = params["layer1.bias"][:1]
    with pytest.raises(NetworkMismatchError, match=r"tensor layer1\.bias holds 1 networks, the others 2"):
        ARCH.check(params)


def test_apply_compose_and_stack_reject_mismatches():
    spec, net = ARCH.spec(), _net()
    perms = P.identity(spec.sizes(net))
    with pytest.raises(NetworkMismatchError, match=r"permutation P0 has length 5 but layer0\.weight axis 0 has 7"):
        P.apply(spec, perms, _net(WIDER))
    with pytest.raises(NetworkMismatchError, match=r"permutation P1 \(acting on layer1\.weight\) is missing"):
        P.apply(spec, {"P0": perms["P0"]}, net)
    with pytest.raises(NetworkMismatchError, match=r"second permutations of compose: missing P1"):
        P.compose(perms, {"P0": perms["P0"]})
    with pytest.raises(NetworkMismatchError, match=r"stack: tensor layer0\.weight has shape \(7, 6\) in network 1"):
        stack([net, _net(WIDER)])
    with pytest.raises(NetworkMismatchError, match=r"stack: tensor layer2\.bias is only in network 0"):
        stack([net, {k: v for k, v in net.items() if k != "layer2.bias"}])


# ------------------------------------------------------------------------------------- matching
def test_weight_matching_rejects_networks_of_different_widths():
    a, b = _net(), _net(WIDER)
    with pytest.raises(NetworkMismatchError, match=r"tensor layer0\.weight has shape \(5, 6\) in network a "
                                                   r"but \(7, 6\) in network b"):
        matching.weight_matching(ARCH.spec(), a, b)
    bad_init = {"P0": torch.tensor([0, 1, 2, 3]), "P1": torch.arange(4)}
    with pytest.raises(NetworkMismatchError, match=r"weight_matching init: P0 must be an integer index tensor "
                                                   r"of length 5"):
        matching.weight_matching(ARCH.spec(), a, _net(seed=1), init=bad_init)
    with pytest.raises(NetworkMismatchError, match=r"init: P1 is not a permutation"):
        matching.weight_matching(ARCH.spec(), a, _net(seed=1), init={"P0": torch.arange(5),
                                                                     "P1": torch.tensor([0, 0, 1, 2])})


def test_activation_matching_does_not_truncate_to_common_layers():
    a, b = _net(), _net(seed=1)
    x = torch.randn(10, 6, generator=torch.Generator().manual_seed(0))

    def acts(p):
        return [h[0] for h in ARCH.activations(stack([p]), x)[:-1]]

    assert set(matching.activation_matching(a, b, acts)) == {"P0", "P1"}
    # the second network reports one hidden layer less: zip() would silently match only P0
    calls = iter([acts(a), acts(b)[:1]])
    with pytest.raises(NetworkMismatchError, match="network a gives 2 hidden layers, network b 1"):
        matching.activation_matching(a, b, lambda p: next(calls))
    calls = iter([acts(a), [acts(b)[0], acts(b)[1][:, :3]]])
    with pytest.raises(NetworkMismatchError, match=r"activations of P1 have shape \(10, 4\) in network a and "
                                                   r"\(10, 3\) in network b"):
        matching.activation_matching(a, b, lambda p: next(calls))
    with pytest.raises(NetworkMismatchError, match=r"tensor layer0\.weight has shape"):
        matching.activation_matching(a, _net(WIDER), _never)


def test_sinkhorn_rebasin_validates_before_any_loss_evaluation():
    with pytest.raises(NetworkMismatchError, match=r"tensor layer0\.bias has shape \(5,\) in network a but "
                                                   r"\(7,\) in network b"):
        matching.sinkhorn_rebasin(ARCH.spec(), _net(), dict(_net(), **{"layer0.bias": torch.zeros(7)}), _never,
                                  steps=2)
    with pytest.raises(ValueError, match="iters must be a positive integer"):
        matching.sinkhorn_rebasin(ARCH.spec(), _net(), _net(seed=1), _never, steps=2, iters=0)
    spec, net = ARCH.spec(), _net()
    mats = {"P0": torch.eye(5)}
    with pytest.raises(NetworkMismatchError, match=r"soft_apply: no matrix for permutation P1"):
        matching.soft_apply(spec, mats, net)
    with pytest.raises(NetworkMismatchError, match=r"soft_apply: matrix P0 has shape \(5, 5\) but "
                                                   r"layer0\.weight axis 0 has 7 units"):
        matching.soft_apply(spec, {"P0": torch.eye(5), "P1": torch.eye(4)}, _net(WIDER))


# --------------------------------------------------------------------------------- interpolation
def test_interpolation_rejects_extra_missing_and_nonfinite_tensors():
    a, b = _net(), _net(seed=1)
    # before: interpolate iterated over a's tensors only, so b's extra tensor silently vanished
    with pytest.raises(NetworkMismatchError, match=r"tensor head\.weight is in network b but not in network a"):
        interp.interpolate(a, {**b, "head.weight": torch.zeros(3)}, 0.5)
    with pytest.raises(NetworkMismatchError, match=r"tensor layer2\.bias is in network a but not in network b"):
        interp.loss_curve(a, {k: v for k, v in b.items() if k != "layer2.bias"}, _never)
    b["layer1.bias"] = torch.full_like(b["layer1.bias"], float("inf"))
    with pytest.raises(NetworkMismatchError, match=r"network b: tensor layer1\.bias holds NaN/inf"):
        interp.output_curve(a, b, _never)


# ------------------------------------------------------------------------------ DeepAlign.align
@pytest.mark.parametrize("arch,other,tensor,expected,got", [
    (ARCH, WIDER, "layer0.weight", "(5, 6)", "(7, 6)"),
    (CNNArch(1, (4, 5), 3), CNNArch(1, (4, 6), 3), "conv1.weight", "(5, 4, 3, 3)", "(6, 4, 3, 3)"),
], ids=["mlp", "cnn"])
def test_deep_align_names_the_tensor_that_does_not_fit_its_architecture(arch, other, tensor, expected, got):
    torch.manual_seed(0)
    model = DeepAlign(arch, hidden=4, depth=2, out_dim=6, input_proj=0)
    a = arch.init(2, torch.Generator().manual_seed(0))
    assert len(model.align(a, arch.init(2, torch.Generator().manual_seed(1)))) == 2
    b = other.init(2, torch.Generator().manual_seed(1))
    pattern = rf"network b: tensor {tensor} has shape \{got[:-1]}\), the architecture expects \{expected[:-1]}\)"
    with pytest.raises(NetworkMismatchError, match=pattern):
        model.align(a, b)
    with pytest.raises(NetworkMismatchError, match="2 networks in a but 1 in b"):
        model.align(a, {k: v[:1] for k, v in a.items()})
    with pytest.raises(NetworkMismatchError, match=rf"network b: tensor {tensor} has shape"):
        model.similarity(a, b)
    with pytest.raises(NetworkMismatchError, match=rf"input networks: tensor {tensor} has shape"):
        model.neuron_embeddings(b)


# ----------------------------------------------------------------------------------- zoo shards
def _write_zoo(folder, arch=ARCH, shards=2, size=3):
    settings = Z.ZooSettings(task="synthetic", arch=Z.arch_to_dict(arch), num_networks=shards * size,
                             shard_size=size, epochs=1, batch_size=8, lr=1e-2, seed=0)
    for s in range(shards):
        params = arch.init(size, torch.Generator().manual_seed(s))
        io.save_torch(folder / f"shard_{s:04d}.pt", {"params": params, "meta": [{"index": s * size + i}
                                                                                for i in range(size)]})
    io.write_json(folder / "zoo.json", {"settings": json.loads(json.dumps(Z.asdict(settings))),
                                        "shards": list(range(shards))})


def test_valid_zoo_loads(tmp_path):
    _write_zoo(tmp_path)
    zoo = Z.load_zoo(tmp_path)
    assert len(zoo) == 6 and zoo.params["layer0.weight"].shape == (6, 5, 6)


def test_truncated_shard_names_the_file_without_bare_errno(tmp_path):
    _write_zoo(tmp_path)
    path = tmp_path / "shard_0001.pt"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # a write cut off half-way (torch raises "[Errno 22] ...")
    with pytest.raises(Z.ZooError) as info:
        Z.load_zoo(tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"zoo shard {path} is truncated or corrupt") and "rebuild" in msg and "\n" not in msg


def test_missing_shard_and_broken_index(tmp_path):
    _write_zoo(tmp_path)
    (tmp_path / "shard_0000.pt").unlink()
    with pytest.raises(Z.ZooError, match=r"shard_0000\.pt is listed in zoo\.json but missing"):
        Z.load_zoo(tmp_path)
    index = tmp_path / "zoo.json"
    index.write_text('{"settings": {"arch": ', encoding="utf-8")
    with pytest.raises(Z.ZooError, match=r"zoo\.json:1: not valid JSON"):
        Z.load_zoo(tmp_path)
    index.write_text('{"settings": {}, "shards": [0]}', encoding="utf-8")
    with pytest.raises(Z.ZooError, match=r"field 'settings\.arch' is missing"):
        Z.load_zoo(tmp_path)
    index.unlink()
    with pytest.raises(Z.ZooError, match=r"zoo\.json does not exist"):
        Z.load_zoo(tmp_path)


def test_shard_with_wrong_tensors_or_meta_is_named(tmp_path):
    _write_zoo(tmp_path)
    path = tmp_path / "shard_0001.pt"
    io.save_torch(path, {"params": WIDER.init(3, torch.Generator()), "meta": [{}] * 3})
    with pytest.raises(Z.ZooError, match=rf"zoo shard {path}: tensor layer0\.weight has shape \(7, 6\), "
                                         r"the architecture expects \(5, 6\)"):
        Z.load_zoo(tmp_path)
    params = ARCH.init(3, torch.Generator())
    del params["layer2.bias"]
    io.save_torch(path, {"params": params, "meta": [{}] * 3})
    with pytest.raises(Z.ZooError, match=r"tensor layer2\.bias is missing"):
        Z.load_zoo(tmp_path)
    params = ARCH.init(3, torch.Generator())
    params["layer1.weight"][1, 0, 0] = float("nan")
    io.save_torch(path, {"params": params, "meta": [{}] * 3})
    with pytest.raises(Z.ZooError, match=r"shard_0001\.pt: tensor layer1\.weight holds NaN/inf"):
        Z.load_zoo(tmp_path)
    io.save_torch(path, {"params": ARCH.init(3, torch.Generator()), "meta": [{}] * 2})
    with pytest.raises(Z.ZooError, match="holds 3 networks but 2 metadata entries"):
        Z.load_zoo(tmp_path)
    io.save_torch(path, [1, 2, 3])
    with pytest.raises(Z.ZooError, match="has no 'params' dict"):
        Z.load_zoo(tmp_path)

"""The fixed costs of a fit: the layerwise rules' verification (and the output-size check) is remembered per
model object and reused by the next SubnetLaplace / SubnetworkJacobian for the same model, redone for a new
model or a changed one, and never changes a result; the parameter bookkeeping shortcuts equal the plain
definitions."""
import copy
import gc
import weakref

import pytest
import torch
from subnet_laplace_problems import Twice, make_classifier, make_data, make_loader, make_regressor
from torch import nn
from torch.func import functional_call

from paperzoo.methods.subnet_laplace import jacobians
from paperzoo.methods.subnet_laplace.jacobians import LayerwiseJacobian, clear_verification_cache
from paperzoo.methods.subnet_laplace.laplace import (
    SubnetLaplace,
    SubnetworkJacobian,
    check_prior_precision,
    check_subnetwork_indices,
    eval_mode,
    flat_parameters,
)


@pytest.fixture
def counts(monkeypatch):
    """Calls of LayerwiseJacobian.verify and of the output-size forward pass, counted."""
    calls = {"verify": 0, "output": 0}
    verify, check_output = LayerwiseJacobian.verify, SubnetworkJacobian._check_output

    def counting_verify(self, x):
        calls["verify"] += 1
        return verify(self, x)

    def counting_check_output(self, x):
        calls["output"] += 1 if self._n_outputs is None else 0
        return check_output(self, x)

    monkeypatch.setattr(LayerwiseJacobian, "verify", counting_verify)
    monkeypatch.setattr(SubnetworkJacobian, "_check_output", counting_check_output)
    clear_verification_cache()
    yield calls
    clear_verification_cache()


def _state(la):
    """Everything a fit produces, for exact comparison."""
    xt = torch.linspace(-2, 2, 7, dtype=torch.float64).unsqueeze(1)
    if la.likelihood == "classification":
        xt = torch.cat([xt, -xt], 1)
    f, var = la.predictive(xt)
    return {"method": la._jacobian.method, "rows": la._rows, "gram": la._gram, "mean": la.mean,
            "loss": la.loss, "n": la.n_data, "f": f, "var": var, "lml": la.log_marginal_likelihood()}


def _state_plain(la):
    """:func:`_state` without the predictive (for models with other inputs)."""
    return {"method": la._jacobian.method, "gram": la._gram, "rows": la._rows, "mean": la.mean,
            "loss": la.loss, "n": la.n_data}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("likelihood", ["regression", "classification"])
def test_refits_of_one_model_verify_once_and_give_identical_results(counts, likelihood):
    model = make_regressor() if likelihood == "regression" else make_classifier()
    x, y = make_data(likelihood)
    loader = make_loader(x, y)
    n_params = flat_parameters(model).numel()
    # every third weight, and all of them (regression: 24 rows < 31 weights, the low-rank form)
    for indices in (torch.arange(0, n_params, 3), torch.arange(n_params)):
        clear_verification_cache(model)
        before = dict(counts)
        first = SubnetLaplace(model, likelihood, indices, sigma_noise=0.3).fit(loader)
        assert first._jacobian.method == "layerwise"
        assert counts["verify"] == before["verify"] + 1 and counts["output"] == before["output"] + 1
        refits = [SubnetLaplace(model, likelihood, indices, sigma_noise=0.3).fit(loader) for _ in range(3)]
        assert counts["verify"] == before["verify"] + 1 and counts["output"] == before["output"] + 1
        for la in refits:
            assert la._jacobian.method == "layerwise" and la._jacobian.fallback_reason is None
            _assert_same(_state(la), _state(first))
        # forcing the check again (no cache) gives the same posterior once more
        clear_verification_cache(model)
        forced = SubnetLaplace(model, likelihood, indices, sigma_noise=0.3).fit(loader)
        assert counts["verify"] == before["verify"] + 2 and counts["output"] == before["output"] + 2
        _assert_same(_state(forced), _state(first))


def test_a_new_or_changed_model_is_verified_again(counts):
    model = make_classifier()
    x, y = make_data("classification")
    loader = make_loader(x, y)
    indices = torch.tensor([0, 5, 17, 30, 41, 50])

    def fit(m, idx=indices, data=loader):
        return SubnetLaplace(m, "classification", idx).fit(data)

    reference = _state(fit(model))
    assert counts["verify"] == 1
    fit(model)
    assert counts["verify"] == 1
    # an equal copy is another object: checked again, same result
    _assert_same(_state(fit(copy.deepcopy(model))), reference)
    assert counts["verify"] == 2
    # a subnetwork in other layers
    fit(model, torch.tensor([1, 2, 3]))
    assert counts["verify"] == 3
    fit(model, torch.tensor([1, 2, 3]))
    assert counts["verify"] == 3
    # inputs of another shape (the same numbers, flattened by the model)
    flat = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double()
    x4 = torch.randn(len(y), 4, dtype=torch.float64)
    reference4 = _state_plain(fit(flat, torch.tensor([1, 6, 13]), [(x4, y)]))
    assert counts["verify"] == 4
    _assert_same(_state_plain(fit(flat, torch.tensor([1, 6, 13]), [(x4.view(-1, 2, 2), y)])), reference4)
    assert counts["verify"] == 5
    fit(flat, torch.tensor([1, 6, 13]), [(x4, y)])
    assert counts["verify"] == 5
    # a forward hook (it could change what the forward pass does); removing it restores the old key
    handle = model[1].register_forward_hook(lambda module, args, out: None)
    fit(model)
    assert counts["verify"] == 6
    handle.remove()
    fit(model)
    assert counts["verify"] == 6
    # a module replaced, and a selected parameter tensor replaced
    model[1] = nn.ReLU()
    fit(model)
    assert counts["verify"] == 7
    model[0].weight = nn.Parameter(model[0].weight.detach().clone())
    SubnetworkJacobian(model, indices)(x)
    assert counts["verify"] == 8
    fit(model)
    assert counts["verify"] == 8


def test_a_failed_check_is_remembered_with_its_reason(counts):
    torch.manual_seed(0)
    model = Twice().double()
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1])
    first = SubnetLaplace(model, "classification", [0, 4, 9, 11]).fit([(x, y)])
    again = SubnetLaplace(model, "classification", [0, 4, 9, 11]).fit([(x, y)])
    assert counts["verify"] == 1
    assert first._jacobian.method == again._jacobian.method == "jacrev"
    assert "ran 2 times" in again._jacobian.fallback_reason
    assert again._jacobian.fallback_reason == first._jacobian.fallback_reason
    _assert_same(_state_plain(again), _state_plain(first))
    for _ in range(2):
        with pytest.raises(ValueError, match="'layerwise' does not apply.*ran 2 times"):
            SubnetLaplace(model, "classification", [0, 4, 9, 11], jacobian="layerwise").fit([(x, y)])
    assert counts["verify"] == 1


def test_the_cache_does_not_keep_a_model_alive(counts):
    model = make_regressor()
    SubnetLaplace(model, "regression", [0, 3, 20]).fit(make_loader(*make_data("regression")))
    assert len(jacobians._VERDICTS) == 1
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None and len(jacobians._VERDICTS) == 0


def test_a_bad_output_shape_is_still_reported_and_not_remembered(counts):
    model = nn.Linear(2, 3).double()
    for _ in range(2):
        with pytest.raises(ValueError, match=r"outputs \(B, C\)"):
            SubnetLaplace(model, "classification", [0]).jacobian(torch.zeros(2, 2, 2, dtype=torch.float64))
    assert len(jacobians._VERDICTS) == 0


class TiedHidden(nn.Module):
    """Two layers sharing one weight tensor, the selected weights elsewhere."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(2, 4)
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
        self.b.weight = self.a.weight
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.tanh(self.first(x))
        return self.head(torch.tanh(self.b(torch.tanh(self.a(h)))))


def test_layerwise_forward_swaps_detached_parameters_like_functional_call():
    torch.manual_seed(0)
    model = TiedHidden().double()
    x = torch.randn(5, 2, dtype=torch.float64)
    params = dict(model.named_parameters(remove_duplicate=False))
    with jacobians._detached_parameters(model):
        inside = dict(model.named_parameters(remove_duplicate=False))
        assert all(not p.requires_grad and not isinstance(p, nn.Parameter) for p in inside.values())
        assert inside["a.weight"] is inside["b.weight"]
        out = model(x)
    expected = functional_call(model, {n: p.detach() for n, p in model.named_parameters()}, (x,))
    assert torch.equal(out, expected)
    assert all(p is params[n] for n, p in model.named_parameters(remove_duplicate=False))
    with pytest.raises(RuntimeError, match="boom"), jacobians._detached_parameters(model):
        raise RuntimeError("boom")
    assert all(p is params[n] for n, p in model.named_parameters(remove_duplicate=False))
    indices = torch.tensor([0, 3, 7, 9, 38, 45, 50])         # first layer and head only
    f, jac = SubnetworkJacobian(model, indices, mode="layerwise")(x)
    f_ref, jac_ref = SubnetworkJacobian(model, indices, mode="jacrev")(x)
    torch.testing.assert_close(jac, jac_ref, rtol=0.0, atol=1e-12)
    assert torch.equal(f, f_ref)


def test_subnetwork_weights_equal_the_flat_vector_entries():
    model = make_classifier()
    model[0].bias.requires_grad_(False)                      # a frozen tensor between selected ones
    indices = torch.tensor([40, 1, 7, 33, 15])
    la = SubnetLaplace(model, "classification", indices)
    expected = flat_parameters(model)[la.subnetwork_indices]
    got = la._current_subnetwork_weights()
    assert torch.equal(got, expected) and got.dtype == expected.dtype
    with torch.no_grad():
        model[2].weight.mul_(2.0)                            # current values, not those of construction
    assert torch.equal(la._current_subnetwork_weights(), flat_parameters(model)[la.subnetwork_indices])
    model[0].bias.requires_grad_(True)                       # another layout: the plain definition
    assert torch.equal(la._current_subnetwork_weights(), flat_parameters(model)[la.subnetwork_indices])


def test_validation_shortcuts_keep_values_and_messages():
    assert torch.equal(check_prior_precision(0.5, 3, "w"), torch.as_tensor(0.5, dtype=torch.float64))
    assert check_prior_precision(0.5, 3, "w").shape == ()
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="prior_precision must be positive and finite"):
            check_prior_precision(bad, 3, "w")
    assert torch.equal(check_subnetwork_indices([5, 1, 3], 6), torch.tensor([1, 3, 5]))
    with pytest.raises(ValueError, match=r"got values from -1 to 3"):
        check_subnetwork_indices([3, -1], 6)
    with pytest.raises(ValueError, match=r"2 duplicated value\(s\), e.g. \[1, 4\]"):
        check_subnetwork_indices([4, 1, 4, 1, 0], 6)


def test_eval_mode_restores_mixed_flags():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Linear(2, 1))
    model.train()
    model[1].eval()
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == [True, True, False, True]
    model.eval()
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert not any(m.training for m in model.modules())


def test_each_fit_owns_its_sorted_indices():
    model = make_classifier()
    x, y = make_data("classification")
    loader = make_loader(x, y)
    indices = torch.tensor([40, 1, 7, 33, 15, 9])
    first = SubnetLaplace(model, "classification", indices).fit(loader)
    second = SubnetLaplace(model, "classification", indices.clone()).fit(loader)
    _assert_same(_state(second), _state(first))
    second._jacobian.indices[0] = 50
    assert torch.equal(first.subnetwork_indices, torch.tensor([1, 7, 9, 15, 33, 40]))
    # new values in the same tensor, and another layout (a frozen tensor), are new subnetworks
    indices[0] = 41
    moved = SubnetLaplace(model, "classification", indices).fit(loader)
    assert torch.equal(moved.subnetwork_indices, torch.tensor([1, 7, 9, 15, 33, 41]))
    reference = SubnetLaplace(model, "classification", indices.tolist()).fit(loader)   # a list: not kept
    _assert_same(_state(moved), _state(reference))
    model[0].bias.requires_grad_(False)
    frozen = SubnetLaplace(model, "classification", indices).fit(loader)
    assert frozen._jacobian.n_params == 43
    assert torch.equal(frozen.mean, flat_parameters(model)[frozen.subnetwork_indices])
    # invalid indices are never kept and still raise
    for _ in range(2):
        with pytest.raises(ValueError, match="duplicated"):
            SubnetLaplace(model, "classification", torch.tensor([3, 3]))


def test_a_float_prior_precision_round_trips():
    model = make_regressor()
    la = SubnetLaplace(model, "regression", [0, 3, 20], prior_precision=0.3)
    assert la.prior_precision == 0.3 and type(la.prior_precision) is float
    la.fit(make_loader(*make_data("regression")))
    assert torch.equal(la._prior, torch.tensor(0.3, dtype=torch.float64))
    assert la.prior_precision == 0.3 and la.state_dict()["prior_precision"].dtype == torch.float64
    with pytest.raises(ValueError, match="prior_precision must be positive and finite"):
        la.prior_precision = float("nan")
    assert la.prior_precision == 0.3


@pytest.mark.parametrize("likelihood", ["regression", "classification"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_a_tensor_dataset_loader_read_directly_gives_the_iterated_posterior(likelihood, shuffle):
    """fit reads a DataLoader over a TensorDataset by indexing its tensors (paperzoo.data.batching); the
    posterior is bit-identical to handing fit the same loader's batches through a plain iterator."""
    from torch.utils.data import DataLoader, TensorDataset

    model = make_regressor() if likelihood == "regression" else make_classifier()
    x, y = make_data(likelihood)
    indices = torch.arange(0, flat_parameters(model).numel(), 2)

    def loader():
        return DataLoader(TensorDataset(x, y), batch_size=7, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(5))

    direct = SubnetLaplace(model, likelihood, indices, sigma_noise=0.3).fit(loader())
    iterated = SubnetLaplace(model, likelihood, indices, sigma_noise=0.3).fit(iter(loader()))
    _assert_same(_state(direct), _state(iterated))

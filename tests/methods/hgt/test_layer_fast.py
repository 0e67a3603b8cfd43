"""The fast ``HGTLayer.forward`` equals the literal per-edge computation (``_forward_reference``):
outputs, attention and gradients of every parameter and input, float64, to 1e-10."""
import pytest
import torch

from paperzoo.methods.hgt.layer import HGTLayer

NODE_TYPES = ["paper", "author", "venue", "lonely"]
EDGE_TYPES = [("author", "writes", "paper"), ("paper", "rev_writes", "author"),
              ("paper", "cites", "paper"), ("paper", "rev_cites", "paper"),
              ("paper", "in", "venue"), ("venue", "rev_in", "paper")]


def _data(seed=0, n=(30, 40, 3, 5), e=(60, 60, 50, 50, 30, 30), dim=8):
    g = torch.Generator().manual_seed(seed)
    sizes = dict(zip(NODE_TYPES, n))
    x = {nt: torch.randn(k, dim, generator=g, dtype=torch.float64) for nt, k in sizes.items()}
    edges = {}
    for (s, r, d), m in zip(EDGE_TYPES, e):
        edges[(s, r, d)] = torch.stack([torch.randint(0, sizes[s], (m,), generator=g),
                                        torch.randint(0, sizes[d], (m,), generator=g)])
    times = {nt: torch.randint(2000, 2010, (k,), generator=g) for nt, k in sizes.items()}
    return x, edges, times


def _layer(in_dim=8, out_dim=8, heads=2, seed=0, **kw):
    torch.manual_seed(seed)
    layer = HGTLayer(in_dim, out_dim, NODE_TYPES, EDGE_TYPES, heads, **kw).double()
    with torch.no_grad():
        layer.mu.uniform_(0.5, 1.5)
        layer.skip.uniform_(-1.0, 1.0)
        for lin in list(layer.k_lin) + list(layer.q_lin) + list(layer.v_lin):
            lin.bias.uniform_(-0.5, 0.5)
    return layer


def _run(layer, fn, x, edges, times, with_att):
    xs = {k: v.clone().requires_grad_() for k, v in x.items()}
    layer.zero_grad()
    res = fn(xs, edges, times, return_attention=with_att)
    out, att = res if with_att else (res, {})
    g = torch.Generator().manual_seed(5)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in out.values())
    loss = loss + sum((a * torch.randn(a.shape, generator=g, dtype=a.dtype)).sum() for a in att.values())
    loss.backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}
    grads.update({"x_" + k: v.grad.clone() for k, v in xs.items() if v.grad is not None})
    return out, att, grads


def _assert_same(layer, x, edges, times=None, with_att=True):
    fast = _run(layer, layer.forward, x, edges, times, with_att)
    ref = _run(layer, layer._forward_reference, x, edges, times, with_att)
    for a, b in zip(fast, ref):
        assert set(a) == set(b)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-10, atol=1e-10, msg=f"{k}")


@pytest.mark.parametrize("use_norm", [False, True])
@pytest.mark.parametrize("dims", [(8, 8, 2), (8, 12, 3), (6, 8, 4)])
def test_fast_equals_reference_without_rte(use_norm, dims):
    x, edges, times = _data()
    layer = _layer(*dims, use_norm=use_norm, dropout=0.0).train()
    x = {k: v[:, :dims[0]].contiguous() for k, v in x.items()}
    _assert_same(layer, x, edges)
    # RTE on in the layer but no times passed: still no encoding.
    layer = _layer(*dims, use_norm=use_norm, use_rte=True, dropout=0.0)
    _assert_same(layer, x, edges)


@pytest.mark.parametrize("use_norm", [False, True])
def test_fast_equals_reference_with_rte(use_norm):
    x, edges, times = _data(seed=1)
    layer = _layer(use_norm=use_norm, use_rte=True, dropout=0.0, max_time=40).train()
    _assert_same(layer, x, edges, times)


def test_per_edge_projection_path():
    # Fewer edges than source nodes (the per-edge projection) mixed with per-node relations
    # into the same target type, empty edge types and a type that receives nothing.
    x, edges, times = _data(seed=2, n=(50, 80, 3, 5), e=(10, 0, 70, 3, 30, 30))
    for rte in (False, True):
        layer = _layer(use_rte=rte, dropout=0.0, max_time=40)
        _assert_same(layer, x, edges, times if rte else None)
    sub = {et: ei for et, ei in edges.items() if et[2] == "paper"}
    _assert_same(_layer(dropout=0.0), x, sub)
    _assert_same(_layer(dropout=0.0), x, {})


def test_dropout_uses_same_masks_and_rte_dropout_falls_back():
    x, edges, times = _data(seed=3)
    layer = _layer(use_rte=True, dropout=0.3, max_time=40).train()
    torch.manual_seed(11)
    fast = layer(x, edges, times)
    torch.manual_seed(11)
    ref = layer._forward_reference(x, edges, times)
    for k in fast:
        torch.testing.assert_close(fast[k], ref[k], rtol=1e-10, atol=1e-10)
    layer.rte.drop.p = 0.5  # not linear any more: forward must take the literal path
    torch.manual_seed(12)
    fast = layer(x, edges, times)
    torch.manual_seed(12)
    ref = layer._forward_reference(x, edges, times)
    for k in fast:
        torch.testing.assert_close(fast[k], ref[k], rtol=0, atol=0)


def test_extreme_logits_are_stable():
    x, edges, _ = _data(seed=4)
    layer = _layer(dropout=0.0)
    with torch.no_grad():
        layer.mu.fill_(300.0)
    out = layer(x, edges)
    ref = layer._forward_reference(x, edges)
    for k in out:
        assert torch.isfinite(out[k]).all()
        torch.testing.assert_close(out[k], ref[k], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rte", [False, True])
def test_chunked_edge_kernels_across_chunk_boundaries(monkeypatch, rte):
    import paperzoo.methods.hgt.layer as layer_mod

    monkeypatch.setattr(layer_mod, "_EDGE_CHUNK", 7)  # many chunks, ragged last one
    x, edges, times = _data(seed=6)
    layer = _layer(use_rte=rte, dropout=0.0, max_time=40)
    _assert_same(layer, x, edges, times if rte else None)


def test_only_some_inputs_require_grad():
    x, edges, times = _data(seed=7)
    layer = _layer(use_rte=True, dropout=0.0, max_time=40)
    for p in layer.parameters():
        p.requires_grad_(False)
    layer.w_msg.requires_grad_(True)
    out = layer(x, edges, times)
    sum(o.sum() for o in out.values()).backward()
    ref_grad = layer.w_msg.grad.clone()
    layer.w_msg.grad = None
    out = layer._forward_reference(x, edges, times)
    sum(o.sum() for o in out.values()).backward()
    torch.testing.assert_close(ref_grad, layer.w_msg.grad, rtol=1e-10, atol=1e-10)

"""HGT harness: baselines against their dense definitions, metrics, inputs, both training modes."""
from dataclasses import replace

import pytest
import torch

from paperzoo.core.runs import RunDir
from paperzoo.data.hetero import synthetic_temporal
from paperzoo.methods.hgt.config import PRESETS, HGTConfig
from paperzoo.methods.hgt.model import (GATEncoder, GCNEncoder, NodeInputs, RGCNEncoder, build_encoder,
                                        structural_features, to_homogeneous)
from paperzoo.methods.hgt.run import (Batcher, build_model, classification_metrics, full_time_dict,
                                      load_graph, multilabel_metrics, node_loss, predict, run,
                                      train_epoch)

NT = ["paper", "author"]
ET = [("author", "writes", "paper"), ("paper", "cites", "paper"), ("paper", "rev_writes", "author")]


def _inputs(dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = {"paper": torch.randn(5, dim, generator=g, dtype=torch.float64),
         "author": torch.randn(3, dim, generator=g, dtype=torch.float64)}
    writes = torch.tensor([[0, 0, 1, 2, 2], [0, 1, 1, 3, 4]])
    cites = torch.tensor([[1, 2, 3, 4, 4], [0, 0, 1, 2, 3]])
    return x, {ET[0]: writes, ET[1]: cites, ET[2]: writes.flip(0)}


def test_classification_metrics_hand_computed():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    m = classification_metrics(torch.nn.functional.one_hot(pred, 3).double() * 5, y, 3)
    # per-class F1: c0 tp1 fp1 fn1 -> .5; c1 tp2 fp1 fn0 -> .8; c2 tp1 fp0 fn1 -> 2/3
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["micro_f1"] == pytest.approx(4 / 6)  # single-label: micro-F1 == accuracy
    # a class that never occurs nor is predicted is left out of the macro average
    m4 = classification_metrics(torch.nn.functional.one_hot(pred, 4).double(), y, 4)
    assert m4["macro_f1"] == pytest.approx(m["macro_f1"])


def test_multilabel_metrics_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(0)
    y = (torch.rand(40, 5, generator=gen) < 0.4).long()
    logits = torch.randn(40, 5, generator=gen, dtype=torch.float64) + (y - 0.5)
    m = multilabel_metrics(logits, y)
    pred = (logits > 0).numpy()
    assert m["macro_f1"] == pytest.approx(metrics.f1_score(y.numpy(), pred, average="macro"))
    assert m["micro_f1"] == pytest.approx(metrics.f1_score(y.numpy(), pred, average="micro"))
    assert m["accuracy"] == pytest.approx(metrics.accuracy_score(y.numpy(), pred))  # exact match
    assert m["loss"] == pytest.approx(float(node_loss(logits, y)))
    # single-label targets keep softmax cross-entropy
    assert float(node_loss(logits, y.argmax(1))) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, y.argmax(1))))


def test_rgcn_matches_dense_definition():
    x, edges = _inputs()
    torch.manual_seed(0)
    enc = RGCNEncoder(NT, ET, 6, layers=1, dropout=0.0).double()
    out = enc(x, edges)
    w = enc.rel_w[0]
    for nt in NT:
        expect = enc.self_lin[0][nt](x[nt])
        for r, (s, _, d) in enumerate(ET):
            if d != nt:
                continue
            a = torch.zeros(x[d].size(0), x[s].size(0), dtype=torch.float64)
            a[edges[ET[r]][1], edges[ET[r]][0]] = 1.0
            a = a / a.sum(1, keepdim=True).clamp_min(1)
            expect = expect + a @ x[s] @ w[r]
        torch.testing.assert_close(out[nt], expect)


def test_gcn_matches_dense_normalised_adjacency():
    x, edges = _inputs()
    torch.manual_seed(0)
    enc = GCNEncoder(6, layers=1, dropout=0.0).double()
    out = enc(x, edges)
    xh, ei, off = to_homogeneous(x, edges)
    n = xh.size(0)
    a = torch.zeros(n, n, dtype=torch.float64)
    a.index_put_((ei[1], ei[0]), torch.ones(ei.size(1), dtype=torch.float64), accumulate=True)
    d = a.sum(1).rsqrt()
    expect = (d[:, None] * a * d[None, :]) @ enc.lins[0](xh)
    torch.testing.assert_close(torch.cat([out["paper"], out["author"]]), expect)


def test_gat_attention_sums_to_one_per_target():
    x, edges = _inputs(dim=8)
    enc = GATEncoder(8, heads=2, layers=1, dropout=0.0).double()
    _, (ei, att) = enc(x, edges, return_attention=True)
    sums = torch.zeros(8, 2, dtype=torch.float64).index_add(0, ei[1], att)
    torch.testing.assert_close(sums, torch.ones_like(sums))


@pytest.mark.parametrize("model", ["hgt", "rgcn", "gcn", "gat", "mlp"])
def test_every_encoder_keeps_types_and_trains(model):
    x, edges = _inputs(dim=8)
    times = {"paper": torch.tensor([2010, 2011, 2012, 2013, 2014]), "author": torch.full((3,), 2014)}
    enc = build_encoder(model, NT, ET, hidden=8, heads=2, layers=2, dropout=0.1).double()
    out = enc(x, edges, times)
    assert {k: v.shape for k, v in out.items()} == {"paper": (5, 8), "author": (3, 8)}
    sum(v.sum() for v in out.values()).backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_node_inputs_features_and_errors():
    g = synthetic_temporal(num_papers=40, seed=1).add_reverse_edges()
    s = structural_features(g)
    n_types = {nt: sum((e[0] == nt) + (e[2] == nt) for e in g.edges) for nt in g.node_types}
    for nt in g.node_types:  # one log-degree column per incident edge type and side, + year if timed
        assert s[nt].shape == (g.num_nodes[nt], n_types[nt] + (nt in g.node_time))
    assert float(s["paper"][:, -1].min()) == 0.0 and float(s["paper"][:, -1].max()) == 1.0
    inputs = NodeInputs(g.num_nodes, 8, "both", s, dropout=0.0)
    ids = {nt: torch.arange(min(3, n)) for nt, n in g.num_nodes.items()}
    full, part = inputs(), inputs(ids)
    for nt in g.node_types:
        torch.testing.assert_close(part[nt], full[nt][: ids[nt].numel()])
    # the labelled type can be kept off learnable vectors: structural features only
    no_emb = NodeInputs(g.num_nodes, 8, "embedding", s, dropout=0.0, no_embedding=("paper",))
    assert "paper" not in no_emb.emb and "author" in no_emb.emb
    assert no_emb.adapt["paper"].in_features == s["paper"].size(1)
    assert no_emb()["paper"].shape == (g.num_nodes["paper"], 8)
    # dataset attributes are appended for the types that have them, for every feature choice
    attrs = {"paper": torch.randn(g.num_nodes["paper"], 5)}
    with_attr = NodeInputs(g.num_nodes, 8, "embedding", None, dropout=0.0, attributes=attrs)
    assert with_attr.adapt["paper"].in_features == 8 + 5
    assert with_attr.adapt["author"].in_features == 8
    torch.testing.assert_close(with_attr(ids)["paper"], with_attr()["paper"][: ids["paper"].numel()])
    with pytest.raises(ValueError, match=r"attributes\['paper'\] has 3 rows"):
        NodeInputs(g.num_nodes, 8, "embedding", attributes={"paper": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match="structural"):
        NodeInputs(g.num_nodes, 8, "structural", None)
    with pytest.raises(ValueError, match="features"):
        NodeInputs(g.num_nodes, 8, "words")


def test_untimed_types_take_the_latest_time():
    g = synthetic_temporal(num_papers=40, seed=1)
    t = full_time_dict(g)
    now = int(g.node_time["paper"].max())
    assert torch.equal(t["paper"], g.node_time["paper"])
    assert set(t) == set(g.node_types) and bool((t["author"] == now).all()) and bool((t["venue"] == now).all())


def test_config_validation_names_the_field():
    from paperzoo.core.config import ConfigError

    with pytest.raises(ConfigError, match="hidden"):
        HGTConfig(hidden=10, heads=4)
    with pytest.raises(ConfigError, match="dropout"):
        HGTConfig(dropout=1.0)


def _sampled_cfg(**kw):
    return replace(PRESETS["tiny"].config, mode="sampled", eval_mode="sampled", batch_size=32,
                   sampled_number=16, **kw)


def test_sampled_training_is_deterministic_and_evaluates_all_nodes():
    cfg = _sampled_cfg()
    g = load_graph(cfg)
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model(cfg, g)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        b = Batcher(cfg, g)
        gen = torch.Generator().manual_seed(3)
        losses = [train_epoch(model, opt, b, cfg, gen) for _ in range(2)]
        nodes = g.splits["valid"]
        logits = predict(model, b, nodes, cfg)
        assert logits.shape == (nodes.numel(), g.num_classes)
        torch.testing.assert_close(logits, predict(model, b, nodes, cfg))  # evaluation is re-seeded
        outs.append((losses, logits))
    assert outs[0][0] == outs[1][0]
    torch.testing.assert_close(outs[0][1], outs[1][1])


def test_sampled_run_resumes_exactly(tmp_path, crash_after_checkpoint):
    cfg = _sampled_cfg(epochs=4)
    a = run(cfg, RunDir.create(tmp_path / "a", method="hgt", preset="tiny", config=cfg))
    disarm = crash_after_checkpoint(2)  # die right after the second epoch's checkpoint
    with pytest.raises(KeyboardInterrupt):
        run(cfg, RunDir.create(tmp_path / "b", method="hgt", preset="tiny", config=cfg))
    disarm()
    b = run(cfg, RunDir.open(tmp_path / "b"))
    keys = [k for k in a.metrics if "seconds" not in k]
    assert {k: b.metrics[k] for k in keys} == {k: a.metrics[k] for k in keys}


def test_multilabel_imdb_run(tmp_path, data_root):
    """HGB's multi-label IMDB task end to end: one logit per genre, BCE training, multi-label scores,
    and ``select_metric=loss`` keeps the checkpoint with the lowest validation loss."""
    if not (data_root / "hetero" / "imdb").is_dir():
        pytest.skip("hetero/imdb missing")
    cfg = replace(PRESETS["paper_imdb_hgb"].config, hidden=16, heads=2, epochs=3, min_epochs=0,
                  select_metric="loss", num_threads=1)
    res = run(cfg, RunDir.create(tmp_path / "r", method="hgt", preset="paper_imdb_hgb", config=cfg,
                                 data_root=str(data_root)))
    losses = [row["valid/loss"] for row in res.history]
    assert res.metrics["best_epoch"] == 1 + losses.index(min(losses))
    assert res.metrics["valid/loss"] == pytest.approx(min(losses), rel=1e-5)
    graph = load_graph(cfg, str(data_root))
    # better than the best constant guess: every genre predicted iff it is the majority in training
    # (measured: micro-F1 .474 vs .405, macro-F1 .236 vs .142)
    y_train, y_test = graph.y[graph.splits["train"]], graph.y[graph.splits["test"]]
    constant = (y_train.double().mean(0) > 0.5).double() * 2 - 1
    baseline = multilabel_metrics(constant.expand(len(y_test), -1).clone(), y_test)
    assert res.metrics["test/micro_f1"] > baseline["micro_f1"] + 0.03
    assert res.metrics["test/macro_f1"] > baseline["macro_f1"] + 0.03
    assert graph.multilabel and build_model(cfg, graph).head.out_features == 5

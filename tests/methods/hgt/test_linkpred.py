"""HGT link prediction: metrics against brute force, pair loading, no leakage, end to end, resume."""
import itertools
import math
from dataclasses import replace

import pytest
import torch

from paperzoo.core.runs import RunDir
from paperzoo.data import hetero
from paperzoo.data.hetero import HeteroFormatError, read_labelled_pairs
from paperzoo.methods.hgt import linkpred
from paperzoo.methods.hgt.config import PRESETS, HGTConfig


def _brute_auc(scores, labels):
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_brute_force_pair_count(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 60
    scores = torch.randint(0, 8, (n,), generator=gen).float() / 4  # many ties
    labels = torch.randint(0, 2, (n,), generator=gen)
    labels[0], labels[1] = 0, 1
    assert linkpred.roc_auc(scores, labels) == pytest.approx(_brute_auc(scores.tolist(), labels.tolist()))


def test_auc_edge_cases():
    assert linkpred.roc_auc(torch.tensor([0.1, 0.9]), torch.tensor([0, 1])) == 1.0
    assert linkpred.roc_auc(torch.tensor([0.9, 0.1]), torch.tensor([0, 1])) == 0.0
    assert linkpred.roc_auc(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0, 1, 1])) == 0.5
    assert math.isnan(linkpred.roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1])))


def test_f1_threshold_and_metrics_hand_computed():
    logits = torch.tensor([3.0, 2.0, 1.0, -1.0, -2.0, -3.0])
    labels = torch.tensor([1, 0, 1, 1, 0, 0])
    # at logit 0: predicted 1,1,1,0,0,0 -> tp 2 fp 1 fn 1 -> F1 2/3, accuracy 4/6
    m = linkpred.link_metrics(logits, labels, threshold=-1.0)
    assert m["f1"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(4 / 6)
    # at logit -1: predicted 1,1,1,1,0,0 -> tp 3 fp 1 fn 0 -> F1 6/7, accuracy 5/6
    assert m["f1_tuned"] == pytest.approx(6 / 7) and m["accuracy_tuned"] == pytest.approx(5 / 6)
    best = linkpred.best_f1_threshold(logits, labels)
    assert best == -1.0  # brute force over every cut
    f1s = {t: linkpred.binary_counts(logits >= t, labels)["f1"] for t in logits.tolist()}
    assert f1s[best] == max(f1s.values())
    # tied scores are never split by the threshold
    assert linkpred.best_f1_threshold(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([1, 0, 0])) == 1.0


# ------------------------------------------------------------------------------------ loading
def test_labelled_pairs_loader_and_errors(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text("1, 2, 1\n\n3, 4, 0\n")
    assert read_labelled_pairs(f) == [(1, 2, 1), (3, 4, 0)]
    for text, match in (("1, 2\n", r"pairs.txt:1: expected 3 fields"),
                        ("1, 2, 1\n1, x, 0\n", r"pairs.txt:2: target id 'x' is not an integer"),
                        ("1, 2, 2\n", r"pairs.txt:1: label must be 0 or 1"),
                        ("1, -2, 1\n", r"pairs.txt:1: target id -2 is outside")):
        f.write_text(text)
        with pytest.raises(HeteroFormatError, match=match):
            read_labelled_pairs(f)
    f.write_text("1, 2, 1\n5, 1, 0\n")
    with pytest.raises(HeteroFormatError, match=r"pairs.txt:2: source id 5 is outside \[0, 5\)"):
        read_labelled_pairs(f, num_src=5, num_dst=5)


def test_valid_carve_is_stratified_and_keeps_mirrors_together():
    rows = [(a, b, 1) for a in range(20) for b in range(20) if a != b and (a + b) % 3 == 0]
    rows += [(a, a + 25, 0) for a in range(len(rows))]
    pairs = torch.tensor(rows)
    carve = linkpred.carve_valid(pairs, 0.1, seed=0, symmetric=True)
    assert len(carve["train"]) + len(carve["valid"]) == len(pairs)
    for label in (0, 1):
        n = int((pairs[:, 2] == label).sum())
        share = int((carve["valid"][:, 2] == label).sum()) / n
        assert 0.05 < share < 0.15
    train = {(int(a), int(b)) for a, b, _ in carve["train"]}
    assert not any((int(b), int(a)) in train for a, b, _ in carve["valid"])  # no mirror across sides
    again = linkpred.carve_valid(pairs, 0.1, seed=0, symmetric=True)
    assert torch.equal(again["valid"], carve["valid"])


# ------------------------------------------------------------------------------------ leakage
def _assert_no_future(task, full):
    """No edge of the message graph touches a paper newer than the split, and no test positive is
    already linked in it."""
    g = task.graph
    year = full.node_time["paper"]
    assert int(g.node_time["paper"].max()) <= task.split_time
    for (s, _, d), e in g.edges.items():
        for row, nt in ((0, s), (1, d)):
            if nt == "paper" and e.numel():
                assert int(year[e[row]].max()) <= task.split_time, (s, d)
    writes = g.edges[("author", "writes", "paper")]
    later = (year > task.split_time).nonzero().flatten()
    assert not bool(torch.isin(writes[1], later).any())
    if task.src_type == task.dst_type == "author":
        papers_of = {}
        for a, p in writes.t().tolist():
            papers_of.setdefault(a, set()).add(p)
        test = task.pairs["test"]
        for a, b, y in test[test[:, 2] == 1].tolist():
            if a == b:  # the AMiner test file lists one (a, a) positive
                continue
            assert not (papers_of.get(a, set()) & papers_of.get(b, set())), (a, b)


def test_message_graph_has_no_test_period_information():
    full, links = hetero.synthetic_links(num_papers=120, seed=0)
    task = linkpred.build_task(full, links)
    assert int(full.node_time["paper"].max()) > task.split_time  # there IS a later period to hide
    _assert_no_future(task, full)
    # all nodes kept (ids aligned), later papers isolated
    assert task.graph.num_nodes == full.num_nodes
    assert task.graph.num_edges() < full.add_reverse_edges().num_edges()


def test_real_aminer_message_graph_has_no_test_period_information(data_root):
    cfg = replace(PRESETS["paper_aminer_link"].config)
    task = linkpred.load_task(cfg, str(data_root))
    full = hetero.load("aminer", data_root)
    assert task.split_time == 2011
    assert len(task.pairs["test"]) == 27862 and int(task.pairs["test"][:, 2].sum()) == 13931
    assert len(task.pairs["train"]) + len(task.pairs["valid"]) == 194282
    _assert_no_future(task, full)


# --------------------------------------------------------------------------------- end to end
def _cfg(**kw):
    base = dict(dataset="synthetic", task="link", synthetic_papers=120, hidden=16, heads=2,
                features="both", epochs=4, patience=0, lr=1e-2)
    base.update(kw)
    return HGTConfig(**base)


@pytest.mark.parametrize("model", ["hgt", "rgcn", "mlp"])
def test_tiny_link_run_finishes_and_eval_reproduces(tmp_path, model):
    cfg = _cfg(model=model)
    rd = RunDir.create(tmp_path / "r", method="hgt", preset="tiny", config=cfg)
    res = linkpred.run(cfg, rd)
    for split in ("valid", "test"):
        for key in linkpred.METRICS:
            assert math.isfinite(res.metrics[f"{split}/{key}"]), f"{split}/{key}"
    # the tuned threshold maximises F1 on the validation pairs, so it cannot lose to logit 0 there
    # (measured: .769 / .75 / .8 against .75 / .75 / .667 for hgt / rgcn / mlp)
    assert res.metrics["valid/f1_tuned"] >= res.metrics["valid/f1"]
    assert len(res.history) == 4 and "valid/auc" in res.history[0]
    again = linkpred.evaluate(RunDir.open(tmp_path / "r"))
    assert {f"{s}/{k}" for s in ("valid", "test") for k in linkpred.METRICS} <= set(again)
    for key, value in again.items():
        assert res.metrics[key] == pytest.approx(value), key


def test_link_task_is_dispatched_from_run_py(tmp_path):
    from paperzoo.methods.hgt.run import run

    cfg = _cfg(model="mlp", epochs=2)
    res = run(cfg, RunDir.create(tmp_path / "r", method="hgt", preset="tiny", config=cfg))
    direct = linkpred.run(cfg, RunDir.create(tmp_path / "direct", method="hgt", preset="tiny", config=cfg))
    keys = [k for k in direct.metrics if "seconds" not in k]
    assert "test/auc" in keys and {k: res.metrics[k] for k in keys} == {k: direct.metrics[k] for k in keys}


def test_link_run_resumes_exactly(tmp_path, crash_after_checkpoint):
    cfg = _cfg(model="hgt", epochs=4)
    a = linkpred.run(cfg, RunDir.create(tmp_path / "a", method="hgt", preset="tiny", config=cfg))
    disarm = crash_after_checkpoint(2)  # die right after the second epoch's checkpoint
    with pytest.raises(KeyboardInterrupt):
        linkpred.run(cfg, RunDir.create(tmp_path / "b", method="hgt", preset="tiny", config=cfg))
    disarm()
    b = linkpred.run(cfg, RunDir.open(tmp_path / "b"))
    keys = [k for k in a.metrics if "seconds" not in k]
    assert {k: b.metrics[k] for k in keys} == {k: a.metrics[k] for k in keys}
    assert [r["epoch"] for r in b.history] == [1, 2, 3, 4]


def test_link_task_rejects_datasets_without_pairs():
    with pytest.raises(ValueError, match="aminer"):
        linkpred.load_task(_cfg(dataset="acm"))

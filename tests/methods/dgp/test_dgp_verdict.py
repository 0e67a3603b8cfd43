"""The report's aggregation over runs (splits x seeds) and its ordering verdict."""
from types import SimpleNamespace

from paperzoo.api import VERDICTS
from paperzoo.methods.dgp.run import aggregate, verdict


def _runs(hit1_by_model, dataset="cifar10", seeds=(0, 1)):
    out = []
    for seed in seeds:
        rd = SimpleNamespace(config=SimpleNamespace(dataset=dataset))
        metrics = {f"test/{m}/hit@1": v + 0.01 * seed for m, v in hit1_by_model.items()}
        metrics["num_unseen"] = 3
        out.append((rd, metrics))
    return out


def test_aggregate_collects_values_per_dataset_model_and_metric():
    agg = aggregate(_runs({"gcnz": 0.5, "adgpm+ft": 0.7}))
    assert agg[("cifar10", "gcnz", "hit@1")] == [0.5, 0.51]
    assert agg[("cifar10", "adgpm+ft", "hit@1")] == [0.7, 0.71]
    assert ("cifar10", "num_unseen", "") not in agg


def test_verdict_checks_the_papers_ordering():
    ok = verdict(aggregate(_runs({"gcnz": 0.5, "sgcn": 0.6, "dgp": 0.62, "adgpm": 0.65})), "cifar10", 2)
    assert ok.startswith("ordering reproduced") and "GCNZ 50.5" in ok and "ADGPM 65.5" in ok
    partial = verdict(aggregate(_runs({"gcnz": 0.5, "sgcn": 0.7, "dgp": 0.62, "adgpm": 0.65})), "cifar10", 2)
    assert partial.startswith("not reproduced") and "not SGCN" in partial
    bad = verdict(aggregate(_runs({"gcnz": 0.7, "sgcn": 0.6, "dgp": 0.62, "adgpm": 0.65})), "cifar10", 2)
    assert bad.startswith("not reproduced:")
    missing = verdict(aggregate(_runs({"gcnz": 0.5})), "cifar10", 2)
    assert missing.startswith("not reproduced") and "lack" in missing
    assert all(v.startswith(VERDICTS) for v in (ok, partial, bad, missing))


def test_ablation_table_lists_each_depth_of_both_families():
    from paperzoo.methods.dgp.run import ablation_table

    agg = aggregate(_runs({"gcn1": 0.6, "gcn3": 0.5, "dense1": 0.62, "dense2": 0.64, "adgpm": 0.7}))
    rows = ablation_table(agg, "cifar10")
    assert rows[2:4] == ["| L | GCN, L layers | dense, L hops |", "|---|---|---|"]
    assert rows[4:7] == ["| 1 | 60.5 ± 0.7 | 62.5 ± 0.7 |", "| 2 | – | 64.5 ± 0.7 |", "| 3 | 50.5 ± 0.7 | – |"]
    assert ablation_table(aggregate(_runs({"adgpm": 0.7})), "cifar10") == []


def test_verdict_reports_the_generalized_ordering_beside_hit1():
    runs = _runs({"gcnz": 0.7, "sgcn": 0.6, "dgp": 0.62, "adgpm": 0.65})
    for _, m in runs:
        m.update({"test/gcnz/gzsl_H": 0.2, "test/sgcn/gzsl_H": 0.25, "test/dgp/gzsl_H": 0.4, "test/adgpm/gzsl_H": 0.3})
    v = verdict(aggregate(runs), "cifar10", 2)
    assert v.startswith("not reproduced:") and "generalized H GCNZ 20.0, SGCN 25.0, DGP 40.0, ADGPM 30.0 (ordering holds)" in v


def test_paired_wins_counts_runs_per_pair():
    from paperzoo.methods.dgp.run import paired_wins

    runs = _runs({"gcnz": 0.5, "sgcn": 0.6, "dgp": 0.62, "adgpm": 0.65}, seeds=(0, 1, 2))
    runs[0][1]["test/gcnz/hit@1"] = 0.9  # GCNZ wins every pair in one run
    rows = paired_wins(runs, "cifar10")
    assert rows[2] == "| | GCNZ | SGCN | DGP | ADGPM |"
    assert rows[4] == "| GCNZ | – | 1 | 1 | 1 |" and rows[7] == "| ADGPM | 2 | 3 | 3 | – |"
    assert paired_wins(runs[:1], "cifar10") == []

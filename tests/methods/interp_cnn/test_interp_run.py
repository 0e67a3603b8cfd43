"""A tiny end-to-end run of both networks on the part dataset, its figures, evaluation and report
section; the verdict rule; config validation; the CIFAR-10 loader of the method."""
import math

import pytest
import torch
from figure_checks import assert_drawn_png

from paperzoo import runner
from paperzoo.api import VERDICTS
from paperzoo.core.config import ConfigError
from paperzoo.methods.interp_cnn import SPEC
from paperzoo.methods.interp_cnn.config import InterpCNNConfig
from paperzoo.methods.interp_cnn.figures import pick_filters
from paperzoo.methods.interp_cnn.report import judge

pytest.importorskip("paperzoo.data.parts")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    rd = runner.prepare("interp_cnn", "tiny", run_dir=tmp_path_factory.mktemp("interp") / "run",
                        overrides={"num_threads": 1})
    return rd, runner.execute(rd)


def test_both_networks_are_trained_on_the_same_batches_and_scored(tiny_run):
    rd, result = tiny_run
    m = result.metrics
    for variant in ("ordinary", "interpretable"):
        assert 0.0 <= m[f"test/{variant}/accuracy"] <= 1.0
        assert 0 <= m[f"test/{variant}/filters_scored"] <= 8  # the tiny preset's 8 top filters
        assert f"test/{variant}/instability" in m and f"test/{variant}/mi" in m
    assert m["test/instability"] == m["test/interpretable/instability"]  # the headline is the last variant
    assert m["test/part_filters/instability"] < m["test/random_filters/instability"]
    for variant in ("ordinary", "interpretable"):  # the two categories of the tiny preset, and their mean
        per_cat = [m[f"test/{variant}/instability_{c}"] for c in ("person", "car")]
        assert m[f"test/{variant}/instability_by_category"] == pytest.approx(sum(per_cat) / 2)
    rows = result.history
    assert [r["epoch"] for r in rows] == [1, 2]
    # the filter loss is logged for the interpretable network only, and is -MI <= 0
    assert all(r["interpretable/filter_loss"] <= 1e-9 for r in rows) and "ordinary/filter_loss" not in rows[0]
    assert_drawn_png(rd.path / "filters.png")
    assert_drawn_png(rd.path / "instability.png")


def test_evaluate_reproduces_the_test_metrics(tiny_run):
    rd, result = tiny_run
    again = SPEC.evaluate(rd)
    for key, value in again.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(result.metrics[key])
        else:
            assert result.metrics[key] == pytest.approx(value), key


def test_report_section_has_a_table_a_verdict_and_figures(tiny_run):
    rd, _ = tiny_run
    section = SPEC.report_section([rd])
    assert section.verdict.startswith(VERDICTS)
    assert "| ordinary |" in section.markdown and "| interpretable |" in section.markdown
    assert section.figures and section.figures[0].path.name == "filters.png"


def _runs(pairs):
    class _Cfg:
        dataset, backbone = "parts", "vgg"

    class _Run:
        config = _Cfg()

    return [(_Run(), {"test/ordinary/instability": o, "test/interpretable/instability": i,
                      "test/ordinary/accuracy": 0.9, "test/interpretable/accuracy": 0.88}) for o, i in pairs]


def test_verdict_needs_a_clear_drop_in_every_paired_run():
    assert judge(_runs([(0.10, 0.07), (0.11, 0.08), (0.10, 0.06)]), "vgg").startswith("reproduced: vgg, 3 seed")
    assert judge(_runs([(0.10, 0.07), (0.11, 0.12), (0.10, 0.06)]), "vgg").startswith("ordering reproduced")
    assert judge(_runs([(0.10, 0.097)] * 3), "vgg").startswith("ordering reproduced")  # lower, not clearly
    assert judge(_runs([(0.10, 0.12)] * 3), "vgg").startswith("not reproduced")
    assert "accuracy 88.0 % vs 90.0 % (-2.0 points)" in judge(_runs([(0.1, 0.05)]), "vgg")


def test_verdict_says_when_only_the_per_category_measure_drops():
    runs = _runs([(0.10, 0.11)] * 3)
    for _, m in runs:
        m.update({"test/ordinary/instability_by_category": 0.12, "test/interpretable/instability_by_category": 0.10})
    v = judge(runs, "vgg")
    assert v.startswith("ordering reproduced only per category") and "lower in 3/3" in v
    runs[0][1]["test/interpretable/instability_by_category"] = 0.13
    assert judge(runs, "vgg").startswith("not reproduced")


def test_filters_shown_are_the_median_of_each_category_first():
    per_filter = torch.tensor([0.1, 0.3, 0.2, math.nan, 0.5, 0.05])
    category = torch.tensor([0, 0, 0, 1, 1, 1])
    # category 0 sorted: 0 (0.1), 2 (0.2), 1 (0.3) -> median 2; category 1: 5 (0.05), 4 (0.5) -> median 4
    assert pick_filters(per_filter, category, 4) == [2, 4, 1, 5]


@pytest.mark.parametrize("field,value,match", [
    ("variants", ("ordinary", "fancy"), "unknown variant"),
    ("image_size", 60, "multiple of 8"),
    ("top_k", 1, ">= 2"),
    ("filter_loss_weight", -1.0, ">= 0"),
])
def test_bad_config_names_the_field(field, value, match):
    with pytest.raises(ConfigError, match=match):
        InterpCNNConfig(**{field: value})


def test_cifar10_data_holds_out_validation_images_from_training(data_root):
    from paperzoo.methods.interp_cnn.run import load_data

    cfg = InterpCNNConfig(dataset="cifar10", train_per_class=6, val_per_class=2, test_per_class=3)
    data = load_data(cfg, str(data_root))
    assert data.train_x.shape == (60, 3, 32, 32) and len(data.val_x) == 20 and len(data.test_x) == 30
    assert data.test_landmarks is None and data.train_x.dtype == torch.uint8
    assert torch.bincount(data.train_y).tolist() == [6] * 10 and torch.bincount(data.val_y).tolist() == [2] * 10
    # the validation images are not training images
    train = {bytes(x.numpy()) for x in data.train_x}
    assert not any(bytes(x.numpy()) in train for x in data.val_x)

import gzip
import math

import pytest
import torch

from paperzoo.data import regression
from paperzoo.data.regression import RegressionFormatError
from paperzoo.data.roots import DataNotFoundError


# ------------------------------------------------------------------------------- 1-D gap toy
def test_snelson_gap_shapes_and_determinism():
    toy = regression.snelson_gap(n=101, seed=3, n_test=250)
    assert toy.x_train.shape == (101, 1) and toy.y_train.shape == (101, 1)
    assert toy.x_test.shape == (250, 1) and toy.f_test.shape == (250, 1)
    assert toy.x_train.dtype == torch.float32
    same = regression.snelson_gap(n=101, seed=3, n_test=250)
    assert torch.equal(toy.x_train, same.x_train) and torch.equal(toy.y_train, same.y_train)
    other = regression.snelson_gap(n=101, seed=4, n_test=250)
    assert not torch.equal(toy.x_train, other.x_train)
    assert regression.snelson_gap(n=10, dtype=torch.float64).y_train.dtype == torch.float64


def test_snelson_gap_really_has_a_gap():
    toy = regression.snelson_gap(n=400, seed=0)
    (a, b), (c, d) = toy.clusters
    x = toy.x_train.flatten()
    assert toy.gap == (b, c) and not bool(toy.in_gap(x).any())
    assert int((x < b).sum()) == 200 and int((x > c).sum()) == 200
    assert float(x.min()) >= a and float(x.max()) <= d
    grid = toy.x_test.flatten()
    assert int(toy.in_gap(grid).sum()) > 10, "the test grid must cover the gap"
    assert float(grid.min()) < a and float(grid.max()) > d, "and extend beyond the data"
    assert torch.allclose(toy.f_test, regression.gap_function(toy.x_test), atol=1e-6)


def test_snelson_gap_noise_level():
    toy = regression.snelson_gap(n=4000, seed=1, noise_std=0.2, dtype=torch.float64)
    residual = toy.y_train - regression.gap_function(toy.x_train)
    assert abs(float(residual.std()) - 0.2) < 0.01 and abs(float(residual.mean())) < 0.02
    exact = regression.snelson_gap(n=50, seed=1, noise_std=0.0)
    assert torch.allclose(exact.y_train, regression.gap_function(exact.x_train), atol=1e-6)


def test_snelson_gap_rejects_bad_arguments():
    with pytest.raises(ValueError, match="a < b <= c < d"):
        regression.snelson_gap(clusters=((0.0, 1.0), (0.5, 2.0)))
    with pytest.raises(ValueError, match="n >= 2"):
        regression.snelson_gap(n=1)
    with pytest.raises(ValueError, match="noise_std"):
        regression.snelson_gap(noise_std=-1)


# --------------------------------------------------------------------------------- splitting
def test_split_indices_partition():
    idx = regression.split_indices(442, (0.7, 0.1, 0.2), seed=5)
    sizes = {k: len(v) for k, v in idx.items()}
    assert sizes == {"train": 309, "valid": 44, "test": 89}
    together = torch.cat(list(idx.values()))
    assert sorted(together.tolist()) == list(range(442)), "disjoint and complete"
    again = regression.split_indices(442, (0.7, 0.1, 0.2), seed=5)
    assert all(torch.equal(v, again[k]) for k, v in idx.items())
    assert not torch.equal(idx["test"], regression.split_indices(442, (0.7, 0.1, 0.2), seed=6)["test"])
    assert len(regression.split_indices(10, (0.8, 0.0, 0.2), seed=0)["valid"]) == 0
    for bad in ((0.5, 0.5), (0.7, 0.2, 0.2), (1.0, 0.0, 0.0), (-0.1, 0.5, 0.6)):
        with pytest.raises(ValueError):
            regression.split_indices(442, bad, seed=0)


# ---------------------------------------------------------------------------------- diabetes
@pytest.fixture(scope="module")
def raw_diabetes():
    try:
        return regression.load_diabetes()
    except DataNotFoundError as err:
        pytest.skip(f"diabetes files not found (pip install scikit-learn ships them): {err}")


def test_raw_diabetes(raw_diabetes):
    x, y = raw_diabetes
    assert x.shape == (442, 10) and y.shape == (442,)
    assert x[0].tolist() == [59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87] and float(y[0]) == 151
    assert float(y.min()) == 25 and float(y.max()) == 346


def test_diabetes_split_shapes_overlap_and_determinism(raw_diabetes):
    s = regression.load_diabetes_split(seed=0)
    assert s.x_train.shape == (309, 10) and s.x_valid.shape == (44, 10) and s.x_test.shape == (89, 10)
    assert s.y_train.shape == (309, 1) and s.y_test.shape == (89, 1) and s.x_train.dtype == torch.float32
    sets = {k: set(v.tolist()) for k, v in s.indices.items()}
    assert not (sets["train"] & sets["valid"] or sets["train"] & sets["test"] or sets["valid"] & sets["test"])
    assert len(sets["train"] | sets["valid"] | sets["test"]) == 442
    again = regression.load_diabetes_split(seed=0)
    assert torch.equal(s.x_test, again.x_test) and torch.equal(s.y_train, again.y_train)
    assert not torch.equal(s.indices["test"], regression.load_diabetes_split(seed=1).indices["test"])
    assert s.feature_names == regression.DIABETES_FEATURES


def test_diabetes_standardisation_uses_train_statistics_only(raw_diabetes):
    x, y = raw_diabetes
    s = regression.load_diabetes_split(seed=2)
    train = s.indices["train"]
    assert torch.allclose(s.x_mean.double(), x[train].mean(0), atol=1e-4)
    assert torch.allclose(s.x_std.double(), x[train].std(0, correction=0), rtol=1e-6)
    assert math.isclose(s.y_mean, float(y[train].mean()))
    assert math.isclose(s.y_std, float(y[train].std(correction=0)))
    assert torch.allclose(s.x_train.mean(0), torch.zeros(10), atol=1e-5)
    assert torch.allclose(s.x_train.std(0, correction=0), torch.ones(10), atol=1e-5)
    assert abs(float(s.x_test.mean(0).abs().max())) > 1e-3, "test rows are not centred on their own mean"
    assert not torch.allclose(s.x_mean.double(), x.mean(0), atol=1e-3)
    # back to original units
    assert torch.allclose(s.y_to_original(s.y_test.double()).flatten(), y[s.indices["test"]], atol=1e-3)
    assert torch.allclose(s.x_test.double() * s.x_std.double() + s.x_mean.double(), x[s.indices["test"]],
                          rtol=1e-5, atol=1e-3)


def test_diabetes_held_out_rows_do_not_move_the_statistics(raw_diabetes, tmp_path):
    """Rewrite every valid/test row with wild values: the training statistics must not change."""
    x, y = raw_diabetes
    s = regression.load_diabetes_split(seed=2)
    held_out = torch.cat([s.indices["valid"], s.indices["test"]])
    x2, y2 = x.clone(), y.clone()
    x2[held_out] = x2[held_out] * 10 + 1000
    y2[held_out] = -5000
    folder = tmp_path / "diabetes"
    folder.mkdir()
    rows = "\n".join(" ".join(repr(float(v)) for v in row) for row in x2.tolist())
    (folder / "diabetes_data_raw.csv.gz").write_bytes(gzip.compress(rows.encode()))
    (folder / "diabetes_target.csv.gz").write_bytes(gzip.compress("\n".join(map(repr, y2.tolist())).encode()))
    t = regression.load_diabetes_split(seed=2, data_root=tmp_path)
    assert torch.equal(t.indices["train"], s.indices["train"])
    assert torch.allclose(t.x_mean, s.x_mean) and torch.allclose(t.x_std, s.x_std)
    assert t.y_mean == pytest.approx(s.y_mean) and t.y_std == pytest.approx(s.y_std)
    assert torch.allclose(t.x_train, s.x_train) and torch.allclose(t.y_train, s.y_train)


def test_diabetes_metrics_to_original_units(raw_diabetes):
    _, y = raw_diabetes
    s = regression.load_diabetes_split(seed=0)
    mu_std, sigma_std = torch.zeros_like(s.y_test.double()), 0.8
    target = s.y_test.double()
    nll_std = -torch.distributions.Normal(mu_std, sigma_std).log_prob(target).mean()
    nll_orig = -torch.distributions.Normal(s.y_to_original(mu_std), sigma_std * s.y_std).log_prob(
        y[s.indices["test"]][:, None]).mean()
    assert math.isclose(s.nll_to_original(float(nll_std)), float(nll_orig), rel_tol=1e-5)
    rmse_std = float((target - mu_std).square().mean().sqrt())
    rmse_orig = float((y[s.indices["test"]] - s.y_mean).square().mean().sqrt())
    assert math.isclose(s.rmse_to_original(rmse_std), rmse_orig, rel_tol=1e-5)


def test_diabetes_unstandardised(raw_diabetes):
    x, y = raw_diabetes
    s = regression.load_diabetes_split(seed=0, standardize=False, dtype=torch.float64)
    assert torch.equal(s.x_train, x[s.indices["train"]])
    assert torch.equal(s.y_valid[:, 0], y[s.indices["valid"]])
    assert s.y_mean == 0.0 and s.y_std == 1.0 and not s.standardized


def test_diabetes_malformed_file_names_file_and_line(tmp_path, monkeypatch):
    folder = tmp_path / "diabetes"
    folder.mkdir()
    (folder / "diabetes_data_raw.csv.gz").write_bytes(gzip.compress(b"1 2 3 4 5 6 7 8 9 10\n1 2 3\n"))
    (folder / "diabetes_target.csv.gz").write_bytes(gzip.compress(b"100\n200\n"))
    with pytest.raises(RegressionFormatError, match=r"raw.csv.gz:2: expected 10 numbers, got 3$"):
        regression.load_diabetes(tmp_path)
    (folder / "diabetes_data_raw.csv.gz").write_bytes(gzip.compress(b"1 2 3 4 5 6 7 8 9 x\n"))
    with pytest.raises(RegressionFormatError, match=r"diabetes_data_raw.csv.gz:1: not a number"):
        regression.load_diabetes(tmp_path)
    (folder / "diabetes_data_raw.csv.gz").write_bytes(gzip.compress(b"1 2 3 4 5 6 7 8 9 10\n"))
    with pytest.raises(RegressionFormatError, match="has 1 rows but .*diabetes_target.csv.gz has 2"):
        regression.load_diabetes(tmp_path)

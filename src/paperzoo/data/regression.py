"""Small regression data for the subnetwork-inference experiments: a 1-D toy with a gap, and Diabetes.

``snelson_gap``
    A 1-D problem whose training inputs form two clusters with an empty gap between them, as in
    the 1-D experiment of Daxberger et al. (2021), "Bayesian Deep Learning via Subnetwork
    Inference", where a good posterior is uncertain inside the gap ("in-between" uncertainty,
    Foong et al. 2019) and beyond the data. The original Snelson & Ghahramani (2005) file is not
    available offline, so this is a documented synthetic generator in the same spirit (smooth,
    wiggly function, homoscedastic noise); see :func:`snelson_gap` for the exact recipe.
``diabetes``
    Efron et al. (2004), "Least Angle Regression": 442 patients, 10 baseline variables (age, sex,
    body-mass index, blood pressure, six blood serum measurements), target a measure of disease
    progression one year later (25..346). Read from the raw files that scikit-learn ships
    (``sklearn/datasets/data/diabetes_{data_raw,target}.csv.gz``: whitespace-separated numbers, one
    patient per line), located through the data roots (catalog entry ``diabetes``), so a copy in
    ``<data root>/diabetes/`` works too and scikit-learn is never imported. The raw, unscaled
    features are used: scikit-learn's default ``scaled=True`` version is standardised with
    statistics of all 442 rows, which would leak test information into training.

Targets are ``(N, 1)`` float tensors, the shape regression networks and Laplace libraries expect.
"""
from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from paperzoo.data import catalog
from paperzoo.data.roots import locate

DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
SPLITS = ("train", "valid", "test")


class RegressionFormatError(ValueError):
    """A regression data file is malformed; the message names the file and line."""


# ----------------------------------------------------------------------------------- 1-D toy
def gap_function(x: torch.Tensor) -> torch.Tensor:
    """The noise-free target of :func:`snelson_gap`: ``f(x) = sin(3x) + 0.3 cos(9x)``."""
    return torch.sin(3.0 * x) + 0.3 * torch.cos(9.0 * x)


@dataclass(frozen=True)
class ToyRegression:
    """A 1-D regression problem with a dense test grid.

    Attributes
    ----------
    x_train, y_train: ``(n, 1)`` training inputs and noisy targets.
    x_test: ``(n_test, 1)`` evenly spaced grid over ``domain`` (covers the gap and both flanks).
    f_test: ``(n_test, 1)`` noise-free function values on the grid.
    noise_std: standard deviation of the Gaussian observation noise.
    clusters: the two ``(low, high)`` input intervals the training points are drawn from.
    gap: ``(low, high)``: the open interval between the clusters; no training input lies in it.
    domain: ``(low, high)`` of the test grid.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    f_test: torch.Tensor
    noise_std: float
    clusters: tuple[tuple[float, float], tuple[float, float]]
    gap: tuple[float, float]
    domain: tuple[float, float]

    def in_gap(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the inputs that fall strictly inside the gap."""
        return (x > self.gap[0]) & (x < self.gap[1])


def snelson_gap(n: int = 200, seed: int = 0, noise_std: float = 0.1, n_test: int = 500,
                clusters: tuple[tuple[float, float], tuple[float, float]] = ((-2.0, -0.5), (0.5, 2.0)),
                domain: tuple[float, float] = (-3.0, 3.0),
                dtype: torch.dtype = torch.float32) -> ToyRegression:
    """1-D regression with a gap between two input clusters.

    Generator (float64, then cast to ``dtype``), with ``g = torch.Generator().manual_seed(seed)``:

    1. ``ceil(n / 2)`` inputs uniform on ``clusters[0]``, the other ``floor(n / 2)`` uniform on
       ``clusters[1]``, drawn together as ``u = torch.rand(n, generator=g)`` and mapped
       ``low + (high - low) * u`` (first cluster first; the points are not sorted);
    2. ``y = f(x) + noise_std * torch.randn(n, generator=g)`` with ``f = sin(3x) + 0.3 cos(9x)``
       (:func:`gap_function`): about two periods of ``sin(3x)`` over ``[-2, 2]``, values within +-1.2;
    3. test grid: ``torch.linspace(*domain, n_test)`` with the noise-free ``f``.

    With the defaults the gap is ``(-0.5, 0.5)``, about half a period of ``sin(3x)``: wide enough that
    interpolating across it is a guess, and the grid extends one unit beyond each cluster.

    Parameters
    ----------
    n: number of training points (at least 2, one per cluster).
    seed: random seed; the same seed gives the same data.
    noise_std: observation noise standard deviation (homoscedastic).
    n_test: number of grid points.
    clusters: ``((a, b), (c, d))`` with ``a < b <= c < d``; the gap is ``(b, c)``.
    domain: range of the test grid.
    dtype: floating dtype of the returned tensors.
    """
    (a, b), (c, d) = clusters
    if not a < b <= c < d:
        raise ValueError(f"clusters must be ((a, b), (c, d)) with a < b <= c < d, got {clusters}")
    if n < 2 or n_test < 2:
        raise ValueError(f"need n >= 2 and n_test >= 2, got n={n}, n_test={n_test}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    g = torch.Generator().manual_seed(seed)
    n_left = math.ceil(n / 2)
    low = torch.tensor([a] * n_left + [c] * (n - n_left), dtype=torch.float64)
    width = torch.tensor([b - a] * n_left + [d - c] * (n - n_left), dtype=torch.float64)
    x = low + width * torch.rand(n, generator=g, dtype=torch.float64)
    y = gap_function(x) + noise_std * torch.randn(n, generator=g, dtype=torch.float64)
    grid = torch.linspace(domain[0], domain[1], n_test, dtype=torch.float64)
    return ToyRegression(
        x_train=x[:, None].to(dtype), y_train=y[:, None].to(dtype),
        x_test=grid[:, None].to(dtype), f_test=gap_function(grid)[:, None].to(dtype),
        noise_std=float(noise_std), clusters=((a, b), (c, d)), gap=(b, c), domain=tuple(domain))


# ------------------------------------------------------------------------------------ diabetes
@dataclass(frozen=True)
class RegressionSplit:
    """A train / valid / test split of a tabular regression dataset, optionally standardised.

    Attributes
    ----------
    x_train, x_valid, x_test: ``(n_split, D)`` features.
    y_train, y_valid, y_test: ``(n_split, 1)`` targets.
    x_mean, x_std: ``(D,)`` training-split feature statistics (population std; a constant feature
        gets std 1). Identity (0 and 1) when ``standardized`` is False.
    y_mean, y_std: the same for the target. Predictions in standardised units map back with
        :meth:`y_to_original`; RMSE scales by ``y_std`` and a Gaussian NLL per point shifts by
        ``log(y_std)`` (:meth:`rmse_to_original`, :meth:`nll_to_original`).
    indices: ``{"train" | "valid" | "test": LongTensor}`` rows of the full dataset.
    feature_names: column names.
    standardized: whether ``x_*``/``y_*`` are standardised.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_valid: torch.Tensor
    y_valid: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_mean: torch.Tensor
    x_std: torch.Tensor
    y_mean: float
    y_std: float
    indices: dict[str, torch.Tensor]
    feature_names: tuple[str, ...]
    standardized: bool

    def y_to_original(self, y: torch.Tensor) -> torch.Tensor:
        """Targets or predicted means from standardised to original units."""
        return y * self.y_std + self.y_mean

    def rmse_to_original(self, rmse: float) -> float:
        """An RMSE measured in standardised units, in original units."""
        return rmse * self.y_std

    def nll_to_original(self, nll: float) -> float:
        """A mean Gaussian negative log-likelihood per point, from standardised to original units
        (the density picks up the Jacobian ``1 / y_std``)."""
        return nll + math.log(self.y_std)


def _read_table(path: Path, columns: int) -> list[list[float]]:
    rows: list[list[float]] = []
    with gzip.open(path, "rt", encoding="ascii") if path.suffix == ".gz" else open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != columns:
                raise RegressionFormatError(f"{path}:{lineno}: expected {columns} numbers, got {len(fields)}")
            try:
                rows.append([float(f) for f in fields])
            except ValueError:
                raise RegressionFormatError(f"{path}:{lineno}: not a number in {line.strip()!r}") from None
    return rows


def load_diabetes(data_root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw Diabetes data: features float64 ``(442, 10)`` (:data:`DIABETES_FEATURES`) and targets
    float64 ``(442,)``, in file order."""
    folder = locate(catalog.get("diabetes"), data_root)
    data_file, target_file = folder / "diabetes_data_raw.csv.gz", folder / "diabetes_target.csv.gz"
    x = torch.tensor(_read_table(data_file, len(DIABETES_FEATURES)), dtype=torch.float64)
    y = torch.tensor(_read_table(target_file, 1), dtype=torch.float64).reshape(-1)
    if len(x) != len(y):
        raise RegressionFormatError(f"{data_file} has {len(x)} rows but {target_file} has {len(y)}")
    return x, y


def split_indices(n: int, fractions: tuple[float, float, float], seed: int) -> dict[str, torch.Tensor]:
    """A seeded random partition of ``range(n)`` into train / valid / test.

    ``torch.randperm(n, generator=torch.Generator().manual_seed(seed))`` is cut into
    ``round(f_train * n)`` train rows, ``round(f_valid * n)`` valid rows and the rest for test; each
    part is returned sorted. Fractions must be non-negative, sum to 1 and leave train and test
    non-empty (valid may be empty).
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    n_train, n_valid = round(fractions[0] * n), round(fractions[1] * n)
    if n_train == 0 or n - n_train - n_valid <= 0:
        raise ValueError(f"fractions {fractions} of {n} rows leave the train or test split empty")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = perm[:n_train], perm[n_train:n_train + n_valid], perm[n_train + n_valid:]
    return {name: part.sort().values for name, part in zip(SPLITS, parts, strict=True)}


def load_diabetes_split(seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
                        standardize: bool = True, data_root: str | os.PathLike | None = None,
                        dtype: torch.dtype = torch.float32) -> RegressionSplit:
    """Diabetes, split at random by ``seed`` (:func:`split_indices`), standardised on train only.

    Parameters
    ----------
    seed: split seed.
    fractions: train, valid, test fractions; the default gives 309 / 44 / 89 rows.
    standardize: subtract the training mean and divide by the training (population) std, for the
        features and the target; statistics of the valid and test rows are never used.
    data_root: explicit data root (see :mod:`paperzoo.data.roots`); scikit-learn's bundled copy is
        found without it.
    dtype: floating dtype of the returned tensors (statistics are computed in float64).
    """
    x, y = load_diabetes(data_root)
    idx = split_indices(len(x), fractions, seed)
    train_x, train_y = x[idx["train"]], y[idx["train"]]
    if standardize:
        x_mean, x_std = train_x.mean(0), train_x.std(0, correction=0)
        x_std = torch.where(x_std > 0, x_std, torch.ones_like(x_std))
        y_mean, y_std = float(train_y.mean()), float(train_y.std(correction=0)) or 1.0
    else:
        x_mean, x_std = torch.zeros(x.shape[1], dtype=x.dtype), torch.ones(x.shape[1], dtype=x.dtype)
        y_mean, y_std = 0.0, 1.0
    xs = ((x - x_mean) / x_std).to(dtype)
    ys = ((y - y_mean) / y_std).to(dtype)[:, None]
    return RegressionSplit(
        x_train=xs[idx["train"]], y_train=ys[idx["train"]],
        x_valid=xs[idx["valid"]], y_valid=ys[idx["valid"]],
        x_test=xs[idx["test"]], y_test=ys[idx["test"]], x_mean=x_mean.to(dtype), x_std=x_std.to(dtype),
        y_mean=y_mean, y_std=y_std, indices=idx, feature_names=DIABETES_FEATURES, standardized=standardize)

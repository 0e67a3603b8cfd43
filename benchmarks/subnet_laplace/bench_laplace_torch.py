#!/usr/bin/env python
"""Subnetwork Laplace head to head: paperzoo's ``SubnetLaplace`` vs laplace-torch's, in one run.

Run from the repository root, in the benchmark environment (see README.md)::

    .venv-bench-laplace/bin/python benchmarks/subnet_laplace/bench_laplace_torch.py
    .venv-bench-laplace/bin/python benchmarks/subnet_laplace/bench_laplace_torch.py --quick
    .venv-bench-laplace/bin/python benchmarks/subnet_laplace/bench_laplace_torch.py --cases regression

For every case the script trains one MAP network (fixed seed), chooses the subnetworks once with
paperzoo's ``LargestVariance`` (diagonal Laplace over all weights, the paper's Wasserstein pruning)
or, for ``mnist_random``, paperzoo's ``Random``, and stores weights, data and indices in a checkpoint. Every measurement below starts from that
checkpoint, so both libraries see the same weights, the same data in the same batches and the same
(sorted) subnetwork indices, with the same prior precision and observation noise:

* ``paperzoo``: ``SubnetLaplace(model, likelihood, indices, prior_precision, sigma_noise).fit(loader)``
  and ``.predict(x)`` (probit for classification); in float64 (the default), and as ``paperzoo32``
  with ``dtype=torch.float32``, the precision laplace-torch works in (a float32 model's), so that the
  ratios compare like with like. In the regression case also as ``paperzoo_loop``: ``fit`` is handed
  ``iter(loader)``, so every batch goes through DataLoader's per-example fetch and collate as it does
  for laplace-torch, instead of ``paperzoo.data.batching.iter_batches`` indexing the ``TensorDataset``.
* ``laplace-torch <backend>``: ``Laplace(model, likelihood, subset_of_weights="subnetwork",
  hessian_structure="full", subnetwork_indices=indices, prior_precision, sigma_noise, backend)``,
  ``.fit(loader)`` and ``la(x, pred_type="glm", link_approx="probit")``. Backends: ``AsdlGGN``,
  ``BackPackGGN`` and the default (``backend=None``, which is ``CurvlinopsGGN`` in 0.3).

Three kinds of measurement, each library attempt in a subprocess with an address-space limit
(``--mem-limit-gib``) and a timeout, so that an out-of-memory backend is recorded as a failure
instead of taking the run (or the machine) down:

memory probe (one fresh process per library and subnetwork size)
    imports, checkpoint, model and loader are set up (``setup_mib``: the resident set size then),
    the library fits a tiny posterior once (2 inputs, 8 weights) so that one-off lazy
    initialisation is not charged to the fit (``init_mib``), the RSS is read (``baseline_mib``), the
    peak is reset (``/proc/self/clear_refs``), the library builds and fits its posterior once, and
    the peak (``VmHWM``) is read. Reported: the absolute peak and the increment (peak - baseline).
    On MNIST the probe fits the first ``memory_batches`` batches only. Its fit time is recorded too
    (``fit_s``, over ``fit_inputs`` inputs), for reference.
timing (one process per subnetwork size, round-robin)
    every round builds + fits each library's posterior, then predicts the test inputs with it, one
    library after the other (the order rotates every round), so that load from other processes falls
    on all libraries alike. Reported: median wall and CPU seconds of fit and of predict over the
    rounds. Libraries whose memory probe failed are left out.
agreement (in the timing process, after the last round)
    maximum absolute differences between paperzoo's and each laplace-torch backend's posterior
    precision matrices, probit predictive probabilities (classification), predictive means and
    functional variances ``f_var`` (and, for regression, the predictive variance ``f_var + sigma^2``).

Results are printed as a table and written to ``--out`` as JSON (settings, machine, versions, every
per-round time, every failure with its message).
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import datetime as _dt
import gc
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from paperzoo.core.procstats import OtherLoad, cpu_name, peak_rss_mib, reset_peak_rss, rss_mib, versions

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CHECKPOINT_FORMAT = "paperzoo.bench.subnet_laplace/3"  # 3: LargestVariance via selection_scores


# --------------------------------------------------------------------------------------------------
# machine state (memory and load helpers: paperzoo.core.procstats)
# --------------------------------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One model + data set + subnetwork selection, and the subnetwork sizes measured on it.

    ``model`` names the network and data (``"regression"``: the 1D toy MLP; ``"mnist"``: the small
    CNN); cases with the same model settings share one checkpoint (MAP weights, data, indices).
    ``selection`` is ``"largest_variance"`` (paperzoo's ``LargestVariance("laplace")``, the paper's
    strategy) or ``"random"`` (paperzoo's ``Random(seed)``). ``fit_inputs`` fits on the first that many
    training inputs only (None: all ``n_train``).

    ``libraries`` are the library keys (see :func:`case_libraries`) attempted at ``fit_batch``;
    ``small_batch_default`` adds the default laplace-torch backend once more at that smaller batch,
    at the sizes ``slow_sizes``. ``repeats`` rounds of timing per library (``slow_repeats`` for the
    default backend at the small batch, which is an order of magnitude slower), after ``warmup``
    untimed rounds. A memory probe fits the first ``memory_batches`` batches only: the peak of a fit
    is one batch's transient Jacobians plus the ``S x S`` accumulators, whatever the number of
    batches, and the full fit's time is measured by the timing rounds anyway.
    """

    name: str
    model: str
    likelihood: str
    sizes: tuple[int, ...]
    fit_batch: int
    predict_batch: int
    repeats: int
    warmup: int
    prior_precision: float
    sigma_noise: float
    n_train: int
    n_test: int
    epochs: int
    lr: float
    seed: int = 0
    selection: str = "largest_variance"
    fit_inputs: int | None = None
    memory_sizes: tuple[int, ...] | None = None   # sizes with memory probes (None: all)
    memory_batches: int | None = None              # batches fitted in a memory probe (None: all)
    small_batch_default: int | None = None
    slow_repeats: int = 1
    slow_sizes: tuple[int, ...] | None = None      # sizes at which the small-batch default runs (None: all)
    libraries: tuple[str, ...] = ("paperzoo", "paperzoo32", "asdl", "backpack", "default")

    def checkpoint_key(self) -> str:
        """Identifies the checkpoint: everything that changes the weights, the data or the variances."""
        return (f"{self.model}-n{self.n_train}-t{self.n_test}-e{self.epochs}-lr{self.lr}-s{self.seed}"
                f"-pp{self.prior_precision}-sn{self.sigma_noise}")


_MNIST = {"model": "mnist", "likelihood": "classification", "fit_batch": 100, "predict_batch": 50, "warmup": 0,
          "prior_precision": 1.0, "sigma_noise": 1.0, "n_train": 2000, "n_test": 100, "epochs": 3, "lr": 1e-3,
          "memory_batches": 3, "small_batch_default": 10, "slow_repeats": 1}
FULL_CASES = {
    # The paper's 1D toy: 2-layer tanh MLP (2,701 weights), 150 points with a gap, full batch.
    "regression": Case("regression", "regression", "regression", sizes=(26, 78, 1300), fit_batch=150,
                       predict_batch=500, repeats=15, warmup=2, prior_precision=1.0, sigma_noise=0.1,
                       n_train=150, n_test=500, epochs=1000, lr=1e-2, memory_sizes=None,
                       libraries=("paperzoo", "paperzoo_loop", "paperzoo32", "asdl", "backpack", "default")),
    # The small MNIST CNN (46,730 weights), 2,000 training images, batches of 100, LargestVariance.
    # The default backend at batch 10 takes minutes per fit here: timed once, at S = 1,000 only.
    "mnist": Case("mnist", sizes=(1000, 5000), repeats=2, slow_sizes=(1000,), **_MNIST),
    # The same network and weights with a random subnetwork (spread over every layer), fitted on the
    # first 500 images: LargestVariance picks weights of dead ReLU units here, whose GGN is exactly
    # zero, so the agreement check needs a subnetwork with curvature (see README).
    "mnist_random": Case("mnist_random", sizes=(1000,), repeats=1, selection="random", fit_inputs=500,
                         **_MNIST),
}
QUICK_CASES = {
    "regression": replace(FULL_CASES["regression"], sizes=(26,), repeats=3, warmup=1, memory_sizes=None),
    "mnist": replace(FULL_CASES["mnist"], sizes=(100,), n_train=100, n_test=10, epochs=1, repeats=1,
                     predict_batch=10, slow_sizes=None, selection="random", memory_batches=1),
}


@dataclass(frozen=True)
class Library:
    key: str            # unique within a case, e.g. "asdl" or "default@10"
    label: str
    backend: str | None  # None: paperzoo; "default": laplace-torch with backend=None
    batch: int
    dtype: str = "float64"  # paperzoo's curvature / posterior dtype (laplace-torch works in the model's, float32)
    # paperzoo only: False hands ``fit`` a plain iterator over the DataLoader, so every batch goes through
    # DataLoader's per-example fetch and collate, as laplace-torch's do (paperzoo.data.batching otherwise
    # indexes a TensorDataset's tensors directly)
    direct_batches: bool = True


def case_libraries(case: Case, size: int | None = None) -> list[Library]:
    """The libraries measured in ``case`` (at subnetwork size ``size``, if given)."""
    labels = {"paperzoo": "paperzoo SubnetLaplace", "paperzoo32": "paperzoo SubnetLaplace, float32",
              "paperzoo_loop": "paperzoo SubnetLaplace, DataLoader iterated",
              "asdl": "laplace-torch AsdlGGN",
              "backpack": "laplace-torch BackPackGGN", "default": "laplace-torch default (Curvlinops)"}
    backends = {"paperzoo": None, "paperzoo32": None, "paperzoo_loop": None, "asdl": "AsdlGGN",
                "backpack": "BackPackGGN", "default": "default"}
    libs = [Library(k, labels[k], backends[k], case.fit_batch, "float32" if k == "paperzoo32" else "float64",
                    direct_batches=k != "paperzoo_loop")
            for k in case.libraries]
    if case.small_batch_default is not None and (size is None or case.slow_sizes is None
                                                 or size in case.slow_sizes):
        b = case.small_batch_default
        libs.append(Library(f"default@{b}", f"{labels['default']}, batch {b}", "default", b))
    return libs


# --------------------------------------------------------------------------------------------------
# MAP network, data and subnetworks (one checkpoint per case)
# --------------------------------------------------------------------------------------------------
def _build_model(case: Case) -> torch.nn.Module:
    from paperzoo.methods.subnet_laplace.networks import mnist_cnn, regression_mlp

    return regression_mlp() if case.model == "regression" else mnist_cnn()


def _load_data(case: Case, data_root: str | None) -> dict[str, torch.Tensor]:
    if case.model == "regression":
        from paperzoo.data.regression import snelson_gap

        toy = snelson_gap(n=case.n_train, seed=case.seed, n_test=case.n_test)
        return {"x": toy.x_train, "y": toy.y_train, "x_test": toy.x_test}
    from paperzoo.data.vision import MNIST_MEAN, MNIST_STD, load_mnist, normalize

    x, y = load_mnist(data_root, "train")
    xt, _ = load_mnist(data_root, "test")
    # the first n images of each split: deterministic, and every digit occurs
    return {"x": normalize(x[:case.n_train], MNIST_MEAN, MNIST_STD).contiguous(), "y": y[:case.n_train].clone(),
            "x_test": normalize(xt[:case.n_test], MNIST_MEAN, MNIST_STD).contiguous()}


def _train_map(case: Case, model: torch.nn.Module, data: dict[str, torch.Tensor]) -> float:
    """Adam on the mean cross-entropy / squared error; returns the final training loss."""
    from torch.nn import functional as F

    g = torch.Generator().manual_seed(case.seed)
    opt = torch.optim.Adam(model.parameters(), lr=case.lr)
    x, y = data["x"], data["y"]
    model.train()
    loss = torch.tensor(float("nan"))
    if case.model == "regression":            # full batch
        for _ in range(case.epochs):
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
    else:
        for _ in range(case.epochs):
            for batch in torch.randperm(len(x), generator=g).split(case.fit_batch):
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x[batch]), y[batch])
                loss.backward()
                opt.step()
    model.eval()
    return float(loss.detach())


def _save(state: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def prepare_case(case: Case, checkpoint_dir: Path, data_root: str | None, retrain: bool) -> tuple[Path, dict]:
    """Train the MAP network (or reuse a matching checkpoint) and select the case's subnetworks.

    ``LargestVariance.select(n=S)`` for every S comes from one pass: its selection scores (the
    diagonal-Laplace variances, with weights of zero GGN diagonal ranked last) do not depend on S, so they
    are computed once and kept in the checkpoint.
    """
    from paperzoo.methods.subnet_laplace import LargestVariance, Random
    from paperzoo.methods.subnet_laplace.selection import candidate_indices, top_scores

    path = checkpoint_dir / f"{case.checkpoint_key()}.pt"
    state = None
    if path.exists() and not retrain:
        state = torch.load(path, weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            state = None
        else:
            print(f"[{case.name}] reusing {path}", flush=True)
    if state is None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(case.seed)
        model = _build_model(case)
        data = _load_data(case, data_root)
        t0 = time.perf_counter()
        loss = _train_map(case, model, data)
        t_train = time.perf_counter() - t0
        print(f"[{case.name}] MAP: {sum(p.numel() for p in model.parameters())} weights, "
              f"final training loss {loss:.4f}, {t_train:.1f} s", flush=True)
        info = {"n_weights": sum(p.numel() for p in model.parameters()), "final_train_loss": loss,
                "map_train_s": t_train, "selected_per_tensor": {}}
        state = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "data": data, "info": info,
                 "indices": {}}
        _save(state, path)
    model = _build_model(case)
    model.load_state_dict(state["model"])
    model.eval()
    info, chosen = state["info"], state["indices"].setdefault(case.selection, {})
    missing = [s for s in case.sizes if str(s) not in chosen]
    if missing:
        candidates = candidate_indices(model)
        if case.selection == "largest_variance":
            if "scores" not in state:
                selector = LargestVariance("laplace", case.likelihood, prior_precision=case.prior_precision,
                                           sigma_noise=case.sigma_noise)
                t0 = time.perf_counter()
                state["scores"] = selector.selection_scores(model, make_loader(state["data"], case.fit_batch),
                                                            candidates)
                info["largest_variance_s"] = time.perf_counter() - t0
                print(f"[{case.name}] LargestVariance over {candidates.numel()} weights: "
                      f"{info['largest_variance_s']:.1f} s", flush=True)
            for size in missing:
                chosen[str(size)] = top_scores(state["scores"], candidates, size)
        elif case.selection == "random":
            for size in missing:
                chosen[str(size)] = Random(seed=case.seed).select(model, n=size)
        else:
            raise ValueError(f"unknown selection {case.selection!r}")
        layout = [(n, p.numel()) for n, p in model.named_parameters()]
        for size in missing:
            info["selected_per_tensor"][f"{case.selection}/{size}"] = per_tensor(chosen[str(size)], layout)
        _save(state, path)
    return path, info


def per_tensor(indices: torch.Tensor, layout: list[tuple[str, int]]) -> dict[str, str]:
    """How many selected weights fall in each parameter tensor (``"k/numel"``)."""
    out, start = {}, 0
    for name, numel in layout:
        k = int(((indices >= start) & (indices < start + numel)).sum())
        out[name] = f"{k}/{numel}"
        start += numel
    return out


def make_loader(data: dict[str, torch.Tensor], batch: int):
    from torch.utils.data import DataLoader, TensorDataset

    # laplace-torch reads len(loader.dataset) for N; no shuffling, so both see the same batches
    return DataLoader(TensorDataset(data["x"], data["y"]), batch_size=batch, shuffle=False)


def load_checkpoint(path: Path, case: Case) -> tuple[torch.nn.Module, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The MAP model (eval mode), the data (training inputs cut to ``case.fit_inputs``) and the
    case's subnetwork indices by size."""
    state = torch.load(path, weights_only=True)
    model = _build_model(case)
    model.load_state_dict(state["model"])
    model.eval()
    data = state["data"]
    if case.fit_inputs is not None:
        data = dict(data, x=data["x"][:case.fit_inputs], y=data["y"][:case.fit_inputs])
    return model, data, state["indices"][case.selection]


# --------------------------------------------------------------------------------------------------
# the two libraries behind one interface
# --------------------------------------------------------------------------------------------------
def _laplace_backend(name: str):
    if name == "default":
        return None
    from laplace import curvature

    return getattr(curvature, name)


def fit_posterior(lib: Library, case: Case, model: torch.nn.Module, indices: torch.Tensor, loader):
    """Build and fit one library's subnetwork posterior (the timed / measured 'fit')."""
    if lib.backend is None:
        from paperzoo.methods.subnet_laplace import SubnetLaplace

        return SubnetLaplace(model, case.likelihood, indices, prior_precision=case.prior_precision,
                             sigma_noise=case.sigma_noise, dtype=getattr(torch, lib.dtype)).fit(
                                 loader if lib.direct_batches else iter(loader))
    from laplace import Laplace

    kwargs = {"sigma_noise": case.sigma_noise} if case.likelihood == "regression" else {}
    la = Laplace(model, case.likelihood, subset_of_weights="subnetwork", hessian_structure="full",
                 subnetwork_indices=indices.clone(), prior_precision=case.prior_precision,
                 backend=_laplace_backend(lib.backend), **kwargs)
    la.fit(loader)
    return la


def predict(lib: Library, case: Case, la, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The predictive the user asks for, in batches of ``case.predict_batch``: probit probabilities
    (classification) or the predictive mean and variance ``f_var + sigma^2`` (regression)."""
    parts: list[dict[str, torch.Tensor]] = []
    for xb in x.split(case.predict_batch):
        if lib.backend is None:
            out = la.predict(xb)
        else:
            out = la(xb, pred_type="glm", link_approx="probit")
        if case.likelihood == "classification":
            parts.append({"probs": out})
        elif lib.backend is None:
            parts.append({"mean": out[0], "var": out[1]})
        else:   # laplace-torch returns f_mu (B, 1) and f_var (B, 1, 1), without the observation noise
            parts.append({"mean": out[0], "var": out[1].diagonal(dim1=-2, dim2=-1) + case.sigma_noise ** 2})
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def functional_moments(lib: Library, case: Case, la, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``f_mean (B, C)`` and ``f_var (B, C, C)`` of the linearized predictive (agreement check only).

    laplace-torch has no public call that returns ``f_var`` for classification; its
    ``_glm_predictive_distribution`` (what ``la(x)`` uses) is called directly.
    """
    means, variances = [], []
    for xb in x.split(case.predict_batch):
        if lib.backend is None:
            f, v = la.predictive(xb)
        else:
            f, v = la._glm_predictive_distribution(xb)
        means.append(f)
        variances.append(v)
    return torch.cat(means), torch.cat(variances)


def posterior_precision(la) -> torch.Tensor:
    return la.posterior_precision.detach().to(torch.float64)


# --------------------------------------------------------------------------------------------------
# workers (run in subprocesses)
# --------------------------------------------------------------------------------------------------
def _quiet_libraries() -> None:
    warnings.filterwarnings("ignore")       # laplace-torch warns on every ASDL prediction


def _failure(exc: BaseException) -> dict:
    msg = str(exc).strip().splitlines()
    return {"error": f"{type(exc).__name__}: {msg[0][:400] if msg else ''}",
            "traceback": traceback.format_exc()[-3000:]}


def case_from_dict(raw: dict) -> Case:
    raw = dict(raw)
    for k in ("sizes", "memory_sizes", "slow_sizes", "libraries"):
        if raw.get(k) is not None:
            raw[k] = tuple(raw[k])
    return Case(**raw)


def tiny_fit(lib: Library, case: Case, model: torch.nn.Module, idx: torch.Tensor, data: dict) -> None:
    """Fit (and predict with) a tiny posterior, 2 inputs and the first 8 subnetwork weights, on a copy
    of the model: runs each library's one-off lazy initialisation (torch.func's first transforms,
    BackPACK's and ASDL's module extensions) so that it is charged neither to the timed rounds nor to
    the fit's memory increment."""
    tiny = make_loader({"x": data["x"][:2], "y": data["y"][:2]}, 2)
    la = fit_posterior(lib, case, copy.deepcopy(model), idx[:8].clone(), tiny)
    predict(lib, case, la, data["x_test"][:2])
    del la
    gc.collect()


def worker_memory(task: dict) -> dict:
    """One library, one subnetwork size, one fit in this fresh process: its peak RSS (and its time)."""
    _quiet_libraries()
    torch.set_num_threads(task["threads"])
    lib = Library(**task["library"])
    if lib.backend is not None:
        import laplace  # noqa: F401 - part of the baseline, like paperzoo's own import
    import paperzoo.methods.subnet_laplace  # noqa: F401
    case = case_from_dict(task["case"])
    model, data, indices = load_checkpoint(Path(task["checkpoint"]), case)
    idx = indices[str(task["size"])]
    if case.memory_batches is not None:
        n = case.memory_batches * lib.batch
        data = dict(data, x=data["x"][:n], y=data["y"][:n])
    loader = make_loader(data, lib.batch)
    gc.collect()
    setup_rss = rss_mib()
    reset_ok = reset_peak_rss()
    out = {"setup_mib": setup_rss, "peak_reset": reset_ok}
    if task.get("warmup", True):
        # one-off lazy initialisation is not counted as the memory the fit itself needs
        try:
            tiny_fit(lib, case, model, idx, data)
        except BaseException as exc:  # noqa: BLE001
            out.update(_failure(exc))
            out["failed_in"] = "warm-up"
            return out
        gc.collect()
        out["init_mib"] = peak_rss_mib() - setup_rss
        reset_peak_rss()
    baseline = rss_mib()
    out["baseline_mib"] = baseline
    load = OtherLoad()
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        la = fit_posterior(lib, case, model, idx, loader)
    except BaseException as exc:  # noqa: BLE001 - MemoryError / allocator RuntimeError are the point
        out.update(_failure(exc))
        out["failed_after_s"] = time.perf_counter() - t0
        out["peak_mib"] = peak_rss_mib()
        return out
    out["fit_s"] = time.perf_counter() - t0
    out["fit_cpu_s"] = time.process_time() - c0
    out["fit_inputs"] = len(loader.dataset)
    out["other_cpu"] = load.stop()
    out["peak_mib"] = peak_rss_mib()
    out["increment_mib"] = out["peak_mib"] - baseline
    out["backend_class"] = type(la.backend).__name__ if lib.backend is not None else None
    return out


def worker_timing(task: dict) -> dict:
    """Round-robin fit + predict of every library for one subnetwork size, then agreement."""
    _quiet_libraries()
    torch.set_num_threads(task["threads"])
    libs = [Library(**d) for d in task["libraries"]]
    if any(lib.backend is not None for lib in libs):
        import laplace  # noqa: F401
    case = case_from_dict(task["case"])
    base_model, data, indices = load_checkpoint(Path(task["checkpoint"]), case)
    idx = indices[str(task["size"])]
    x_test = data["x_test"]
    repeats = task["repeats"]
    # one copy of the model per library: laplace-torch's backends attach hooks and attributes to it
    models = {lib.key: copy.deepcopy(base_model) for lib in libs}
    loaders = {lib.key: make_loader(data, lib.batch) for lib in libs}
    rows = {lib.key: {"fit_s": [], "fit_cpu_s": [], "predict_s": [], "predict_cpu_s": [], "other_cpu": []}
            for lib in libs}
    last: dict[str, object] = {}
    active = list(libs)
    for lib in libs:
        try:
            tiny_fit(lib, case, models[lib.key], idx, data)
        except BaseException as exc:  # noqa: BLE001
            rows[lib.key].update(_failure(exc))
            rows[lib.key]["failed_in"] = "warm-up"
            active.remove(lib)
    n_rounds = task["warmup"] + max(repeats[lib.key] for lib in libs)
    for r in range(n_rounds):
        timed = r >= task["warmup"]
        shift = r % len(libs)
        for lib in libs[shift:] + libs[:shift]:
            if lib not in active or (timed and len(rows[lib.key]["fit_s"]) >= repeats[lib.key]):
                continue
            row = rows[lib.key]
            last.pop(lib.key, None)
            gc.collect()
            load = OtherLoad()
            try:
                t0, c0 = time.perf_counter(), time.process_time()
                la = fit_posterior(lib, case, models[lib.key], idx, loaders[lib.key])
                t1, c1 = time.perf_counter(), time.process_time()
                pred = predict(lib, case, la, x_test)
                t2, c2 = time.perf_counter(), time.process_time()
            except BaseException as exc:  # noqa: BLE001
                row.update(_failure(exc))
                row["failed_in_round"] = r
                active.remove(lib)
                continue
            if timed:
                row["fit_s"].append(t1 - t0)
                row["fit_cpu_s"].append(c1 - c0)
                row["predict_s"].append(t2 - t1)
                row["predict_cpu_s"].append(c2 - c1)
                row["other_cpu"].append(load.stop())
            last[lib.key] = (la, pred)
            del la, pred
        print(f"  round {r + 1}/{n_rounds} done", file=sys.stderr, flush=True)
    for row in rows.values():
        for k in ("fit_s", "fit_cpu_s", "predict_s", "predict_cpu_s", "other_cpu"):
            vals = [v for v in row[k] if v is not None]
            row[k + "_median"] = _median(vals)
    for lib in libs:
        if lib.backend is None and lib.key in last:   # which Jacobian method paperzoo's "auto" chose
            rows[lib.key]["jacobian_method"] = last[lib.key][0]._jacobian.method
    return {"rows": rows, "agreement": agreement(case, libs, last, x_test)}


def agreement(case: Case, libs: list[Library], last: dict, x_test: torch.Tensor) -> dict:
    """Max abs differences of each other library's posterior and predictive (laplace-torch's backends,
    paperzoo in float32) from paperzoo's float64 ones."""
    ours_lib = next((lib for lib in libs if lib.key == "paperzoo"), None)
    if ours_lib is None or ours_lib.key not in last:
        return {}
    ours, ours_pred = last[ours_lib.key]
    p_ours = posterior_precision(ours)
    f_ours, v_ours = (t.to(torch.float64) for t in functional_moments(ours_lib, case, ours, x_test))
    # With LargestVariance many selected weights can have (near) zero curvature: report how much of the
    # precision is data (G_S) rather than prior, so that a tiny difference is not vacuous.
    ggn = ours.ggn / ours.temperature
    diag = ggn.diagonal()
    out = {"_reference": {"precision_max_abs": float(p_ours.abs().max()),
                          "ggn_max_abs": float(ggn.abs().max()),
                          "ggn_trace": float(diag.sum()),
                          "ggn_diag_nonzero": int((diag > 1e-12 * max(float(diag.max()), 1e-300)).sum()),
                          "ggn_diag_above_prior": int((diag > case.prior_precision).sum()),
                          "f_var_max_abs": float(v_ours.abs().max()),
                          "probs_max": float(ours_pred["probs"].max()) if "probs" in ours_pred else None}}
    for lib in libs:
        if lib.key == ours_lib.key or lib.key not in last:
            continue
        la, pred = last[lib.key]
        res: dict[str, float | str] = {}
        try:
            p = posterior_precision(la)
            res["precision_max_abs_diff"] = float((p - p_ours).abs().max())
            res["precision_max_rel_diff"] = res["precision_max_abs_diff"] / float(p_ours.abs().max())
            if out["_reference"]["ggn_max_abs"] > 0:
                res["precision_diff_rel_to_ggn"] = res["precision_max_abs_diff"] / out["_reference"]["ggn_max_abs"]
            for k in pred:
                res[f"{k}_max_abs_diff"] = float((pred[k].to(torch.float64)
                                                  - ours_pred[k].to(torch.float64)).abs().max())
            f, v = (t.to(torch.float64) for t in functional_moments(lib, case, la, x_test))
            res["f_mean_max_abs_diff"] = float((f - f_ours).abs().max())
            res["f_var_max_abs_diff"] = float((v - v_ours).abs().max())
            # None when paperzoo's f_var is identically zero (a subnetwork without curvature)
            scale = float(v_ours.abs().max())
            res["f_var_max_rel_diff"] = res["f_var_max_abs_diff"] / scale if scale > 0 else None
        except BaseException as exc:  # noqa: BLE001
            res.update(_failure(exc))
        out[lib.key] = res
    return out


def worker_main(task_path: str) -> int:
    task = json.loads(Path(task_path).read_text())
    try:
        result = {"memory": worker_memory, "timing": worker_timing}[task["kind"]](task)
    except BaseException as exc:  # noqa: BLE001 - report, never hang the parent
        result = _failure(exc)
    Path(task["result"]).write_text(json.dumps(result, indent=1))
    return 0


# --------------------------------------------------------------------------------------------------
# the parent: subprocesses with limits
# --------------------------------------------------------------------------------------------------
def run_worker(task: dict, workdir: Path, mem_limit_gib: float, timeout: float) -> dict:
    """Run one task in a fresh interpreter with ``RLIMIT_AS`` and a timeout; failures become records."""
    fd, task_path = tempfile.mkstemp(suffix=".json", dir=workdir)
    os.close(fd)
    task = dict(task, result=task_path + ".result")
    Path(task_path).write_text(json.dumps(task))
    limit = int(mem_limit_gib * 2 ** 30)

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:  # end the worker with its parent (PR_SET_PDEATHSIG = 1), so an interrupted run leaves none behind
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)
        except (OSError, AttributeError):
            pass

    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", task_path]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, preexec_fn=limit_memory,
                              cwd=REPO)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-2000:]
        return {"error": f"timeout: killed after {timeout:.0f} s",
                "stderr_tail": tail.decode(errors="replace") if isinstance(tail, bytes) else tail,
                "wall_s": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    result_path = Path(task["result"])
    if result_path.exists():
        result = json.loads(result_path.read_text())
        result_path.unlink()
    else:
        how = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"exited with code {proc.returncode}")
        result = {"error": f"worker {how} without a result (out of memory?)"}
    Path(task_path).unlink(missing_ok=True)
    if "error" in result:
        result["stderr_tail"] = proc.stderr[-2000:]
    result["wall_s"] = wall
    return result


def run_case(case: Case, args, workdir: Path) -> dict:
    ckpt, info = prepare_case(case, Path(args.checkpoint_dir), args.data_root, args.retrain)
    keep = set(args.backends.split(",")) if args.backends else None

    def selected(size: int | None = None) -> list[Library]:
        libs = case_libraries(case, size)
        return [lib for lib in libs if keep is None or lib.backend is None or lib.key.split("@")[0] in keep]

    libs = selected()
    common = {"checkpoint": str(ckpt), "threads": args.threads, "case": asdict(case)}
    out = {"case": asdict(case), "checkpoint": str(ckpt), "info": info, "sizes": {}}
    memory_sizes = case.sizes if case.memory_sizes is None else case.memory_sizes
    for size in case.sizes:
        entry: dict = {"memory": {}, "timing": None}
        out["sizes"][str(size)] = entry
        size_libs = selected(size)
        runnable = list(size_libs)
        if not args.no_memory and size in memory_sizes:
            for lib in size_libs:
                print(f"[{case.name} S={size}] memory probe: {lib.label} (batch {lib.batch})", flush=True)
                res = run_worker(dict(common, kind="memory", size=size, library=asdict(lib)), workdir,
                                 args.mem_limit_gib, args.timeout)
                entry["memory"][lib.key] = res
                if "error" in res:
                    print(f"    FAILED: {res['error']}", flush=True)
                    runnable.remove(lib)
                else:
                    print(f"    fit {res['fit_s']:.2f} s, peak {res['peak_mib']:.0f} MiB "
                          f"(+{res['increment_mib']:.0f} MiB over {res['baseline_mib']:.0f}; "
                          f"setup {res['setup_mib']:.0f}, init +{res.get('init_mib', 0):.0f})", flush=True)
        if not runnable:
            continue
        # the default backend at the small batch is far slower: fewer rounds
        repeats = {lib.key: (case.slow_repeats if lib.key.startswith("default@") else case.repeats)
                   for lib in runnable}
        print(f"[{case.name} S={size}] timing, round-robin: "
              f"{', '.join(f'{lib.label} x{repeats[lib.key]}' for lib in runnable)}", flush=True)
        entry["timing"] = run_worker(dict(common, kind="timing", size=size, libraries=[asdict(lib) for lib in runnable],
                                          repeats=repeats, warmup=case.warmup), workdir,
                                     args.mem_limit_gib, args.timeout)
        if "error" in entry["timing"]:
            print(f"    FAILED: {entry['timing']['error']}", flush=True)
    out["libraries"] = {lib.key: asdict(lib) for lib in libs}
    return out


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------
def _fmt(v, spec: str = ".3f", none: str = "-") -> str:
    return none if v is None else format(v, spec)


def summarize(result: dict) -> list[dict]:
    """One flat row per (case, size, library) with the ratios against paperzoo."""
    rows = []
    for cname, c in result["cases"].items():
        libs = c.get("libraries", {})
        for size, entry in c["sizes"].items():
            timing = entry.get("timing") or {}
            trows = timing.get("rows", {})
            agree = timing.get("agreement", {})
            ours_t = trows.get("paperzoo", {})
            ours_m = entry["memory"].get("paperzoo", {})
            ours32_t = trows.get("paperzoo32", {})
            ours32_m = entry["memory"].get("paperzoo32", {})
            for key, lib in libs.items():
                t, m, a = trows.get(key, {}), entry["memory"].get(key, {}), agree.get(key, {})
                row = {"case": cname, "S": int(size), "library": lib["label"], "key": key, "batch": lib["batch"],
                       "fit_s": t.get("fit_s_median"),
                       "fit_cpu_s": t.get("fit_cpu_s_median"), "predict_s": t.get("predict_s_median"),
                       "rounds": len(t.get("fit_s", [])), "other_cpu": t.get("other_cpu_median"),
                       "probe_fit_s": m.get("fit_s"), "peak_mib": m.get("peak_mib"),
                       "increment_mib": m.get("increment_mib"),
                       "error": m.get("error") or t.get("error") or timing.get("error")}
                if key != "paperzoo":
                    if row["fit_s"] and ours_t.get("fit_s_median"):
                        row["fit_ratio"] = row["fit_s"] / ours_t["fit_s_median"]
                    if row["predict_s"] and ours_t.get("predict_s_median"):
                        row["predict_ratio"] = row["predict_s"] / ours_t["predict_s_median"]
                    if row["increment_mib"] and ours_m.get("increment_mib"):
                        row["memory_ratio"] = row["increment_mib"] / max(ours_m["increment_mib"], 1.0)
                if lib["backend"] is not None:   # laplace-torch against paperzoo at its precision, float32
                    if row["fit_s"] and ours32_t.get("fit_s_median"):
                        row["fit_ratio32"] = row["fit_s"] / ours32_t["fit_s_median"]
                    if row["increment_mib"] and ours32_m.get("increment_mib"):
                        row["memory_ratio32"] = row["increment_mib"] / max(ours32_m["increment_mib"], 1.0)
                    row.update({k: v for k, v in a.items() if k.endswith("diff")})
                    if a.get("error"):
                        row["agreement_error"] = a["error"]
                if not any(row.get(k) is not None for k in ("fit_s", "peak_mib", "error")):
                    continue   # not measured at this size (e.g. no memory probe and not timed)
                rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    head = (f"{'case':<12} {'S':>5} {'library':<44} {'batch':>5} {'fit s':>8} {'CPU s':>7} {'pred s':>7} "
            f"{'n':>2} {'LT/ours':>7} {'/ours32':>7} {'pred x':>7} {'peak':>7} {'incr':>7} {'mem x':>6} {'/ours32':>7} "
            f"{'|dP|rel':>8} {'|dprob|':>8} {'|dfvar|rel':>10} {'other':>5}")
    print(head)
    for r in rows:
        if r.get("error") and r.get("fit_s") is None and r.get("increment_mib") is None:
            peak = f" (peak {r['peak_mib']:.0f} MiB)" if r.get("peak_mib") else ""
            print(f"{r['case']:<12} {r['S']:>5} {r['library']:<44} {r['batch']:>5} FAILED{peak}: {r['error'][:100]}")
            continue
        dprob = r.get("probs_max_abs_diff", r.get("var_max_abs_diff"))
        print(f"{r['case']:<12} {r['S']:>5} {r['library']:<44} {r['batch']:>5} {_fmt(r['fit_s']):>8} "
              f"{_fmt(r['fit_cpu_s'], '.2f'):>7} {_fmt(r['predict_s'], '.3f'):>7} {r['rounds']:>2} "
              f"{_fmt(r.get('fit_ratio'), '.2f'):>7} {_fmt(r.get('fit_ratio32'), '.2f'):>7} "
              f"{_fmt(r.get('predict_ratio'), '.2f'):>7} "
              f"{_fmt(r['peak_mib'], '.0f'):>7} {_fmt(r['increment_mib'], '.0f'):>7} "
              f"{_fmt(r.get('memory_ratio'), '.2f'):>6} {_fmt(r.get('memory_ratio32'), '.2f'):>7} "
              f"{_fmt(r.get('precision_max_rel_diff'), '.1e'):>8} "
              f"{_fmt(dprob, '.1e'):>8} {_fmt(r.get('f_var_max_rel_diff'), '.1e'):>10} "
              f"{_fmt(r['other_cpu'] and 100 * r['other_cpu'], '.0f'):>4}%")
    print("fit s / CPU s / pred s: medians over n round-robin rounds (wall, this process's CPU). LT/ours, pred x: "
          "laplace-torch / paperzoo fit and predict time (>1: paperzoo faster); /ours32: against paperzoo with "
          "dtype=float32, laplace-torch's own precision.\npeak / incr: MiB, VmHWM of the fit in "
          "a fresh process and its increment over the RSS before the fit; mem x (/ours32): increment laplace-torch/paperzoo.\n"
          "|dP|rel: max|P_LT - P_ours| / max|P_ours|; |dprob|: max abs difference of probit probabilities "
          "(regression: of the predictive variance); |dfvar|rel: max|f_var diff| / max|f_var ours|.")


# --------------------------------------------------------------------------------------------------
VERSIONED = ("paperzoo", "laplace-torch", "asdfghjkl", "backpack-for-pytorch", "curvlinops-for-pytorch",
             "torchvision")
"""Distributions whose installed versions the results record."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="regression,mnist,mnist_random",
                   help="comma-separated: regression, mnist, mnist_random (--quick: regression, mnist)")
    p.add_argument("--quick", action="store_true",
                   help="small settings only (1D regression S=26; MNIST 100 images, random S=100): a smoke test")
    p.add_argument("--backends", default=None,
                   help="laplace-torch backends to run, comma-separated from asdl,backpack,default (all)")
    p.add_argument("--repeats", type=int, default=None, help="override the timing rounds of every case")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every worker (2)")
    p.add_argument("--mem-limit-gib", type=float, default=8.0,
                   help="address-space limit (RLIMIT_AS) of every worker process, GiB (8)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds before a worker is killed (900)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    p.add_argument("--memory-batches", type=int, default=None,
                   help="batches fitted in each memory probe, 0 for all (default: the case's, 3 for MNIST)")
    p.add_argument("--data-root", default=os.environ.get("PAPERZOO_DATA"),
                   help="holds mnist/ (default: $PAPERZOO_DATA)")
    p.add_argument("--checkpoint-dir", default=str(Path(tempfile.gettempdir()) / "paperzoo-bench-subnet-laplace"),
                   help="where the MAP weights, data and subnetwork indices are kept and reused")
    p.add_argument("--retrain", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--out", default=None, help="JSON result (default results/full.json or results/quick.json)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)

    cases = QUICK_CASES if args.quick else FULL_CASES
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    if args.quick:
        names = [n for n in names if n in cases] or list(cases)
    unknown = [n for n in names if n not in cases]
    if unknown:
        p.error(f"unknown case(s) {unknown}; choose from {list(cases)}")
    out_path = Path(args.out) if args.out else HERE / "results" / ("quick.json" if args.quick else "full.json")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result = {"benchmark": "subnet_laplace: paperzoo vs laplace-torch",
              "date": _dt.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "settings": {k: v for k, v in vars(args).items() if k != "worker"},
              "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "loadavg_start": os.getloadavg()},
              "versions": versions(*VERSIONED), "cases": {}}
    with tempfile.TemporaryDirectory(prefix="bench-subnet-laplace-") as tmp:
        for name in names:
            case = cases[name]
            if args.repeats is not None:
                case = replace(case, repeats=args.repeats)
            if args.memory_batches is not None:
                case = replace(case, memory_batches=args.memory_batches or None)
            result["cases"][name] = run_case(case, args, Path(tmp))
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["total_s"] = time.perf_counter() - started
    result["summary"] = summarize(result)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1))
    print()
    print_table(result["summary"])
    print(f"\ntotal {result['total_s']:.0f} s, load average {result['machine']['loadavg_start'][0]:.1f} -> "
          f"{result['machine']['loadavg_end'][0]:.1f}; written to {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Model zoos: many small networks trained from different seeds, stored compactly, split by network.

Training is *batched*: a shard of ``S`` networks is one parameter dict with a leading network axis,
trained with one Adam optimiser (Adam is elementwise, so the networks stay independent) on per-network
mini-batch orders. A shard is written atomically as ``shard_XXXX.pt`` (weights in ``store_dtype`` plus
per-network metadata) and ``zoo.json`` lists the finished shards, so generation resumes by shard.
Networks are split into train / val / test *networks* by a seeded permutation of their indices.

Reading a zoo validates it: a missing, truncated or corrupt ``zoo.json`` or shard, or a shard whose
tensors do not match the zoo's architecture (names, shapes, NaN/inf) or whose metadata does not match its
networks, raises :class:`ZooError` with one line naming the file and what is wrong.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from paperzoo.core import io
from paperzoo.core.progress import progress
from paperzoo.methods.deep_align import interp
from paperzoo.methods.deep_align.inr import SineTask, sine_task
from paperzoo.methods.deep_align.nets import Arch, CNNArch, MLPArch, Params
from paperzoo.methods.deep_align.perm import NetworkMismatchError

log = logging.getLogger(__name__)

TASKS = ("synthetic", "mnist", "fashion_mnist", "cifar10", "sine")


class ZooError(RuntimeError):
    """A zoo folder is inconsistent (another architecture/task, or an unreadable shard)."""


@dataclass(frozen=True)
class Task:
    """A classification data set shared by every network of a zoo (inputs already normalised).

    A task tells the zoo trainer, the harness and Deep-Align's interpolation loss what a network's loss
    is; :class:`~paperzoo.methods.deep_align.inr.SineTask` (INRs, one target function per network) has
    the same methods.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def out_dim(self) -> int:
        return self.num_classes

    @property
    def num_train(self) -> int:
        return len(self.y_train)

    def network_targets(self, n: int, generator: torch.Generator) -> Tensor | None:
        """Per-network target parameters of ``n`` new networks: none, all share the labels."""
        return None

    def batch_loss(self, arch: Arch, params: Params, idx: Tensor, targets: Tensor | None) -> Tensor:
        """Training loss ``(N,)`` of every network on its own mini-batch ``x_train[idx[i]]``."""
        logits = arch.forward(params, self.x_train[idx])
        return F.cross_entropy(logits.transpose(1, 2), self.y_train[idx], reduction="none").mean(1)

    def evaluate(self, arch: Arch, params: Params, targets: Tensor | None) -> list[dict[str, float]]:
        """Per-network test metrics (``test_loss``, ``test_acc``)."""
        with torch.no_grad():
            loss = task_loss(arch, params, self.x_test, self.y_test)
        acc = task_accuracy(arch, params, self.x_test, self.y_test)
        return [{"test_loss": float(loss[i]), "test_acc": float(acc[i])} for i in range(len(loss))]

    def pair_curve(self, arch: Arch, a: Params, b: Params, num: int, examples: int) -> interp.Curve:
        """Test cross-entropy along the path from ``b`` (already aligned) to ``a``, on the first
        ``examples`` test images."""
        x, y = self.x_test[:examples], self.y_test[:examples]
        return interp.loss_curve(a, b, lambda p: task_loss(arch, p, x, y), num)

    def mid_loss(self, arch: Arch, mid: Params, a: Params, b: Params, lam: Tensor, generator: torch.Generator,
                 batch: int) -> Tensor:
        """Cross-entropy of the batched networks ``mid`` (between ``a`` and ``b`` at ``lam``; the labels
        do not depend on them) on one random mini-batch of training images."""
        idx = torch.randint(0, self.num_train, (batch,), generator=generator)
        logits = arch.forward(mid, self.x_train[idx])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), self.y_train[idx].repeat(logits.shape[0]))


def synthetic_task(dim: int = 16, num_classes: int = 4, n_train: int = 1024, n_test: int = 512,
                   seed: int = 0) -> Task:
    """Gaussian clusters (two per class) in ``dim`` dimensions: a seconds-scale stand-in for MNIST."""
    g = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(2 * num_classes, dim, generator=g)

    def draw(n: int) -> tuple[Tensor, Tensor]:
        comp = torch.randint(0, 2 * num_classes, (n,), generator=g)
        return centres[comp] + torch.randn(n, dim, generator=g), comp % num_classes

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    return Task("synthetic", xtr, ytr, xte, yte, num_classes)


AnyTask = Task | SineTask


def load_task(name: str, data_root: str | None = None, *, train_limit: int = 0, test_limit: int = 0,
              seed: int = 0, freq_range: tuple[float, float] = (0.5, 10.0)) -> AnyTask:
    """``synthetic``, MNIST / Fashion-MNIST / CIFAR-10 from the data root (normalised per channel), or
    ``sine`` (INRs of ``sin(a x)``, ``a`` in ``freq_range``; ``test_limit`` test points)."""
    if name == "synthetic":
        return synthetic_task(seed=seed)
    if name == "sine":
        return sine_task(freq_range, n_test=test_limit or 1000)
    from paperzoo.data import vision

    if name in ("mnist", "fashion_mnist"):
        loader = vision.load_mnist if name == "mnist" else vision.load_fashion_mnist
        mean, std = ((vision.MNIST_MEAN, vision.MNIST_STD) if name == "mnist"
                     else (vision.FASHION_MNIST_MEAN, vision.FASHION_MNIST_STD))
        (xtr, ytr), (xte, yte) = loader(data_root, "train"), loader(data_root, "test")
    elif name == "cifar10":
        mean, std = vision.CIFAR10_MEAN, vision.CIFAR10_STD
        (xtr, ytr), (xte, yte) = vision.load_cifar10(data_root, "train"), vision.load_cifar10(data_root, "test")
        xtr, xte = xtr.float() / 255, xte.float() / 255
    else:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    if train_limit:
        xtr, ytr = xtr[:train_limit], ytr[:train_limit]
    if test_limit:
        xte, yte = xte[:test_limit], yte[:test_limit]
    return Task(name, vision.normalize(xtr, mean, std), ytr, vision.normalize(xte, mean, std), yte, 10)


def task_loss(arch: Arch, params: Params, x: Tensor, y: Tensor, chunk: int = 2048) -> Tensor:
    """Mean cross-entropy of every network of ``params`` on ``(x, y)``, shape ``(N,)``."""
    total = None
    for s in range(0, len(y), chunk):
        logits = arch.forward(params, x[s:s + chunk])
        ce = F.cross_entropy(logits.transpose(1, 2), y[s:s + chunk].unsqueeze(0).expand(logits.shape[0], -1),
                             reduction="none").sum(1)
        total = ce if total is None else total + ce
    assert total is not None
    return total / len(y)


def task_accuracy(arch: Arch, params: Params, x: Tensor, y: Tensor, chunk: int = 2048) -> Tensor:
    """Accuracy of every network, shape ``(N,)``."""
    hits = None
    with torch.no_grad():
        for s in range(0, len(y), chunk):
            h = (arch.forward(params, x[s:s + chunk]).argmax(-1) == y[s:s + chunk]).sum(1)
            hits = h if hits is None else hits + h
    assert hits is not None
    return hits.double() / len(y)


@dataclass(frozen=True)
class ZooSettings:
    """How a zoo is trained (stored in ``zoo.json``; a folder built with other settings is refused)."""

    task: str
    arch: dict[str, Any]
    num_networks: int
    shard_size: int
    epochs: int
    batch_size: int
    lr: float
    seed: int
    store_dtype: str = "float32"
    task_options: dict[str, Any] = field(default_factory=dict)
    """Task parameters that change the networks (the sine zoo's ``freq_range``), JSON-ready."""


def arch_from_dict(d: dict[str, Any]) -> Arch:
    """The architecture stored in ``zoo.json`` (see :func:`arch_to_dict`); ``ValueError`` names what is
    wrong with a malformed one."""
    if not isinstance(d, dict) or d.get("kind") not in ("mlp", "cnn"):
        raise ValueError(f"arch must be a dict with kind 'mlp' or 'cnn', got {d!r}")
    try:
        if d["kind"] == "mlp":
            arch: Arch = MLPArch(tuple(int(x) for x in d["sizes"]), d.get("activation", "relu"),
                                 float(d.get("w0", 30.0)))
            widths = arch.sizes
        else:
            arch = CNNArch(int(d["in_channels"]), tuple(int(x) for x in d["channels"]), int(d["num_classes"]))
            widths = (arch.in_channels, *arch.channels, arch.num_classes)
    except KeyError as exc:
        raise ValueError(f"arch of kind {d['kind']!r} lacks the field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"arch {d!r} has a malformed field ({exc})") from None
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"arch {d!r} needs at least two levels of positive width")
    return arch


def arch_to_dict(arch: Arch) -> dict[str, Any]:
    if isinstance(arch, MLPArch):
        extra = {"activation": arch.activation, "w0": arch.w0} if arch.activation != "relu" else {}
        return {"kind": "mlp", "sizes": list(arch.sizes), **extra}
    return {"kind": "cnn", "in_channels": arch.in_channels, "channels": list(arch.channels),
            "num_classes": arch.num_classes}


def train_shard(arch: Arch, task: AnyTask, n: int, *, epochs: int, batch_size: int, lr: float,
                generator: torch.Generator, desc: str = "") -> tuple[Params, list[dict[str, float]]]:
    """Train ``n`` networks at once (independent initialisations, data orders and, for INRs, target
    functions) with Adam."""
    params = {k: v.requires_grad_(True) for k, v in arch.init(n, generator).items()}
    targets = task.network_targets(n, generator)
    opt = torch.optim.Adam(list(params.values()), lr=lr)
    num = task.num_train
    steps_per_epoch = max(1, num // batch_size)
    bar = progress(total=epochs * steps_per_epoch, desc=desc)
    last = torch.zeros(n)
    for _ in range(epochs):
        order = torch.argsort(torch.rand(n, num, generator=generator), dim=1)
        for s in range(steps_per_epoch):
            idx = order[:, s * batch_size:(s + 1) * batch_size]
            loss = task.batch_loss(arch, params, idx, targets)
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
            last = loss.detach()
            bar.update(1)
    bar.close()
    params = {k: v.detach() for k, v in params.items()}
    meta = [{"train_loss": float(last[i]), **m} for i, m in enumerate(task.evaluate(arch, params, targets))]
    return params, meta


class Zoo:
    """Trained networks (batched float32 parameters) with per-network metadata."""

    def __init__(self, arch: Arch, params: Params, meta: list[dict[str, Any]]):
        self.arch = arch
        self.params = params
        self.meta = meta

    def __len__(self) -> int:
        return len(self.meta)

    def net(self, i: int) -> Params:
        return {k: v[i] for k, v in self.params.items()}

    def subset(self, idx: list[int] | Tensor) -> Params:
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        return {k: v[idx_t] for k, v in self.params.items()}

    def split(self, fractions: tuple[float, float, float], seed: int) -> dict[str, list[int]]:
        """Disjoint train / val / test network indices (a seeded permutation; each part non-empty)."""
        n = len(self)
        if n < 3:
            raise ZooError(f"a zoo needs at least 3 networks to split, got {n}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        n_val = max(1, round(fractions[1] * n))
        n_test = max(1, round(fractions[2] * n))
        n_train = n - n_val - n_test
        if n_train < 1:
            raise ZooError(f"split {fractions} of {n} networks leaves no training networks")
        return {"train": sorted(order[:n_train]), "val": sorted(order[n_train:n_train + n_val]),
                "test": sorted(order[n_train + n_val:])}


def build_zoo(folder: str | Path, arch: Arch, task: AnyTask, settings: ZooSettings) -> Zoo:
    """Train (or resume) a zoo in ``folder`` shard by shard and return it."""
    folder = Path(folder)
    index_path = folder / "zoo.json"
    expected = json.loads(json.dumps(asdict(settings)))  # as zoo.json stores it (tuples as lists)
    if index_path.exists():
        saved = read_index(folder)
        # zoos written before task_options existed have none
        if {"task_options": {}, **saved.get("settings", {})} != expected:
            raise ZooError(f"{index_path} was built with other settings {saved.get('settings')}; "
                           f"expected {expected}: use another folder")
        done = set(saved.get("shards", []))
    else:
        done = set()
    num_shards = math.ceil(settings.num_networks / settings.shard_size)
    store = getattr(torch, settings.store_dtype)
    for s in progress(range(num_shards), desc="zoo shards", leave=True):
        path = folder / f"shard_{s:04d}.pt"
        if s in done and path.exists():
            continue
        n = min(settings.shard_size, settings.num_networks - s * settings.shard_size)
        gen = torch.Generator().manual_seed(settings.seed * 1_000_003 + s)
        params, meta = train_shard(arch, task, n, epochs=settings.epochs, batch_size=settings.batch_size,
                                   lr=settings.lr, generator=gen, desc=f"shard {s + 1}/{num_shards}")
        for i, m in enumerate(meta):
            m.update(index=s * settings.shard_size + i, shard=s)
        io.save_torch(path, {"params": {k: v.to(store) for k, v in params.items()}, "meta": meta})
        done.add(s)
        io.write_json(index_path, {"settings": expected, "shards": sorted(done)})
        log.info("zoo shard %d/%d written to %s", s + 1, num_shards, path)
    return load_zoo(folder)


def read_index(folder: str | Path) -> dict[str, Any]:
    """``zoo.json`` of ``folder``, checked: ``settings`` with an ``arch``, and ``shards``, a list of
    shard numbers. Raises :class:`ZooError` (one line naming the file) when it is missing or malformed."""
    path = Path(folder) / "zoo.json"
    if not path.is_file():
        raise ZooError(f"{path} does not exist: {folder} is not a zoo folder (or its first shard never "
                       "finished; building the zoo creates it)")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ZooError(f"{path} is not UTF-8 text (byte {exc.start}): corrupt; delete the zoo folder and "
                       "rebuild") from None
    except json.JSONDecodeError as exc:
        raise ZooError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno}); truncated or "
                       "corrupt: delete the zoo folder and rebuild") from None
    if not isinstance(index, dict):
        raise ZooError(f"{path}: expected a JSON object with 'settings' and 'shards', got {type(index).__name__}")
    for key, kind in (("settings", dict), ("shards", list)):
        if not isinstance(index.get(key), kind):
            raise ZooError(f"{path}: field {key!r} is missing or not a {kind.__name__}")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in index["shards"]):
        raise ZooError(f"{path}: field 'shards' must list non-negative shard numbers, got {index['shards']}")
    if "arch" not in index["settings"]:
        raise ZooError(f"{path}: field 'settings.arch' is missing")
    return index


def read_shard(path: str | Path, arch: Arch) -> tuple[Params, list[dict[str, Any]]]:
    """Read one shard file (``torch.load(weights_only=True)``) and check it against ``arch``: a dict with
    ``params`` (every tensor of the architecture, batched, finite) and ``meta`` (one dict per network).

    Raises:
        ZooError: one line naming the file and what is wrong (missing, truncated / corrupt, wrong
            tensors or shapes, NaN/inf, metadata count).
    """
    path = Path(path)
    fix = "delete it and run again to rebuild it"
    if not path.is_file():
        raise ZooError(f"zoo shard {path} is listed in zoo.json but missing; run again to rebuild it")
    try:
        shard = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated / corrupt files raise OSError, EOFError, pickle errors...
        # the low-level reason, first sentence only (torch's zip reader appends a paragraph of advice)
        detail = str(exc).strip().splitlines()[0].split(". ")[0][:160] if str(exc).strip() else ""
        raise ZooError(f"zoo shard {path} is truncated or corrupt ({type(exc).__name__}"
                       f"{': ' + detail if detail else ''}); {fix}") from None
    if not isinstance(shard, dict) or not isinstance(shard.get("params"), dict):
        raise ZooError(f"zoo shard {path} has no 'params' dict of tensors; not a zoo shard: {fix}")
    if not isinstance(shard.get("meta"), list) or not all(isinstance(m, dict) for m in shard["meta"]):
        raise ZooError(f"zoo shard {path} has no 'meta' list of per-network dicts; {fix}")
    params = shard["params"]
    try:
        arch.check(params, batched=True, name=f"zoo shard {path}")
    except NetworkMismatchError as exc:
        raise ZooError(f"{exc} ({arch_to_dict(arch)}); {fix}") from None
    n = next(iter(params.values())).shape[0]
    if len(shard["meta"]) != n:
        raise ZooError(f"zoo shard {path} holds {n} networks but {len(shard['meta'])} metadata entries; {fix}")
    return {k: v.float() for k, v in params.items()}, shard["meta"]


def load_zoo(folder: str | Path) -> Zoo:
    """Read every shard listed in ``zoo.json`` (weights back to float32), each checked by
    :func:`read_shard` against the zoo's architecture."""
    folder = Path(folder)
    index = read_index(folder)
    try:
        arch = arch_from_dict(index["settings"]["arch"])
    except ValueError as exc:
        raise ZooError(f"{folder / 'zoo.json'}: field 'settings.arch': {exc}") from None
    if not index["shards"]:
        raise ZooError(f"{folder / 'zoo.json'} lists no finished shard")
    parts, meta = [], []
    for s in sorted(index["shards"]):
        params, shard_meta = read_shard(folder / f"shard_{s:04d}.pt", arch)
        parts.append(params)
        meta.extend(shard_meta)
    params = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return Zoo(arch, params, meta)

"""Permutation symmetries of networks: which axes of which tensors each hidden permutation acts on.

A permutation is a 1-D ``int64`` index tensor ``p``; applying it to an axis reorders that axis as
``x[p]`` (new neuron ``i`` is old neuron ``p[i]``). A set of permutations is a dict ``perm name -> p``.
Aligning network ``b`` to ``a`` means finding permutations such that ``apply(spec, perms, b)`` is close
to ``a``; if ``b = apply(spec, g, a)`` exactly, the alignment is ``invert(g)``.

Following Git Re-Basin (Ainsworth et al., 2023), a :class:`PermutationSpec` lists, per permutation, the
``(parameter, axis)`` pairs it acts on (``perm_to_axes``) and, per parameter, the permutation acting on
each of its axes (``axes_to_perm``, ``None`` for unpermuted axes such as inputs and classes).

Every public entry point of Deep-Align (matching, interpolation, :meth:`DeepAlign.align`, the zoo
loader) first calls :func:`check_params` / :func:`check_compatible`: two networks that differ in a tensor's
name, shape or finiteness, or that do not fit the permutation spec, raise :class:`NetworkMismatchError`
naming the tensor, instead of being silently cut to their common layers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

Perms = dict[str, Tensor]


class NetworkMismatchError(ValueError):
    """Networks (parameter dicts) that do not fit together or do not fit the architecture; the message
    names the offending tensor."""


@dataclass(frozen=True)
class PermutationSpec:
    """Axes-to-permutation map of one architecture (parameters without the network axis)."""

    axes_to_perm: dict[str, tuple[str | None, ...]]

    @property
    def perm_to_axes(self) -> dict[str, list[tuple[str, int]]]:
        out: dict[str, list[tuple[str, int]]] = {}
        for name, axes in self.axes_to_perm.items():
            for axis, perm in enumerate(axes):
                if perm is not None:
                    out.setdefault(perm, []).append((name, axis))
        return out

    @property
    def perm_names(self) -> list[str]:
        return list(self.perm_to_axes)

    @classmethod
    def mlp(cls, num_layers: int) -> PermutationSpec:
        """``layer{m}.weight`` rows and ``layer{m}.bias`` by ``P{m}``; ``layer{m+1}.weight`` columns by
        ``P{m}``; the input and output neurons are fixed."""
        axes: dict[str, tuple[str | None, ...]] = {}
        for m in range(num_layers):
            out = f"P{m}" if m < num_layers - 1 else None
            inp = f"P{m - 1}" if m > 0 else None
            axes[f"layer{m}.weight"] = (out, inp)
            axes[f"layer{m}.bias"] = (out,)
        return cls(axes)

    @classmethod
    def cnn(cls, num_convs: int) -> PermutationSpec:
        """Conv ``m``'s output channels by ``P{m}``; the next conv's input channels (and, after global
        average pooling, the head's columns) by the same permutation."""
        axes: dict[str, tuple[str | None, ...]] = {}
        for m in range(num_convs):
            inp = f"P{m - 1}" if m > 0 else None
            axes[f"conv{m}.weight"] = (f"P{m}", inp, None, None)
            axes[f"conv{m}.bias"] = (f"P{m}",)
        axes["fc.weight"] = (None, f"P{num_convs - 1}")
        axes["fc.bias"] = (None,)
        return cls(axes)

    def sizes(self, params: dict[str, Tensor], batched: bool = False) -> dict[str, int]:
        """Length of every permutation, read from parameters (``batched``: with a leading network axis);
        checks that every axis a permutation acts on has that length."""
        off = 1 if batched else 0
        out: dict[str, int] = {}
        for perm, axes in self.perm_to_axes.items():
            missing = [name for name, _ in axes if name not in params]
            if missing:
                raise NetworkMismatchError(f"tensor {missing[0]} is missing (permutation {perm} acts on it)")
            lengths = {f"{name} axis {axis}": params[name].shape[axis + off] for name, axis in axes
                       if params[name].dim() > axis + off}
            if len(lengths) != len(axes) or len(set(lengths.values())) != 1:
                detail = ", ".join(f"{k}: {v}" for k, v in lengths.items())
                raise NetworkMismatchError(f"permutation {perm} acts on axes of different lengths ({detail})")
            out[perm] = next(iter(lengths.values()))
        return out


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_params(spec: PermutationSpec, params: dict[str, Tensor], *, shapes: dict[str, tuple[int, ...]] | None
                 = None, batched: bool = False, name: str = "network", finite: bool = True) -> dict[str, int]:
    """Check that ``params`` is a network of the architecture of ``spec`` and return its permutation sizes.

    Every tensor of the spec is present and no other (the extra or missing one is named); every value is
    a tensor with one axis per spec entry (plus the network axis when ``batched``); the axes each
    permutation acts on agree in length; with ``shapes`` (e.g. ``arch.shapes()``), every tensor has
    exactly that shape (name, expected and actual shape in the message); with ``finite``, no NaN/inf.

    Raises:
        NetworkMismatchError: (a ``ValueError``) naming the first offending tensor.
    """
    off = 1 if batched else 0
    missing = [k for k in spec.axes_to_perm if k not in params]
    extra = [k for k in params if k not in spec.axes_to_perm]
    if missing:
        raise NetworkMismatchError(f"{name}: tensor {missing[0]} is missing (the architecture has "
                                   f"{len(spec.axes_to_perm)} tensors: {', '.join(spec.axes_to_perm)})")
    if extra:
        raise NetworkMismatchError(f"{name}: tensor {extra[0]} is not part of the architecture "
                                   f"({', '.join(spec.axes_to_perm)})")
    batch = None
    for key, axes in spec.axes_to_perm.items():
        value = params[key]
        if not isinstance(value, Tensor):
            raise NetworkMismatchError(f"{name}: {key} is a {type(value).__name__}, not a tensor")
        if value.dim() != len(axes) + off:
            raise NetworkMismatchError(f"{name}: tensor {key} has shape {_shape(value)}, expected "
                                       f"{len(axes) + off} axes{' (network axis first)' if batched else ''}")
        if batched:
            if batch is None:
                batch = value.shape[0]
            elif value.shape[0] != batch:
                raise NetworkMismatchError(f"{name}: tensor {key} holds {value.shape[0]} networks, the "
                                           f"others {batch}")
        if shapes is not None and _shape(value)[off:] != tuple(shapes[key]):
            raise NetworkMismatchError(f"{name}: tensor {key} has shape {_shape(value)[off:]}, the "
                                       f"architecture expects {tuple(shapes[key])}")
    sizes = spec.sizes(params, batched=batched)
    if finite:
        for key, value in params.items():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise NetworkMismatchError(f"{name}: tensor {key} holds NaN/inf")
    return sizes


def check_compatible(spec: PermutationSpec | None, a: dict[str, Tensor], b: dict[str, Tensor], *,
                     shapes: dict[str, tuple[int, ...]] | None = None, batched: bool = False,
                     names: tuple[str, str] = ("network a", "network b"), finite: bool = True) -> None:
    """Check that ``a`` and ``b`` can be aligned / interpolated: the same tensor names (the missing or
    extra one named), the same shape per tensor (both shapes named), and, with ``spec``, each a network of
    the spec's architecture (:func:`check_params`, with ``shapes`` and ``finite``). Without ``spec`` only
    names, shapes and (with ``finite``) finiteness are checked.

    Raises:
        NetworkMismatchError: (a ``ValueError``) naming the first offending tensor.
    """
    only_a = [k for k in a if k not in b]
    only_b = [k for k in b if k not in a]
    if only_a:
        raise NetworkMismatchError(f"tensor {only_a[0]} is in {names[0]} but not in {names[1]}")
    if only_b:
        raise NetworkMismatchError(f"tensor {only_b[0]} is in {names[1]} but not in {names[0]}")
    for key, value in a.items():
        sa, sb = getattr(value, "shape", None), getattr(b[key], "shape", None)
        if sa is None or sb is None:
            raise NetworkMismatchError(f"{key} is not a tensor in {names[0] if sa is None else names[1]}")
        if tuple(sa) != tuple(sb):
            raise NetworkMismatchError(f"tensor {key} has shape {tuple(sa)} in {names[0]} but {tuple(sb)} in "
                                       f"{names[1]}")
    if spec is not None:
        check_params(spec, a, shapes=shapes, batched=batched, name=names[0], finite=finite)
        check_params(spec, b, shapes=shapes, batched=batched, name=names[1], finite=finite)
    elif finite:
        for label, params in zip(names, (a, b)):
            for key, value in params.items():
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    raise NetworkMismatchError(f"{label}: tensor {key} holds NaN/inf")


def check_perms(perms: Perms, sizes: dict[str, int], name: str = "permutations") -> None:
    """Check that ``perms`` has exactly the permutations ``sizes`` names, each a permutation of its length.

    Raises:
        NetworkMismatchError: naming the missing, extra or invalid permutation.
    """
    missing = [k for k in sizes if k not in perms]
    extra = [k for k in perms if k not in sizes]
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unknown {extra[0]}"
        raise NetworkMismatchError(f"{name}: {what} (the networks have permutations {', '.join(sizes)})")
    for k, n in sizes.items():
        p = perms[k]
        if not isinstance(p, Tensor) or p.dim() != 1 or len(p) != n or p.is_floating_point():
            got = tuple(p.shape) if isinstance(p, Tensor) else type(p).__name__
            raise NetworkMismatchError(f"{name}: {k} must be an integer index tensor of length {n}, got {got}")
        if not is_permutation(p):
            raise NetworkMismatchError(f"{name}: {k} is not a permutation of 0..{n - 1}")


def identity(sizes: dict[str, int]) -> Perms:
    return {k: torch.arange(n) for k, n in sizes.items()}


def random_perms(sizes: dict[str, int], generator: torch.Generator | None = None) -> Perms:
    """Independent uniform permutations of every hidden layer."""
    return {k: torch.randperm(n, generator=generator) for k, n in sizes.items()}


def invert(perms: Perms) -> Perms:
    """``invert(p)[p[i]] = i``: undoes :func:`apply` with ``p``."""
    return {k: torch.argsort(p) for k, p in perms.items()}


def compose(first: Perms, second: Perms) -> Perms:
    """The permutation equal to applying ``first`` and then ``second`` (``x[first][second]``)."""
    check_perms(second, {k: len(v) for k, v in first.items()}, "second permutations of compose")
    return {k: first[k][second[k]] for k in first}


def apply(spec: PermutationSpec, perms: Perms, params: dict[str, Tensor], batched: bool = False
          ) -> dict[str, Tensor]:
    """Permute the axes of every parameter; ``batched`` skips a leading network axis. ``params`` may hold
    any subset of the spec's tensors; a tensor the spec does not know, a missing permutation or one of
    the wrong length raises :class:`NetworkMismatchError`."""
    off = 1 if batched else 0
    out = {}
    for name, value in params.items():
        if name not in spec.axes_to_perm:
            raise NetworkMismatchError(f"tensor {name} is not part of the architecture "
                                       f"({', '.join(spec.axes_to_perm)})")
        axes = spec.axes_to_perm[name]
        # only the permuted axes must exist: trailing (feature, kernel) axes are left alone
        needed = max((i + 1 for i, p in enumerate(axes) if p is not None), default=0) + off
        if value.dim() < needed:
            raise NetworkMismatchError(f"tensor {name} has shape {_shape(value)}, expected at least "
                                       f"{needed} axes")
        for axis, perm in enumerate(axes):
            if perm is not None:
                if perm not in perms:
                    raise NetworkMismatchError(f"permutation {perm} (acting on {name}) is missing")
                if len(perms[perm]) != value.shape[axis + off]:
                    raise NetworkMismatchError(f"permutation {perm} has length {len(perms[perm])} but "
                                               f"{name} axis {axis} has {value.shape[axis + off]}")
                value = torch.index_select(value, axis + off, perms[perm].to(value.device))
        out[name] = value
    return out


def as_matrix(p: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Permutation matrix ``P`` with ``P[i, p[i]] = 1``, so that ``P @ x == x[p]``."""
    eye = torch.zeros(len(p), len(p), dtype=dtype)
    eye[torch.arange(len(p)), p] = 1
    return eye


def is_permutation(p: Tensor) -> bool:
    return bool(p.dim() == 1 and torch.equal(torch.sort(p).values, torch.arange(len(p), device=p.device)))

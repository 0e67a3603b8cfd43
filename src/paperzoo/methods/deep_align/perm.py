"""Permutation symmetries of networks: which axes of which tensors each hidden permutation acts on.

A permutation is a 1-D ``int64`` index tensor ``p``; applying it to an axis reorders that axis as
``x[p]`` (new neuron ``i`` is old neuron ``p[i]``). A set of permutations is a dict ``perm name -> p``.
Aligning network ``b`` to ``a`` means finding permutations such that ``apply(spec, perms, b)`` is close
to ``a``; if ``b = apply(spec, g, a)`` exactly, the alignment is ``invert(g)``.

Following Git Re-Basin (Ainsworth et al., 2023), a :class:`PermutationSpec` lists, per permutation, the
``(parameter, axis)`` pairs it acts on (``perm_to_axes``) and, per parameter, the permutation acting on
each of its axes (``axes_to_perm``, ``None`` for unpermuted axes such as inputs and classes).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

Perms = dict[str, Tensor]


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

    def sizes(self, params: dict[str, Tensor]) -> dict[str, int]:
        """Length of every permutation, read from (unbatched) parameters; checks they agree."""
        out: dict[str, int] = {}
        for perm, axes in self.perm_to_axes.items():
            lengths = {params[name].shape[axis] for name, axis in axes}
            if len(lengths) != 1:
                raise ValueError(f"permutation {perm} acts on axes of different lengths {sorted(lengths)}")
            out[perm] = lengths.pop()
        return out


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
    return {k: first[k][second[k]] for k in first}


def apply(spec: PermutationSpec, perms: Perms, params: dict[str, Tensor], batched: bool = False
          ) -> dict[str, Tensor]:
    """Permute the axes of every parameter; ``batched`` skips a leading network axis."""
    off = 1 if batched else 0
    out = {}
    for name, value in params.items():
        for axis, perm in enumerate(spec.axes_to_perm[name]):
            if perm is not None:
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

"""Communication topologies between agents and their mixing matrices.

A topology is a set of undirected links ``(i, j)``, ``i < j``, and a symmetric, doubly stochastic
mixing matrix ``W`` with ``W[i, j] != 0`` only on links (and the diagonal). Consensus contracts
disagreement by the factor ``|lambda_2(W)|`` (the second-largest eigenvalue magnitude) per round,
so the *spectral gap* ``1 - max(|lambda_2|, |lambda_n|)`` measures convergence speed; links measure
communication (every consensus round sends one parameter vector per link and direction).

Topology design (:func:`designed_links`): agents sharing many cut data edges already exchange
boundary rows in every forward/backward pass, so the consensus links are placed on those pairs
first: a maximum-weight spanning tree of the cut-edge counts (connectivity with the heaviest
pairs), then the heaviest remaining pairs up to the link budget. The weights are then chosen to
maximise the spectral gap (:func:`fastest_mixing_weights`, the fastest-mixing Markov chain of Boyd,
Diaconis & Xiao 2004, by projected subgradient). Baselines with the same link count: ring, star
(plus random leaf-leaf links), random connected graph; weights Metropolis-Hastings by default.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Link = tuple[int, int]


def ring_links(n: int) -> list[Link]:
    if n <= 1:
        return []
    if n == 2:
        return [(0, 1)]
    return sorted({tuple(sorted((i, (i + 1) % n))) for i in range(n)})


def default_links(n: int) -> int:
    """The link budget when none is given: a ring's (n for n >= 3)."""
    return len(ring_links(n))


def complete_links(n: int) -> list[Link]:
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def _check_budget(n: int, links: int) -> None:
    if n > 1 and not n - 1 <= links <= n * (n - 1) // 2:
        raise ValueError(f"a connected topology of {n} agents needs between {n - 1} and "
                         f"{n * (n - 1) // 2} links, not {links}")


def _add_random(n: int, chosen: set[Link], links: int, rng: np.random.RandomState) -> list[Link]:
    rest = [e for e in complete_links(n) if e not in chosen]
    extra = rng.permutation(len(rest))[:links - len(chosen)]
    return sorted(chosen | {rest[i] for i in extra})


def star_links(n: int, links: int, seed: int = 0) -> list[Link]:
    """Hub 0 linked to every agent, plus random leaf-leaf links up to ``links``."""
    _check_budget(n, links)
    return _add_random(n, {(0, j) for j in range(1, n)}, links, np.random.RandomState(seed))


def random_links(n: int, links: int, seed: int = 0) -> list[Link]:
    """A random spanning tree (random attachment order) plus random links up to ``links``."""
    _check_budget(n, links)
    rng = np.random.RandomState(seed)
    order = rng.permutation(n)
    tree = {tuple(sorted((int(order[k]), int(order[rng.randint(k)])))) for k in range(1, n)}
    return _add_random(n, tree, links, rng)


def designed_links(cut: np.ndarray, links: int) -> list[Link]:
    """Maximum-weight spanning tree of the cut-edge counts ``cut`` (Kruskal), then the heaviest
    remaining agent pairs up to ``links``. Ties break by agent ids, so the result is deterministic."""
    n = cut.shape[0]
    _check_budget(n, links)
    pairs = sorted(complete_links(n), key=lambda e: (-int(cut[e]), e))
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    chosen: list[Link] = []
    for i, j in pairs:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[ri] = rj
            chosen.append((i, j))
    for e in pairs:
        if len(chosen) >= links:
            break
        if e not in chosen:
            chosen.append(e)
    return sorted(chosen)


def metropolis_weights(n: int, links: list[Link]) -> np.ndarray:
    """Metropolis-Hastings weights ``W[i, j] = 1 / (1 + max(d_i, d_j))`` on links, rest on the diagonal."""
    deg = np.zeros(n, dtype=np.int64)
    for i, j in links:
        deg[i] += 1
        deg[j] += 1
    w = np.zeros((n, n))
    for i, j in links:
        w[i, j] = w[j, i] = 1.0 / (1 + max(deg[i], deg[j]))
    w[np.diag_indices(n)] = 1.0 - w.sum(axis=1)
    return w


def _from_edge_weights(n: int, links: list[Link], x: np.ndarray) -> np.ndarray:
    w = np.zeros((n, n))
    for (i, j), v in zip(links, x):
        w[i, j] = w[j, i] = v
    w[np.diag_indices(n)] = 1.0 - w.sum(axis=1)
    return w


def second_eigenvalue(w: np.ndarray) -> float:
    """``max(|lambda_2|, |lambda_n|)`` of a symmetric stochastic matrix (0 for one agent)."""
    if w.shape[0] <= 1:
        return 0.0
    vals = np.linalg.eigvalsh(w)
    return float(max(abs(vals[0]), abs(vals[-2])))


def spectral_gap(w: np.ndarray) -> float:
    return 1.0 - second_eigenvalue(w)


def _project(n: int, links: list[Link], x: np.ndarray) -> np.ndarray:
    """A feasible point near ``x``: non-negative link weights, each agent's total at most 1."""
    x = np.clip(x, 0.0, None)
    for _ in range(50):
        total = np.zeros(n)
        for (i, j), v in zip(links, x):
            total[i] += v
            total[j] += v
        if total.max() <= 1.0 + 1e-12:
            break
        scale = 1.0 / np.maximum(total, 1.0)
        x = x * np.array([min(scale[i], scale[j]) for i, j in links])
    return x


def fastest_mixing_weights(n: int, links: list[Link], steps: int = 300) -> np.ndarray:
    """Symmetric, non-negative, doubly stochastic ``W`` on ``links`` minimising
    ``max(|lambda_2|, |lambda_n|)`` (projected subgradient from the Metropolis weights, step
    ``0.5 / sqrt(k)`` along the normalised subgradient; the best feasible iterate is returned, so it
    is never worse than Metropolis-Hastings)."""
    if n <= 1 or not links:
        return np.eye(n)
    start = metropolis_weights(n, links)
    x = np.array([start[i, j] for i, j in links])
    best, best_val = x.copy(), second_eigenvalue(start)
    diff = np.zeros((len(links), n))
    for e, (i, j) in enumerate(links):
        diff[e, i], diff[e, j] = 1.0, -1.0
    for k in range(1, steps + 1):
        vals, vecs = np.linalg.eigh(_from_edge_weights(n, links, x))
        if abs(vals[0]) > abs(vals[-2]):  # lambda_n active: |lambda_n| = -lambda_n grows with w
            grad = (diff @ vecs[:, 0]) ** 2
        else:  # lambda_2 active: it shrinks as w grows
            grad = -(diff @ vecs[:, -2]) ** 2
        norm = np.linalg.norm(grad)
        if norm == 0:
            break
        x = _project(n, links, x - 0.5 / np.sqrt(k) * grad / norm)
        val = second_eigenvalue(_from_edge_weights(n, links, x))
        if val < best_val - 1e-12:
            best, best_val = x.copy(), val
    return _from_edge_weights(n, links, best)


@dataclass(frozen=True)
class Topology:
    """Links, mixing matrix and spectral gap of a communication topology."""

    kind: str
    links: list[Link]
    weights: np.ndarray
    mixing: str

    @property
    def gap(self) -> float:
        return spectral_gap(self.weights)

    def summary(self) -> dict[str, float]:
        n = self.weights.shape[0]
        deg = np.bincount(np.asarray(self.links, dtype=np.int64).flatten(), minlength=n) if self.links else np.zeros(n)
        return {"links": len(self.links), "spectral_gap": self.gap, "lambda2": second_eigenvalue(self.weights),
                "max_degree": int(deg.max()) if n else 0}


def build_topology(kind: str, n: int, *, links: int = 0, cut: np.ndarray | None = None, mixing: str = "auto",
                   fmmc_steps: int = 300, seed: int = 0) -> Topology:
    """The topology ``kind`` (designed, ring, star, random, complete) of ``n`` agents."""
    budget = links or default_links(n)
    if kind == "designed":
        if cut is None:
            raise ValueError("the designed topology needs the agents' cut-edge matrix")
        chosen = designed_links(cut, budget)
    elif kind == "ring":
        chosen = ring_links(n)
    elif kind == "star":
        chosen = star_links(n, budget, seed)
    elif kind == "random":
        chosen = random_links(n, budget, seed)
    elif kind == "complete":
        chosen = complete_links(n)
    else:
        raise ValueError(f"unknown topology {kind!r}")
    method = ("fmmc" if kind == "designed" else "metropolis") if mixing == "auto" else mixing
    if method == "fmmc":
        weights = fastest_mixing_weights(n, chosen, fmmc_steps)
    elif method == "metropolis":
        weights = metropolis_weights(n, chosen)
    else:
        raise ValueError(f"unknown mixing weights {mixing!r}")
    return Topology(kind, chosen, weights, method)

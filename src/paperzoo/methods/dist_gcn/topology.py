"""Communication topologies between agents and their mixing matrices.

A topology is a set of undirected links ``(i, j)``, ``i < j``, and a symmetric, doubly stochastic
mixing matrix ``W`` with ``W[i, j] != 0`` only on links (and the diagonal). Consensus contracts
disagreement by the factor ``|lambda_2(W)|`` (the second-largest eigenvalue magnitude) per round,
so the *spectral gap* ``1 - max(|lambda_2|, |lambda_n|)`` measures convergence speed; links measure
communication (every consensus round sends one parameter vector per link and direction).

Topology design (:func:`designed_links`). Measured first: with gradient tracking the iterations to a
target loss follow neither the spectral gap (a star has a better gap than a ring from 16 agents on and
is the slowest; random graphs with a worse gap beat the ring on 32 agents) nor which agents share
data edges (the Hamiltonian cycle through the heaviest pairs and the ring by id have one spectrum and
differ by a few iterations). What tracks them is how much disagreement the mixing lets the agents'
*actual* heterogeneity accumulate: :func:`disagreement_cost`, ``sum_k ||u_k^T h||^2 / (1 - lambda_k)``
over the non-consensus eigenpairs of ``W`` with ``h`` the agents' local gradients at the shared
initial weights (where gradient tracking's ``y`` starts). It ranked the measured topologies in the
order of their iteration counts on 16 and 32 Cora agents (one swap). So the design is: every agent
computes its gradient at the initial weights (one forward/backward it would do anyway), sends a
random sketch of it (``design_sketch`` numbers) to agent 0, which searches link sets of the budget for
the smallest cost under Metropolis-Hastings weights (:func:`_swap_search`: move one link at a time,
keep the topology connected, from the cut-count design, the ring and two random graphs), and
broadcasts the result. Agents whose data pull the model apart end up close. Without gradients
(:func:`build_topology` called with ``heterogeneity=None``) the design falls back to the cut counts
(:func:`cut_cycle_links`: the Hamiltonian cycle carrying the most cut edges, then the links that most
lower ``lambda_2``; with N - 1 links the maximum spanning tree). Weights are Metropolis-Hastings: the
fastest-mixing weights (:func:`fastest_mixing_weights`, Boyd, Diaconis & Xiao 2004, by projected
subgradient) maximise the spectral gap but push ``lambda_n`` towards -1, which slowed gradient
tracking on every topology tried. Baselines with the same link count: ring, star (plus random
leaf-leaf links), random connected graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

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


class _Forest:
    """Union-find over agents ``0..n-1`` (path halving)."""

    def __init__(self, n: int):
        self.parent = list(range(n))
        self.parts = n

    def _root(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, i: int, j: int) -> bool:
        """Merge the trees of ``i`` and ``j``; False if they were one already."""
        ri, rj = self._root(i), self._root(j)
        if ri == rj:
            return False
        self.parent[ri], self.parts = rj, self.parts - 1
        return True


def max_spanning_tree(cut: np.ndarray) -> list[Link]:
    """Maximum-weight spanning tree of the cut-edge counts (Kruskal; ties by agent ids)."""
    n = cut.shape[0]
    forest = _Forest(n)
    return sorted(e for e in sorted(complete_links(n), key=lambda e: (-int(cut[e]), e)) if forest.join(*e))


_EXACT_CYCLE_MAX = 12


def _cycle_weight(cut: np.ndarray, order: list[int]) -> int:
    return int(sum(cut[order[k], order[(k + 1) % len(order)]] for k in range(len(order))))


def _held_karp(cut: np.ndarray) -> list[int]:
    """Exact heaviest Hamiltonian cycle by dynamic programming over subsets (O(2^n n^2))."""
    n = cut.shape[0]
    m = n - 1                                   # agents 1..n-1, agent 0 is the start
    full = (1 << m) - 1
    best = np.full((1 << m, m), -1, dtype=np.int64)
    back = np.full((1 << m, m), -1, dtype=np.int64)
    for j in range(m):
        best[1 << j, j] = cut[0, j + 1]
    for mask in range(1, full + 1):
        for j in range(m):
            value = best[mask, j]
            if value < 0 or not mask >> j & 1:
                continue
            for k in range(m):
                if mask >> k & 1:
                    continue
                nxt, cand = mask | 1 << k, value + cut[j + 1, k + 1]
                if cand > best[nxt, k]:
                    best[nxt, k], back[nxt, k] = cand, j
    last = int(np.argmax(best[full] + cut[np.arange(1, n), 0]))
    order, mask = [], full
    while last >= 0:
        order.append(last + 1)
        mask, last = mask & ~(1 << last), int(back[mask, last])
    return [0] + order[::-1]


def _two_opt(cut: np.ndarray) -> list[int]:
    """Heavy Hamiltonian cycle for large ``n``: greedy heaviest-next tour from agent 0, then 2-opt moves
    (reverse a segment) while one adds weight."""
    n = cut.shape[0]
    order, left = [0], set(range(1, n))
    while left:
        nxt = max(sorted(left), key=lambda k: cut[order[-1], k])
        order.append(nxt)
        left.remove(nxt)
    improved = True
    while improved:
        improved = False
        for a in range(n - 1):
            for b in range(a + 2, n if a else n - 1):
                i, i2, j, j2 = order[a], order[a + 1], order[b], order[(b + 1) % n]
                if cut[i, j] + cut[i2, j2] > cut[i, i2] + cut[j, j2]:
                    order[a + 1:b + 1] = order[a + 1:b + 1][::-1]
                    improved = True
    return order


def heaviest_cycle(cut: np.ndarray) -> list[int]:
    """An ordering of the agents whose Hamiltonian cycle carries the most cut edges: exact for up to
    12 agents (Held-Karp), 2-opt local search beyond. Deterministic (ties by agent ids)."""
    n = cut.shape[0]
    if n <= 3:
        return list(range(n))
    return _held_karp(cut) if n <= _EXACT_CYCLE_MAX else _two_opt(cut)


def _fiedler_scores(w: np.ndarray, pairs: list[Link]) -> np.ndarray:
    """For each pair ``(i, j)``, ``sum_k (u_ki - u_kj)^2`` over an orthonormal basis ``u_k`` of the
    eigenspace of ``lambda_2(w)``: to first order, how much a link between ``i`` and ``j`` lowers
    ``lambda_2`` (the greedy rule of Ghosh & Boyd 2006 for algebraic connectivity; the sum over the
    eigenspace makes it independent of the basis when ``lambda_2`` is repeated, as on a ring)."""
    vals, vecs = np.linalg.eigh(w)
    space = vecs[:, np.abs(vals - vals[-2]) <= 1e-9 * max(1.0, abs(vals[-2]))]
    i, j = np.asarray(pairs).T
    return ((space[i] - space[j]) ** 2).sum(axis=1)


def cut_cycle_links(cut: np.ndarray, links: int) -> list[Link]:
    """The cut-count design (session 6; the start of :func:`designed_links`) with ``links`` links:
    ``N - 1`` links: the maximum spanning tree; otherwise the heaviest Hamiltonian cycle, then, one at a
    time, the pair that most lowers ``lambda_2`` of the Metropolis-Hastings weights to first order
    (:func:`_fiedler_scores`; ties: more cut edges, then agent ids)."""
    n = cut.shape[0]
    _check_budget(n, links)
    if n <= 2 or links == n - 1:
        return max_spanning_tree(cut)
    order = heaviest_cycle(cut)
    chosen = {tuple(sorted((order[k], order[(k + 1) % n]))) for k in range(n)}
    while len(chosen) < links:
        rest = [e for e in complete_links(n) if e not in chosen]
        scores = np.round(_fiedler_scores(metropolis_weights(n, sorted(chosen)), rest), 9)
        chosen.add(min(zip(-scores, (-int(cut[e]) for e in rest), rest))[2])
    return sorted(chosen)


def disagreement_cost(w: np.ndarray, h: np.ndarray) -> float:
    """``sum_{k >= 2} ||u_k^T h_c||^2 / (1 - lambda_k)`` over the eigenpairs of ``w`` below the consensus
    one, for the agents' signals ``h`` (one row per agent) centred over agents (``h_c``).

    Repeated averaging with ``w`` leaves ``w^t h_c`` of the agents' disagreement after ``t`` rounds; the
    sum over ``t`` of its projection on the consensus complement, ``sum_t w^t h_c = sum_k u_k u_k^T
    h_c / (1 - lambda_k)``, measured along ``h_c``, is this cost: how much disagreement the mixing lets
    accumulate for *this* heterogeneity (Kemeny's constant of ``w`` when ``h_c`` is isotropic). With
    ``h`` the agents' gradients at the initial weights, gradient tracking's ``y`` starts exactly at
    ``h``. Infinite for a disconnected topology.
    """
    n = w.shape[0]
    hc = np.asarray(h, dtype=np.float64).reshape(n, -1)
    hc = hc - hc.mean(axis=0)
    vals, vecs = np.linalg.eigh(w)
    vals, vecs = vals[:-1], vecs[:, :-1]
    if n > 1 and vals[-1] >= 1.0 - 1e-10:
        return float("inf")
    return float((((vecs.T @ hc) ** 2).sum(axis=1) / (1.0 - vals)).sum())


def _is_connected(n: int, links) -> bool:
    forest = _Forest(n)
    for i, j in links:
        forest.join(i, j)
    return forest.parts == 1


def _swap_search(n: int, start: list[Link], h: np.ndarray, proposals: int, rng: np.random.RandomState
                 ) -> tuple[float, list[Link]]:
    """Local search over link sets of ``len(start)`` links: propose moving one random link to a random
    unlinked pair (kept only if the topology stays connected), accept when the Metropolis-Hastings
    :func:`disagreement_cost` drops."""
    chosen = sorted(start)
    cost = disagreement_cost(metropolis_weights(n, chosen), h)
    pairs = complete_links(n)
    if len(chosen) == len(pairs):
        return cost, chosen
    for _ in range(proposals):
        drop = chosen[rng.randint(len(chosen))]
        add = pairs[rng.randint(len(pairs))]
        if add in chosen:
            continue
        cand = sorted([e for e in chosen if e != drop] + [add])
        if not _is_connected(n, cand):
            continue
        c = disagreement_cost(metropolis_weights(n, cand), h)
        if c < cost * (1.0 - 1e-12):
            cost, chosen = c, cand
    return cost, chosen


def designed_links(cut: np.ndarray, links: int, heterogeneity: np.ndarray | None = None, *,
                   proposals: int = 3000, seed: int = 0) -> list[Link]:
    """The designed topology with ``links`` links (module docs).

    Without ``heterogeneity``: the cut-count design :func:`cut_cycle_links`. With it (one row per
    agent: a sketch of the agents' local gradients at the initial weights), the link set of that size
    whose Metropolis-Hastings weights minimise :func:`disagreement_cost`, by :func:`_swap_search` from
    four starts (the cut-count design, the ring or, for ``N - 1`` links, a path by agent id, and two
    random connected graphs; ``proposals`` moves each); deterministic for a given ``seed``.
    """
    n = cut.shape[0]
    start = cut_cycle_links(cut, links)
    if heterogeneity is None or n <= 3:
        return start
    h = np.asarray(heterogeneity, dtype=np.float64).reshape(n, -1)
    rng = np.random.RandomState(seed)
    by_id = ring_links(n) if links >= n else [(i, i + 1) for i in range(n - 1)]
    starts = [start, _add_random(n, set(by_id), links, rng),
              *(random_links(n, links, seed + 7919 * k) for k in (1, 2))]
    # thousands of tiny eigendecompositions: a multi-threaded BLAS makes them 15x slower on a busy machine
    with threadpool_limits(limits=1, user_api="blas"):
        return min(_swap_search(n, s, h, proposals, rng) for s in starts)[1]


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
    with threadpool_limits(limits=1, user_api="blas"):
        best = _fmmc_steps(n, links, x, best, best_val, diff, steps)
    return _from_edge_weights(n, links, best)


def _fmmc_steps(n: int, links: list[Link], x: np.ndarray, best: np.ndarray, best_val: float, diff: np.ndarray,
                steps: int) -> np.ndarray:
    """The subgradient loop of :func:`fastest_mixing_weights`; returns the best link weights seen."""
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
    return best


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
                   fmmc_steps: int = 300, seed: int = 0, heterogeneity: np.ndarray | None = None,
                   proposals: int = 3000) -> Topology:
    """The topology ``kind`` (designed, ring, star, random, complete) of ``n`` agents; ``designed``
    needs the cut-edge matrix ``cut`` and uses the agents' ``heterogeneity`` rows when given
    (:func:`designed_links`)."""
    budget = links or default_links(n)
    if kind == "designed":
        if cut is None:
            raise ValueError("the designed topology needs the agents' cut-edge matrix")
        chosen = designed_links(cut, budget, heterogeneity, proposals=proposals, seed=seed)
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
    method = "metropolis" if mixing == "auto" else mixing
    if method == "fmmc":
        weights = fastest_mixing_weights(n, chosen, fmmc_steps)
    elif method == "metropolis":
        weights = metropolis_weights(n, chosen)
    else:
        raise ValueError(f"unknown mixing weights {mixing!r}")
    return Topology(kind, chosen, weights, method)

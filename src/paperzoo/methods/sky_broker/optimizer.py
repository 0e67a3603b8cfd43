r"""Placement optimizer: choose one offering per task minimising the DAG's cost or finish time.

For task :math:`v` with candidate :math:`i` (an offering, spot or on-demand, times ``num_nodes``)
and a DAG edge :math:`(u, v)` carrying the parent's output of :math:`s_u` GB,

.. math::

    \text{cost} = \sum_v c_v(i_v) + \sum_{(u,v)} s_u\, e(\ell(i_u), \ell(i_v)), \qquad
    \text{time} = \max_{\text{paths}} \Big[\sum_{v \in \text{path}} t_v(i_v)
                  + \sum_{(u,v) \in \text{path}} \frac{8 s_u}{b(\ell(i_u), \ell(i_v))}\Big]

where :math:`c_v(i) = \text{nodes} \times \text{price} \times \text{runtime}` plus the egress of
the task's external inputs (to the candidate's region) and of its output to a fixed destination,
:math:`t_v(i)` the runtime plus those transfer times, :math:`e` the egress price per GB between
regions (0 within one), :math:`b` the throughput, and :math:`\ell` the candidate's location. Time is
the finish time of the DAG (its critical path; the sum for a chain).

Solvers:

- :func:`solve_dp`: chains, by dynamic programming over the chain (Viterbi), exact for either
  objective without budget/deadline.
- :func:`solve_heuristic`: any DAG, in milliseconds: a greedy pass in topological order (each task
  takes the candidate best for the objective given its parents' choices; the exact DP on a chain),
  then best-improvement local search over single-task moves. It respects a budget/deadline when it
  can (it starts from the fastest or cheapest greedy plan when the first is infeasible). No
  optimality guarantee; it warm-starts the ILP.
- :func:`solve_ilp`: any DAG, a mixed-integer program for ``scipy.optimize.milp`` (HiGHS):
  one-hot placement binaries :math:`x_{v,i}`, edge variables :math:`y_{e,i,j} \ge 0` tied to
  them by :math:`\sum_j y_{e,i,j} = x_{u,i}` and :math:`\sum_i y_{e,i,j} = x_{v,j}` (for one-hot
  :math:`x` these force :math:`y_{e,i,j} = x_{u,i} x_{v,j}`, so pairwise costs become linear), and
  for time finish-time variables :math:`f_v \ge f_u + \sum_{ij} \tau_{e,ij} y_{e,i,j} + \sum_j
  t_{v,j} x_{v,j}` with the makespan :math:`M \ge f_v`. A budget bounds the cost expression, a
  deadline bounds :math:`M`. Ties on the time objective are broken by a second solve for the
  cheapest plan within the optimal time. With ``time_limit_s`` (shared by the two solves of the
  time objective) HiGHS stops early and the solution carries the relative MIP gap and
  ``optimal=False``. ``scipy.optimize.milp`` cannot take a starting solution, so the heuristic plan
  warm-starts it in the ways it allows: it is the answer whenever HiGHS finds nothing better within
  the limit, and for the time objective its finish time is an upper bound on the makespan
  variable, which lets branch and bound prune everything slower. (An ``objective <= heuristic``
  row for the cost objective was tried and dropped: it made HiGHS's LPs much harder.)
- :func:`solve_bruteforce`: every combination, vectorised with numpy (for tests).

Alternatives (the "next best" column of the plan table) are one-task re-solves: for each task and
each of its other candidates, the plan with that task moved there and every other task kept, costed
exactly (one vectorised evaluation of all moves); ``reoptimize=True`` re-optimises the rest of the
DAG around each move instead (one full solve per move: for small DAGs only).
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from paperzoo.methods.sky_broker.catalog import (
    Catalog,
    Network,
    Offering,
    canonical_accelerator,
    egress_usd,
    transfer_hours,
)
from paperzoo.methods.sky_broker.spec import Dag, DataSpec, Objective, Task

log = logging.getLogger(__name__)

TOL = 1e-9
DEFAULT_TIME_LIMIT_S = 5.0
"""Default wall-clock limit of the ILP in :func:`optimize` (and ``paperzoo sky plan --time-limit``)."""


class NoFeasiblePlan(RuntimeError):
    """No placement satisfies the task's requirements or the DAG's budget/deadline."""


class PlanTimeout(NoFeasiblePlan):
    """The solver found no plan within its time limit (and no heuristic plan satisfies the limits)."""


# ------------------------------------------------------------------------------ candidates
@dataclass(frozen=True)
class Candidate:
    """One way to run a task: an offering, spot or not, on ``num_nodes`` nodes."""

    offering: Offering
    use_spot: bool
    num_nodes: int
    runtime_h: float

    @property
    def location(self) -> str:
        return self.offering.location

    @property
    def hourly_usd(self) -> float:
        return self.num_nodes * self.offering.hourly(self.use_spot)

    @property
    def compute_usd(self) -> float:
        return self.hourly_usd * self.runtime_h

    def label(self) -> str:
        spot = " spot" if self.use_spot else ""
        nodes = f" x{self.num_nodes}" if self.num_nodes > 1 else ""
        return f"{self.location} {self.offering.describe()}{spot}{nodes}"


@dataclass(frozen=True)
class Block:
    """A resource the broker must not use: a cloud, a region, a zone or an offering in one of them."""

    cloud: str
    region: str | None = None
    zone: str | None = None
    instance_type: str | None = None
    accelerator: str | None = None

    def matches(self, offering: Offering) -> bool:
        return (offering.cloud == self.cloud
                and self.region in (None, offering.region)
                and self.zone in (None, offering.zone)
                and self.instance_type in (None, offering.instance_type)
                and (self.accelerator is None or (offering.accelerator or "") == self.accelerator))

    def __str__(self) -> str:
        parts = [self.cloud, self.region, self.zone, self.instance_type, self.accelerator]
        return ":".join(p for p in parts if p)

    @classmethod
    def from_location(cls, text: str) -> Block:
        cloud, _, region = text.partition(":")
        return cls(cloud, region or None)


def _location_matches(patterns: Iterable[str], offering: Offering) -> bool:
    return any(p == offering.cloud or p == offering.location for p in patterns)


def candidates_for(task: Task, catalog: Catalog, blocked: Sequence[Block] = (),
                   prefer_penalty: float = 0.0) -> list[Candidate]:
    """Feasible candidates of ``task``, one per (location, accelerator, spot): the cheapest offering
    of each group, which dominates the rest of its group in cost and time (same region, same
    runtime). Locations outside ``task.resources.prefer`` run ``1 + prefer_penalty`` times longer.
    Raises NoFeasiblePlan explaining what filtered the offerings out."""
    res = task.resources
    wanted_acc = {(canonical_accelerator(a.name).lower(), a.count) for a in res.accelerators}
    reasons: dict[str, int] = {}

    def reject(reason: str) -> None:
        reasons[reason] = reasons.get(reason, 0) + 1

    best: dict[tuple, tuple[float, str, Offering]] = {}
    for off in catalog.offerings:
        if res.instance_type and off.instance_type != res.instance_type:
            reject("instance_type")
        elif res.cpus is not None and off.vcpus < res.cpus:
            reject("cpus")
        elif res.memory_gib is not None and off.memory_gib < res.memory_gib:
            reject("memory")
        elif wanted_acc and (off.accelerator is None
                             or (off.accelerator.lower(), off.accelerator_count) not in wanted_acc):
            reject("accelerators")
        elif not wanted_acc and off.accelerator is not None:
            reject("accelerators (task is CPU-only)")
        elif res.use_spot and off.spot_price is None:
            reject("use_spot (no spot price)")
        elif not res.use_spot and off.price is None:
            reject("on-demand (spot-only offering)")
        elif res.clouds and off.cloud not in res.clouds:
            reject("clouds")
        elif res.regions and off.location not in res.regions:
            reject("regions")
        elif _location_matches(res.blocked, off):
            reject("blocked")
        elif any(b.matches(off) for b in blocked):
            reject("blocked by failover")
        else:
            group = (off.location, (off.accelerator or "").lower(), off.accelerator_count)
            hourly = off.hourly(res.use_spot)
            entry = (hourly, off.key, off)
            if group not in best or entry[:2] < best[group][:2]:
                best[group] = entry
    if not best:
        why = ", ".join(f"{n} by {r}" for r, n in sorted(reasons.items())) or "the catalog is empty"
        raise NoFeasiblePlan(f"task {task.name!r}: no offering in catalog {catalog.name!r} satisfies its "
                             f"resources ({len(catalog.offerings)} checked; rejected: {why})")
    out = []
    for group in sorted(best):
        off = best[group][2]
        runtime = task.runtime_for(off.accelerator)
        if res.prefer and not _location_matches(res.prefer, off):
            runtime *= 1.0 + prefer_penalty
        out.append(Candidate(off, res.use_spot, task.num_nodes, runtime))
    return out


# --------------------------------------------------------------------------------- problem
@dataclass
class Problem:
    """The optimisation problem in arrays: per-task candidate terms and per-edge matrices."""

    tasks: list[str]
    candidates: list[list[Candidate]]
    unary_cost: list[np.ndarray]
    """USD per candidate: compute + egress of external inputs and of the output to its destination."""
    unary_time: list[np.ndarray]
    """Hours per candidate: runtime + transfer of external inputs and of the output."""
    edges: list[tuple[int, int]]
    """(parent index, child index), parents before children."""
    edge_cost: list[np.ndarray]
    edge_time: list[np.ndarray]
    objective: Objective = "cost"
    deadline_h: float | None = None
    budget_usd: float | None = None

    @property
    def sizes(self) -> list[int]:
        return [len(c) for c in self.candidates]

    def is_chain(self) -> bool:
        return self.edges == [(i, i + 1) for i in range(len(self.tasks) - 1)]

    def incoming(self) -> list[list[tuple[int, int]]]:
        """For each task, its ``(edge index, parent index)`` pairs."""
        into: list[list[tuple[int, int]]] = [[] for _ in self.tasks]
        for k, (u, v) in enumerate(self.edges):
            into[v].append((k, u))
        return into

    def evaluate(self, assignment: Sequence[int]) -> tuple[float, float]:
        """(total cost, finish time) of one candidate index per task."""
        cost = sum(float(self.unary_cost[v][a]) for v, a in enumerate(assignment))
        finish = [0.0] * len(self.tasks)
        for k, (u, v) in enumerate(self.edges):
            cost += float(self.edge_cost[k][assignment[u], assignment[v]])
        for v, parents in enumerate(self.incoming()):
            ready = 0.0
            for k, u in parents:
                ready = max(ready, finish[u] + float(self.edge_time[k][assignment[u], assignment[v]]))
            finish[v] = ready + float(self.unary_time[v][assignment[v]])
        return cost, max(finish) if finish else 0.0

    def feasible(self, cost: float, hours: float) -> bool:
        """Whether a plan of this cost and finish time meets the budget and deadline."""
        return ((self.budget_usd is None or cost <= self.budget_usd * (1 + 1e-9) + 1e-9)
                and (self.deadline_h is None or hours <= self.deadline_h * (1 + 1e-9) + 1e-9))

    def restricted(self, task: int, keep: Sequence[int]) -> Problem:
        """The problem with task ``task`` limited to candidates ``keep`` (used for alternatives)."""
        keep = list(keep)
        out = replace(self, candidates=list(self.candidates), unary_cost=list(self.unary_cost),
                      unary_time=list(self.unary_time), edge_cost=list(self.edge_cost),
                      edge_time=list(self.edge_time))
        out.candidates[task] = [self.candidates[task][i] for i in keep]
        out.unary_cost[task] = self.unary_cost[task][keep]
        out.unary_time[task] = self.unary_time[task][keep]
        for k, (u, v) in enumerate(self.edges):
            if u == task:
                out.edge_cost[k], out.edge_time[k] = self.edge_cost[k][keep, :], self.edge_time[k][keep, :]
            if v == task:
                out.edge_cost[k], out.edge_time[k] = self.edge_cost[k][:, keep], self.edge_time[k][:, keep]
        return out


def build_problem(dag: Dag, catalog: Catalog, *, blocked: Sequence[Block] = (),
                  fixed: Mapping[str, Candidate] | None = None,
                  candidates: Mapping[str, list[Candidate]] | None = None) -> Problem:
    """Candidates and cost/time terms of every task and edge. ``fixed`` pins tasks already placed
    (failover re-optimises the rest); ``candidates`` replaces the catalog search for some tasks."""
    fixed = dict(fixed or {})
    cands = []
    for task in dag.tasks:
        if task.name in fixed:
            cands.append([fixed[task.name]])
        elif candidates and task.name in candidates:
            cands.append(list(candidates[task.name]))
        else:
            cands.append(candidates_for(task, catalog, blocked, dag.prefer_penalty))
    net = catalog.network
    index = {t.name: i for i, t in enumerate(dag.tasks)}
    unary_cost, unary_time = [], []
    for task, task_cands in zip(dag.tasks, cands):
        terms = np.array([_unary_terms(task, c, net) for c in task_cands]).reshape(len(task_cands), 2)
        cost, hours = terms[:, 0], terms[:, 1]
        unary_cost.append(cost)
        unary_time.append(hours)
    edges, edge_cost, edge_time = [], [], []
    for parent, child in dag.edges:
        u, v = index[parent], index[child]
        size = dag.tasks[u].output_gb
        edges.append((u, v))
        edge_cost.append(np.array([[egress_usd(net, a.location, b.location, size) for b in cands[v]]
                                   for a in cands[u]]).reshape(len(cands[u]), len(cands[v])))
        edge_time.append(np.array([[transfer_hours(net, a.location, b.location, size) for b in cands[v]]
                                   for a in cands[u]]).reshape(len(cands[u]), len(cands[v])))
    return Problem([t.name for t in dag.tasks], cands, unary_cost, unary_time, edges, edge_cost, edge_time,
                   dag.objective, dag.deadline_h, dag.budget_usd)


def _unary_terms(task: Task, cand: Candidate, net: Network) -> tuple[float, float]:
    """(USD, hours) of running ``task`` on ``cand``: compute plus the transfers of its external inputs
    to the candidate's region and of its output to its destination."""
    transfers = [(data.location, cand.location, data.size_gb) for data in task.inputs]
    if task.outputs and task.outputs.location:
        transfers.append((cand.location, task.outputs.location, task.outputs.size_gb))
    cost = cand.compute_usd + sum(egress_usd(net, src, dst, gb) for src, dst, gb in transfers)
    hours = cand.runtime_h + sum(transfer_hours(net, src, dst, gb) for src, dst, gb in transfers)
    return cost, hours


# --------------------------------------------------------------------------------- solvers
@dataclass(frozen=True)
class Solution:
    """A candidate index per task with its cost and finish time."""

    assignment: tuple[int, ...]
    cost_usd: float
    time_h: float
    solver: str
    optimal: bool = True
    """Proven optimal (within HiGHS's 1e-9 relative gap), or exact by construction (DP, brute force)."""
    gap: float | None = 0.0
    """Relative optimality gap of the objective, ``(value - best bound) / value``; None: unknown
    (a heuristic plan with no bound)."""

    def value(self, objective: Objective) -> float:
        return self.cost_usd if objective == "cost" else self.time_h


def _better(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Lexicographic order with a relative tolerance on the primary value."""
    scale = max(1.0, abs(a[0]), abs(b[0]))
    if a[0] < b[0] - TOL * scale:
        return True
    if a[0] > b[0] + TOL * scale:
        return False
    return a[1] < b[1] - TOL * max(1.0, abs(a[1]), abs(b[1]))


def solve_dp(problem: Problem) -> Solution:
    """Exact for chains without budget/deadline: Viterbi on (objective, other objective) pairs."""
    if not problem.is_chain():
        raise ValueError("solve_dp needs a chain (each task's only parent is the previous task)")
    if problem.deadline_h is not None or problem.budget_usd is not None:
        raise ValueError("solve_dp does not handle a budget or deadline; use solve_ilp")
    primary_cost = problem.objective == "cost"
    best: list[tuple[float, float]] = [
        (c, t) if primary_cost else (t, c)
        for c, t in zip(problem.unary_cost[0].tolist(), problem.unary_time[0].tolist())]
    back: list[list[int]] = []
    for k in range(len(problem.tasks) - 1):
        ec, et = problem.edge_cost[k], problem.edge_time[k]
        uc, ut = problem.unary_cost[k + 1], problem.unary_time[k + 1]
        new, arg = [], []
        for j in range(len(uc)):
            choice, value = -1, (float("inf"), float("inf"))
            for i, (p, s) in enumerate(best):
                dc, dt = float(ec[i, j] + uc[j]), float(et[i, j] + ut[j])
                cand = (p + dc, s + dt) if primary_cost else (p + dt, s + dc)
                if choice < 0 or _better(cand, value):
                    choice, value = i, cand
            new.append(value)
            arg.append(choice)
        best, back = new, back + [arg]
    last = 0
    for j in range(1, len(best)):
        if _better(best[j], best[last]):
            last = j
    assignment = [last]
    for arg in reversed(back):
        assignment.append(arg[assignment[-1]])
    assignment.reverse()
    cost, hours = problem.evaluate(assignment)
    return Solution(tuple(assignment), cost, hours, "dp")


def _lex_best(primary: np.ndarray, secondary: np.ndarray) -> int:
    """Index of the smallest ``primary`` (relative tolerance TOL), ties broken by ``secondary``."""
    best = float(primary.min())
    ties = np.flatnonzero(primary <= best + TOL * max(1.0, abs(best)))
    return int(ties[np.argmin(secondary[ties])])


def _greedy(problem: Problem, key: Objective) -> list[int]:
    """Topological-order greedy: each task takes the candidate that is best for ``key`` given its
    parents' choices (cost: its own cost plus the egress from its parents; time: its finish time),
    ties broken by the other measure."""
    assignment: list[int] = []
    finish: list[float] = []
    for v, parents in enumerate(problem.incoming()):
        ready = np.zeros(problem.sizes[v])
        cost = problem.unary_cost[v].astype(float)
        for k, u in parents:
            ready = np.maximum(ready, finish[u] + problem.edge_time[k][assignment[u], :])
            cost = cost + problem.edge_cost[k][assignment[u], :]
        done = ready + problem.unary_time[v]
        pick = _lex_best(cost, done) if key == "cost" else _lex_best(done, cost)
        assignment.append(pick)
        finish.append(float(done[pick]))
    return assignment


def _evaluate_moves(problem: Problem, base: Sequence[int], tasks: np.ndarray,
                    cands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cost, finish time) of ``base`` with task ``tasks[m]`` moved to candidate ``cands[m]``, for
    every move ``m`` (vectorised, in chunks of about two million assignment cells)."""
    n_tasks = len(problem.tasks)
    chunk = max(1, 2_000_000 // max(1, n_tasks))
    costs, hours = [], []
    base_row = np.asarray(base, dtype=np.int64)
    for lo in range(0, len(tasks), chunk):
        t, c = tasks[lo:lo + chunk], cands[lo:lo + chunk]
        rows = np.tile(base_row, (len(t), 1))
        rows[np.arange(len(t)), t] = c
        cost, hrs = evaluate_all(problem, rows)
        costs.append(cost)
        hours.append(hrs)
    if not costs:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(costs), np.concatenate(hours)


def _all_moves(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """Every (task, candidate) pair, as two index arrays."""
    tasks = np.repeat(np.arange(len(problem.tasks)), problem.sizes)
    cands = np.concatenate([np.arange(n) for n in problem.sizes]) if problem.sizes else np.zeros(0, int)
    return tasks, cands


def _local_search(problem: Problem, start: list[int], stop_at: float) -> list[int]:
    """Best-improvement descent over single-task moves (lexicographic objective, budget/deadline
    kept) until no move improves or ``stop_at`` (a ``time.perf_counter`` value) passes."""
    current = list(start)
    tasks, cands = _all_moves(problem)
    primary_cost = problem.objective == "cost"
    for _ in range(20 * max(1, len(problem.tasks))):
        if time.perf_counter() > stop_at:
            log.debug("heuristic local search stopped at its time limit")
            break
        cost0, hours0 = problem.evaluate(current)
        cost, hours = _evaluate_moves(problem, current, tasks, cands)
        prim, sec = (cost, hours) if primary_cost else (hours, cost)
        p0, s0 = (cost0, hours0) if primary_cost else (hours0, cost0)
        ok = np.ones(len(cost), dtype=bool)
        if problem.budget_usd is not None:
            ok &= cost <= problem.budget_usd * (1 + 1e-9) + 1e-9
        if problem.deadline_h is not None:
            ok &= hours <= problem.deadline_h * (1 + 1e-9) + 1e-9
        tol_p, tol_s = TOL * max(1.0, abs(p0)), TOL * max(1.0, abs(s0))
        better = ok & ((prim < p0 - tol_p) | ((prim <= p0 + tol_p) & (sec < s0 - tol_s)))
        if not better.any():
            break
        idx = np.flatnonzero(better)
        pick = idx[_lex_best(prim[idx], sec[idx])]
        current[int(tasks[pick])] = int(cands[pick])
    return current


def solve_heuristic(problem: Problem, *, time_limit_s: float | None = None, descend: bool = True) -> Solution:
    """A good plan fast, without an optimality guarantee: the best greedy / co-located start of the
    module docstring (the exact DP on an unconstrained chain), then (``descend``) local search for
    at most ``time_limit_s`` (default 1 s). Raises NoFeasiblePlan when no start meets the
    budget/deadline."""
    start = time.perf_counter()
    if problem.is_chain() and problem.deadline_h is None and problem.budget_usd is None:
        return solve_dp(problem)
    starts = np.array([_greedy(problem, "cost"), _greedy(problem, "time")] + _colocated(problem), dtype=np.int64)
    cost, hours = evaluate_all(problem, starts)
    ok = np.array([problem.feasible(c, h) for c, h in zip(cost.tolist(), hours.tolist())], dtype=bool)
    if not ok.any():
        raise NoFeasiblePlan("the greedy heuristic found no plan within the budget/deadline")
    prim, sec = (cost, hours) if problem.objective == "cost" else (hours, cost)
    order = [int(i) for i in np.lexsort((sec, prim)) if ok[i]]
    if not descend:
        i = order[0]
        return Solution(tuple(int(a) for a in starts[i]), float(cost[i]), float(hours[i]), "heuristic",
                        optimal=False, gap=None)
    stop_at = start + (1.0 if time_limit_s is None else time_limit_s)
    best, best_key = None, None
    for n, i in enumerate(order[:2]):  # descend from the two best starts (time permitting)
        if n and time.perf_counter() > stop_at:
            break
        end = _local_search(problem, starts[i].tolist(), stop_at)
        c, h = problem.evaluate(end)
        key = (c, h) if problem.objective == "cost" else (h, c)
        if best_key is None or _better(key, best_key):
            best, best_key = end, key
    cost_usd, time_h = problem.evaluate(best)
    return Solution(tuple(best), cost_usd, time_h, "heuristic", optimal=False, gap=None)


def _colocated(problem: Problem, limit: int = 32) -> list[list[int]]:
    """One start per location (the ``limit`` locations most tasks can use): every task on its best
    candidate there (by its own cost or time), or on its best candidate anywhere when it has none
    there. Such starts pay no egress between tasks that share the location."""
    by_location: dict[str, int] = {}
    for cands in problem.candidates:
        for loc in {c.location for c in cands}:
            by_location[loc] = by_location.get(loc, 0) + 1
    key = problem.unary_cost if problem.objective == "cost" else problem.unary_time
    fallback = [int(np.argmin(k)) for k in key]
    out = []
    for loc, _ in sorted(by_location.items(), key=lambda item: (-item[1], item[0]))[:limit]:
        row = []
        for v, cands in enumerate(problem.candidates):
            here = [i for i, c in enumerate(cands) if c.location == loc]
            row.append(min(here, key=lambda i: key[v][i]) if here else fallback[v])
        out.append(row)
    return out


def solve_ilp(problem: Problem, *, time_limit_s: float | None = None, warm_start: bool = True) -> Solution:
    """The mixed-integer program of the module docstring, solved with scipy's HiGHS ``milp``.

    ``time_limit_s`` bounds the whole call (None: solve to optimality). With ``warm_start`` a
    :func:`solve_heuristic` plan comes first: for the time objective with its local search (up to
    15 % of the limit), since its finish time is the makespan cutoff; for cost only its best start
    (milliseconds), the fallback. HiGHS then gets 80 % of what is left (the time objective's
    tie-breaking second solve 80 % of the rest). When HiGHS stops at the limit, the best plan found
    (HiGHS's or the warm start's) is polished by local search in the remaining time and returned
    with ``optimal=False`` and its relative gap (see :func:`_gap`). Raises NoFeasiblePlan when no
    plan meets the budget/deadline and PlanTimeout when none was found within the limit.
    """
    from scipy.optimize import milp  # noqa: F401 - import (seconds, once) before the clock starts

    start = time.perf_counter()
    stop_at = None if time_limit_s is None else start + time_limit_s
    incumbent = None
    if warm_start:
        budget = 1.0 if time_limit_s is None else 0.15 * time_limit_s
        try:
            incumbent = solve_heuristic(problem, time_limit_s=budget, descend=problem.objective == "time")
        except NoFeasiblePlan:
            incumbent = None

    def left(fraction: float = 1.0) -> float | None:
        if stop_at is None:
            return None
        return max(0.05 * time_limit_s, fraction * (stop_at - time.perf_counter()))

    best = _solve_with_incumbent(problem, problem.objective, incumbent, left(0.8), time_limit_s)
    settled = best.optimal
    if problem.objective == "time":
        # cheapest plan among the fastest ones (the bound leaves room for HiGHS's 1e-7 tolerances)
        bound = best.time_h * (1 + 1e-7) + 1e-7
        limited = replace(problem, deadline_h=min(bound, problem.deadline_h or float("inf")))
        try:
            second = _solve_with_incumbent(limited, "cost", best, left(0.8), time_limit_s)
        except NoFeasiblePlan:
            second = None
        settled = settled and second is not None and second.optimal
        if second is not None and second.time_h <= bound and second.cost_usd <= best.cost_usd:
            # the makespan's optimality (gap) is the objective's; the tie-break only lowers cost
            best = replace(second, solver=best.solver, optimal=best.optimal, gap=best.gap)
    if not settled and stop_at is not None:  # local search on (objective, then the other measure)
        best = _polish(problem, best, max(stop_at, time.perf_counter() + 0.05 * time_limit_s))
    return best


def _polish(problem: Problem, solution: Solution, stop_at: float) -> Solution:
    """``solution`` improved by local search until ``stop_at``; its gap rescaled to the new value
    (the bound behind it, ``value * (1 - gap)``, still holds)."""
    end = _local_search(problem, list(solution.assignment), stop_at)
    cost, hours = problem.evaluate(end)
    old, new = solution.value(problem.objective), (cost if problem.objective == "cost" else hours)
    key_new = (cost, hours) if problem.objective == "cost" else (hours, cost)
    key_old = (solution.cost_usd, solution.time_h) if problem.objective == "cost" else (solution.time_h,
                                                                                        solution.cost_usd)
    if not _better(key_new, key_old):
        return solution
    gap = solution.gap
    if gap is not None:
        gap = max(0.0, 1.0 - old * (1.0 - gap) / new) if abs(new) > 1e-12 else 0.0
    return replace(solution, assignment=tuple(end), cost_usd=cost, time_h=hours, gap=gap)


def lower_bound(problem: Problem, objective: Objective) -> float:
    """A cheap valid lower bound: every task on its cheapest candidate with free transfers between
    tasks (cost), or the longest path of the tasks' shortest own times (time)."""
    if objective == "cost":
        return float(sum(u.min() for u in problem.unary_cost))
    finish = [0.0] * len(problem.tasks)
    for v, parents in enumerate(problem.incoming()):
        finish[v] = max((finish[u] for _, u in parents), default=0.0) + float(problem.unary_time[v].min())
    return max(finish, default=0.0)


def _gap(problem: Problem, objective: Objective, value: float, dual_bound: float | None) -> float:
    """Relative gap ``(value - bound) / |value|`` of a minimisation (0 when value is 0), with the
    better of HiGHS's dual bound (when it reports one) and :func:`lower_bound`."""
    bound = lower_bound(problem, objective)
    if dual_bound is not None and math.isfinite(dual_bound):
        bound = max(bound, dual_bound)
    return max(0.0, (value - bound) / abs(value)) if abs(value) > 1e-12 else 0.0


def _solve_with_incumbent(problem: Problem, objective: Objective, incumbent: Solution | None,
                          time_limit_s: float | None, total_limit_s: float | None) -> Solution:
    """One MILP solve warm-started by ``incumbent`` (if any); the better of the two plans.

    For the time objective the incumbent's makespan bounds the makespan variable (a cutoff that
    halved HiGHS's time on the 100-task benchmark DAG). For cost it is only the fallback: a cutoff
    there is a dense extra row, which made the LP so much harder that the same DAG went from
    optimal at the root node in 0.5 s to no solution at all within the time limit."""
    cutoff = None
    if incumbent is not None and objective == "time":
        cutoff = incumbent.time_h * (1 + 1e-7) + 1e-7
    assignment, status, message, dual_bound = _milp(problem, objective, time_limit_s=time_limit_s,
                                                    makespan_cutoff=cutoff)
    if assignment is not None:
        cost, hours = problem.evaluate(assignment)
        value = cost if objective == "cost" else hours
        found = Solution(assignment, cost, hours, "ilp", optimal=status == 0,
                         gap=0.0 if status == 0 else _gap(problem, objective, value, dual_bound))
        if incumbent is None:
            return found
        inc = (incumbent.cost_usd, incumbent.time_h) if objective == "cost" else (incumbent.time_h,
                                                                                 incumbent.cost_usd)
        key = (cost, hours) if objective == "cost" else (hours, cost)
        if not _better(inc, key):
            return found
        assignment = None  # the warm start is better: fall through and return it
    if incumbent is not None and status in (0, 1, 2):
        # 2 (infeasible): nothing is better than the cutoff, so the warm start is optimal (up to the
        # 1e-7 cutoff tolerance); 1: the time limit was hit before HiGHS found anything better
        proven = status in (0, 2)
        value = incumbent.value(objective)
        gap = 0.0 if proven else _gap(problem, objective, value, dual_bound)
        if not proven:
            log.debug("ILP (%s) stopped at its %.3g s time limit; keeping the plan it started from (gap %.2f%%)",
                     objective, time_limit_s, 100 * gap)
        return replace(incumbent, solver="ilp" if proven else "heuristic", optimal=proven, gap=gap)
    limits = []
    if problem.budget_usd is not None:
        limits.append(f"budget {problem.budget_usd:g} USD")
    if problem.deadline_h is not None:
        limits.append(f"deadline {problem.deadline_h:g} h")
    if status == 1:
        raise PlanTimeout(f"no plan found within the {total_limit_s or time_limit_s:g} s time limit "
                          f"(HiGHS: {message}); raise --time-limit")
    raise NoFeasiblePlan(f"no plan meets the {' and '.join(limits) or 'constraints'} "
                         f"(HiGHS status {status}: {message})")


def _milp(problem: Problem, objective: Objective, *, time_limit_s: float | None,
          makespan_cutoff: float | None = None) -> tuple[tuple[int, ...] | None, int, str, float | None]:
    """Build and solve the MILP; returns (assignment or None, HiGHS status, message, dual bound).
    ``makespan_cutoff`` bounds the makespan variable from above (a warm start's finish time)."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    sizes = problem.sizes
    n_tasks = len(sizes)
    x_off = np.concatenate([[0], np.cumsum(sizes)])[:-1].astype(int)
    n_x = int(sum(sizes))
    y_off, n_y = [], 0
    for u, v in problem.edges:
        y_off.append(n_x + n_y)
        n_y += sizes[u] * sizes[v]
    need_time = objective == "time" or problem.deadline_h is not None
    f_off = n_x + n_y
    m_idx = f_off + n_tasks
    n_vars = m_idx + 1 if need_time else n_x + n_y

    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lower: list[float] = []
    upper: list[float] = []

    def add_row(entries: Iterable[tuple[int, float]], lo: float, hi: float) -> None:
        r = len(lower)
        for c, v in entries:
            rows.append(r)
            cols.append(int(c))
            vals.append(float(v))
        lower.append(lo)
        upper.append(hi)

    for v in range(n_tasks):  # one candidate per task
        add_row(((x_off[v] + i, 1.0) for i in range(sizes[v])), 1.0, 1.0)
    for k, (u, v) in enumerate(problem.edges):  # edge variables are the product of the one-hots
        nu, nv = sizes[u], sizes[v]
        for i in range(nu):
            add_row([(y_off[k] + i * nv + j, 1.0) for j in range(nv)] + [(x_off[u] + i, -1.0)], 0.0, 0.0)
        for j in range(nv):
            add_row([(y_off[k] + i * nv + j, 1.0) for i in range(nu)] + [(x_off[v] + j, -1.0)], 0.0, 0.0)

    cost_terms = [(x_off[v] + i, float(problem.unary_cost[v][i])) for v in range(n_tasks) for i in range(sizes[v])]
    for k, (u, v) in enumerate(problem.edges):
        flat = problem.edge_cost[k].ravel()
        cost_terms += [(y_off[k] + idx, float(c)) for idx, c in enumerate(flat) if c]
    if problem.budget_usd is not None:
        add_row(cost_terms, -np.inf, problem.budget_usd)
    if need_time:
        unary_t = [[(x_off[v] + i, -float(problem.unary_time[v][i])) for i in range(sizes[v])]
                   for v in range(n_tasks)]
        for v in range(n_tasks):  # f_v >= own time (sources; harmless elsewhere)
            add_row([(f_off + v, 1.0)] + unary_t[v], 0.0, np.inf)
            add_row([(m_idx, 1.0), (f_off + v, -1.0)], 0.0, np.inf)
        for k, (u, v) in enumerate(problem.edges):  # f_v >= f_u + transfer + own time
            flat = problem.edge_time[k].ravel()
            add_row([(f_off + v, 1.0), (f_off + u, -1.0)] + unary_t[v]
                    + [(y_off[k] + idx, -float(t)) for idx, t in enumerate(flat) if t], 0.0, np.inf)

    c = np.zeros(n_vars)
    if objective == "cost":
        for idx, coef in cost_terms:
            c[idx] += coef
    else:
        c[m_idx] = 1.0
    integrality = np.zeros(n_vars)
    integrality[:n_x] = 1
    lb = np.zeros(n_vars)
    ub = np.ones(n_vars)
    if need_time:
        ub[f_off:] = np.inf
        if problem.deadline_h is not None:
            ub[m_idx] = problem.deadline_h
        if makespan_cutoff is not None and objective == "time":
            ub[m_idx] = min(ub[m_idx], makespan_cutoff)
    matrix = coo_matrix((vals, (rows, cols)), shape=(len(lower), n_vars)).tocsr()
    options = {"mip_rel_gap": 1e-9, "presolve": True}
    if time_limit_s is not None:
        options["time_limit"] = float(time_limit_s)
    result = milp(c, constraints=LinearConstraint(matrix, lower, upper), integrality=integrality,
                  bounds=Bounds(lb, ub), options=options)
    bound = getattr(result, "mip_dual_bound", None)
    bound = float(bound) if bound is not None else None
    if result.x is None:
        return None, int(result.status), str(result.message), bound
    assignment = tuple(int(np.argmax(result.x[x_off[v]:x_off[v] + sizes[v]])) for v in range(n_tasks))
    return assignment, int(result.status), str(result.message), bound


def all_assignments(sizes: Sequence[int], limit: int = 2_000_000) -> np.ndarray:
    """Every combination of candidate indices, shape (prod(sizes), len(sizes))."""
    total = int(np.prod(sizes, dtype=np.float64))
    if total > limit:
        raise ValueError(f"brute force over {total:,} combinations exceeds the limit of {limit:,}")
    grids = np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def evaluate_all(problem: Problem, assignments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised (cost, finish time) of many assignments (rows)."""
    n_tasks = len(problem.tasks)
    cost = np.zeros(len(assignments))
    for v in range(n_tasks):
        cost += problem.unary_cost[v][assignments[:, v]]
    for k, (u, v) in enumerate(problem.edges):
        cost += problem.edge_cost[k][assignments[:, u], assignments[:, v]]
    finish = np.zeros((n_tasks, len(assignments)))
    for v, parents in enumerate(problem.incoming()):
        ready = np.zeros(len(assignments))
        for k, u in parents:
            ready = np.maximum(ready, finish[u] + problem.edge_time[k][assignments[:, u], assignments[:, v]])
        finish[v] = ready + problem.unary_time[v][assignments[:, v]]
    return cost, finish.max(axis=0) if n_tasks else np.zeros(len(assignments))


def solve_bruteforce(problem: Problem, limit: int = 2_000_000) -> Solution:
    """Exhaustive search (ground truth for tests); honours budget and deadline."""
    assignments = all_assignments(problem.sizes, limit)
    cost, hours = evaluate_all(problem, assignments)
    ok = np.ones(len(assignments), dtype=bool)
    if problem.budget_usd is not None:
        ok &= cost <= problem.budget_usd + 1e-9
    if problem.deadline_h is not None:
        ok &= hours <= problem.deadline_h + 1e-9
    if not ok.any():
        raise NoFeasiblePlan("no assignment meets the budget/deadline")
    primary, secondary = (cost, hours) if problem.objective == "cost" else (hours, cost)
    primary = np.where(ok, primary, np.inf)
    best = float(primary.min())
    ties = np.flatnonzero(primary <= best + TOL * max(1.0, abs(best)))
    pick = int(ties[np.argmin(secondary[ties])])
    return Solution(tuple(int(a) for a in assignments[pick]), float(cost[pick]), float(hours[pick]),
                    "bruteforce")


SOLVERS = ("auto", "dp", "ilp", "heuristic", "bruteforce")


def solve(problem: Problem, method: str = "auto", *, time_limit_s: float | None = None) -> Solution:
    """``auto``: DP for unconstrained chains, the warm-started ILP otherwise; or force one of
    ``dp``/``ilp``/``heuristic``/``bruteforce``. ``time_limit_s`` bounds the ILP and the heuristic."""
    if method == "auto":
        simple = problem.deadline_h is None and problem.budget_usd is None
        method = "dp" if problem.is_chain() and simple else "ilp"
    if method == "dp":
        return solve_dp(problem)
    if method == "ilp":
        return solve_ilp(problem, time_limit_s=time_limit_s)
    if method == "heuristic":
        return solve_heuristic(problem, time_limit_s=time_limit_s)
    if method == "bruteforce":
        return solve_bruteforce(problem)
    raise ValueError(f"unknown solver {method!r}; choose {', '.join(SOLVERS)}")


# ------------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class Alternative:
    """The best plan when a task is moved to another candidate."""

    candidate: Candidate
    cost_usd: float
    time_h: float


@dataclass(frozen=True)
class Placement:
    """Where one task runs, what it costs (compute + egress into it) and when it runs."""

    task: str
    candidate: Candidate
    cost_usd: float
    egress_usd: float
    start_h: float
    finish_h: float


@dataclass(frozen=True)
class Plan:
    """The optimizer's answer for a DAG."""

    dag: str
    objective: Objective
    placements: tuple[Placement, ...]
    cost_usd: float
    time_h: float
    solver: str
    solve_seconds: float
    alternatives: Mapping[str, tuple[Alternative, ...]] = field(default_factory=dict)
    optimal: bool = True
    """Proven optimal; False when the ILP stopped at its time limit (or the heuristic was asked for)."""
    mip_gap: float | None = 0.0
    """Relative optimality gap of the objective (0 when optimal, None when unknown)."""
    time_limit_s: float | None = None

    def status(self) -> str:
        """``optimal`` or ``not proven optimal (...)`` with the gap and the time limit."""
        if self.optimal:
            return "optimal"
        gap = "gap unknown" if self.mip_gap is None else f"gap {self.mip_gap:.2%}"
        limit = f", stopped at the {self.time_limit_s:g} s time limit" if self.time_limit_s is not None else ""
        return f"not proven optimal: {gap}{limit}"

    def placement(self, task: str) -> Placement:
        for p in self.placements:
            if p.task == task:
                return p
        raise KeyError(task)

    def table(self) -> str:
        """The plan as a Markdown table, with each task's next best alternatives."""
        lines = [(f"Plan for {self.dag!r} (objective: {self.objective}, solver: {self.solver}, "
                  f"{self.solve_seconds * 1e3:.1f} ms, {self.status()}): total ${self.cost_usd:,.2f}, "
                  f"{self.time_h:.2f} h"),
                 "",
                 ("| task | placement | $/h | runtime h | start h | finish h | egress $ | cost $ | "
                  "next best (others kept) |"),
                 "|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for p in self.placements:
            alts = "; ".join(
                f"{a.candidate.label()} (plan ${a.cost_usd:,.2f}, {a.time_h:.2f} h)"
                for a in self.alternatives.get(p.task, ())) or "-"
            c = p.candidate
            lines.append(f"| {p.task} | {c.label()} | {c.hourly_usd:.3f} | {c.runtime_h:.2f} | {p.start_h:.2f} | "
                         f"{p.finish_h:.2f} | {p.egress_usd:.2f} | {p.cost_usd:.2f} | {alts} |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        def cand(c: Candidate) -> dict:
            o = c.offering
            return {"cloud": o.cloud, "region": o.region, "zone": o.zone, "instance_type": o.instance_type,
                    "accelerator": o.accelerator, "accelerator_count": o.accelerator_count,
                    "use_spot": c.use_spot, "num_nodes": c.num_nodes, "hourly_usd": c.hourly_usd,
                    "runtime_h": c.runtime_h}

        return {"dag": self.dag, "objective": self.objective, "solver": self.solver,
                "cost_usd": self.cost_usd, "time_h": self.time_h, "optimal": self.optimal,
                "mip_gap": self.mip_gap, "time_limit_s": self.time_limit_s, "solve_seconds": self.solve_seconds,
                "tasks": [{"task": p.task, **cand(p.candidate), "cost_usd": p.cost_usd,
                           "egress_usd": p.egress_usd, "start_h": p.start_h, "finish_h": p.finish_h,
                           "alternatives": [{**cand(a.candidate), "plan_cost_usd": a.cost_usd,
                                             "plan_time_h": a.time_h}
                                            for a in self.alternatives.get(p.task, ())]}
                          for p in self.placements]}


def make_plan(dag_name: str, problem: Problem, solution: Solution, seconds: float,
              alternatives: Mapping[str, tuple[Alternative, ...]] | None = None,
              time_limit_s: float | None = None) -> Plan:
    """Per-task cost (compute + egress into the task) and schedule of a solution."""
    a = solution.assignment
    egress_in = [0.0] * len(problem.tasks)
    start = [0.0] * len(problem.tasks)
    finish = [0.0] * len(problem.tasks)
    for k, (u, v) in enumerate(problem.edges):
        egress_in[v] += float(problem.edge_cost[k][a[u], a[v]])
    for v in range(len(problem.tasks)):
        for k, (u, w) in enumerate(problem.edges):
            if w == v:
                start[v] = max(start[v], finish[u] + float(problem.edge_time[k][a[u], a[v]]))
        finish[v] = start[v] + float(problem.unary_time[v][a[v]])
    placements = []
    for v, name in enumerate(problem.tasks):
        cand = problem.candidates[v][a[v]]
        unary = float(problem.unary_cost[v][a[v]])
        placements.append(Placement(name, cand, unary + egress_in[v], unary - cand.compute_usd + egress_in[v],
                                    start[v], finish[v]))
    return Plan(dag_name, problem.objective, tuple(placements), solution.cost_usd, solution.time_h,
                solution.solver, seconds, dict(alternatives or {}), solution.optimal, solution.gap, time_limit_s)


def alternatives(problem: Problem, solution: Solution, k: int = 2, method: str = "auto", *,
                 reoptimize: bool = False, time_limit_s: float | None = None) -> dict[str, tuple[Alternative, ...]]:
    """For each task, the ``k`` best plans that move it to another of its candidates.

    By default each is a one-task re-solve: the task moved, every other task kept where
    ``solution`` put it, all moves costed exactly in one vectorised evaluation (milliseconds for a
    100-task DAG). Moves that break the budget/deadline are left out. ``reoptimize=True`` instead
    screens the ``2k`` most promising moves that way and re-optimises the rest of the DAG around
    each (one solve with ``method`` and ``time_limit_s`` per move).
    """
    out: dict[str, tuple[Alternative, ...]] = {}
    if k <= 0:
        return out
    primary_cost = problem.objective == "cost"
    tasks, cands = _all_moves(problem)
    moved = cands != np.asarray(solution.assignment, dtype=np.int64)[tasks]
    tasks, cands = tasks[moved], cands[moved]
    cost, hours = _evaluate_moves(problem, solution.assignment, tasks, cands)
    wanted = 2 * k if reoptimize else k
    best: list[list[int]] = [[] for _ in problem.tasks]
    for m in np.lexsort((hours, cost) if primary_cost else (cost, hours)).tolist():
        chosen = best[int(tasks[m])]
        if len(chosen) < wanted and problem.feasible(float(cost[m]), float(hours[m])):
            chosen.append(m)
    for v, name in enumerate(problem.tasks):
        picks = best[v]
        if not reoptimize:
            out[name] = tuple(Alternative(problem.candidates[v][int(cands[m])], float(cost[m]), float(hours[m]))
                              for m in picks[:k])
            continue
        found = []
        for m in picks[:2 * k]:
            i = int(cands[m])
            pinned = problem.restricted(v, [i])
            try:
                sol = solve(pinned, method if method != "dp" or pinned.is_chain() else "ilp", time_limit_s=time_limit_s)
            except NoFeasiblePlan:
                continue
            found.append(Alternative(problem.candidates[v][i], sol.cost_usd, sol.time_h))
        found.sort(key=lambda alt: (alt.cost_usd, alt.time_h) if primary_cost else (alt.time_h, alt.cost_usd))
        out[name] = tuple(found[:k])
    return out


def optimize(dag: Dag, catalog: Catalog, *, blocked: Sequence[Block] = (),
             fixed: Mapping[str, Candidate] | None = None, method: str = "auto",
             n_alternatives: int = 2, time_limit_s: float | None = DEFAULT_TIME_LIMIT_S) -> Plan:
    """Build the problem for ``dag`` over ``catalog``, solve it (the ILP within ``time_limit_s``
    seconds, warm-started by the heuristic; None: to optimality) and attach ``n_alternatives``
    one-task alternatives per task (0: none)."""
    problem = build_problem(dag, catalog, blocked=blocked, fixed=fixed)
    if method in ("auto", "ilp"):
        from scipy.optimize import milp  # noqa: F401 - a one-off import of seconds, not solve time
    start = time.perf_counter()
    solution = solve(problem, method, time_limit_s=time_limit_s)
    seconds = time.perf_counter() - start
    if not solution.optimal:
        log.warning("plan for %r is not proven optimal after %.1f s (gap %s)", dag.name, seconds,
                    "unknown" if solution.gap is None else f"{solution.gap:.2%}")
    alts = alternatives(problem, solution, n_alternatives, method) if n_alternatives else {}
    return make_plan(dag.name, problem, solution, seconds, alts, time_limit_s)


# -------------------------------------------------------------------------- random problems
def random_problem(rng: np.random.Generator, catalog: Catalog, *, n_tasks: int = 5, max_parents: int = 5,
                   max_candidates: int = 5, max_runtime_h: float = 1.0, max_data_gb: float = 1000.0,
                   objective: Objective = "cost", chain: bool = False, min_candidates: int = 1) -> Problem:
    """A random DAG over ``catalog``: each task gets 1..``max_parents`` earlier tasks as parents
    (or the previous one for a chain), ``min_candidates``..``max_candidates`` random offerings, a random runtime up
    to ``max_runtime_h`` and a random output up to ``max_data_gb``."""
    offerings = list(catalog.offerings)
    tasks, candidates = [], {}
    for v in range(n_tasks):
        if chain:
            parents = [v - 1] if v else []
        else:
            count = int(rng.integers(0, min(v, max_parents) + 1)) if v else 0
            parents = sorted(rng.choice(v, size=count, replace=False).tolist()) if count else []
        size = float(rng.uniform(0, max_data_gb))
        tasks.append(Task(name=f"t{v}", depends_on=tuple(f"t{p}" for p in parents),
                          outputs=None if size == 0 else DataSpec(size_gb=size)))
        picks = rng.choice(len(offerings), size=int(rng.integers(min_candidates, max_candidates + 1)), replace=False)
        candidates[f"t{v}"] = [Candidate(offerings[i], bool(rng.integers(0, 2)) and offerings[i].spot_price
                                         is not None, 1, float(rng.uniform(0.01, max_runtime_h)))
                               for i in picks]
    dag = Dag(name="random", tasks=tuple(tasks), objective=objective)
    return build_problem(dag, catalog, candidates=candidates)

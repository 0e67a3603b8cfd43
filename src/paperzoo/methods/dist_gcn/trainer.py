"""The agent code: setup, local gradients, the optimisers and the training loop.

Everything here works on the agents hosted by a :class:`~paperzoo.methods.dist_gcn.comm.Comm`:
all of them in the in-process simulation, one in a real process. The same functions therefore run
in both modes; only the ``Comm`` differs.

Objective. With T the training nodes, the centralized loss is ``f(w) = (1/|T|) sum_{v in T} CE_v(w)
+ (wd/2)||w||^2``. Agent ``a``'s *local loss* is ``l_a = (1/|T|) sum_{v in T_a} CE_v``, so that
``sum_a l_a`` is the centralized data loss; its *local objective* is ``f_a = N l_a + (wd/2)||w||^2``,
so that ``f = (1/N) sum_a f_a`` and the **average** of the local gradients is the centralized
gradient (the standard consensus-optimisation form). The local gradient ``g_a`` is the derivative
of ``N sum_b l_b`` with respect to agent ``a``'s own weights, obtained by distributed
back-propagation (agent ``b``'s loss depends on ``a``'s weights through the boundary rows ``a``
sent it); at consensus ``(1/N) sum_a g_a`` equals the centralized gradient exactly.

Updates (W = the mixing matrix, lr = step size):

- gradient tracking: ``x_a <- sum_b W_ab (x_b - lr y_b)``, ``y_a <- sum_b W_ab y_b + g_a(x_a new)
  - g_a(x_a old)``, ``y_a`` initialised to ``g_a(x_a)``; ``x - lr y`` and ``y`` travel in one message;
- decentralized gradient descent: ``x_a <- sum_b W_ab x_b - lr g_a(x_a)``;
- centralized: one agent, ``x <- x - lr g(x)``.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from paperzoo.data.planetoid import NodeGraph
from paperzoo.methods.dist_gcn import model as M
from paperzoo.methods.dist_gcn.comm import Comm, HaloPlan
from paperzoo.methods.dist_gcn.config import DistGCNConfig
from paperzoo.methods.dist_gcn.partition import (
    LocalGraph,
    build_local_graphs,
    cut_matrix,
    partition,
    partition_stats,
)
from paperzoo.methods.dist_gcn.topology import Topology, build_topology

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


@dataclass
class Context:
    """What a process knows after setup: its agents' local graphs, the exchange plan, the rows of
    A_hat, the topology and the global sizes."""

    cfg: DistGCNConfig
    comm: Comm
    assignment: np.ndarray
    graphs: dict[int, LocalGraph]
    plan: HaloPlan
    adj: dict[int, Tensor]
    topology: Topology
    mixing: Tensor
    layout: M.ParamLayout
    num_train: int
    dtype: torch.dtype
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def num_agents(self) -> int:
        return self.comm.num_agents


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def agree_on_assignment(comm: Comm, graph: NodeGraph, cfg: DistGCNConfig) -> np.ndarray:
    """The partition, computed by agent 0 and broadcast, so all processes (and machines) agree."""
    if comm.num_agents == 1:
        return np.zeros(graph.num_nodes, dtype=np.int64)
    if 0 in comm.agents:
        local = torch.from_numpy(partition(graph, comm.num_agents, cfg.partition, cfg.split_seed))
    else:
        local = torch.zeros(graph.num_nodes, dtype=torch.int64)
    return comm.broadcast(local, 0).numpy()


def agree_on_topology(comm: Comm, cfg: DistGCNConfig, cut: np.ndarray,
                      heterogeneity: np.ndarray | None = None) -> Topology:
    """The topology, designed by agent 0 only and broadcast (weights as float64)."""
    n = comm.num_agents
    mixing = "metropolis" if cfg.mixing == "auto" else cfg.mixing
    weights = torch.zeros(n, n, dtype=torch.float64)
    if 0 in comm.agents:
        topo = build_topology(cfg.topology, n, links=cfg.links, cut=cut, mixing=cfg.mixing,
                              fmmc_steps=cfg.fmmc_steps, seed=cfg.split_seed, heterogeneity=heterogeneity,
                              proposals=cfg.design_proposals)
        weights, mixing = torch.from_numpy(topo.weights), topo.mixing
    weights = comm.broadcast(weights, 0).numpy()
    links = [(i, j) for i in range(n) for j in range(i + 1, n) if weights[i, j] != 0]
    return Topology(cfg.topology, links, weights, mixing)


def build_context(cfg: DistGCNConfig, graph: NodeGraph, comm: Comm, assignment: np.ndarray | None = None
                  ) -> Context:
    """Partition (unless ``assignment`` is given), local graphs, exchange plan, local propagation rows
    and topology of ``comm``'s agents."""
    if comm.num_agents != cfg.agents:
        raise ValueError(f"the config asks for {cfg.agents} agents but the communicator has {comm.num_agents}")
    dtype = torch_dtype(cfg.dtype)
    if assignment is None:
        assignment = agree_on_assignment(comm, graph, cfg)
    local = build_local_graphs(graph, assignment, comm.agents)
    local = {a: dataclasses.replace(g, x=M.as_features(g.x.to(dtype))) for a, g in local.items()}
    plan = M.halo_plan(local)
    adj = M.local_propagation(comm, local, plan, dtype)
    cut = cut_matrix(graph.edge_index, assignment, comm.num_agents)
    layout = M.ParamLayout(graph.num_features, cfg.hidden, graph.num_classes)
    stats = partition_stats(graph, assignment, comm.num_agents)
    ctx = Context(cfg=cfg, comm=comm, assignment=assignment, graphs=local, plan=plan, adj=adj,
                  topology=None, mixing=None, layout=layout,  # type: ignore[arg-type]  # set below
                  num_train=int(graph.splits["train"].numel()), dtype=dtype, stats=stats)
    heterogeneity = None
    if cfg.topology == "designed" and comm.num_agents > 3:
        before = {a: sum(comm.bytes_sent[a].values()) for a in comm.agents}
        heterogeneity = design_signal(ctx)
        sent = {a: torch.tensor(float(sum(comm.bytes_sent[a].values()) - before[a])) for a in comm.agents}
        # one forward/backward of boundary rows plus the sketch each agent contributes
        stats["topology/design_bytes_per_agent"] = (float(comm.all_sum(sent)) / comm.num_agents
                                                    + heterogeneity.shape[1] * torch.finfo(dtype).bits // 8)
    topology = agree_on_topology(comm, cfg, cut, heterogeneity)
    stats.update({f"topology/{k}": v for k, v in topology.summary().items()})
    stats["topology/link_bytes_factor"] = routed_traffic_factor(cut, topology)
    ctx.topology, ctx.mixing = topology, torch.from_numpy(topology.weights).to(dtype)
    return ctx


def design_signal(ctx: Context) -> np.ndarray:
    """What the topology design sees of the agents' data: every agent's local gradient at the shared
    initial weights (no dropout; gradient tracking's ``y`` starts there), projected on
    ``cfg.design_sketch`` random directions (a seeded Gaussian sketch every agent draws alike; it keeps
    the agents' inner products, hence :func:`~paperzoo.methods.dist_gcn.topology.disagreement_cost`, in
    expectation) and all-gathered: an ``N x k`` array."""
    cfg = ctx.cfg
    x0 = ctx.layout.init(cfg.seed, ctx.dtype)
    _, _, grads = local_gradients(ctx, {a: x0 for a in ctx.comm.agents}, None, 0.0)
    p, k = ctx.layout.size, cfg.design_sketch
    if 0 < k < p:
        proj = torch.randn(p, k, generator=torch.Generator().manual_seed(20_201 + cfg.seed), dtype=ctx.dtype)
        grads = {a: g @ proj / k ** 0.5 for a, g in grads.items()}
    return torch.stack(ctx.comm.gather(grads)).double().numpy()


def hop_counts(topology: Topology) -> np.ndarray:
    """Shortest-path hop counts between agents over the topology's links (BFS)."""
    n = topology.weights.shape[0]
    nbrs = [[] for _ in range(n)]
    for i, j in topology.links:
        nbrs[i].append(j)
        nbrs[j].append(i)
    hops = np.full((n, n), np.inf)
    for s in range(n):
        hops[s, s], frontier = 0, [s]
        while frontier:
            nxt = []
            for u in frontier:
                for v in nbrs[u]:
                    if hops[s, v] == np.inf:
                        hops[s, v] = hops[s, u] + 1
                        nxt.append(v)
            frontier = nxt
    return hops


def routed_traffic_factor(cut: np.ndarray, topology: Topology) -> float:
    """If boundary rows could only travel over topology links (relayed along shortest paths), the
    link traffic they cause relative to direct delivery: ``sum C_ab hops_ab / sum C_ab`` (1 = every
    pair sharing data edges is linked; the cut-edge count stands in for the rows per pair)."""
    total = cut.sum()
    return float((cut * hop_counts(topology)).sum() / total) if total else 1.0


# ------------------------------------------------------------------------------- agent state
@dataclass
class AgentState:
    """Optimiser state of the hosted agents (all tensors flat, one per agent)."""

    x: dict[int, Tensor]
    y_mixed: dict[int, Tensor]
    g_prev: dict[int, Tensor]
    generators: dict[int, torch.Generator]
    iteration: int = 0

    def state_dict(self) -> dict[str, Any]:
        agents = sorted(self.x)
        out: dict[str, Any] = {"agents": agents, "iteration": self.iteration,
                               "x": torch.stack([self.x[a] for a in agents]),
                               "rng": torch.stack([self.generators[a].get_state() for a in agents])}
        if self.y_mixed:
            out["y_mixed"] = torch.stack([self.y_mixed[a] for a in agents])
            out["g_prev"] = torch.stack([self.g_prev[a] for a in agents])
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        agents = list(state["agents"])
        if agents != sorted(self.x):
            raise ValueError(f"checkpoint holds agents {agents}, this process hosts {sorted(self.x)}")
        self.iteration = int(state["iteration"])
        self.x = {a: state["x"][k].clone() for k, a in enumerate(agents)}
        for k, a in enumerate(agents):
            self.generators[a].set_state(state["rng"][k].clone())  # a view with an offset crashes torch
        if "y_mixed" in state:
            self.y_mixed = {a: state["y_mixed"][k].clone() for k, a in enumerate(agents)}
            self.g_prev = {a: state["g_prev"][k].clone() for k, a in enumerate(agents)}


def initial_state(ctx: Context) -> AgentState:
    """Every agent starts from the same Glorot initialisation (seeded by ``cfg.seed``)."""
    x0 = ctx.layout.init(ctx.cfg.seed, ctx.dtype)
    gens = {a: torch.Generator().manual_seed(ctx.cfg.seed * 7919 + 104729 * (a + 1)) for a in ctx.comm.agents}
    return AgentState(x={a: x0.clone() for a in ctx.comm.agents}, y_mixed={}, g_prev={}, generators=gens)


# -------------------------------------------------------------------------------- computation
def local_gradients(ctx: Context, x: Mapping[int, Tensor], generators: Mapping[int, torch.Generator] | None,
                    dropout: float) -> tuple[dict[int, Tensor], dict[int, Tensor], dict[int, Tensor]]:
    """Distributed forward and backward at the agents' own weights ``x``.

    Returns per hosted agent: its local loss ``l_a`` (so that the sum over agents is the centralized
    mean cross-entropy), its number of correctly classified training nodes, and its local gradient
    ``g_a = N dL/dx_a + wd x_a`` with ``L = sum_b l_b`` (see module docs).
    """
    params = {a: x[a].detach().requires_grad_() for a in ctx.comm.agents}
    feats = {a: g.x for a, g in ctx.graphs.items()}
    logits = M.dist_forward(ctx.comm, ctx.plan, ctx.adj, feats, params, ctx.layout, dropout, generators)
    losses, correct = {}, {}
    for a, g in ctx.graphs.items():
        idx = g.splits["train"]
        losses[a] = M.cross_entropy_sum(logits[a][idx], g.y[idx]) / ctx.num_train
        correct[a] = (logits[a][idx].argmax(1) == g.y[idx]).sum().to(ctx.dtype)
    torch.stack(list(losses.values())).sum().backward()
    wd, n = ctx.cfg.weight_decay, ctx.num_agents
    grads = {a: n * params[a].grad + wd * x[a] for a in ctx.comm.agents}
    return {a: v.detach() for a, v in losses.items()}, correct, grads


def evaluate_splits(ctx: Context, x: Mapping[int, Tensor], splits: tuple[str, ...] = ("valid", "test")
                    ) -> dict[str, float]:
    """Distributed inference (no dropout) at the agents' own weights: accuracy and mean loss per split."""
    with torch.no_grad():
        feats = {a: g.x for a, g in ctx.graphs.items()}
        logits = M.dist_forward(ctx.comm, ctx.plan, ctx.adj, feats, x, ctx.layout)
    sums = {}
    for a, g in ctx.graphs.items():
        row = []
        for split in splits:
            idx = g.splits[split]
            row += [M.cross_entropy_sum(logits[a][idx], g.y[idx]).double(),
                    (logits[a][idx].argmax(1) == g.y[idx]).sum().double(), torch.tensor(float(idx.numel()))]
        sums[a] = torch.stack([v.double() for v in row])
    total = ctx.comm.all_sum(sums).tolist()
    out = {}
    for k, split in enumerate(splits):
        loss, right, count = total[3 * k:3 * k + 3]
        out[f"{split}/accuracy"] = right / count if count else 0.0
        out[f"{split}/loss"] = loss / count if count else 0.0
    return out


def average_model_loss(ctx: Context, x: Mapping[int, Tensor]) -> float:
    """The centralized training loss (mean cross-entropy, no dropout, no weight decay) of the agents'
    **average** weights ``x_bar``: one all-reduce and one distributed forward (monitoring).

    The per-iteration ``loss`` is ``sum_a l_a(x_a)``, every agent's share of the loss at its *own*
    weights; while the agents disagree it rewards each agent fitting its own nodes (with 64 agents
    on a poorly mixing topology it falls below the centralized loss long before the average model
    is any good), so convergence is judged on ``f(x_bar)`` here, the standard measure of
    decentralized optimisation.
    """
    n = ctx.num_agents
    mean = x[next(iter(x))] if n == 1 else ctx.comm.all_sum(dict(x)) / n
    with torch.no_grad():
        feats = {a: g.x for a, g in ctx.graphs.items()}
        logits = M.dist_forward(ctx.comm, ctx.plan, ctx.adj, feats, {a: mean for a in ctx.comm.agents}, ctx.layout)
    sums = {}
    for a, g in ctx.graphs.items():
        idx = g.splits["train"]
        sums[a] = M.cross_entropy_sum(logits[a][idx], g.y[idx]).double().reshape(1)
    return float(ctx.comm.all_sum(sums)) / ctx.num_train


def consensus_error(ctx: Context, x: Mapping[int, Tensor]) -> float:
    """``mean_a ||x_a - x_bar||^2`` (monitoring: computed with an all-reduce, in float64)."""
    n = ctx.num_agents
    if n == 1:
        return 0.0
    mean = ctx.comm.all_sum({a: v.double() for a, v in x.items()}) / n
    sq = ctx.comm.all_sum({a: ((v.double() - mean) ** 2).sum() for a, v in x.items()})
    return float(sq) / n


def step(ctx: Context, state: AgentState) -> dict[str, float]:
    """One iteration of ``cfg.algorithm`` for the hosted agents; returns the iteration's monitoring row."""
    cfg, comm = ctx.cfg, ctx.comm
    before = {a: dict(comm.bytes_sent[a]) for a in comm.agents}
    losses, correct, grads = local_gradients(ctx, state.x, state.generators, cfg.dropout)
    if cfg.algorithm == "gt":
        if state.iteration == 0:
            y = grads
        else:
            y = {a: state.y_mixed[a] + grads[a] - state.g_prev[a] for a in comm.agents}
        p = ctx.layout.size
        mixed = comm.mix({a: torch.cat([state.x[a] - cfg.lr * y[a], y[a]]) for a in comm.agents}, ctx.mixing)
        state.x = {a: mixed[a][:p].clone() for a in comm.agents}
        state.y_mixed = {a: mixed[a][p:].clone() for a in comm.agents}
        state.g_prev = grads
    elif cfg.algorithm == "dgd":
        mixed = comm.mix(state.x, ctx.mixing)
        state.x = {a: mixed[a] - cfg.lr * grads[a] for a in comm.agents}
    else:  # centralized: a single agent, no consensus
        state.x = {a: state.x[a] - cfg.lr * grads[a] for a in comm.agents}
    state.iteration += 1
    sent = {a: torch.tensor([comm.bytes_sent[a].get(k, 0) - before[a].get(k, 0) for k in ("exchange", "mix")],
                            dtype=torch.float64) for a in comm.agents}
    totals = comm.all_sum({a: torch.cat([losses[a].double().reshape(1), correct[a].double().reshape(1),
                                         sent[a], grads[a].double()]) for a in comm.agents})
    n = ctx.num_agents
    return {"epoch": state.iteration, "loss": float(totals[0]), "train_accuracy": float(totals[1]) / ctx.num_train,
            "consensus_error": consensus_error(ctx, state.x),
            "grad_norm": float(totals[4:].norm()) / n,
            "bytes_exchange": float(totals[2]) / n, "bytes_mix": float(totals[3]) / n}


def gather_weights(ctx: Context, state: AgentState) -> Tensor:
    """All agents' parameter vectors, stacked (monitoring: an all-gather in real mode)."""
    return torch.stack(ctx.comm.gather(state.x))


def run_loop(ctx: Context, state: AgentState, history: list[dict[str, float]], best: dict[str, Any],
             on_eval, bar=None) -> None:
    """Iterate until ``cfg.iterations``; after every ``eval_every`` iterations evaluate and call
    ``on_eval(row)`` (which checkpoints). ``history`` and ``best`` are updated in place."""
    cfg = ctx.cfg
    while state.iteration < cfg.iterations:
        # before the step, at the weights the step's forward sees (so it pairs with ``loss``); the
        # exchange it makes is outside the step's byte and time accounting
        average = average_model_loss(ctx, state.x) if cfg.monitor_average_loss else None
        tic = time.perf_counter()
        row = step(ctx, state)
        row["seconds"] = time.perf_counter() - tic
        if average is not None:
            row["average_loss"] = average
        if not np.isfinite(row["loss"]):
            raise FloatingPointError(f"training loss became {row['loss']} at iteration {state.iteration}; "
                                     f"lower the learning rate (now {cfg.lr:g})")
        if state.iteration % cfg.eval_every == 0 or state.iteration == cfg.iterations:
            row.update(evaluate_splits(ctx, state.x))
            if row["valid/accuracy"] > best.get("valid/accuracy", -1.0):
                best.clear()
                best.update({k: v for k, v in row.items() if k.startswith(("valid/", "test/"))})
                best["iteration"] = state.iteration
                best["weights"] = gather_weights(ctx, state)
            history.append(row)
            on_eval(row)
        else:
            history.append(row)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", cons=f"{row['consensus_error']:.1e}")

"""Configuration and presets of distributed GCN training."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from paperzoo.api import Preset
from paperzoo.core.config import check

_NAME = "DistGCNConfig"


@dataclass(frozen=True)
class DistGCNConfig:
    """A 2-layer GCN trained by N agents that each own a part of the graph."""

    dataset: Literal["sbm", "cora", "citeseer"] = "sbm"
    """``cora`` / ``citeseer`` (Planetoid public split), or ``sbm``: a synthetic stochastic block model
    graph whose classes are its blocks."""
    sbm_nodes: int = 160
    """Nodes of the synthetic SBM graph."""
    sbm_blocks: int = 4
    """Blocks (= classes) of the synthetic SBM graph."""
    normalize_features: bool = False
    """Divide every feature row by its sum (Kipf & Welling's preprocessing for Adam). Off by default:
    with row-normalised bag-of-words features the first layer's gradients are ~20x smaller than the
    second's, and plain gradient steps (all three algorithms here) barely move it."""
    algorithm: Literal["gt", "dgd", "centralized"] = "gt"
    """``gt``: gradient tracking (NEXT-style: local step, consensus, tracking of the average gradient);
    ``dgd``: decentralized gradient descent without tracking; ``centralized``: one agent holding the
    whole graph, plain gradient descent (the reference)."""
    num_agents: int = 4
    """Agents the graph is split over (ignored by ``centralized``; must equal ``nprocs`` when > 0)."""
    partition: Literal["spectral", "random", "contiguous"] = "spectral"
    """How nodes are assigned to agents: balanced recursive spectral bisection (few cut edges),
    balanced random, or contiguous ranges of node ids."""
    topology: Literal["designed", "ring", "star", "random", "complete"] = "designed"
    """Communication topology of the consensus steps. ``designed``: chosen from the agents' data (the
    link set of the budget whose Metropolis-Hastings mixing lets the least disagreement build up for
    the agents' gradients at the initial weights, see ``topology.designed_links``); ``ring``; ``star``
    (hub 0, extra links between leaves up to ``links``); ``random`` (a random connected graph with
    ``links`` links); ``complete``."""
    links: int = 0
    """Link budget of ``designed`` / ``star`` / ``random`` (0 = as many as a ring: N for N >= 3)."""
    mixing: Literal["auto", "metropolis", "fmmc"] = "auto"
    """Mixing weights on the topology: Metropolis-Hastings, or fastest-mixing (maximise the spectral
    gap by projected subgradient); ``auto`` = metropolis (fastest-mixing weights slowed gradient
    tracking on every topology measured)."""
    hidden: int = 16
    """Hidden units of the GCN."""
    dropout: float = 0.5
    """Dropout on the input features and the hidden layer during training."""
    lr: float = 0.5
    """Step size of every algorithm (plain gradient steps, no momentum)."""
    weight_decay: float = 5e-4
    """L2 penalty (weight_decay / 2) * ||w||^2 on all parameters, part of every local objective."""
    iterations: int = 300
    """Optimisation iterations (one forward/backward and one consensus round each)."""
    eval_every: int = 10
    """Evaluate on the validation and test nodes (and checkpoint) every this many iterations."""
    fmmc_steps: int = 300
    """Projected-subgradient steps of the fastest-mixing weight optimisation."""
    design_sketch: int = 256
    """``designed`` topology: columns of the random sketch of the agents' initial gradients that agent
    0 designs from (0 = the full gradients)."""
    design_proposals: int = 3000
    """``designed`` topology: link moves tried per start of the local search."""
    monitor_average_loss: bool = True
    """Record ``average_loss`` every iteration: the centralized training loss of the agents' average
    weights (one extra all-reduce and forward per iteration, outside the timed step and its byte
    counts). ``loss`` is the sum of the agents' losses at their own weights, which rewards
    disagreement; topology comparisons use ``average_loss``."""
    nprocs: int = 0
    """0: all agents simulated in this process; N > 0: N real processes over torch.distributed (gloo)."""
    comm_timeout: float = 60.0
    """Real mode: seconds an agent waits for a peer before failing with an error, and the longest an
    agent may go without communicating before the launcher ends the run as hung (never hangs)."""
    startup_timeout: float = 120.0
    """Real mode: seconds every agent process may take to start and join the group (imports,
    rendezvous) before the launcher ends the run."""
    dtype: Literal["float32", "float64"] = "float32"
    """Floating-point type of features, weights and messages."""
    split_seed: int = 0
    """Seed of the synthetic graph, the random partition and the random topology."""
    seed: int = 0
    """Seed of the weight initialisation (shared by all agents) and of dropout."""
    num_threads: int = 1
    """torch intra-op threads per process (0 = torch's default). 1 by default: the per-agent matrices
    are small, and more threads mostly contend (10x slower on a busy 2-core machine)."""

    def __post_init__(self) -> None:
        for name in ("sbm_nodes", "sbm_blocks", "num_agents", "hidden", "iterations", "eval_every",
                     "fmmc_steps", "design_proposals"):
            check(getattr(self, name) >= 1, _NAME, name, "must be >= 1")
        check(self.sbm_nodes >= 4 * self.sbm_blocks, _NAME, "sbm_nodes",
              f"must be >= 4 * sbm_blocks ({4 * self.sbm_blocks}) so every block has train/valid/test nodes")
        check(self.num_agents <= 64, _NAME, "num_agents", "must be <= 64")
        check(0.0 <= self.dropout < 1.0, _NAME, "dropout", "must be in [0, 1)")
        check(self.lr > 0, _NAME, "lr", "must be > 0")
        check(self.weight_decay >= 0, _NAME, "weight_decay", "must be >= 0")
        check(self.links >= 0, _NAME, "links", "must be >= 0")
        check(self.design_sketch >= 0, _NAME, "design_sketch", "must be >= 0 (0 = the full gradients)")
        n = self.num_agents
        if self.links:
            check(n - 1 <= self.links <= n * (n - 1) // 2, _NAME, "links",
                  f"must be between N-1 = {n - 1} (connected) and N(N-1)/2 = {n * (n - 1) // 2}")
        check(self.nprocs >= 0, _NAME, "nprocs", "must be >= 0")
        if self.nprocs:
            check(self.algorithm != "centralized" or self.nprocs == 1, _NAME, "nprocs",
                  "the centralized baseline runs in one process (nprocs 0 or 1)")
            check(self.algorithm == "centralized" or self.nprocs == self.num_agents, _NAME, "nprocs",
                  f"real mode runs one agent per process: nprocs must equal num_agents ({self.num_agents})")
        check(self.comm_timeout > 0, _NAME, "comm_timeout", "must be > 0")
        check(self.startup_timeout > 0, _NAME, "startup_timeout", "must be > 0")
        check(self.num_threads >= 0, _NAME, "num_threads", "must be >= 0")

    @property
    def agents(self) -> int:
        """Number of agents actually used (1 for the centralized baseline)."""
        return 1 if self.algorithm == "centralized" else self.num_agents


PRESETS = {
    "tiny": Preset(
        "tiny",
        DistGCNConfig(dataset="sbm", sbm_nodes=120, sbm_blocks=3, num_agents=3, hidden=8, iterations=20,
                      eval_every=5, fmmc_steps=50),
        "seconds-long smoke run: 3 simulated agents on a 120-node SBM graph"),
    "quick": Preset(
        "quick",
        DistGCNConfig(dataset="cora", num_agents=4, iterations=300),
        "Cora, 4 simulated agents, spectral partition, designed topology, gradient tracking",
        dataset="cora"),
    "paper_cora": Preset(
        "paper_cora",
        DistGCNConfig(dataset="cora", num_agents=8, iterations=500, eval_every=10),
        "Cora, 8 agents, gradient tracking over the designed topology (500 iterations)",
        dataset="cora"),
    "paper_citeseer": Preset(
        "paper_citeseer",
        DistGCNConfig(dataset="citeseer", num_agents=8, iterations=500, eval_every=10),
        "CiteSeer, 8 agents, gradient tracking over the designed topology (500 iterations)",
        dataset="citeseer"),
}

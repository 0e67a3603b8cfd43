"""Communication between agents: one interface, an in-process simulator and a torch.distributed backend.

A :class:`Comm` hosts some agents (all of them in simulation, one per process in real mode) and
offers the three operations the algorithm needs. Every argument and result is a dict keyed by the
*hosted* agents, so the agent code is written once and runs unchanged in both modes:

- ``exchange(outgoing, incoming_rows, dim)``: point-to-point messages of boundary rows;
  ``outgoing[a][p]`` goes from agent ``a`` to peer ``p``; the result holds ``received[a][p]``.
- ``mix(values, weights)``: one consensus round ``sum_j W[a, j] values[j]`` over the topology
  (each agent sends its vector to its neighbours, ``W[a, j] != 0``).
- ``all_sum`` / ``gather``: monitoring only (metrics, consensus error, checkpoints); not part of
  the algorithm and not counted in its bytes.

:func:`halo_exchange` wraps ``exchange`` in an autograd function whose backward sends the
gradients of the received rows back to their owners through the reverse exchange, where they are
added to the gradients of the rows that were sent: distributed back-propagation.

Bytes are counted per sending agent and kind (``exchange``, ``mix``) as the payload size
(``numel * element_size``), identically in both modes.
"""
from __future__ import annotations

import datetime as _dt
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import torch
from torch import Tensor

log = logging.getLogger(__name__)

Messages = dict[int, dict[int, Tensor]]


class AgentFailure(RuntimeError):
    """A peer agent stopped answering (died, or exceeded the communication timeout)."""


class Comm(Protocol):
    """What the agent code needs from the network (see module docs)."""

    num_agents: int
    agents: tuple[int, ...]
    bytes_sent: dict[int, dict[str, int]]

    def exchange(self, outgoing: Mapping[int, Mapping[int, Tensor]],
                 incoming_rows: Mapping[int, Mapping[int, int]], dim: int, dtype: torch.dtype) -> Messages:
        ...

    def mix(self, values: Mapping[int, Tensor], weights: Tensor) -> dict[int, Tensor]:
        ...

    def all_sum(self, values: Mapping[int, Tensor]) -> Tensor:
        ...

    def gather(self, values: Mapping[int, Tensor]) -> list[Tensor]:
        ...

    def broadcast(self, tensor: Tensor, src: int = 0) -> Tensor:
        ...


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _neighbours(weights: Tensor, a: int) -> list[int]:
    return [int(j) for j in weights[a].nonzero().flatten().tolist() if int(j) != a]


class SimComm:
    """All agents in this process; messages are handed over directly and counted exactly."""

    def __init__(self, num_agents: int):
        self.num_agents = num_agents
        self.agents = tuple(range(num_agents))
        self.bytes_sent: dict[int, dict[str, int]] = {a: defaultdict(int) for a in self.agents}

    def exchange(self, outgoing, incoming_rows, dim, dtype) -> Messages:
        received: Messages = {a: {} for a in self.agents}
        for a, msgs in outgoing.items():
            for p, t in msgs.items():
                if t.shape != (incoming_rows[p][a], dim):
                    raise RuntimeError(f"agent {a} sends {tuple(t.shape)} to {p}, which expects "
                                       f"({incoming_rows[p][a]}, {dim})")
                received[p][a] = t
                self.bytes_sent[a]["exchange"] += _nbytes(t)
        return received

    def mix(self, values, weights) -> dict[int, Tensor]:
        out = {}
        for a in self.agents:
            acc = weights[a, a] * values[a]
            for j in _neighbours(weights, a):
                acc = acc + weights[a, j] * values[j]
                self.bytes_sent[j]["mix"] += _nbytes(values[j])
            out[a] = acc
        return out

    def all_sum(self, values) -> Tensor:
        return torch.stack([values[a] for a in self.agents]).sum(0)

    def gather(self, values) -> list[Tensor]:
        return [values[a] for a in self.agents]

    def broadcast(self, tensor: Tensor, src: int = 0) -> Tensor:
        return tensor


class DistComm:
    """One agent per process over ``torch.distributed`` (gloo), point-to-point ``isend``/``irecv``.

    Every wait is bounded by ``timeout``: a dead or stuck peer raises :class:`AgentFailure` naming
    the operation and the peers, instead of hanging. ``on_progress`` (if given) is called when each
    operation starts and when it completes: the launcher's heartbeat (see
    :class:`paperzoo.methods.dist_gcn.worker.Heartbeat`), so an agent that spends longer than the
    timeout away from the network is known to be stuck in its own code.
    """

    def __init__(self, timeout: float, on_progress: Callable[[], None] | None = None):
        import torch.distributed as dist

        if not dist.is_initialized():
            raise RuntimeError("DistComm needs torch.distributed.init_process_group() first")
        self.dist = dist
        self.rank = dist.get_rank()
        self.num_agents = dist.get_world_size()
        self.agents = (self.rank,)
        self.timeout = _dt.timedelta(seconds=timeout)
        self.bytes_sent: dict[int, dict[str, int]] = {self.rank: defaultdict(int)}
        self._progress = on_progress or (lambda: None)

    def _wait(self, works: Sequence, what: str, peers: Sequence[int]) -> None:
        self._progress()
        try:
            for work in works:
                work.wait(self.timeout)
            self._progress()
        except RuntimeError as exc:
            raise AgentFailure(
                f"agent {self.rank}: {what} with agents {sorted(set(peers))} failed after at most "
                f"{self.timeout.total_seconds():g} s: a peer process died or stopped responding "
                f"({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})") from exc

    def _p2p(self, sends: Mapping[int, Tensor], recvs: Mapping[int, Tensor], what: str) -> None:
        dist = self.dist
        ops = [dist.P2POp(dist.irecv, buf, p) for p, buf in recvs.items()]
        ops += [dist.P2POp(dist.isend, t, p) for p, t in sends.items()]
        if ops:
            try:
                works = dist.batch_isend_irecv(ops)
            except RuntimeError as exc:
                raise AgentFailure(f"agent {self.rank}: {what} could not start ({exc})") from exc
            self._wait(works, what, list(sends) + list(recvs))

    def exchange(self, outgoing, incoming_rows, dim, dtype) -> Messages:
        a = self.rank
        sends = {p: t.detach().contiguous() for p, t in outgoing.get(a, {}).items()}
        recvs = {p: torch.empty(n, dim, dtype=dtype) for p, n in incoming_rows[a].items()}
        self._p2p(sends, recvs, "boundary-row exchange")
        self.bytes_sent[a]["exchange"] += sum(_nbytes(t) for t in sends.values())
        return {a: recvs}

    def mix(self, values, weights) -> dict[int, Tensor]:
        a = self.rank
        mine = values[a].detach().contiguous()
        peers = _neighbours(weights, a)
        recvs = {j: torch.empty_like(mine) for j in peers}
        self._p2p({j: mine for j in peers}, recvs, "consensus round")
        self.bytes_sent[a]["mix"] += _nbytes(mine) * len(peers)
        acc = weights[a, a] * values[a]
        for j in peers:
            acc = acc + weights[a, j] * recvs[j]
        return {a: acc}

    def _collective(self, fn, what: str):
        self._progress()
        try:
            work = fn()
            work.wait(self.timeout)
            self._progress()
        except RuntimeError as exc:
            raise AgentFailure(f"agent {self.rank}: {what} failed after at most "
                               f"{self.timeout.total_seconds():g} s: a peer process died or stopped "
                               f"responding ({str(exc).splitlines()[0] if str(exc) else exc})") from exc

    def all_sum(self, values) -> Tensor:
        out = values[self.rank].detach().clone()
        self._collective(lambda: self.dist.all_reduce(out, async_op=True), "all-reduce (metrics)")
        return out

    def gather(self, values) -> list[Tensor]:
        mine = values[self.rank].detach().contiguous()
        out = [torch.empty_like(mine) for _ in range(self.num_agents)]
        self._collective(lambda: self.dist.all_gather(out, mine, async_op=True), "all-gather (checkpoint)")
        return out

    def broadcast(self, tensor: Tensor, src: int = 0) -> Tensor:
        out = tensor.contiguous().clone()
        self._collective(lambda: self.dist.broadcast(out, src, async_op=True), "broadcast (setup)")
        return out

    def barrier(self) -> None:
        """Wait (at most ``timeout``) until every agent has reached this point."""
        self._collective(lambda: self.dist.barrier(async_op=True), "barrier")


class _HaloExchange(torch.autograd.Function):
    """Forward: send the rows each peer needs and return the received halo of every hosted agent.
    Backward: send the halo gradients back to their owners and scatter-add them into the sent rows."""

    @staticmethod
    def forward(ctx, comm: Comm, plan: HaloPlan, *owned: Tensor) -> tuple[Tensor, ...]:
        ctx.comm, ctx.plan = comm, plan
        ctx.shapes = [t.shape for t in owned]
        dim, dtype = owned[0].shape[1], owned[0].dtype
        ctx.dim, ctx.dtype = dim, dtype
        outgoing = {a: {p: z.index_select(0, idx) for p, idx in plan.send_index[a].items()}
                    for a, z in zip(comm.agents, owned)}
        received = comm.exchange(outgoing, plan.recv_rows, dim, dtype)
        return tuple(_concat(received[a], plan.recv_rows[a], dim, dtype) for a in comm.agents)

    @staticmethod
    def backward(ctx, *grad_halo: Tensor):
        comm, plan = ctx.comm, ctx.plan
        outgoing = {}
        for a, g in zip(comm.agents, grad_halo):
            chunks = g.split(list(plan.recv_rows[a].values())) if plan.recv_rows[a] else ()
            outgoing[a] = {p: c.contiguous() for p, c in zip(plan.recv_rows[a], chunks)}
        send_rows = {a: {p: int(idx.numel()) for p, idx in plan.send_index[a].items()} for a in comm.agents}
        received = comm.exchange(outgoing, send_rows, ctx.dim, ctx.dtype)
        grads = []
        for a, shape in zip(comm.agents, ctx.shapes):
            g = torch.zeros(shape, dtype=ctx.dtype)
            for p, idx in plan.send_index[a].items():
                g.index_add_(0, idx, received[a][p])
            grads.append(g)
        return (None, None, *grads)


def _concat(parts: Mapping[int, Tensor], rows: Mapping[int, int], dim: int, dtype: torch.dtype) -> Tensor:
    if not rows:
        return torch.zeros(0, dim, dtype=dtype)
    return torch.cat([parts[p] for p in rows])  # the order of ``rows``: peers ascending


class HaloPlan:
    """Who sends which rows to whom, for the hosted agents (built once from their local graphs)."""

    def __init__(self, send_index: Mapping[int, Mapping[int, Tensor]], recv_rows: Mapping[int, Mapping[int, int]]):
        self.send_index = {a: dict(v) for a, v in send_index.items()}
        self.recv_rows = {a: dict(sorted(v.items())) for a, v in recv_rows.items()}


def halo_exchange(comm: Comm, plan: HaloPlan, owned: Mapping[int, Tensor]) -> dict[int, Tensor]:
    """The halo rows of every hosted agent (differentiable: see :class:`_HaloExchange`)."""
    halos = _HaloExchange.apply(comm, plan, *[owned[a] for a in comm.agents])
    return dict(zip(comm.agents, halos))

"""The Heterogeneous Graph Transformer layer and its Relative Temporal Encoding.

Hu, Dong, Wang, Sun. "Heterogeneous Graph Transformer", WWW 2020.
https://arxiv.org/abs/2003.01332 (official code: https://github.com/acbull/pyHGT)

Pure PyTorch: no PyG, no ``torch_scatter``. The call signature follows PyG's ``HGTConv``
(``x_dict``, ``edge_index_dict``), so a model written for PyG can use :class:`HGTLayer` without
PyG installed. Everything is vectorised over edges and nodes; Python loops run only over node
types and edge types.

Notation (for one edge ``s -(r)-> t`` with node types ``tau(s)``, ``tau(t)``, ``H`` heads of size
``d = out_dim / H``)::

    h~_s       = h_s + RTE(T(t) - T(s))                    (only with use_rte and times)
    K_s        = K_tau(s)(h~_s),  V_s = V_tau(s)(h~_s),  Q_t = Q_tau(t)(h_t)     (split in H heads)
    logit_i(e) = (K_s^i W_att[r]^i) . Q_t^i * mu[r]^i / sqrt(d)                 (head i)
    Att_i(e)   = softmax of logit_i over ALL edges entering t, whatever their type
    Msg_i(e)   = V_s^i W_msg[r]^i
    agg_t      = concat_i sum_{e into t} Att_i(e) Msg_i(e)
    h'_t       = LN_tau(t)( a * Dropout(A_tau(t)(GELU(agg_t))) + (1 - a) * h_t ),  a = sigmoid(skip_tau(t))

The skip term is used only when ``in_dim == out_dim``; the LayerNorm only when ``use_norm``.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

EdgeType = Tuple[str, str, str]

__all__ = ["RelTemporalEncoding", "HGTLayer", "segment_softmax"]


def segment_softmax(logits: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Softmax of ``logits`` within groups of rows that share the same ``index``.

    .. math:: \\mathrm{out}_e = \\exp(z_e - m_{g(e)}) / \\sum_{e': g(e') = g(e)} \\exp(z_{e'} - m_{g(e)})

    where :math:`m_g` is the largest logit of group :math:`g` (subtracted for stability; the
    result does not depend on it, so it is taken without gradient).

    Parameters
    ----------
    logits : Tensor, shape (E, ...)
    index : LongTensor, shape (E,)
        Group of each row, in ``[0, num_segments)``.
    num_segments : int

    Returns
    -------
    Tensor, same shape as ``logits``; each group's rows sum to one along dim 0.
    """
    trailing = logits.shape[1:]
    expanded = index.view(-1, *([1] * len(trailing))).expand_as(logits)
    seg_max = logits.new_zeros((num_segments, *trailing))
    seg_max = seg_max.scatter_reduce(0, expanded, logits.detach(), reduce="amax", include_self=False)
    exp = (logits - seg_max.index_select(0, index)).exp()
    seg_sum = logits.new_zeros((num_segments, *trailing)).index_add_(0, index, exp)
    return exp / seg_sum.index_select(0, index)


def _sinusoid_table(max_len: int, dim: int) -> Tensor:
    """Fixed table ``emb[dt, 2j] = sin(dt w_j) / sqrt(dim)``, ``emb[dt, 2j+1] = cos(dt w_j) / sqrt(dim)``,
    with ``w_j = 10000^(-2j/dim)``: the official code's encoding, including its 1/sqrt(dim) scale."""
    position = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(max_len, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * freq) / math.sqrt(dim)
    table[:, 1::2] = torch.cos(position * freq)[:, : dim // 2] / math.sqrt(dim)
    return table.to(torch.get_default_dtype())


class RelTemporalEncoding(nn.Module):
    """Relative Temporal Encoding (paper, Sec. 3.5).

    .. math::
        \\mathrm{Base}(\\Delta t, 2j) = \\sin(\\Delta t / 10000^{2j/d}) / \\sqrt{d}, \\quad
        \\mathrm{Base}(\\Delta t, 2j+1) = \\cos(\\Delta t / 10000^{2j/d}) / \\sqrt{d}

        \\mathrm{forward}(x, \\Delta t) = x + \\mathrm{Dropout}(\\mathrm{Linear}(\\mathrm{Base}(\\Delta t)))

    The sinusoid table is a fixed buffer; only the linear map is learnt. (The official code sets
    ``requires_grad = False`` on the embedding *module*, which does not freeze its weight, so there
    the table is in fact trained as well; we follow the paper and keep it fixed.)

    Parameters
    ----------
    dim : int
        Feature size of ``x`` (the layer's input size).
    max_len : int, default 240
        Number of table rows; ``delta_t`` must be an index in ``[0, max_len)``.
    dropout : float, default 0.2
        Dropout on the encoding term. The official code accepts this argument but never uses
        it; :class:`HGTLayer` therefore builds its RTE with ``dropout=0`` to match it.
    """

    def __init__(self, dim: int, max_len: int = 240, dropout: float = 0.2):
        super().__init__()
        if dim <= 0 or max_len <= 0:
            raise ValueError(f"dim and max_len must be positive, got dim={dim}, max_len={max_len}")
        self.dim = dim
        self.max_len = max_len
        self.register_buffer("table", _sinusoid_table(max_len, dim))
        self.lin = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, delta_t: Tensor) -> Tensor:
        """Add the encoding of ``delta_t`` (LongTensor, shape (E,), table indices) to ``x`` (E, dim)."""
        if delta_t.dtype.is_floating_point or delta_t.dtype == torch.bool:
            raise TypeError(f"delta_t must be an integer tensor, got {delta_t.dtype}")
        if delta_t.shape != x.shape[:1]:
            raise ValueError(f"delta_t has shape {tuple(delta_t.shape)}, expected ({x.shape[0]},)")
        if delta_t.numel() and (int(delta_t.min()) < 0 or int(delta_t.max()) >= self.max_len):
            raise ValueError(
                f"delta_t must lie in [0, {self.max_len}), got values in "
                f"[{int(delta_t.min())}, {int(delta_t.max())}]"
            )
        enc = self.table.index_select(0, delta_t.long()).to(x.dtype)
        return x + self.drop(self.lin(enc))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_len={self.max_len}"


def _cat(tensors: List[Tensor]) -> Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


# Edges are processed in chunks of this many. Only (E, heads) tensors and node-level tables are
# kept for backward, whatever the chunk; the chunk bounds the transient (chunk x out_dim)
# temporaries. Smaller chunks (64k) cost the same CPU time on one thread but issue more parallel
# regions, which stall when other processes hold the cores (benchmarks/hgt/README.md).
_EDGE_CHUNK = 1 << 19


def _gather_rows(table: Tensor, index: Tensor, extra: Optional[Tensor], extra_index: Optional[Tensor],
                 lo: int, hi: int) -> Tensor:
    """``table[index[lo:hi]] (+ extra[extra_index[lo:hi]])``: a new (hi - lo, C) tensor."""
    rows = table.index_select(0, index[lo:hi])
    if extra is not None:
        rows += extra.index_select(0, extra_index[lo:hi])
    return rows


def _scatter_rows(grads: List[Optional[Tensor]], indices: List[Optional[Tensor]], rows: Tensor,
                  lo: int, hi: int) -> None:
    for g, i in zip(grads, indices):
        if g is not None:
            g.index_add_(0, i[lo:hi], rows)


class _EdgeDot(torch.autograd.Function):
    """``out[e, h] = <K_e^h, Q[dst_e]^h>`` with ``K_e = k[src_e] (+ rk[tix_e])``, per head,
    computed and differentiated chunk by chunk (no (E, C) tensor is kept)."""

    @staticmethod
    def forward(ctx, heads: int, q: Tensor, dst: Tensor, k: Tensor, src: Tensor,
                rk: Optional[Tensor], tix: Optional[Tensor]) -> Tensor:
        E, C = dst.numel(), q.size(1)
        out = q.new_empty(E, heads)
        for lo in range(0, E, _EDGE_CHUNK):
            hi = min(lo + _EDGE_CHUNK, E)
            kk = _gather_rows(k, src, rk, tix, lo, hi)
            kk *= q.index_select(0, dst[lo:hi])
            torch.sum(kk.view(hi - lo, heads, C // heads), -1, out=out[lo:hi])
        ctx.heads = heads
        ctx.save_for_backward(q, dst, k, src, rk, tix)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):
        q, dst, k, src, rk, tix = ctx.saved_tensors
        H = ctx.heads
        E, C = dst.numel(), q.size(1)
        need_q, need_k, need_rk = ctx.needs_input_grad[1], ctx.needs_input_grad[3], ctx.needs_input_grad[5]
        gq = torch.zeros_like(q) if need_q else None
        gk = torch.zeros_like(k) if need_k else None
        grk = torch.zeros_like(rk) if (need_rk and rk is not None) else None
        for lo in range(0, E, _EDGE_CHUNK):
            hi = min(lo + _EDGE_CHUNK, E)
            gg = g[lo:hi].unsqueeze(-1)
            if gk is not None or grk is not None:
                t = q.index_select(0, dst[lo:hi])
                t.view(hi - lo, H, C // H).mul_(gg)
                _scatter_rows([gk, grk], [src, tix], t, lo, hi)
            if gq is not None:
                t = _gather_rows(k, src, rk, tix, lo, hi)
                t.view(hi - lo, H, C // H).mul_(gg)
                gq.index_add_(0, dst[lo:hi], t)
        return None, gq, None, gk, None, grk, None


class _EdgeAggregate(torch.autograd.Function):
    """``out[t, h] = sum_{e: dst_e = t} w[e, h] V_e^h`` with ``V_e = v[src_e] (+ rv[tix_e])``,
    computed and differentiated chunk by chunk. ``out`` has shape (num_dst, C)."""

    @staticmethod
    def forward(ctx, num_dst: int, w: Tensor, dst: Tensor, v: Tensor, src: Tensor,
                rv: Optional[Tensor], tix: Optional[Tensor]) -> Tensor:
        E, H, C = dst.numel(), w.size(1), v.size(1)
        out = v.new_zeros(num_dst, C)
        for lo in range(0, E, _EDGE_CHUNK):
            hi = min(lo + _EDGE_CHUNK, E)
            vv = _gather_rows(v, src, rv, tix, lo, hi)
            vv.view(hi - lo, H, C // H).mul_(w[lo:hi].unsqueeze(-1))
            out.index_add_(0, dst[lo:hi], vv)
        ctx.save_for_backward(w, dst, v, src, rv, tix)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):
        w, dst, v, src, rv, tix = ctx.saved_tensors
        E, H, C = dst.numel(), w.size(1), v.size(1)
        need_w, need_v, need_rv = ctx.needs_input_grad[1], ctx.needs_input_grad[3], ctx.needs_input_grad[5]
        gw = torch.empty_like(w) if need_w else None
        gv = torch.zeros_like(v) if need_v else None
        grv = torch.zeros_like(rv) if (need_rv and rv is not None) else None
        for lo in range(0, E, _EDGE_CHUNK):
            hi = min(lo + _EDGE_CHUNK, E)
            gg = g.index_select(0, dst[lo:hi])
            if gw is not None:
                vv = _gather_rows(v, src, rv, tix, lo, hi)
                vv *= gg
                torch.sum(vv.view(hi - lo, H, C // H), -1, out=gw[lo:hi])
            if gv is not None or grv is not None:
                gg.view(hi - lo, H, C // H).mul_(w[lo:hi].unsqueeze(-1))
                _scatter_rows([gv, grv], [src, tix], gg, lo, hi)
        return None, gw, None, gv, None, grv, None


def _glorot_(t: Tensor) -> None:
    """Uniform in ±sqrt(6 / (fan_in + fan_out)) over the last two dims (PyG's / pyHGT's ``glorot``)."""
    bound = math.sqrt(6.0 / (t.size(-2) + t.size(-1)))
    with torch.no_grad():
        t.uniform_(-bound, bound)


class HGTLayer(nn.Module):
    """One Heterogeneous Graph Transformer layer (paper, Sec. 3; Eq. 1-5).

    For every edge ``s -(r)-> t``:

    .. math::
        \\tilde h_s = h_s + \\mathrm{RTE}(T(t) - T(s)) \\quad (\\text{if RTE is on})

        \\mathrm{ATT}^i(e) = (K^i(\\tilde h_s) W^{ATT,i}_r) \\cdot Q^i(h_t) \\; \\mu^i_r / \\sqrt{d}

        \\mathrm{Attention}(e) = \\mathrm{softmax}_{e \\to t}(\\mathrm{ATT}(e))
            \\quad (\\text{over every edge into } t, \\text{ all edge types together})

        \\mathrm{MSG}^i(e) = V^i(\\tilde h_s) W^{MSG,i}_r

        \\tilde H_t = \\Vert_i \\sum_{e \\to t} \\mathrm{Attention}^i(e) \\, \\mathrm{MSG}^i(e)

        H'_t = \\mathrm{LN}_{\\tau(t)}\\big(\\alpha \\, \\mathrm{Dropout}(A_{\\tau(t)}(\\mathrm{GELU}(\\tilde H_t)))
               + (1 - \\alpha) H_t\\big), \\quad \\alpha = \\sigmoid(\\mathrm{skip}_{\\tau(t)})

    ``K``, ``Q``, ``V``, ``A`` are linear maps (with bias) per node type; ``W_att``, ``W_msg``
    (glorot) and ``mu`` (ones) are per edge type and per head. The skip term appears only when
    ``in_dim == out_dim``; the LayerNorm only when ``use_norm``.

    Node types that receive no edge (a node with no incoming edge, or a node type that is the
    target of no edge type present in the call) go through the same update with ``agg = 0``,
    as in the official code: ``h' = LN(alpha * Dropout(A(0)) + (1 - alpha) * h)``. Every node type
    in ``x_dict`` therefore has an output (PyG's ``HGTConv`` omits or sets to ``None`` the types
    that are no edge type's target).

    Parameters
    ----------
    in_dim : int
        Input feature size, the same for every node type.
    out_dim : int
        Output size; must be divisible by ``heads``.
    node_types : sequence of str
    edge_types : sequence of (src_type, relation, dst_type)
        Each edge type gets its own ``W_att``, ``W_msg`` and ``mu``.
    heads : int
    dropout : float, default 0.2
        Dropout after the target-specific linear map ``A``.
    use_norm : bool, default True
        LayerNorm per target node type after the skip connection.
    use_rte : bool, default False
        Relative temporal encoding, applied when ``time_dict`` is passed to :meth:`forward`.
    max_time : int, default 240
        Size of the RTE table. An edge's table index is ``T(t) - T(s) + max_time // 2``
        (the official code stores ``T(t) - T(s) + 120`` with a 240-row table), so time
        differences must lie in ``[-(max_time // 2), max_time - max_time // 2)``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        node_types: Sequence[str],
        edge_types: Sequence[EdgeType],
        heads: int,
        dropout: float = 0.2,
        use_norm: bool = True,
        use_rte: bool = False,
        max_time: int = 240,
    ):
        super().__init__()
        if heads <= 0 or out_dim % heads != 0:
            raise ValueError(f"out_dim ({out_dim}) must be divisible by heads ({heads})")
        self.node_types: List[str] = list(node_types)
        self.edge_types: List[EdgeType] = [tuple(e) for e in edge_types]  # type: ignore[misc]
        if len(set(self.node_types)) != len(self.node_types):
            raise ValueError(f"duplicate node types in {self.node_types}")
        if len(set(self.edge_types)) != len(self.edge_types):
            raise ValueError(f"duplicate edge types in {self.edge_types}")
        for et in self.edge_types:
            if len(et) != 3 or et[0] not in self.node_types or et[2] not in self.node_types:
                raise ValueError(f"edge type {et} must be (src, relation, dst) with known node types")
        self.node_index: Dict[str, int] = {t: i for i, t in enumerate(self.node_types)}
        self.edge_index_of: Dict[EdgeType, int] = {e: i for i, e in enumerate(self.edge_types)}

        self.in_dim, self.out_dim, self.heads = in_dim, out_dim, heads
        self.d_k = out_dim // heads
        self.use_norm, self.use_rte, self.max_time = use_norm, use_rte, max_time
        self.time_offset = max_time // 2

        n_types, n_rel = len(self.node_types), len(self.edge_types)
        self.k_lin = nn.ModuleList(nn.Linear(in_dim, out_dim) for _ in range(n_types))
        self.q_lin = nn.ModuleList(nn.Linear(in_dim, out_dim) for _ in range(n_types))
        self.v_lin = nn.ModuleList(nn.Linear(in_dim, out_dim) for _ in range(n_types))
        self.a_lin = nn.ModuleList(nn.Linear(out_dim, out_dim) for _ in range(n_types))
        self.norms = nn.ModuleList(nn.LayerNorm(out_dim) for _ in range(n_types)) if use_norm else None
        self.w_att = nn.Parameter(torch.empty(n_rel, heads, self.d_k, self.d_k))
        self.w_msg = nn.Parameter(torch.empty(n_rel, heads, self.d_k, self.d_k))
        self.mu = nn.Parameter(torch.ones(n_rel, heads))
        # Only used when in_dim == out_dim; kept always so state dicts have one shape.
        self.skip = nn.Parameter(torch.ones(n_types))
        self.drop = nn.Dropout(dropout)
        self.rte = RelTemporalEncoding(in_dim, max_len=max_time, dropout=0.0) if use_rte else None
        _glorot_(self.w_att)
        _glorot_(self.w_msg)

    # ------------------------------------------------------------------ checks
    def _check_inputs(
        self,
        x_dict: Dict[str, Tensor],
        edge_index_dict: Dict[EdgeType, Tensor],
        time_dict: Optional[Dict[str, Tensor]],
    ) -> None:
        for nt, x in x_dict.items():
            if nt not in self.node_index:
                raise KeyError(f"unknown node type {nt!r}; known: {self.node_types}")
            if x.dim() != 2 or x.size(1) != self.in_dim:
                raise ValueError(f"x_dict[{nt!r}] has shape {tuple(x.shape)}, expected (N, {self.in_dim})")
        for et, ei in edge_index_dict.items():
            et = tuple(et)
            if et not in self.edge_index_of:
                raise KeyError(f"unknown edge type {et!r}; known: {self.edge_types}")
            src, _, dst = et
            for nt in (src, dst):
                if nt not in x_dict:
                    raise KeyError(f"edge type {et!r} needs features x_dict[{nt!r}]")
            if ei.dim() != 2 or ei.size(0) != 2 or ei.dtype.is_floating_point or ei.dtype == torch.bool:
                raise ValueError(
                    f"edge_index_dict[{et!r}] must be an integer tensor of shape (2, E), "
                    f"got {ei.dtype} {tuple(ei.shape)}"
                )
            if ei.numel():
                for row, nt in ((0, src), (1, dst)):
                    lo, hi, n = int(ei[row].min()), int(ei[row].max()), x_dict[nt].size(0)
                    if lo < 0 or hi >= n:
                        side = "source" if row == 0 else "target"
                        raise IndexError(
                            f"edge_index_dict[{et!r}] {side} indices span [{lo}, {hi}] but "
                            f"{nt!r} has {n} nodes"
                        )
        if time_dict is not None and self.use_rte:
            for et in edge_index_dict:
                for nt in (et[0], et[2]):
                    if nt not in time_dict:
                        raise KeyError(f"use_rte needs time_dict[{nt!r}] (used by edge type {tuple(et)!r})")
                    t = time_dict[nt]
                    if t.shape != (x_dict[nt].size(0),) or t.dtype.is_floating_point:
                        raise ValueError(
                            f"time_dict[{nt!r}] must be an integer tensor of shape "
                            f"({x_dict[nt].size(0)},), got {t.dtype} {tuple(t.shape)}"
                        )

    # ----------------------------------------------------------------- forward
    def forward(
        self,
        x_dict: Dict[str, Tensor],
        edge_index_dict: Dict[EdgeType, Tensor],
        time_dict: Optional[Dict[str, Tensor]] = None,
        return_attention: bool = False,
    ):
        """Run the layer.

        Parameters
        ----------
        x_dict : dict node type -> Tensor (N_type, in_dim)
        edge_index_dict : dict (src, rel, dst) -> LongTensor (2, E)
            Row 0 indexes source nodes of type ``src``, row 1 target nodes of type ``dst``.
        time_dict : dict node type -> LongTensor (N_type,), optional
            Integer node times. Used only when the layer was built with ``use_rte=True``;
            ignored otherwise. Without it the layer runs without temporal encoding.
        return_attention : bool
            Also return ``{edge type: Tensor (E, heads)}``, the attention of each edge.

        Returns
        -------
        dict node type -> Tensor (N_type, out_dim), for every node type in ``x_dict``;
        with ``return_attention``, the pair ``(out_dict, attention_dict)``.

        Notes
        -----
        This computes exactly the formulas of the class docstring, rearranged for speed (see
        :meth:`_forward_reference` for the literal per-edge computation, which the tests compare
        against):

        * ``W_att[r]`` and ``mu[r] / sqrt(d)`` are folded into the key weights and ``W_msg[r]``
          into the value weights, per head: ``K'_r = x W_k'^T + b_k'`` with
          ``W_k'[h] = W_att[r, h]^T W_k[h] mu[r, h] / sqrt(d)``. All projections of one node type
          (its query and the key/value of every relation leaving it) are ONE matmul over its
          nodes; the per-edge work is then only gathers, one dot product per head and
          scatter-adds. A relation with fewer edges than source nodes is projected per edge.
        * With RTE, ``K(h_s + RTE(dt)) = K(h_s) + W_k RTE(dt)`` (the encoding has no dropout in
          this layer), so the encoding's contribution is a ``(max_time, 2 * out_dim)`` table per
          relation, gathered per edge and added.
        * The softmax denominator is applied after aggregation, per target node:
          ``agg_t = sum_e exp(z_e - m_t) Msg_e / sum_e exp(z_e - m_t)``; one softmax per target
          node type covers all its incoming edge types.
        """
        self._check_inputs(x_dict, edge_index_dict, time_dict)
        rte_on = self.rte is not None and time_dict is not None
        if rte_on and self.training and self.rte.drop.p > 0:
            # Dropout on the encoding is per edge: it does not commute with the projections.
            return self._forward_reference(x_dict, edge_index_dict, time_dict, return_attention,
                                           check=False)
        H, D = self.heads, self.d_k
        HD = H * D

        # -- edges, grouped by target type; time-table indices when RTE is on
        edges: List[Tuple[EdgeType, int, Tensor, Tensor, Optional[Tensor]]] = []
        for et, ei in edge_index_dict.items():
            et = tuple(et)
            si, di = ei[0].long(), ei[1].long()
            tix = self._time_index(et, si, di, time_dict) if rte_on else None
            edges.append((et, self.edge_index_of[et], si, di, tix))  # type: ignore[arg-type]
        targets = {et[2] for et, *_ in edges}

        # -- per source type: one matmul for its query and all its relations' K'_r | V'_r
        scale = (self.mu / math.sqrt(D)).unsqueeze(-1).unsqueeze(-1)  # (R, H, 1, 1)
        w_att = self.w_att * scale
        per_node: Dict[str, List[int]] = {}  # node type -> positions in `edges` projected per node
        per_edge: List[int] = []
        for j, (et, _, si, _, _) in enumerate(edges):
            n_src = x_dict[et[0]].size(0)
            (per_edge if si.numel() < n_src else per_node.setdefault(et[0], [])).append(j)
        kv_weight: Dict[int, Tuple[Tensor, Tensor]] = {}
        for j, (et, r, *_) in enumerate(edges):
            kv_weight[j] = self._kv_weight(self.node_index[et[0]], r, w_att)

        q_nodes: Dict[str, Tensor] = {}
        k_table: Dict[int, Tensor] = {}  # edge position -> K'_r (rows, HD): per node or per edge
        v_table: Dict[int, Tensor] = {}  # edge position -> V'_r (rows, HD)
        for nt, x in x_dict.items():
            want_q = nt in targets
            rels = per_node.get(nt, [])
            if not want_q and not rels:
                continue
            i = self.node_index[nt]
            ws, bs = [], []
            if want_q:
                ws.append(self.q_lin[i].weight)
                bs.append(self.q_lin[i].bias)
            for j in rels:
                ws.append(kv_weight[j][0])
                bs.append(kv_weight[j][1])
            proj = F.linear(x, torch.cat(ws) if len(ws) > 1 else ws[0], torch.cat(bs) if len(bs) > 1 else bs[0])
            # split, not slicing: one backward node (a cat) instead of a zero-filled full-size
            # gradient per slice
            parts = list(proj.split(HD, dim=1)) if proj.size(1) > HD else [proj]
            if want_q:
                q_nodes[nt] = parts.pop(0)
            for j in rels:
                k_table[j], v_table[j] = parts.pop(0), parts.pop(0)
        per_edge_set = set(per_edge)
        for j in per_edge:
            et, _, si, _, _ = edges[j]
            w, b = kv_weight[j]
            k_table[j], v_table[j] = F.linear(x_dict[et[0]].index_select(0, si), w, b).split(HD, dim=1)
        if rte_on:
            enc = self.rte.lin(self.rte.table.to(self.rte.lin.weight.dtype))  # (max_time, in_dim)

        # -- per target type: one gather, one softmax, one scatter-add over all incoming edges
        out_dict: Dict[str, Tensor] = {}
        att_dict: Dict[EdgeType, Tensor] = {}
        by_dst: Dict[str, List[int]] = {}
        for j, (et, *_) in enumerate(edges):
            by_dst.setdefault(et[2], []).append(j)
        for nt, x in x_dict.items():
            n = x.size(0)
            i = self.node_index[nt]
            if nt in by_dst:
                k_tabs, v_tabs, src_idx, dst_idx, rk_tabs, rv_tabs, rte_idx = [], [], [], [], [], [], []
                row_off = 0
                for slot, j in enumerate(by_dst[nt]):
                    _, _, si, di, tix = edges[j]
                    src_idx.append((torch.arange(si.numel()) if j in per_edge_set else si) + row_off)
                    row_off += k_table[j].size(0)
                    k_tabs.append(k_table[j])
                    v_tabs.append(v_table[j])
                    dst_idx.append(di)
                    if rte_on:
                        rk, rv = F.linear(enc, kv_weight[j][0]).split(HD, dim=1)
                        rk_tabs.append(rk)
                        rv_tabs.append(rv)
                        rte_idx.append(tix + slot * self.max_time)
                dst, src = _cat(dst_idx), _cat(src_idx)
                rk = rv = tix = None
                if rte_on:
                    rk, rv, tix = _cat(rk_tabs), _cat(rv_tabs), _cat(rte_idx)
                logit = _EdgeDot.apply(H, q_nodes[nt], dst, _cat(k_tabs), src, rk, tix)  # (E, H)
                seg_max = logit.new_zeros(n, H).scatter_reduce(
                    0, dst.unsqueeze(1).expand(-1, H), logit.detach(), reduce="amax", include_self=False)
                ex = (logit - seg_max.index_select(0, dst)).exp()
                den = logit.new_zeros(n, H).index_add(0, dst, ex)
                num = _EdgeAggregate.apply(n, ex, dst, _cat(v_tabs), src, rv, tix).view(n, H, D)
                den = torch.where(den > 0, den, torch.ones_like(den))  # nodes with no incoming edge
                agg = (num / den.unsqueeze(-1)).reshape(n, HD)
                if return_attention:
                    att = ex / den.index_select(0, dst)
                    counts = [edges[j][2].numel() for j in by_dst[nt]]
                    for j, a in zip(by_dst[nt], att.split(counts)):
                        att_dict[edges[j][0]] = a
            else:
                agg = x.new_zeros(n, HD)
            out = self.drop(self.a_lin[i](F.gelu(agg)))
            if self.in_dim == self.out_dim:
                alpha = torch.sigmoid(self.skip[i])
                out = alpha * out + (1 - alpha) * x
            if self.norms is not None:
                out = self.norms[i](out)
            out_dict[nt] = out
        if return_attention:
            return out_dict, att_dict
        return out_dict

    def _kv_weight(self, src_index: int, r: int, w_att: Tensor) -> Tuple[Tensor, Tensor]:
        """Weight (2*out_dim, in_dim) and bias (2*out_dim,) mapping a source node to ``K'_r | V'_r``:
        the key projection followed by ``W_att[r] * mu[r] / sqrt(d)`` and the value projection
        followed by ``W_msg[r]``, per head."""
        H, D = self.heads, self.d_k
        k, v = self.k_lin[src_index], self.v_lin[src_index]
        wk = torch.einsum("hdf,hdi->hfi", w_att[r], k.weight.view(H, D, -1)).reshape(H * D, -1)
        wv = torch.einsum("hdf,hdi->hfi", self.w_msg[r], v.weight.view(H, D, -1)).reshape(H * D, -1)
        bk = torch.einsum("hdf,hd->hf", w_att[r], k.bias.view(H, D)).reshape(-1)
        bv = torch.einsum("hdf,hd->hf", self.w_msg[r], v.bias.view(H, D)).reshape(-1)
        return torch.cat([wk, wv]), torch.cat([bk, bv])

    def _time_index(self, et: EdgeType, si: Tensor, di: Tensor, time_dict: Dict[str, Tensor]) -> Tensor:
        """RTE table row of every edge, ``T(dst) - T(src) + max_time // 2``, range-checked."""
        src_t, _, dst_t = et
        dt = time_dict[dst_t].long().index_select(0, di) - time_dict[src_t].long().index_select(0, si)
        lo, hi = -self.time_offset, self.max_time - self.time_offset
        if dt.numel() and (int(dt.min()) < lo or int(dt.max()) >= hi):
            raise ValueError(
                f"time differences T(dst) - T(src) of edge type {et!r} span "
                f"[{int(dt.min())}, {int(dt.max())}]; with max_time={self.max_time} they must "
                f"lie in [{lo}, {hi})"
            )
        return dt + self.time_offset

    def _forward_reference(
        self,
        x_dict: Dict[str, Tensor],
        edge_index_dict: Dict[EdgeType, Tensor],
        time_dict: Optional[Dict[str, Tensor]] = None,
        return_attention: bool = False,
        check: bool = True,
    ):
        """The literal per-edge computation of the class docstring (slow; the tests check that
        :meth:`forward` equals it). Also used when the RTE module has active dropout."""
        if check:
            self._check_inputs(x_dict, edge_index_dict, time_dict)
        rte_on = self.rte is not None and time_dict is not None
        H, D = self.heads, self.d_k

        q_nodes = {nt: self.q_lin[self.node_index[nt]](x).view(-1, H, D) for nt, x in x_dict.items()}
        k_nodes: Dict[str, Tensor] = {}
        v_nodes: Dict[str, Tensor] = {}

        # Per target node type: the logits, messages and target indices of every incoming edge.
        logits: Dict[str, List[Tensor]] = {}
        msgs: Dict[str, List[Tensor]] = {}
        dsts: Dict[str, List[Tensor]] = {}
        order: Dict[str, List[Tuple[EdgeType, int]]] = {}
        for et, ei in edge_index_dict.items():
            et = tuple(et)
            src_t, _, dst_t = et
            r = self.edge_index_of[et]
            si, di = ei[0].long(), ei[1].long()
            ks, vs = self.k_lin[self.node_index[src_t]], self.v_lin[self.node_index[src_t]]
            if rte_on:
                # The source feature is shifted per edge, so K and V are computed per edge.
                dt = time_dict[dst_t].long().index_select(0, di) - time_dict[src_t].long().index_select(0, si)
                lo, hi = -self.time_offset, self.max_time - self.time_offset
                if dt.numel() and (int(dt.min()) < lo or int(dt.max()) >= hi):
                    raise ValueError(
                        f"time differences T(dst) - T(src) of edge type {et!r} span "
                        f"[{int(dt.min())}, {int(dt.max())}]; with max_time={self.max_time} they must "
                        f"lie in [{lo}, {hi})"
                    )
                h = self.rte(x_dict[src_t].index_select(0, si), dt + self.time_offset)
                k, v = ks(h).view(-1, H, D), vs(h).view(-1, H, D)
            else:
                if src_t not in k_nodes:
                    k_nodes[src_t] = ks(x_dict[src_t]).view(-1, H, D)
                    v_nodes[src_t] = vs(x_dict[src_t]).view(-1, H, D)
                k = k_nodes[src_t].index_select(0, si)
                v = v_nodes[src_t].index_select(0, si)
            k = torch.einsum("ehd,hdf->ehf", k, self.w_att[r])
            q = q_nodes[dst_t].index_select(0, di)
            logit = (k * q).sum(-1) * self.mu[r] / math.sqrt(D)  # (E, H)
            logits.setdefault(dst_t, []).append(logit)
            msgs.setdefault(dst_t, []).append(torch.einsum("ehd,hdf->ehf", v, self.w_msg[r]))
            dsts.setdefault(dst_t, []).append(di)
            order.setdefault(dst_t, []).append((et, di.numel()))

        out_dict: Dict[str, Tensor] = {}
        att_dict: Dict[EdgeType, Tensor] = {}
        for nt, x in x_dict.items():
            n = x.size(0)
            agg = x.new_zeros(n, H, D)
            if nt in logits:
                index = torch.cat(dsts[nt])
                att = segment_softmax(torch.cat(logits[nt]), index, n)  # (E_all, H)
                agg = agg.index_add(0, index, torch.cat(msgs[nt]) * att.unsqueeze(-1))
                if return_attention:
                    for (et, _), a in zip(order[nt], att.split([c for _, c in order[nt]])):
                        att_dict[et] = a
            i = self.node_index[nt]
            out = self.drop(self.a_lin[i](F.gelu(agg.reshape(n, H * D))))
            if self.in_dim == self.out_dim:
                alpha = torch.sigmoid(self.skip[i])
                out = alpha * out + (1 - alpha) * x
            if self.norms is not None:
                out = self.norms[i](out)
            out_dict[nt] = out
        if return_attention:
            return out_dict, att_dict
        return out_dict

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, heads={self.heads}, "
            f"node_types={len(self.node_types)}, edge_types={len(self.edge_types)}, "
            f"use_norm={self.use_norm}, use_rte={self.use_rte}"
        )

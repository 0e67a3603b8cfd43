"""HGT and its baselines in one harness: shared node inputs, interchangeable encoders, one head.

Every encoder maps ``x_dict`` (node type -> (N, hidden)) plus the typed edges to new
``x_dict``; :class:`NodeClassifier` puts the same input layer in front and the same linear head
behind, so HGT, R-GCN, the homogeneous GCN/GAT and the MLP differ only in the encoder.

Inputs. None of the graphs here ships node features, so every model reads the same inputs,
chosen by ``features``:

- ``embedding``: a learnable vector per node (transductive; nodes never seen by the loss are
  trained only through message passing, and stay at their random init for the MLP),
- ``structural``: fixed per-node features, ``log(1 + degree)`` for every edge type the node
  type takes part in (as source and as target) and, for timed node types, the year scaled to
  [0, 1] over the graph's range,
- ``both``: the two concatenated.

Node attributes that a dataset does ship (``HeteroGraph.node_features``; here only IMDB's word
vectors of plot keywords, with ``text_features=True``) are appended to the inputs of the types
that have them, again for every model alike.

Per node type these go through ``Linear -> tanh -> Dropout`` to ``hidden`` (the official HGT
code's ``adapt_ws`` step), for every model alike.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from paperzoo.data.hetero import HeteroGraph
from paperzoo.methods.hgt.layer import HGTLayer, segment_softmax

EdgeType = tuple[str, str, str]
MODELS = ("hgt", "rgcn", "gcn", "gat", "mlp")
FEATURES = ("embedding", "structural", "both")


# --------------------------------------------------------------------------------- features
def structural_features(graph: HeteroGraph) -> Dict[str, Tensor]:
    """Per node type: log1p degree per incident edge type and side, plus the scaled year if timed."""
    cols: Dict[str, list[Tensor]] = {nt: [] for nt in graph.node_types}
    for (src, _, dst), e in sorted(graph.edges.items()):
        cols[src].append(torch.bincount(e[0], minlength=graph.num_nodes[src]).float().log1p())
        cols[dst].append(torch.bincount(e[1], minlength=graph.num_nodes[dst]).float().log1p())
    times = [t for t in graph.node_time.values() if t.numel()]
    if times:
        lo = min(int(t.min()) for t in times)
        hi = max(int(t.max()) for t in times)
        for nt, t in graph.node_time.items():
            cols[nt].append((t.float() - lo) / max(hi - lo, 1))
    out = {}
    for nt in graph.node_types:
        n = graph.num_nodes[nt]
        out[nt] = torch.stack(cols[nt], 1) if cols[nt] else torch.zeros(n, 1)
    return out


class NodeInputs(nn.Module):
    """Input layer shared by every model: features (see module docstring) -> hidden, per type."""

    def __init__(self, num_nodes: Dict[str, int], hidden: int, features: str = "embedding",
                 structural: Optional[Dict[str, Tensor]] = None, dropout: float = 0.2,
                 no_embedding: Sequence[str] = (), attributes: Optional[Dict[str, Tensor]] = None):
        """``no_embedding``: node types that get structural features only, never a per-node
        learnable vector (e.g. the labelled type, so that unlabelled targets are not represented
        by vectors no loss ever trained). ``attributes``: fixed per-type node attributes
        ``(num_nodes, d)``, appended for the types present in it."""
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
        if (features != "embedding" or no_embedding) and structural is None:
            raise ValueError(f"features={features!r} / no_embedding need the structural feature tensors")
        self.node_types = list(num_nodes)
        self.features = features
        self.emb = nn.ModuleDict()
        self.adapt = nn.ModuleDict()
        self.use_struct: Dict[str, bool] = {}
        self.use_attr: Dict[str, bool] = {}
        for nt, n in num_nodes.items():
            width = 0
            if features in ("embedding", "both") and nt not in no_embedding:
                self.emb[nt] = nn.Embedding(n, hidden)
                nn.init.normal_(self.emb[nt].weight, std=1.0 / math.sqrt(hidden))
                width += hidden
            self.use_struct[nt] = features in ("structural", "both") or nt in no_embedding
            if self.use_struct[nt]:
                self.register_buffer(f"struct_{nt}", structural[nt].float(), persistent=False)
                width += structural[nt].size(1)
            self.use_attr[nt] = attributes is not None and nt in attributes
            if self.use_attr[nt]:
                if attributes[nt].shape[0] != n:
                    raise ValueError(f"attributes[{nt!r}] has {attributes[nt].shape[0]} rows, expected {n}")
                self.register_buffer(f"attr_{nt}", attributes[nt].float(), persistent=False)
                width += attributes[nt].size(1)
            self.adapt[nt] = nn.Linear(width, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, node_ids: Optional[Dict[str, Tensor]] = None) -> Dict[str, Tensor]:
        """``node_ids``: per type, the (type-local) ids of the nodes in the batch; None = all nodes."""
        out = {}
        for nt in self.node_types:
            ids = None if node_ids is None else node_ids[nt]
            parts = []
            if nt in self.emb:
                w = self.emb[nt].weight
                parts.append(w if ids is None else w.index_select(0, ids))
            for flag, name in ((self.use_struct[nt], f"struct_{nt}"), (self.use_attr[nt], f"attr_{nt}")):
                if flag:
                    s = getattr(self, name)
                    parts.append(s if ids is None else s.index_select(0, ids))
            x = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            out[nt] = self.drop(torch.tanh(self.adapt[nt](x)))
        return out


# --------------------------------------------------------------------------------- encoders
class HGTEncoder(nn.Module):
    """A stack of :class:`HGTLayer` (hidden -> hidden, so every layer has its skip gate).

    As in the official code: ``self_loops`` adds a ``(t, "self", t)`` relation for every node type
    (each node attends to itself with its own ``W_att``/``W_msg``/``mu``, next to its neighbours);
    ``use_norm`` is the LayerNorm of every layer but the last (official ``prev_norm``) and
    ``last_norm`` that of the last layer.
    """

    SELF = "self"

    def __init__(self, node_types, edge_types, hidden: int, heads: int, layers: int,
                 dropout: float, use_norm: bool = True, use_rte: bool = True, max_time: int = 240,
                 self_loops: bool = True, last_norm: bool = False):
        super().__init__()
        self.use_rte, self.self_loops = use_rte, self_loops
        edge_types = [tuple(e) for e in edge_types]
        if self_loops:
            edge_types += [(nt, self.SELF, nt) for nt in node_types]
        self.layers = nn.ModuleList(
            HGTLayer(hidden, hidden, node_types, edge_types, heads, dropout=dropout,
                     use_norm=use_norm if i < layers - 1 else last_norm, use_rte=use_rte,
                     max_time=max_time)
            for i in range(layers))

    def forward(self, x_dict, edge_index_dict, time_dict=None):
        t = time_dict if self.use_rte else None
        if self.self_loops:
            edge_index_dict = dict(edge_index_dict)
            for nt, x in x_dict.items():
                loop = torch.arange(x.size(0), device=x.device)
                edge_index_dict[(nt, self.SELF, nt)] = torch.stack([loop, loop])
        for layer in self.layers:
            x_dict = layer(x_dict, edge_index_dict, t)
        return x_dict


class RGCNEncoder(nn.Module):
    """R-GCN (Schlichtkrull et al. 2018): ``h_i' = W_0 h_i + sum_r sum_{j in N_r(i)} W_r h_j / |N_r(i)|``,
    ReLU and dropout between layers. No basis decomposition (few relations here)."""

    def __init__(self, node_types, edge_types, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.edge_types = [tuple(e) for e in edge_types]
        self.rel = {e: i for i, e in enumerate(self.edge_types)}
        self.self_lin = nn.ModuleList(
            nn.ModuleDict({nt: nn.Linear(hidden, hidden) for nt in node_types}) for _ in range(layers))
        self.rel_w = nn.ParameterList(
            nn.Parameter(torch.empty(len(self.edge_types), hidden, hidden)) for _ in range(layers))
        for w in self.rel_w:
            nn.init.xavier_uniform_(w.view(-1, hidden))
        self.drop = nn.Dropout(dropout)

    def forward(self, x_dict, edge_index_dict, time_dict=None):
        n_layers = len(self.rel_w)
        for li in range(n_layers):
            out = {nt: self.self_lin[li][nt](x) for nt, x in x_dict.items()}
            for et, ei in edge_index_dict.items():
                src, _, dst = et
                if ei.numel() == 0:
                    continue
                msg = (x_dict[src] @ self.rel_w[li][self.rel[tuple(et)]]).index_select(0, ei[0])
                n = x_dict[dst].size(0)
                deg = torch.bincount(ei[1], minlength=n).clamp_min(1).to(msg.dtype)
                out[dst] = out[dst].index_add(0, ei[1], msg / deg.index_select(0, ei[1]).unsqueeze(1))
            if li < n_layers - 1:
                out = {nt: self.drop(F.relu(h)) for nt, h in out.items()}
            x_dict = out
        return x_dict


def to_homogeneous(x_dict: Dict[str, Tensor], edge_index_dict, self_loops: bool = True):
    """Stack node types into one node set (types in ``x_dict`` order) and all edge types into one
    edge list, types ignored. Returns ``(x, edge_index, offsets)``."""
    offsets, pos = {}, 0
    for nt, x in x_dict.items():
        offsets[nt] = pos
        pos += x.size(0)
    x = torch.cat(list(x_dict.values()), 0)
    parts = [torch.stack([ei[0] + offsets[s], ei[1] + offsets[d]])
             for (s, _, d), ei in edge_index_dict.items()]
    if self_loops:
        loop = torch.arange(pos, device=x.device)
        parts.append(torch.stack([loop, loop]))
    edge_index = torch.cat(parts, 1) if parts else torch.empty(2, 0, dtype=torch.long)
    return x, edge_index, offsets


def _split(h: Tensor, x_dict: Dict[str, Tensor], offsets: Dict[str, int]) -> Dict[str, Tensor]:
    return {nt: h[offsets[nt]:offsets[nt] + x.size(0)] for nt, x in x_dict.items()}


class GCNEncoder(nn.Module):
    """Homogeneous GCN (Kipf & Welling 2017) on the graph with types ignored: self-loops and
    symmetric normalisation ``D^-1/2 (A + I) D^-1/2`` (degrees counted at the target)."""

    def __init__(self, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.lins = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.drop = nn.Dropout(dropout)

    def forward(self, x_dict, edge_index_dict, time_dict=None):
        x, ei, offsets = to_homogeneous(x_dict, edge_index_dict)
        n = x.size(0)
        deg = torch.bincount(ei[1], minlength=n).to(x.dtype)
        dinv = deg.clamp_min(1).rsqrt()
        w = (dinv.index_select(0, ei[0]) * dinv.index_select(0, ei[1])).unsqueeze(1)
        for li, lin in enumerate(self.lins):
            h = lin(x)
            x = h.new_zeros(h.shape).index_add(0, ei[1], h.index_select(0, ei[0]) * w)
            if li < len(self.lins) - 1:
                x = self.drop(F.relu(x))
        return _split(x, x_dict, offsets)


class GATEncoder(nn.Module):
    """Homogeneous GAT (Velickovic et al. 2018) with types ignored: self-loops, ``heads`` heads
    concatenated (hidden / heads each), LeakyReLU(0.2) logits, ELU between layers."""

    def __init__(self, hidden: int, heads: int, layers: int, dropout: float):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads, self.d = heads, hidden // heads
        self.lins = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(layers))
        self.att_src = nn.ParameterList(nn.Parameter(torch.empty(heads, self.d)) for _ in range(layers))
        self.att_dst = nn.ParameterList(nn.Parameter(torch.empty(heads, self.d)) for _ in range(layers))
        self.bias = nn.ParameterList(nn.Parameter(torch.zeros(hidden)) for _ in range(layers))
        for p in list(self.att_src) + list(self.att_dst):
            nn.init.xavier_uniform_(p)
        self.drop = nn.Dropout(dropout)

    def forward(self, x_dict, edge_index_dict, time_dict=None, return_attention: bool = False):
        x, ei, offsets = to_homogeneous(x_dict, edge_index_dict)
        n, H, D = x.size(0), self.heads, self.d
        att = None
        for li, lin in enumerate(self.lins):
            h = lin(x).view(n, H, D)
            a_s = (h * self.att_src[li]).sum(-1)
            a_d = (h * self.att_dst[li]).sum(-1)
            logit = F.leaky_relu(a_s.index_select(0, ei[0]) + a_d.index_select(0, ei[1]), 0.2)
            att = segment_softmax(logit, ei[1], n)
            x = h.new_zeros(n, H, D).index_add(0, ei[1], h.index_select(0, ei[0]) * att.unsqueeze(-1))
            x = x.reshape(n, H * D) + self.bias[li]
            if li < len(self.lins) - 1:
                x = self.drop(F.elu(x))
        out = _split(x, x_dict, offsets)
        return (out, (ei, att)) if return_attention else out


class MLPEncoder(nn.Module):
    """No graph: ``layers`` x (Linear -> ReLU -> Dropout) on each node's own input."""

    def __init__(self, node_types, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.lins = nn.ModuleList(
            nn.ModuleDict({nt: nn.Linear(hidden, hidden) for nt in node_types}) for _ in range(layers))
        self.drop = nn.Dropout(dropout)

    def forward(self, x_dict, edge_index_dict=None, time_dict=None):
        for layer in self.lins:
            x_dict = {nt: self.drop(F.relu(layer[nt](x))) for nt, x in x_dict.items()}
        return x_dict


def build_encoder(model: str, node_types: Sequence[str], edge_types: Sequence[EdgeType], *,
                  hidden: int, heads: int, layers: int, dropout: float, use_norm: bool = True,
                  use_rte: bool = True, max_time: int = 240, self_loops: bool = True,
                  last_norm: bool = False) -> nn.Module:
    if model == "hgt":
        return HGTEncoder(node_types, edge_types, hidden, heads, layers, dropout, use_norm, use_rte,
                          max_time, self_loops, last_norm)
    if model == "rgcn":
        return RGCNEncoder(node_types, edge_types, hidden, layers, dropout)
    if model == "gcn":
        return GCNEncoder(hidden, layers, dropout)
    if model == "gat":
        return GATEncoder(hidden, heads, layers, dropout)
    if model == "mlp":
        return MLPEncoder(node_types, hidden, layers, dropout)
    raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")


class NodeClassifier(nn.Module):
    """inputs -> encoder -> linear head on the target node type."""

    def __init__(self, inputs: NodeInputs, encoder: nn.Module, hidden: int, num_classes: int,
                 target: str):
        super().__init__()
        self.inputs, self.encoder, self.target = inputs, encoder, target
        self.head = nn.Linear(hidden, num_classes)

    def embed(self, edge_index_dict, node_ids=None, time_dict=None) -> Dict[str, Tensor]:
        return self.encoder(self.inputs(node_ids), edge_index_dict, time_dict)

    def forward(self, edge_index_dict, node_ids=None, time_dict=None,
                target_index: Optional[Tensor] = None) -> Tensor:
        """Class logits of the target nodes (``target_index``: local indices; None = all)."""
        h = self.embed(edge_index_dict, node_ids, time_dict)[self.target]
        if target_index is not None:
            h = h.index_select(0, target_index)
        return self.head(h)

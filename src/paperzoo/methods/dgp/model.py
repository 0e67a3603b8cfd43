"""The graph networks of DGP (Kampffmeyer et al., CVPR 2019): ADGPM, DGP, and the GCN baselines SGCN, GCNZ.

All four map one input vector per WordNet node (a word embedding) to one output vector per node (the
predicted classifier weights of that class), propagating over the class hierarchy given as
``edges`` (``LongTensor (2, E)``: row 0 the child, row 1 its hypernym), and return L2-normalised
rows. They are trained by regressing the seen classes' CNN weights with :func:`regression_loss`.

* ``adgpm`` - :class:`DenseGraphPropagation` with ``attention=True``: every node is connected to
  all its ancestors and descendants, the connections grouped by hop distance (``max_hop + 1``
  groups), each group weighted by a learnable, softmax-normalised weight per direction. Layer 1
  propagates descendants -> ancestors, layer 2 ancestors -> descendants.
* ``dgp`` - the same two phases without attention: one adjacency per direction over all
  (node, ancestor) pairs of every distance (the official ``gcn_dense.py``).
* ``sgcn`` - :class:`GCN`, two layers over the symmetric hierarchy with self-loops and the
  official code's in-degree (row) normalisation (``train_gcn_basic.py``).
* ``gcnz`` - :class:`GCN`, Wang, Ye & Gupta (CVPR 2018): six layers, hidden
  2048-2048-1024-1024-512, Kipf's symmetric normalisation, no bias, dropout before the last two
  layers, as the authors' ``GCN_dense_mse``.
* ``gcn`` - a plain ``layers``-deep GCN of width 2048 for the depth ablation (``layers=2`` is SGCN).

Sparse products are computed on the narrower side of each layer: ``A (X W + 1 b^T)`` equals
``(A X) W + (A 1) b^T``, so a layer that widens (300 -> 2048) propagates its input, a layer that
narrows propagates ``X W``; the results agree to rounding.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from paperzoo.methods.dgp.graph import Layout, all_ancestor_pairs, gcn_norm, hop_groups, in_norm

log = logging.getLogger(__name__)

MODELS = ("gcnz", "sgcn", "dgp", "adgpm")
"""The four graph models of the paper's comparison, weakest (per the paper) first."""

BUILDABLE = MODELS + ("gcn",)

NEGATIVE_SLOPE = 0.2
GCNZ_HIDDEN = (2048, 2048, 1024, 1024, 512)
DEFAULT_LAYOUT: Layout = "csr"


def _spmm(adj: Tensor, x: Tensor) -> Tensor:
    return torch.sparse.mm(adj, x) if adj.layout == torch.sparse_coo else adj @ x


def _init_linear(in_dim: int, out_dim: int) -> tuple[nn.Parameter, nn.Parameter]:
    """Xavier-uniform weight and zero bias (the official initialisation)."""
    if in_dim < 1 or out_dim < 1:
        raise ValueError(f"layer sizes must be >= 1, got in_dim={in_dim}, out_dim={out_dim}")
    weight = nn.Parameter(torch.empty(in_dim, out_dim))
    nn.init.xavier_uniform_(weight)
    return weight, nn.Parameter(torch.zeros(out_dim))


class DenseGraphConv(nn.Module):
    """One dense-propagation layer: ``act( sum_k w_k A_k (dropout(x) W + b) )``.

    ``act`` is LeakyReLU(0.2) unless ``activation=False`` (the last layer). The adjacencies
    ``A_k`` and the group weights ``w_k`` (already softmax-normalised) are passed to :meth:`forward`,
    so that the owning model keeps one set per direction; ``weights=None`` sums the groups with
    weight 1 (a single group is then a plain graph convolution ``A (x W + b)``).
    """

    def __init__(self, in_dim: int, out_dim: int, *, dropout: float = 0.0, activation: bool = True):
        super().__init__()
        self.weight, self.bias = _init_linear(in_dim, out_dim)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.activation = activation

    def forward(self, x: Tensor, adjs: Sequence[Tensor], weights: Tensor | None = None) -> Tensor:
        """Propagate ``x`` (``n x in_dim``) over ``adjs`` (sparse ``n x n``); returns ``n x out_dim``."""
        if weights is not None and weights.shape != (len(adjs),):
            raise ValueError(f"weights: expected shape ({len(adjs)},), got {tuple(weights.shape)}")
        if self.dropout is not None:
            x = self.dropout(x)
        scale = [None] * len(adjs) if weights is None else list(weights.unbind())
        in_dim, out_dim = self.weight.shape
        if in_dim < out_dim:  # propagate the input, then transform: A(xW + b) = (Ax)W + (A1)b
            ones = x.new_ones(x.shape[0], 1)
            agg = mass = None
            for adj, w in zip(adjs, scale):
                a_x, a_1 = _spmm(adj, x), _spmm(adj, ones)
                if w is not None:
                    a_x, a_1 = a_x * w, a_1 * w
                agg = a_x if agg is None else agg + a_x
                mass = a_1 if mass is None else mass + a_1
            out = torch.addmm(mass * self.bias, agg, self.weight)
        else:
            support = torch.addmm(self.bias, x, self.weight)
            out = None
            for adj, w in zip(adjs, scale):
                y = _spmm(adj, support)
                if w is not None:
                    y = y * w
                out = y if out is None else out + y
        return F.leaky_relu(out, NEGATIVE_SLOPE) if self.activation else out


class GraphConv(nn.Module):
    """One GCN layer as the baselines' code: ``act( P (dropout(x) W) + b )`` (bias after propagation)."""

    def __init__(self, in_dim: int, out_dim: int, *, dropout: float = 0.0, activation: bool = True,
                 bias: bool = True):
        super().__init__()
        self.weight, bias_param = _init_linear(in_dim, out_dim)
        self.bias = bias_param if bias else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.activation = activation

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        """Propagate ``x`` (``n x in_dim``) over the sparse ``adj``; returns ``n x out_dim``."""
        if self.dropout is not None:
            x = self.dropout(x)
        in_dim, out_dim = self.weight.shape
        out = _spmm(adj, x) @ self.weight if in_dim < out_dim else _spmm(adj, x @ self.weight)
        if self.bias is not None:
            out = out + self.bias
        return F.leaky_relu(out, NEGATIVE_SLOPE) if self.activation else out


def _check_input(x: Tensor, n: int, in_dim: int) -> None:
    if x.dim() != 2 or x.shape != (n, in_dim):
        raise ValueError(f"x: expected node inputs of shape ({n}, {in_dim}), got {tuple(x.shape)}")


class DenseGraphPropagation(nn.Module):
    """ADGPM (``attention=True``) or the non-attentive DGP (``attention=False``): two dense layers.

    Layer 1 ("up", descendants -> ancestors): each node averages the support of its descendants,
    per hop-distance group. Layer 2 ("down", ancestors -> descendants): each node averages over its
    ancestors. Dropout (``dropout``) precedes both layers (the official ``'d2048,d'``), the hidden
    width is ``hidden``, the output rows are L2-normalised.

    With attention, ``max_hop + 1`` groups (distance 0 = the node itself, ..., ``>= max_hop``
    merged) each have their in-degree-normalised adjacency and a learnable weight per direction
    (initialised to 1, softmax-normalised). Without attention, as the official ``gcn_dense.py``,
    each direction has ONE in-normalised adjacency over all (node, ancestor) pairs of every
    distance, the self pair included; ``max_hop`` is then unused. ``merge_far=False`` (not in the
    paper; for the depth ablation) drops the pairs farther than ``max_hop`` instead of merging them.

    The adjacencies are non-persistent buffers: ``.to(device)`` moves them, ``state_dict`` holds
    only the learnable parameters (rebuild the model from ``edges`` to load one).
    """

    def __init__(self, n: int, edges: Tensor, in_dim: int, out_dim: int, hidden: int = 2048,
                 attention: bool = True, max_hop: int = 4, dropout: float = 0.5, *,
                 merge_far: bool = True, layout: Layout = DEFAULT_LAYOUT):
        super().__init__()
        self.n, self.in_dim, self.attention = n, in_dim, attention
        if attention:
            groups = hop_groups(edges, n, max_hop, merge_far=merge_far)
        elif merge_far:
            groups = [all_ancestor_pairs(edges, n)]
        else:
            groups = [torch.cat(hop_groups(edges, n, max_hop, merge_far=False), dim=1)]
        self.num_groups = len(groups)
        for direction in ("up", "down"):
            for k, pairs in enumerate(groups):
                self.register_buffer(f"adj_{direction}_{k}", in_norm(pairs, n, direction, layout=layout),
                                     persistent=False)
        if attention:
            self.att_up = nn.Parameter(torch.ones(self.num_groups))
            self.att_down = nn.Parameter(torch.ones(self.num_groups))
        self.conv1 = DenseGraphConv(in_dim, hidden, dropout=dropout, activation=True)
        self.conv2 = DenseGraphConv(hidden, out_dim, dropout=dropout, activation=False)
        log.debug("%s over %d nodes: %s pairs per group", "ADGPM" if attention else "DGP", n,
                  [g.shape[1] for g in groups])

    def adjacencies(self, direction: str) -> list[Tensor]:
        """The sparse adjacencies of ``direction`` ("up" or "down"), one per group."""
        if direction not in ("up", "down"):
            raise ValueError(f"direction: expected 'up' or 'down', got {direction!r}")
        return [getattr(self, f"adj_{direction}_{k}") for k in range(self.num_groups)]

    def _weights(self, direction: str) -> Tensor | None:
        if not self.attention:
            return None
        return F.softmax(self.att_up if direction == "up" else self.att_down, dim=0)

    def group_weights(self) -> dict[str, Tensor]:
        """The softmax-normalised group weights per direction (``{}`` without attention), detached."""
        if not self.attention:
            return {}
        return {d: self._weights(d).detach().clone() for d in ("up", "down")}

    def forward(self, x: Tensor) -> Tensor:
        """Node inputs ``(n, in_dim)`` -> L2-normalised outputs ``(n, out_dim)``."""
        _check_input(x, self.n, self.in_dim)
        h = self.conv1(x, self.adjacencies("up"), self._weights("up"))
        out = self.conv2(h, self.adjacencies("down"), self._weights("down"))
        return F.normalize(out, dim=1)


class GCN(nn.Module):
    """A stack of graph convolutions ``P (x W) + b`` with LeakyReLU(0.2) between, output L2-normalised.

    ``P`` is :func:`~paperzoo.methods.dgp.graph.gcn_norm` of the hierarchy made symmetric, with
    self-loops: ``norm="sym"`` (Kipf, GCNZ) or ``norm="in"`` (row normalisation, the official DGP
    code's SGCN). Dropout of rate ``dropout`` precedes the layers listed in ``dropout_layers``
    (indices into the ``len(hidden) + 1`` layers, negative from the end), or every layer with
    ``dropout_all``. ``bias=False`` drops the biases (the GCNZ authors' layers have none).
    """

    def __init__(self, n: int, edges: Tensor, in_dim: int, out_dim: int, hidden: Sequence[int],
                 dropout: float = 0.5, norm: str = "sym", dropout_all: bool = False, *,
                 dropout_layers: Sequence[int] = (0,), bias: bool = True, layout: Layout = DEFAULT_LAYOUT):
        super().__init__()
        self.n, self.in_dim = n, in_dim
        dims = [in_dim, *(int(h) for h in hidden), out_dim]
        depth = len(dims) - 1
        for i in dropout_layers:
            if not -depth <= i < depth:
                raise ValueError(f"dropout_layers: index {i} out of range for {depth} layers")
        with_dropout = set(range(depth)) if dropout_all else {i % depth for i in dropout_layers}
        self.register_buffer("adj", gcn_norm(edges, n, mode=norm, layout=layout), persistent=False)
        self.layers = nn.ModuleList(
            GraphConv(dims[i], dims[i + 1], dropout=dropout if i in with_dropout else 0.0,
                      activation=i < depth - 1, bias=bias)
            for i in range(depth))

    def group_weights(self) -> dict[str, Tensor]:
        """A plain GCN has no group weights: ``{}`` (the same interface as :class:`DenseGraphPropagation`)."""
        return {}

    def forward(self, x: Tensor) -> Tensor:
        """Node inputs ``(n, in_dim)`` -> L2-normalised outputs ``(n, out_dim)``."""
        _check_input(x, self.n, self.in_dim)
        for layer in self.layers:
            x = layer(x, self.adj)
        return F.normalize(x, dim=1)


def _width(hidden: int | Sequence[int] | None, default: int, name: str) -> int:
    if hidden is None:
        return default
    if isinstance(hidden, int):
        return hidden
    if len(hidden) != 1:
        raise ValueError(f"hidden: model {name!r} has one hidden layer, got {list(hidden)}")
    return int(hidden[0])


def build_model(name: str, n: int, edges: Tensor, in_dim: int, out_dim: int, *,
                hidden: int | Sequence[int] | None = None, layers: int | None = None, max_hop: int = 4,
                dropout: float = 0.5, merge_far: bool = True, layout: Layout = DEFAULT_LAYOUT) -> nn.Module:
    """One of the graph models by name: ``adgpm``, ``dgp``, ``sgcn``, ``gcnz`` or ``gcn``.

    ``hidden`` overrides the hidden width(s): an int for ``adgpm``/``dgp``/``sgcn``/``gcn``, a sequence
    of widths for ``gcnz`` (default 2048-2048-1024-1024-512). ``layers`` is the depth of ``gcn``
    (required there, unused elsewhere): ``layers - 1`` hidden layers of width 2048 (or ``hidden``),
    dropout before the first and the last, row-normalised like SGCN, so ``layers=2`` is SGCN.
    ``merge_far`` (``adgpm``/``dgp``): see :class:`DenseGraphPropagation`.
    """
    if name in ("adgpm", "dgp"):
        return DenseGraphPropagation(n, edges, in_dim, out_dim, hidden=_width(hidden, 2048, name),
                                     attention=name == "adgpm", max_hop=max_hop, dropout=dropout,
                                     merge_far=merge_far, layout=layout)
    if name == "sgcn":
        return GCN(n, edges, in_dim, out_dim, hidden=(_width(hidden, 2048, name),), dropout=dropout,
                   norm="in", dropout_layers=(0, 1), layout=layout)
    if name == "gcnz":
        widths = GCNZ_HIDDEN if hidden is None else ((hidden,) if isinstance(hidden, int) else tuple(hidden))
        return GCN(n, edges, in_dim, out_dim, hidden=widths, dropout=dropout, norm="sym",
                   dropout_layers=(-2, -1) if len(widths) else (0,), bias=False, layout=layout)
    if name == "gcn":
        if not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers: model 'gcn' needs an int depth >= 1, got {layers!r}")
        width = _width(hidden, 2048, name)
        return GCN(n, edges, in_dim, out_dim, hidden=(width,) * (layers - 1), dropout=dropout, norm="in",
                   dropout_layers=(0, -1), layout=layout)
    raise KeyError(f"unknown graph model {name!r}; expected one of {', '.join(BUILDABLE)}")


def regression_loss(pred: Tensor, target: Tensor) -> Tensor:
    """The official ``l2_loss``: sum of squared errors over all entries / (2 * number of rows)."""
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(f"regression_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} "
                         "must be matching (rows, dim) matrices")
    return ((pred - target) ** 2).sum() / (2 * pred.shape[0])

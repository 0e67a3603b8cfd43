"""The zero-shot pipeline: classes -> WordNet graph and word vectors -> seen classifier weights ->
graph networks that predict every class's weights -> Hit@k on unseen classes (and generalized).

Everything a run needs is built here from its config; :mod:`.run` adds checkpoints, metrics and the
report. The protocol follows the official code (yinboc/DGP):

- targets: the seen classes' classifier rows ``[W | b]``, each L2-normalised; graph inputs: GloVe
  vectors of every node, L2-normalised;
- training: full-graph Adam steps on ``sum((pred - target)^2) / (2 S)`` over the S seen rows;
- scoring an image: ``[f(x), 1] . pred[c]`` for every candidate class ``c``; the rank of the true
  class counts ties against it (``#{c : score_c >= score_true}``), Hit@k = rank <= k;
- zero-shot: candidates are the unseen classes only; generalized: seen and unseen classes together
  (the official ``--consider-trains``: the seen classes are scored with their PREDICTED rows too),
  reported as accuracy on seen images, on unseen images, and their harmonic mean H.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from paperzoo.data.text import load_glove
from paperzoo.data.vision import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    channel_stats,
    load_cifar10,
    load_fashion_mnist,
    normalize,
    per_class_indices,
)
from paperzoo.data.wordnet import WordNet, class_graph, embed_synsets
from paperzoo.methods.dgp.config import SYNSETS, UNSEEN_SPLITS, DGPConfig
from paperzoo.methods.dgp.graph import hop_groups
from paperzoo.methods.dgp.model import GCNZ_HIDDEN, build_model, regression_loss

log = logging.getLogger(__name__)

HIT_KS = (1, 2, 5, 10, 20)
CLASS_NAMES = {"cifar10": CIFAR10_CLASSES, "fmnist": FASHION_MNIST_CLASSES}


@dataclass
class Task:
    """A zero-shot problem: the graph with its node inputs, and which nodes are seen/unseen classes."""

    dataset: str
    node_inputs: torch.Tensor
    """(N, d) L2-normalised word vectors."""
    edges: torch.Tensor
    """(2, E) child -> parent node indices."""
    node_names: list[str]
    seen_nodes: torch.Tensor
    """(S,) node of each seen class, in seen-label order."""
    unseen_nodes: torch.Tensor
    """(U,) node of each unseen class, in unseen-label order."""
    seen_names: list[str]
    unseen_names: list[str]
    missing_words: list[str] = field(default_factory=list)
    """Nodes without any word vector (zero inputs)."""
    node_wnids: list[str] = field(default_factory=list)

    @property
    def num_nodes(self) -> int:
        return int(self.node_inputs.size(0))

    def summary(self) -> str:
        return (f"{self.dataset}: {self.num_nodes} graph nodes, {self.edges.size(1)} hypernym edges, "
                f"{len(self.seen_nodes)} seen / {len(self.unseen_nodes)} unseen classes, "
                f"{len(self.missing_words)} nodes without word vectors")


@dataclass
class Images:
    """Images of one dataset split into seen-class training images and seen/unseen test images."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    """Seen labels 0..S-1."""
    test_seen_x: torch.Tensor
    test_seen_y: torch.Tensor
    test_unseen_x: torch.Tensor
    test_unseen_y: torch.Tensor
    """Unseen labels 0..U-1."""
    in_channels: int
    mean: torch.Tensor
    """(C,) per-channel mean of the training images in [0, 1] units (subtracted)."""
    std: torch.Tensor
    """(C,) per-channel population std (divided by)."""


def split_classes(cfg: DGPConfig) -> tuple[list[int], list[int]]:
    """(seen labels, unseen labels) of the config's dataset and split, each sorted."""
    unseen = sorted(UNSEEN_SPLITS[cfg.dataset][cfg.split])
    seen = [c for c in range(len(SYNSETS[cfg.dataset])) if c not in unseen]
    return seen, unseen


def build_task(cfg: DGPConfig, data_root: str | None = None, wordnet: WordNet | None = None) -> Task:
    """The graph and inputs of ``cfg``'s dataset (WordNet, GloVe), seen and unseen class nodes."""
    wn = wordnet or WordNet.load(data_root)
    vectors = load_glove(data_root)
    if cfg.dataset == "imagenet_graph":
        from paperzoo.data.zsl import load_imagenet_graph

        g = load_imagenet_graph(data_root, wordnet=wn)
        x, missing = g.node_vectors(wn, vectors)  # ImageNet's two non-WordNet nodes get zero rows
        test = g.test_sets["2-hops"]
        return Task("imagenet_graph", x, g.edges, list(g.names), g.seen.clone(), test.clone(),
                    [g.names[i] for i in g.seen.tolist()], [g.names[i] for i in test.tolist()], missing,
                    list(g.wnids))
    seen, unseen = split_classes(cfg)
    classes = list(SYNSETS[cfg.dataset])
    keys = [wn.synset(c).offset for c in classes]
    if cfg.graph == "imagenet21k":  # every ImageNet-21K class (seen 1K and test sets) joins the graph
        import json

        from paperzoo.data.roots import locate
        from paperzoo.data.zsl import SOURCE as ZSL_SOURCE

        split = json.loads((locate(ZSL_SOURCE, data_root) / "imagenet-split.json").read_text())
        known = set(keys)
        for wnid in split["train"] + split["test"]:
            offset = int(wnid[1:]) if wnid[1:].isdigit() else None
            if offset is not None and offset not in known and offset in wn:
                known.add(offset)
                keys.append(offset)
    graph = class_graph(wn, keys)
    x, missing = embed_synsets(wn, graph.offsets, vectors)
    names = list(CLASS_NAMES[cfg.dataset])
    task = Task(cfg.dataset, x, graph.edges, list(graph.names), torch.tensor(seen), torch.tensor(unseen),
                [names[c] for c in seen], [names[c] for c in unseen], missing, list(graph.wnids))
    return task


def load_images(cfg: DGPConfig, data_root: str | None = None) -> Images:
    """Training images of the seen classes and test images of all classes, normalised per channel."""
    seen, unseen = split_classes(cfg)
    if cfg.dataset == "cifar10":
        tx, ty = load_cifar10(data_root, "train", limit_per_class=cfg.train_per_class or None)
        vx, vy = load_cifar10(data_root, "test", limit_per_class=cfg.test_per_class or None)
    else:
        tx, ty = load_fashion_mnist(data_root, "train")
        vx, vy = load_fashion_mnist(data_root, "test")
        tx, ty = _per_class(tx, ty, cfg.train_per_class)
        vx, vy = _per_class(vx, vy, cfg.test_per_class)
    mean, std = channel_stats(tx)  # of the training images, in [0, 1] units
    tx, vx = normalize(tx, mean, std), normalize(vx, mean, std)
    seen_map = torch.full((10,), -1, dtype=torch.long)
    seen_map[torch.tensor(seen)] = torch.arange(len(seen))
    unseen_map = torch.full((10,), -1, dtype=torch.long)
    unseen_map[torch.tensor(unseen)] = torch.arange(len(unseen))
    train_mask = seen_map[ty] >= 0
    ts, tu = seen_map[vy] >= 0, unseen_map[vy] >= 0
    return Images(tx[train_mask], seen_map[ty[train_mask]], vx[ts], seen_map[vy[ts]], vx[tu], unseen_map[vy[tu]],
                  int(tx.size(1)), mean, std)


def _per_class(x: torch.Tensor, y: torch.Tensor, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    keep = per_class_indices(y, limit or None)
    return x[keep], y[keep]


# ------------------------------------------------------------------------------------------ graph models
def make_graph_model(name: str, task: Task, out_dim: int, cfg: DGPConfig) -> torch.nn.Module:
    """One graph network of ``cfg.models`` for ``task``'s graph."""
    n, edges, in_dim = task.num_nodes, task.edges, int(task.node_inputs.size(1))
    if name.startswith("gcn") and name[3:].isdigit():
        return build_model("gcn", n, edges, in_dim, out_dim, hidden=cfg.hidden, layers=int(name[3:]),
                           dropout=cfg.dropout)
    if name.startswith("dense") and name[5:].isdigit():
        return build_model("adgpm", n, edges, in_dim, out_dim, hidden=cfg.hidden, max_hop=int(name[5:]),
                           dropout=cfg.dropout, merge_far=False)
    hidden: int | tuple[int, ...] = cfg.hidden
    if name == "gcnz":  # GCNZ's 2048-2048-1024-1024-512, scaled with cfg.hidden (2048 = the original)
        hidden = tuple(max(1, cfg.hidden * w // 2048) for w in GCNZ_HIDDEN)
    return build_model(name, n, edges, in_dim, out_dim, hidden=hidden, max_hop=cfg.max_hop, dropout=cfg.dropout)


def train_graph_model(model: torch.nn.Module, task: Task, targets: torch.Tensor, cfg: DGPConfig,
                      *, desc: str = "graph") -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Regress the seen rows (official loop: full graph, Adam, ``cfg.graph_epochs`` steps); return the
    predicted rows of every node (eval mode) and one history row per 10% of training."""
    from paperzoo.core.progress import progress

    opt = torch.optim.Adam(model.parameters(), lr=cfg.graph_lr, weight_decay=cfg.graph_weight_decay, fused=True)
    x, seen = task.node_inputs, task.seen_nodes
    history = []
    every = max(1, cfg.graph_epochs // 10)
    start = time.perf_counter()
    for epoch in progress(range(1, cfg.graph_epochs + 1), desc=desc, leave=False):
        model.train()
        loss = regression_loss(model(x)[seen], targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if epoch % every == 0 or epoch == cfg.graph_epochs:
            history.append({"epoch": epoch, "loss": float(loss.detach()), "seconds": time.perf_counter() - start})
    model.eval()
    with torch.no_grad():
        pred = model(x)
    return pred, history


# ------------------------------------------------------------------------------------------ evaluation
def ranks(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Rank of the true class in each row (1 = best); ties count against the true class."""
    true = scores.gather(1, labels[:, None])
    return (scores >= true).sum(1)


def hits(scores: torch.Tensor, labels: torch.Tensor, ks=HIT_KS) -> dict[str, float]:
    """Hit@k (flat hit over images) for every k in ``ks``."""
    r = ranks(scores, labels)
    return {f"hit@{k}": float((r <= k).float().mean()) if len(r) else float("nan") for k in ks}


def zero_shot_metrics(pred: torch.Tensor, task: Task, feats_seen: torch.Tensor, y_seen: torch.Tensor,
                      feats_unseen: torch.Tensor, y_unseen: torch.Tensor) -> dict[str, float]:
    """Hit@k among the unseen classes; generalized accuracy on seen / unseen images among all classes
    and their harmonic mean. ``feats_*`` are ``[f(x), 1]`` rows; ``pred`` the predicted rows of every node."""
    pred = F.normalize(pred, dim=1)
    w_unseen, w_seen = pred[task.unseen_nodes], pred[task.seen_nodes]
    out = hits(feats_unseen @ w_unseen.T, y_unseen)
    both = torch.cat([w_seen, w_unseen])
    s = len(task.seen_nodes)
    acc_seen = float((( feats_seen @ both.T).argmax(1) == y_seen).float().mean())
    acc_unseen = float(((feats_unseen @ both.T).argmax(1) == y_unseen + s).float().mean())
    h = 2 * acc_seen * acc_unseen / (acc_seen + acc_unseen) if acc_seen + acc_unseen > 0 else 0.0
    out.update({"gzsl_seen": acc_seen, "gzsl_unseen": acc_unseen, "gzsl_H": h})
    out.update({f"gzsl_{k}": v for k, v in hits(feats_unseen @ both.T, y_unseen + s).items()})
    return out


# ------------------------------------------------------------------------------------------ synthetic weights
def synthetic_weights(task: Task, dim: int, generator: torch.Generator, decay: float = 0.5,
                      max_hop: int = 32) -> torch.Tensor:
    """Ground-truth classifier rows for the graph-only ImageNet mode: every node draws a random
    prototype z_v ~ N(0, I); a class's row is the L2-normalised sum over itself and its ancestors a of
    decay^hop(c, a) z_a (a class looks like its ancestors, more like the near ones). README: this
    generator favours ancestor-based propagation, so the mode measures the pipeline and its speed,
    not which model is better."""
    n = task.num_nodes
    z = torch.randn(n, dim, generator=generator)
    out = torch.zeros(n, dim)
    for k, pairs in enumerate(hop_groups(task.edges, n, max_hop=max_hop)):
        out.index_add_(0, pairs[0], (decay ** k) * z[pairs[1]])
    return F.normalize(out, dim=1)


def synthetic_features(weights: torch.Tensor, nodes: torch.Tensor, per_class: int, noise: float,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` noisy copies of each class's true row: stand-ins for ``[f(x), 1]`` of its images."""
    labels = torch.arange(len(nodes)).repeat_interleave(per_class)
    w = weights[nodes][labels]
    return w + noise * torch.randn(w.shape, generator=generator) / w.size(1) ** 0.5, labels

"""Link prediction with HGT and its baselines: HetGNN's AMiner link tasks with the dataset's own split.

Task (``cfg.task == "link"``). HetGNN ships labelled pairs (balanced 1:1 positives:negatives):
``collab`` = (author, author) collaboration (``a_a_list_{train,test}.txt``), ``cite`` = (author,
paper) "a paper of the author cites it" (``a_p_cite_list_{train,test}.txt``). The split is by time:
train positives are the pairs formed by papers up to 2011, test positives the NEW pairs formed by
the 2012-2015 papers (``paperzoo.data.hetero.load_aminer_links`` checks the year split and its
comment block lists what we measured in the files). ``dataset="synthetic"`` builds the same kind of
task on :func:`paperzoo.data.hetero.synthetic_links`.

Message graph (no leakage). The encoder only ever sees the graph as it stood at the end of the
training period: :func:`paperzoo.data.hetero.time_slice` keeps an edge iff every timed end of it
(papers) has year ``<= split_time`` (2011 on AMiner): the writes / cites / published_in edges of
the 2006-2011 papers, nothing of the 2012-2015 papers. Later papers stay as isolated nodes (ids
must stay aligned with the pair files) with their year clamped to the split year, so neither
their edges nor their years reach the model; then every relation gets its reverse
(``rev_<relation>``), as in node classification. The same graph is used to train, validate and
test: test links are the future of that graph. Structural features and RTE times are computed on
this slice (untimed authors/venues take the slice's latest year, 2011, as in ``run.py``).

Validation: a seeded (``split_seed``) 10 % of the training pairs, stratified by label; the two
orders (a, b) / (b, a) of a same-type pair are kept on the same side, so a validation pair never
has its mirror among the training pairs. Caveat (documented in the README): train and validation
positives are co-author pairs that ARE 2-hop connected in the message graph, while test positives
are new collaborations that are not, so validation scores are optimistic for test.

Model: the shared ``NodeInputs`` + encoder (``cfg.model``: hgt / rgcn / gcn / gat / mlp), then a
DistMult decoder per predicted relation: ``score(u, v) = sum_k h_u[k] r[k] h_v[k] + b``, logits for a
sigmoid. DistMult is symmetric in (u, v), which matches collaboration; for the author-paper
``cite`` relation the two ends come from type-specific encoder outputs, so the symmetry does not
constrain it. ``r`` starts at ``1/sqrt(hidden)``, ``b`` at 0.

Training: binary cross-entropy on the training pairs, one full-graph encoder pass per epoch,
AdamW, cosine annealing, gradient clipping (``cfg.grad_clip``), early stopping on validation
ROC-AUC, exact resume (model, optimizer, scheduler, every RNG stream, history).

Metrics (valid and test): ``auc`` (ROC-AUC, rank-based with tied scores given their average rank,
i.e. the Mann-Whitney U statistic), ``f1`` / ``accuracy`` at probability 0.5, ``f1_tuned`` /
``accuracy_tuned`` at the threshold that maximises F1 on the validation pairs (``threshold``), and
``loss`` (mean BCE). F1 is that of the positive class.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from paperzoo.api import RunResult
from paperzoo.core import loop
from paperzoo.core import seed as seedlib
from paperzoo.core.runs import RunDir
from paperzoo.data import catalog, hetero
from paperzoo.data.hetero import HeteroGraph, LinkPairs
from paperzoo.data.roots import locate
from paperzoo.methods.hgt.config import HGTConfig
from paperzoo.methods.hgt.model import NodeInputs
from paperzoo.methods.hgt.run import build_inputs_and_encoder, full_time_dict

log = logging.getLogger(__name__)
VALID_FRACTION = 0.1
METRICS = ("auc", "f1", "accuracy", "f1_tuned", "accuracy_tuned", "loss")


# ------------------------------------------------------------------------------------- data
@dataclass
class LinkTask:
    """The message graph (reverse edges included) and the labelled pairs of every split."""

    graph: HeteroGraph
    src_type: str
    dst_type: str
    pairs: Dict[str, Tensor]
    """``train`` / ``valid`` / ``test`` -> LongTensor (N, 3): source id, target id, label."""
    split_time: Optional[int]
    name: str


def carve_valid(pairs: Tensor, fraction: float, seed: int, symmetric: bool) -> Dict[str, Tensor]:
    """Split labelled pairs into train / valid, stratified by label. Pairs are grouped by
    (unordered pair if ``symmetric``, label) so that both orders of a pair land on the same side;
    per label, a seeded ``fraction`` of the groups (rounded) goes to valid. File order is kept."""
    src, dst, label = pairs[:, 0], pairs[:, 1], pairs[:, 2]
    lo, hi = (torch.minimum(src, dst), torch.maximum(src, dst)) if symmetric else (src, dst)
    keys = torch.stack([lo, hi, label], 1)
    groups, inverse = torch.unique(keys, dim=0, return_inverse=True)
    gen = torch.Generator().manual_seed(seed)
    in_valid = torch.zeros(len(groups), dtype=torch.bool)
    for c in torch.unique(groups[:, 2]).tolist():
        members = (groups[:, 2] == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        in_valid[members[:int(round(fraction * len(members)))]] = True
    mask = in_valid[inverse]
    return {"train": pairs[~mask], "valid": pairs[mask]}


def load_task(cfg: HGTConfig, data_root: Optional[str] = None) -> LinkTask:
    """The link task of ``cfg`` (see the module docstring for the graph and the splits)."""
    if cfg.dataset == "synthetic":
        graph, links = hetero.synthetic_links(num_papers=cfg.synthetic_papers, link_type=cfg.link_type,
                                              seed=cfg.split_seed)
    elif cfg.dataset == "aminer":
        folder = locate(catalog.get("aminer"), data_root)
        graph = hetero.load_aminer(folder, seed=cfg.split_seed)
        links = hetero.load_aminer_links(folder, cfg.link_type, graph.num_nodes)
    else:
        raise ValueError(f"task=link needs dataset 'aminer' or 'synthetic' (the only ones with "
                         f"labelled link pairs), got {cfg.dataset!r}")
    return build_task(graph, links, cfg.split_seed)


def build_task(graph: HeteroGraph, links: LinkPairs, split_seed: int = 0,
               valid_fraction: float = VALID_FRACTION) -> LinkTask:
    """Message graph = ``time_slice(graph, links.split_time)`` plus reverse edges; valid carved
    from the training pairs."""
    message = graph if links.split_time is None else hetero.time_slice(graph, links.split_time)
    message = message.add_reverse_edges()
    for nt in (links.src_type, links.dst_type):
        if nt not in message.num_nodes:
            raise ValueError(f"link pairs use node type {nt!r}, which {graph.name} lacks")
    carve = carve_valid(links.pairs["train"], valid_fraction, split_seed,
                        symmetric=links.src_type == links.dst_type)
    pairs = {"train": carve["train"], "valid": carve["valid"], "test": links.pairs["test"]}
    for split, p in pairs.items():
        for col, nt in ((0, links.src_type), (1, links.dst_type)):
            if p.numel() and (int(p[:, col].min()) < 0 or int(p[:, col].max()) >= message.num_nodes[nt]):
                raise ValueError(f"{links.name}: {split} pairs hold {nt} ids outside "
                                 f"[0, {message.num_nodes[nt]})")
    return LinkTask(message, links.src_type, links.dst_type, pairs, links.split_time, links.name)


# ------------------------------------------------------------------------------------ model
class LinkPredictor(nn.Module):
    """inputs -> encoder -> DistMult decoder on (src_type, dst_type) pairs (logits)."""

    def __init__(self, inputs: NodeInputs, encoder: nn.Module, hidden: int, src_type: str, dst_type: str):
        super().__init__()
        self.inputs, self.encoder = inputs, encoder
        self.src_type, self.dst_type = src_type, dst_type
        self.rel = nn.Parameter(torch.full((hidden,), 1.0 / math.sqrt(hidden)))
        self.bias = nn.Parameter(torch.zeros(()))

    def embed(self, edge_index_dict, time_dict=None) -> Dict[str, Tensor]:
        return self.encoder(self.inputs(None), edge_index_dict, time_dict)

    def score(self, x_dict: Dict[str, Tensor], src: Tensor, dst: Tensor) -> Tensor:
        hs = x_dict[self.src_type].index_select(0, src)
        hd = x_dict[self.dst_type].index_select(0, dst)
        return (hs * self.rel * hd).sum(-1) + self.bias

    def forward(self, edge_index_dict, time_dict, src: Tensor, dst: Tensor) -> Tensor:
        return self.score(self.embed(edge_index_dict, time_dict), src, dst)


def build_model(cfg: HGTConfig, task: LinkTask) -> LinkPredictor:
    inputs, encoder = build_inputs_and_encoder(cfg, task.graph)
    return LinkPredictor(inputs, encoder, cfg.hidden, task.src_type, task.dst_type)


# ---------------------------------------------------------------------------------- metrics
def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """ROC-AUC as the Mann-Whitney statistic: P(score of a random positive > score of a random
    negative), ties counting 1/2 (tied scores get their average rank). NaN without both classes."""
    scores = scores.detach().double().flatten()
    labels = labels.flatten().bool()
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    # 1-based rank of the last member of each tie group, then the group's average rank
    last = torch.cumsum(counts, 0).double()
    avg_rank = last - (counts.double() - 1) / 2
    rank_sum = float(avg_rank[inverse][labels].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def binary_counts(pred: Tensor, labels: Tensor) -> Dict[str, float]:
    """F1 of the positive class and accuracy of hard 0/1 predictions."""
    pred, labels = pred.bool(), labels.bool()
    tp = int((pred & labels).sum())
    fp = int((pred & ~labels).sum())
    fn = int((~pred & labels).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
    acc = float((pred == labels).double().mean()) if labels.numel() else 0.0
    return {"f1": f1, "accuracy": acc}


def best_f1_threshold(logits: Tensor, labels: Tensor) -> float:
    """The logit threshold ``t`` (predict positive iff ``logit >= t``) with the highest F1 on these
    pairs; among equally good thresholds the largest. ``+inf`` for an empty input."""
    if logits.numel() == 0:
        return math.inf
    order = torch.argsort(logits.detach().double(), descending=True)
    s, y = logits.detach().double()[order], labels.flatten().bool()[order].double()
    tp, fp = torch.cumsum(y, 0), torch.cumsum(1 - y, 0)
    n_pos = float(y.sum())
    f1 = 2 * tp / (tp + fp + n_pos)
    # only cut after the last member of a group of tied scores
    valid = torch.ones_like(s, dtype=torch.bool)
    valid[:-1] = s[:-1] != s[1:]
    f1 = torch.where(valid, f1, torch.full_like(f1, -1.0))
    best = int(torch.argmax(f1))  # first maximum = highest threshold among ties
    return float(s[best])


def link_metrics(logits: Tensor, labels: Tensor, threshold: float) -> Dict[str, float]:
    """auc, f1 / accuracy at probability 0.5 (logit 0), f1_tuned / accuracy_tuned at logit
    ``threshold``, and the mean BCE."""
    labels = labels.long()
    out = {"auc": roc_auc(logits, labels)}
    out.update(binary_counts(logits >= 0, labels))
    tuned = binary_counts(logits >= threshold, labels)
    out.update({"f1_tuned": tuned["f1"], "accuracy_tuned": tuned["accuracy"],
                "loss": float(F.binary_cross_entropy_with_logits(logits.double(), labels.double()))
                if labels.numel() else 0.0})
    return out


# -------------------------------------------------------------------------------- training
class Scorer:
    """Full-graph forward passes of a link model on the task's message graph."""

    def __init__(self, task: LinkTask):
        self.task = task
        self.edges = {et: e.long() for et, e in task.graph.edges.items()}
        self.times = full_time_dict(task.graph)

    def logits(self, model: LinkPredictor, split: str) -> Tensor:
        p = self.task.pairs[split]
        return model(self.edges, self.times, p[:, 0], p[:, 1])

    def predict(self, model: LinkPredictor, splits=("valid", "test")) -> Dict[str, Tensor]:
        """Eval-mode logits of every split in ``splits`` from one encoder pass."""
        model.eval()
        with torch.no_grad():
            x = model.embed(self.edges, self.times)
            return {s: model.score(x, self.task.pairs[s][:, 0], self.task.pairs[s][:, 1]) for s in splits}


def train_epoch(model: LinkPredictor, optimizer, scorer: Scorer, cfg: HGTConfig) -> float:
    model.train()
    labels = scorer.task.pairs["train"][:, 2].float()
    loss = F.binary_cross_entropy_with_logits(scorer.logits(model, "train"), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    return loss.item()


def run(cfg: HGTConfig, run_dir: RunDir) -> RunResult:
    """Train with early stopping on validation ROC-AUC, then score the best model on valid and
    test. Resumes from ``run_dir``'s last checkpoint exactly."""
    if cfg.mode != "full":
        raise ValueError("task=link trains full-batch only (mode=full); HGSampling is not wired "
                         "to pair batches")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    generator = seedlib.seed_everything(cfg.seed)
    task = load_task(cfg, run_dir.data_root)
    log.info("%s\nmessage graph: %s", task.name, task.graph.summary())
    model = build_model(cfg, task)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs) if cfg.cosine
                 else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0))
    scorer = Scorer(task)

    state = loop.train(
        run_dir, model=model, optimizer=optimizer, scheduler=scheduler,
        generators={"train": generator},
        schedule=loop.Schedule(cfg.epochs, cfg.eval_every, cfg.patience, cfg.min_epochs),
        train_epoch=lambda: train_epoch(model, optimizer, scorer, cfg),
        validate=lambda: _validate(model, scorer, task), desc=f"{cfg.model} {task.name}",
        track_memory=True)
    metrics = evaluate_model(run_dir, task, cfg, scorer)
    metrics.update(loop.summary(state, model))
    return RunResult(metrics=metrics, history=state["history"],
                     artifacts={"best": "checkpoints/best.pt", "log": "log.csv"})


def _validate(model, scorer: Scorer, task: LinkTask) -> tuple[float, Dict[str, float]]:
    """Selection score: validation ROC-AUC (minus the loss when AUC is undefined)."""
    logits = scorer.predict(model, ("valid",))["valid"]
    valid = link_metrics(logits, task.pairs["valid"][:, 2], 0.0)
    score = valid["auc"] if math.isfinite(valid["auc"]) else -valid["loss"]
    return score, {f"valid/{k}": valid[k] for k in ("auc", "f1", "accuracy", "loss")}


def evaluate_model(run_dir: RunDir, task: LinkTask, cfg: HGTConfig,
                   scorer: Optional[Scorer] = None) -> Dict[str, float]:
    """Valid and test metrics of the best checkpoint of ``run_dir``; the tuned threshold is the
    F1-maximising one on valid, reported as a probability in ``threshold``."""
    best = run_dir.load_checkpoint("best")
    if best is None:
        raise FileNotFoundError(f"{run_dir.checkpoint_path('best')} is missing: the run never evaluated")
    model = build_model(cfg, task)
    model.load_state_dict(best["model"])
    scorer = scorer or Scorer(task)
    logits = scorer.predict(model, ("valid", "test"))
    thr = best_f1_threshold(logits["valid"], task.pairs["valid"][:, 2])
    metrics: Dict[str, float] = {}
    for split in ("valid", "test"):
        m = link_metrics(logits[split], task.pairs[split][:, 2], thr)
        metrics.update({f"{split}/{k}": v for k, v in m.items()})
    metrics["threshold"] = float(torch.sigmoid(torch.tensor(thr, dtype=torch.float64)))
    return metrics


def evaluate(run_dir: RunDir) -> Dict[str, float]:
    """``paperzoo eval``: rebuild the task and model from the run's config, score its best model."""
    cfg = run_dir.config
    return evaluate_model(run_dir, load_task(cfg, run_dir.data_root), cfg)

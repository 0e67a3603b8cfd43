"""ConvE configuration and presets (official hyperparameters, stored with the published numbers)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from paperzoo.api import Preset, Published
from paperzoo.core.config import check


@dataclass(frozen=True)
class ConvEConfig:
    """Training and model settings. Defaults are the paper's / official code's."""

    dataset: str = "umls"
    """Dataset name (umls, kinship, nations, fb15k237, wn18rr, countries_s1..3), a folder holding
    train/valid/test.txt, or ``synthetic`` for a generated KG with planted rules."""
    model: Literal["conve", "distmult"] = "conve"
    """Scoring model: ConvE, or the DistMult baseline trained the same way."""
    embedding_dim: int = 200
    """Embedding size d of entities and relations."""
    embedding_height: int = 20
    """Height of the 2D reshape of an embedding (width is embedding_dim / embedding_height)."""
    conv_channels: int = 32
    """Number of 3x3 convolution filters."""
    kernel_size: int = 3
    """Side of the square convolution filter."""
    conv_bias: bool = True
    """Give the convolution a bias term (official code: yes)."""
    input_dropout: float = 0.2
    """Dropout on the stacked 2D input (DistMult: on both embeddings)."""
    feature_dropout: float = 0.2
    """Dropout2d on whole feature maps after the convolution."""
    hidden_dropout: float = 0.3
    """Dropout after the projection to d (0.5 reproduces FB15k-237, see ConvE issue #52)."""
    label_smoothing: float = 0.1
    """Label smoothing epsilon over the N entities."""
    label_smoothing_form: Literal["correct", "official"] = "correct"
    """``correct``: (1-e)y + e/N. ``official``: (1-e)y + 1/N, as the official code (ConvE issue #55)."""
    lr: float = 0.003
    """Adam learning rate."""
    weight_decay: float = 0.0
    """Adam L2 weight decay."""
    lr_decay: float = 1.0
    """Multiply the learning rate by this after every epoch (the official code parses 0.995 but
    never applies it, so 1.0 reproduces it)."""
    batch_size: int = 128
    """Distinct (head, relation) queries per training batch (1-N scoring)."""
    eval_batch_size: int = 512
    """Queries per evaluation batch (does not change results)."""
    epochs: int = 1000
    """Maximum number of epochs."""
    eval_every: int = 5
    """Evaluate validation MRR every this many epochs (official: 5)."""
    patience: int = 10
    """Stop after this many validation evaluations without a better MRR (0 = never stop early)."""
    seed: int = 0
    """Seed for initialisation, dropout and batch order."""
    num_threads: int = 0
    """torch intra-op threads (0 = torch's default, the number of cores)."""
    unseen: Literal["keep", "drop", "error"] = "keep"
    """Valid/test triples with entities absent from train: keep (official), drop (PyKEEN), error."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        check(self.embedding_dim > 0, name, "embedding_dim", "must be positive")
        check(self.embedding_height > 0 and self.embedding_dim % self.embedding_height == 0, name,
              "embedding_height", f"must divide embedding_dim={self.embedding_dim}")
        check(self.kernel_size <= min(2 * self.embedding_height,
                                      self.embedding_dim // max(self.embedding_height, 1)),
              name, "kernel_size", "is larger than the stacked 2D input")
        for field_name in ("input_dropout", "feature_dropout", "hidden_dropout"):
            value = getattr(self, field_name)
            check(0.0 <= value < 1.0, name, field_name, f"must be in [0, 1), got {value}")
        check(0.0 <= self.label_smoothing < 1.0, name, "label_smoothing", "must be in [0, 1)")
        check(self.lr > 0, name, "lr", "must be positive")
        check(0 < self.lr_decay <= 1.0, name, "lr_decay", "must be in (0, 1]")
        check(self.weight_decay >= 0, name, "weight_decay", "must be >= 0")
        for field_name in ("batch_size", "eval_batch_size", "epochs", "eval_every"):
            check(getattr(self, field_name) >= 1, name, field_name, "must be >= 1")
        check(self.patience >= 0, name, "patience", "must be >= 0")
        check(self.num_threads >= 0, name, "num_threads", "must be >= 0")
        check(bool(self.dataset), name, "dataset", "must not be empty")


_OFFICIAL = "official ConvE README (after the evaluation fix), TimDettmers/ConvE"
_PYKEEN_SPEC = "PyKEEN 1.11.1 ConvE, paper hyperparameters, 100 epochs, seed 0 (shared/papers/conve.md)"
_PYKEEN_BENCH = ("PyKEEN 1.11.1 ConvE, paper hyperparameters, 100 epochs, mean of seeds 0-2 "
                 "(benchmarks/conve/results/umls*.json)")


_UMLS_PYKEEN = Published({"mrr": 0.935, "mr": 1.44, "hits@1": 0.900, "hits@3": 0.964, "hits@10": 0.990,
                           "seconds_per_epoch": 1.236}, _PYKEEN_BENCH)


def _paper(dataset: str, **overrides) -> ConvEConfig:
    return replace(ConvEConfig(dataset=dataset), **overrides)


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("tiny", replace(ConvEConfig(), dataset="synthetic", embedding_dim=32, embedding_height=4,
                           conv_channels=8, batch_size=64, epochs=12, eval_every=2, patience=0),
           "synthetic KG with planted inverse/symmetric rules; seconds on a CPU"),
    Preset("quick", _paper("umls", epochs=150, eval_every=5, patience=6),
           "UMLS with the paper's hyperparameters, capped at 150 epochs (a few minutes on 2 cores)",
           dataset="umls",
           paper=Published({"mrr": 0.94, "mr": 1, "hits@1": 0.92, "hits@3": 0.97, "hits@10": 0.99}, _OFFICIAL),
           peers={"pykeen": _UMLS_PYKEEN}),
    Preset("paper_umls", _paper("umls"), "UMLS, official hyperparameters", dataset="umls",
           paper=Published({"mrr": 0.94, "mr": 1, "hits@1": 0.92, "hits@3": 0.97, "hits@10": 0.99}, _OFFICIAL),
           peers={"pykeen": _UMLS_PYKEEN}),
    Preset("paper_kinship", _paper("kinship"), "Kinship, official hyperparameters", dataset="kinship",
           paper=Published({"mrr": 0.83, "mr": 2, "hits@1": 0.73, "hits@3": 0.91, "hits@10": 0.98}, _OFFICIAL),
           peers={"pykeen": Published({"mrr": 0.820, "hits@10": 0.983, "seconds_per_epoch": 1.17}, _PYKEEN_SPEC)}),
    Preset("paper_nations", _paper("nations"), "Nations, official hyperparameters", dataset="nations",
           paper=Published({"mrr": 0.82, "mr": 2, "hits@1": 0.72, "hits@3": 0.88, "hits@10": 1.00}, _OFFICIAL)),
    Preset("paper_fb15k237", _paper("fb15k237", hidden_dropout=0.5),
           "FB15k-237 with hidden dropout 0.5 (ConvE issue #52); hours per run on CPU", dataset="fb15k237",
           paper=Published({"mrr": 0.32, "mr": 246, "hits@1": 0.24, "hits@3": 0.35, "hits@10": 0.49}, _OFFICIAL)),
    Preset("paper_wn18rr", _paper("wn18rr"), "WN18RR, official hyperparameters", dataset="wn18rr",
           paper=Published({"mrr": 0.43, "mr": 4766, "hits@1": 0.39, "hits@3": 0.44, "hits@10": 0.51}, _OFFICIAL)),
]}

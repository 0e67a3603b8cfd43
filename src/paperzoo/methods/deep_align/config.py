"""Deep-Align configuration and presets."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from paperzoo.api import Preset, Published
from paperzoo.core.config import check

METHODS = ("naive", "weight_matching", "activation_matching", "sinkhorn", "deep_align",
           "deep_align+weight_matching", "deep_align+sinkhorn")
_NAME = "DeepAlignConfig"


@dataclass(frozen=True)
class DeepAlignConfig:
    """Train a model zoo, train Deep-Align on its training networks without labels, and compare the loss
    barriers of every alignment method on held-out pairs of test networks."""

    task: Literal["synthetic", "mnist", "fashion_mnist", "cifar10", "sine"] = "synthetic"
    """Data the zoo's networks are trained on (``synthetic``: Gaussian clusters, 16 inputs, 4 classes;
    ``sine``: SIREN INRs, each fitted to its own ``sin(a x)`` on ``[-pi, pi]``, barriers in function
    space)."""
    sine_freq: tuple[float, ...] = (0.5, 10.0)
    """``task=sine``: range of the frequency ``a`` drawn per network."""
    inr_w0: float = 10.0
    """``task=sine``: SIREN frequency factor ``w0`` of the hidden layers. SIREN's image default is 30; the
    first layer's frequencies reach ``w0``, and 10 is the zoo's highest signal frequency. With 30 the
    networks fit as well (test MSE 7e-5), but no method lowers the naive barrier (0.56 naive, 0.54 weight
    matching on 10 pairs); with 10: 0.45 naive, 0.36 weight matching."""
    arch: Literal["mlp", "cnn"] = "mlp"
    """Zoo architecture. ``cnn``: stride-2 3x3 convolutions, global average pooling, linear head; Deep-Align
    reads it as an MLP over channels whose convolution entries carry the 9 kernel weights as features (the
    DWS channel version; ``input_proj`` does not apply)."""
    cnn_channels: tuple[int, ...] = (16, 32, 32)
    """``arch=cnn``: output channels of the convolutions."""
    hidden_sizes: tuple[int, ...] = (16, 16, 16)
    """Hidden widths of the zoo's MLPs (paper's MNIST zoo: 128, 128, 128)."""
    num_networks: int = 24
    """Networks in the zoo (each from its own seed)."""
    shard_size: int = 8
    """Networks trained together (batched) and stored per shard file; the zoo resumes by shard."""
    zoo_epochs: int = 3
    """Training epochs of every zoo network."""
    zoo_batch_size: int = 64
    """Mini-batch size of zoo training."""
    zoo_lr: float = 3e-3
    """Adam learning rate of zoo training."""
    zoo_dir: str = ""
    """Folder to build / reuse the zoo in (shared between runs); empty: ``<run>/zoo``."""
    store_dtype: Literal["float32", "float16"] = "float32"
    """Storage precision of zoo shards."""
    split: tuple[float, ...] = (0.6, 0.1, 0.3)
    """Fractions of train / val / test *networks*."""
    train_limit: int = 0
    """Use only the first this many training images (0 = all)."""
    eval_examples: int = 2000
    """Test images on which barriers are measured (the first ones of the test split; ``sine``: the
    number of test points)."""
    # ------------------------------------------------------------------ Deep-Align
    encoder_hidden: int = 8
    """Features per weight in the DWS encoder (paper: 64)."""
    encoder_depth: int = 3
    """DWS layers (paper: 4)."""
    out_dim: int = 16
    """Per-neuron feature size of F_V->A (paper: 128)."""
    encoder_reduction: Literal["mean", "max"] = "max"
    """Pooling over neuron axes in the DWS encoder and ``F_V->A``: ``max`` (the official code's default)
    or ``mean``. On the MNIST zoo, after 500 steps of ``quick``: test barrier 0.264 with ``max``, 0.324
    with ``mean``."""
    input_proj: int = 0
    """Learned projection of the input axis of the first weight matrix (0 = none)."""
    epochs: int = 3
    """Deep-Align training epochs (an epoch is ``steps_per_epoch`` steps; checkpoint after each)."""
    steps_per_epoch: int = 10
    """Optimisation steps per epoch."""
    batch_size: int = 8
    """Pairs of networks per step (paper: 32)."""
    data_batch: int = 128
    """Images per step for the interpolation loss."""
    lr: float = 5e-4
    """AdamW (amsgrad) learning rate."""
    weight_decay: float = 5e-4
    """AdamW weight decay."""
    clip: float = 1.0
    """Gradient-norm clipping."""
    loss_weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    """Weights of the supervised, alignment and interpolation losses."""
    aug_noise: float = 0.05
    """Synthetic pairs: Gaussian noise relative to each tensor's zoo scale."""
    aug_dropout: float = 0.05
    """Synthetic pairs: weight dropout probability."""
    aug_scale: float = 0.1
    """Synthetic pairs: global scale drawn from [1 - aug_scale, 1 + aug_scale]."""
    sinkhorn_iters: int = 20
    """Sinkhorn iterations (training and the Sinkhorn baseline)."""
    tau: float = 1.0
    """Sinkhorn temperature."""
    sinkhorn_grad: Literal["implicit", "unrolled"] = "implicit"
    """Deep-Align training: gradient of Sinkhorn's fixed point (``implicit``, the paper) or backpropagation
    through the ``sinkhorn_iters`` unrolled iterations (the presets measured before session 11). The
    Sinkhorn re-basin baseline always unrolls, as Pena et al."""
    # ------------------------------------------------------------------ evaluation
    methods: tuple[str, ...] = METHODS
    """Alignment methods compared on the test pairs."""
    test_pairs: int = 6
    """Held-out pairs of test networks."""
    val_pairs: int = 3
    """Pairs of validation networks scored after every epoch (selects ``best.pt``)."""
    num_lambdas: int = 11
    """Points on the interpolation path."""
    wm_max_iter: int = 100
    """Weight matching: maximum sweeps."""
    am_examples: int = 1000
    """Activation matching: training images whose activations are matched."""
    rebasin_steps: int = 100
    """Sinkhorn re-basin: optimisation steps per pair."""
    rebasin_lr: float = 0.1
    """Sinkhorn re-basin: Adam learning rate of the logits."""
    rebasin_init_scale: float = 0.5
    """Deep-Align + Sinkhorn: initial logit of the entries Deep-Align chose (others 0). Chosen on 4
    validation pairs of the MNIST ``quick`` run among 0.5, 1, 2, 5 (larger values pin Sinkhorn to the
    initialisation)."""
    rebasin_batch: int = 128
    """Sinkhorn re-basin: images per step."""
    seed: int = 0
    """Seed of the zoo, the split, Deep-Align's initialisation and sampling, and the evaluation pairs."""
    num_threads: int = 1
    """torch intra-op threads (0 = torch's default)."""

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        check(not unknown and bool(self.methods), _NAME, "methods",
              f"unknown or empty {list(unknown)}; choose from {', '.join(METHODS)}")
        check(bool(self.hidden_sizes) and all(h >= 2 for h in self.hidden_sizes), _NAME, "hidden_sizes",
              "needs at least one hidden layer, each of width >= 2")
        for name in ("num_networks", "shard_size", "zoo_epochs", "zoo_batch_size", "eval_examples",
                     "encoder_hidden", "encoder_depth", "out_dim", "epochs", "steps_per_epoch",
                     "batch_size", "data_batch", "sinkhorn_iters", "test_pairs", "val_pairs", "wm_max_iter",
                     "am_examples", "rebasin_steps", "rebasin_batch"):
            check(getattr(self, name) >= 1, _NAME, name, "must be >= 1")
        check(bool(self.cnn_channels) and all(c >= 2 for c in self.cnn_channels), _NAME, "cnn_channels",
              "needs at least one convolution, each with >= 2 channels")
        check(self.num_lambdas >= 2, _NAME, "num_lambdas", "must be >= 2")
        check(len(self.sine_freq) == 2 and 0 < self.sine_freq[0] <= self.sine_freq[1], _NAME, "sine_freq",
              "must be (low, high) with 0 < low <= high")
        check(self.task != "sine" or self.arch == "mlp", _NAME, "arch", "task=sine zoos are MLPs (SIRENs)")
        check(self.num_networks >= 5, _NAME, "num_networks", "must be >= 5 (train, val and test networks)")
        for name in ("zoo_lr", "lr", "tau", "clip", "rebasin_lr", "rebasin_init_scale", "inr_w0"):
            check(getattr(self, name) > 0, _NAME, name, "must be > 0")
        for name in ("train_limit", "input_proj", "weight_decay", "aug_noise", "aug_scale", "num_threads"):
            check(getattr(self, name) >= 0, _NAME, name, "must be >= 0")
        check(0 <= self.aug_dropout < 1, _NAME, "aug_dropout", "must be in [0, 1)")
        check(len(self.loss_weights) == 3 and all(w >= 0 for w in self.loss_weights)
              and sum(self.loss_weights) > 0, _NAME, "loss_weights",
              "must be three non-negative weights (supervised, alignment, interpolation), not all 0")
        check(len(self.split) == 3 and all(f > 0 for f in self.split) and abs(sum(self.split) - 1) < 1e-6,
              _NAME, "split", "must be three positive fractions (train, val, test) summing to 1")


_MNIST_PAPER = Published(
    {"barrier/naive": 2.007, "barrier/weight_matching": 0.047, "barrier/activation_matching": 0.024,
     "barrier/sinkhorn": 0.027, "barrier/deep_align": 0.005, "barrier/deep_align+sinkhorn": 0.000},
    "Navon et al. 2024, Table (MNIST MLP 784-128-128-128-10, test loss barrier)")
_CIFAR_PAPER = Published(
    {"barrier/naive": 0.927, "barrier/weight_matching": 0.156, "barrier/activation_matching": 0.066,
     "barrier/sinkhorn": 0.183, "barrier/deep_align": 0.078, "barrier/deep_align+sinkhorn": 0.037},
    "Navon et al. 2024, Table (CIFAR-10 MLP)")

_MNIST = {"task": "mnist", "hidden_sizes": (128, 128, 128), "zoo_batch_size": 128, "zoo_lr": 1e-3,
          "eval_examples": 2000}
# the CPU-sized encoder and training settings (16 features, batch 8, lr 2e-3) on the paper's MNIST zoo
_QUICK = DeepAlignConfig(**_MNIST, num_networks=48, shard_size=16, zoo_epochs=1, encoder_hidden=16,
                         input_proj=32, encoder_depth=4, out_dim=64, epochs=6, steps_per_epoch=25,
                         batch_size=8, lr=2e-3, test_pairs=8, val_pairs=3, rebasin_steps=60,
                         sinkhorn_grad="unrolled")

PRESETS = {
    "tiny": Preset("tiny", DeepAlignConfig(),
                   "seconds: 24 MLPs 16-16-16-16-4 on Gaussian clusters, Deep-Align for 30 steps"),
    "quick": Preset(
        "quick",
        _QUICK,
        "MNIST 784-128-128-128-10 zoo of 48 nets (1 epoch each), Deep-Align 150 steps: minutes on 2 cores",
        dataset="mnist", paper=_MNIST_PAPER),
    "cpu_mnist_mlp": Preset(
        "cpu_mnist_mlp",
        replace(_QUICK, num_networks=160, epochs=100, test_pairs=10),
        "the README's MNIST MLP run: quick on a zoo of 160 nets, Deep-Align trained 2,500 steps at the CPU "
        "width (16 features): about 40 minutes on 2 cores",
        dataset="mnist", paper=_MNIST_PAPER),
    "paper_mnist_mlp": Preset(
        "paper_mnist_mlp",
        DeepAlignConfig(**_MNIST, num_networks=160, shard_size=16, zoo_epochs=1, encoder_hidden=64,
                        encoder_depth=4, out_dim=128, input_proj=64, epochs=20, steps_per_epoch=50,
                        batch_size=32, test_pairs=20, val_pairs=5, rebasin_steps=200),
        "the paper's MNIST MLP zoo and Deep-Align sizes (encoder 64 x 4 layers, 128 features, batch 32)",
        dataset="mnist", paper=_MNIST_PAPER),
    "paper_fashion_mnist_mlp": Preset(
        "paper_fashion_mnist_mlp",
        DeepAlignConfig(**{**_MNIST, "task": "fashion_mnist"}, num_networks=96, shard_size=16, zoo_epochs=1, input_proj=32,
                        encoder_hidden=16, encoder_depth=4, out_dim=64, epochs=8, steps_per_epoch=25, lr=2e-3,
                        test_pairs=10, val_pairs=3, rebasin_steps=100, sinkhorn_grad="unrolled"),
        "Fashion-MNIST MLP zoo 784-128-128-128-10 (a second zoo; not in the paper)",
        dataset="fashion_mnist"),
    "paper_cifar10_mlp": Preset(
        "paper_cifar10_mlp",
        DeepAlignConfig(task="cifar10", hidden_sizes=(128, 128, 128), num_networks=160, shard_size=16,
                        zoo_epochs=2, zoo_batch_size=128, zoo_lr=1e-3, input_proj=64, encoder_hidden=64,
                        encoder_depth=4, out_dim=128, epochs=20, steps_per_epoch=50, batch_size=32,
                        test_pairs=20, val_pairs=5, rebasin_steps=200),
        "CIFAR-10 MLP zoo 3072-128-128-128-10 with the paper's Deep-Align sizes",
        dataset="cifar10", paper=_CIFAR_PAPER),
    "sine_inr": Preset(
        "sine_inr",
        DeepAlignConfig(task="sine", hidden_sizes=(32, 32, 32), num_networks=256, shard_size=64,
                        zoo_epochs=250, zoo_batch_size=128, zoo_lr=1e-4, eval_examples=1000,
                        encoder_hidden=64, encoder_depth=4, out_dim=128, epochs=20, steps_per_epoch=50,
                        batch_size=8, data_batch=128, lr=1e-3, test_pairs=20, val_pairs=5, am_examples=512,
                        rebasin_steps=100),
        "the paper's synthetic INR zoo: 256 SIRENs 1-32-32-32-1, each fitted to its own sin(a x), "
        "a in [0.5, 10]; barriers in function space (MSE to the interpolated outputs); Deep-Align at the "
        "paper's width (64 features), 1,000 steps of 8",
        dataset="synthetic"),
    "paper_cnn": Preset(
        "paper_cnn",
        DeepAlignConfig(task="cifar10", arch="cnn", cnn_channels=(16, 32, 32), num_networks=48, shard_size=8,
                        zoo_epochs=5, zoo_batch_size=128, zoo_lr=2e-3, encoder_hidden=64, encoder_depth=4,
                        out_dim=128, epochs=30, steps_per_epoch=50, batch_size=8, lr=5e-4, test_pairs=30,
                        val_pairs=10, rebasin_steps=60, eval_examples=1000),
        "CIFAR-10 small CNN zoo (channel permutations, 48 CNNs, 5 epochs each): every method, Deep-Align as "
        "the DWS channel version at the paper's width (64 features), 1,500 steps, 30 test pairs",
        dataset="cifar10"),
}

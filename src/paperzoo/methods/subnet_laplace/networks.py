"""The networks of the experiments: plain ``nn.Sequential`` models, so that every tool here (and
laplace-torch, for the benchmark) sees ordinary named parameters.

- :func:`regression_mlp`: the 1D toy's 2-layer MLP, ``in -> 50 -> 50 -> 1``
  (2,701 weights for one input: the paper's "2,600-weight" network),
- :func:`mnist_cnn`: a small LeNet-style CNN for 28x28 grey images (the rotated-MNIST experiment;
  the paper uses a ResNet-18, which a 2-core CPU cannot train in minutes),
- :func:`cifar_cnn`: a small VGG-style CNN for 32x32 colour images (corrupted CIFAR-10).

Every network has an optional dropout layer before its last linear layer, off (``p = 0``) unless
asked for: the MC-dropout baseline trains its own copy with dropout on.
"""
from __future__ import annotations

from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}


def _act(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def regression_mlp(in_features: int = 1, hidden: int = 50, activation: str = "tanh",
                   dropout: float = 0.0) -> nn.Sequential:
    """``in -> hidden -> hidden -> 1`` with two hidden layers."""
    return nn.Sequential(nn.Linear(in_features, hidden), _act(activation),
                         nn.Linear(hidden, hidden), _act(activation),
                         nn.Dropout(dropout), nn.Linear(hidden, 1))


def classification_mlp(in_features: int, num_classes: int, hidden: int = 50, activation: str = "tanh",
                       dropout: float = 0.0) -> nn.Sequential:
    """``in -> hidden -> hidden -> classes`` (the ``tiny`` preset's toy classifier)."""
    return nn.Sequential(nn.Linear(in_features, hidden), _act(activation),
                         nn.Linear(hidden, hidden), _act(activation),
                         nn.Dropout(dropout), nn.Linear(hidden, num_classes))


def mnist_cnn(num_classes: int = 10, channels: tuple[int, int] = (16, 32), hidden: int = 64,
              dropout: float = 0.0) -> nn.Sequential:
    """``conv5-pool-conv5-pool-fc-fc``: 28x28x1 -> 16x12x12 -> 32x4x4 -> hidden -> classes
    (46,730 weights with the defaults)."""
    c1, c2 = channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(c2 * 16, hidden), nn.ReLU(),
        nn.Dropout(dropout), nn.Linear(hidden, num_classes))


def cifar_cnn(num_classes: int = 10, channels: tuple[int, int, int] = (32, 64, 128), hidden: int = 128,
              dropout: float = 0.0) -> nn.Sequential:
    """Three ``conv3-ReLU-maxpool`` blocks: 32x32x3 -> c1x16x16 -> c2x8x8 -> c3x4x4,
    then global average pooling, ``fc -> ReLU -> fc`` (111,050 weights with the defaults)."""
    c1, c2, c3 = channels
    return nn.Sequential(
        nn.Conv2d(3, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c3, hidden), nn.ReLU(),
        nn.Dropout(dropout), nn.Linear(hidden, num_classes))


def num_weights(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

"""Two backbones, each with or without an interpretable top layer.

- :class:`VGGNet`: a small VGG-style stack, ``[conv-ReLU x2, max-pool] x 3``, then the top conv layer
  ``top`` (3x3, ReLU) whose filters are the ones made interpretable, as the paper adds its interpretable
  conv layer above VGG's last conv layer.
- :class:`ResNet`: a stride-2 stem and three stages of two basic residual blocks; the last block
  (``layer3.1``, output ``relu(skip + branch)``) is the interpretable layer, so its mask acts on what
  the head reads (wrapping a conv inside the block would let the skip path bypass the mask).

Both end in global average pooling and a linear classifier ``fc``. ``interpretable=True`` wraps the
top layer with :class:`~paperzoo.methods.interp_cnn.filters.InterpretableLayer`; the architecture and
parameters are otherwise identical, so ``interpretable=False`` is the ordinary CNN of the comparison.

No batch normalisation (its backward pass is about 5x slower on the CPUs we target): the VGG stack is
shallow enough to train without it, and each residual branch ends in a learnable scalar initialised to
zero (SkipInit, De & Smith 2020), so every block starts as the identity.
"""
from __future__ import annotations

import torch
from torch import nn

from paperzoo.methods.interp_cnn.filters import BETA, make_interpretable

#: Both backbones downsample by 8: a 64 x 64 image gives 8 x 8 top maps.
STRIDE = 8
#: The top layer of each backbone: the one made interpretable, and whose maps the metrics read.
TOP_LAYER = {"vgg": "top", "resnet": "layer3.1"}


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3x3 'same' conv with He (Kaiming normal, fan-in) initialisation and zero bias: without batch
    normalisation, torch's default init shrinks the signal layer by layer."""
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return conv


class VGGNet(nn.Module):
    """``[conv-ReLU x2, pool] x 3`` with widths ``w, 2w, 4w``, the top conv (``top_filters``), GAP, ``fc``.
    A 64 x 64 image gives an 8 x 8 top map (stride 8)."""

    def __init__(self, num_classes: int, width: int = 32, top_filters: int = 128, in_channels: int = 3):
        super().__init__()
        w = width
        layers: list[nn.Module] = []
        cin = in_channels
        for cout in (w, 2 * w, 4 * w):
            layers += [_conv(cin, cout), nn.ReLU(inplace=True), _conv(cout, cout), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.top = _conv(cin, top_filters)
        self.top_relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(top_filters, num_classes)
        self.stride = STRIDE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.top_relu(self.top(self.features(x)))
        return self.fc(self.pool(x).flatten(1))


class BasicBlock(nn.Module):
    """``relu(skip(x) + g * conv(relu(conv(x))))`` with ``g`` a learnable scalar starting at 0; ``skip`` is
    the identity, or a strided 1x1 conv where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv(cin, cout, stride)
        self.conv2 = _conv(cout, cout)
        self.gain = nn.Parameter(torch.zeros(()))
        self.skip = (nn.Identity() if stride == 1 and cin == cout
                     else nn.Conv2d(cin, cout, 1, stride=stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.conv2(torch.relu(self.conv1(x)))
        return torch.relu(self.skip(x) + self.gain * branch)


class ResNet(nn.Module):
    """Stem (3x3 conv, stride 2), stages of two basic blocks with widths ``w, 2w, top_filters`` (the
    second and third stride 2), GAP, ``fc``. A 64 x 64 image gives an 8 x 8 top map (stride 8)."""

    def __init__(self, num_classes: int, width: int = 32, top_filters: int = 128, in_channels: int = 3):
        super().__init__()
        w = width
        self.stem = nn.Sequential(_conv(in_channels, w, stride=2), nn.ReLU(inplace=True))
        self.layer1 = nn.Sequential(BasicBlock(w, w), BasicBlock(w, w))
        self.layer2 = nn.Sequential(BasicBlock(w, 2 * w, stride=2), BasicBlock(2 * w, 2 * w))
        self.layer3 = nn.Sequential(BasicBlock(2 * w, top_filters, stride=2), BasicBlock(top_filters, top_filters))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(top_filters, num_classes)
        self.stride = STRIDE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))


BACKBONES = {"vgg": VGGNet, "resnet": ResNet}


def build_model(backbone: str, num_classes: int, *, width: int = 32, top_filters: int = 128,
                interpretable: bool = True, beta: float = BETA, in_channels: int = 3) -> nn.Module:
    """A backbone (``vgg`` or ``resnet``), with its top layer made interpretable or not."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}: use {', '.join(BACKBONES)}")
    model = BACKBONES[backbone](num_classes, width=width, top_filters=top_filters, in_channels=in_channels)
    if interpretable:
        make_interpretable(model, TOP_LAYER[backbone], beta=beta)
    return model

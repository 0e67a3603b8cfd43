"""ConvE (Dettmers et al., AAAI 2018) and the DistMult baseline, both with 1-N scoring.

Both models map a batch of queries ``(head, relation)`` to logits over *all* entities with a single
``(B, d) @ (d, N)`` product, which is what makes 1-N training and evaluation fast. They return
logits; the sigmoid of the paper is folded into the loss (``binary_cross_entropy_with_logits``),
which is the same function, computed stably.

Shapes for the paper's defaults (d = 200, reshaped to 20 x 10, 32 filters of 3 x 3)::

    head, relation embeddings   (B, 200) each -> (B, 1, 20, 10) each
    stacked                     (B, 1, 40, 10)     BatchNorm2d(1), Dropout(0.2)
    conv 3x3, no padding        (B, 32, 38, 8)     BatchNorm2d(32), ReLU, Dropout2d(0.2)
    flatten                     (B, 9728)
    linear                      (B, 200)           Dropout(0.3), BatchNorm1d(200), ReLU
    scores                      (B, N) = x @ E^T + b
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _SingleChannelConv2d(torch.autograd.Function):
    """``F.conv2d`` for one input channel, no padding, stride 1, as im2col + matmul.

    Same function and gradients as ``F.conv2d`` (tested). On CPU it is several times faster than
    oneDNN's kernel for ConvE's (B, 1, 40, 10) input, whose backward pass dominated a training step.
    im2col is one strided copy of ``Tensor.unfold`` views, and its adjoint k*k shifted adds: both far
    cheaper here than ``F.unfold`` / ``F.fold``, which loop over the batch.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        batch, _, height, width = x.shape
        channels, _, k, _ = weight.shape
        out_h, out_w = height - k + 1, width - k + 1
        # (B, 1, out_h, out_w, k, k) view -> (B, k*k, out_h*out_w) copy
        cols = x.unfold(2, k, 1).unfold(3, k, 1).permute(0, 1, 4, 5, 2, 3).reshape(batch, k * k, out_h * out_w)
        out = torch.matmul(weight.view(channels, -1), cols)     # (B, C, L)
        if bias is not None:
            out += bias.view(1, channels, 1)
        ctx.save_for_backward(cols, weight)
        ctx.size = (height, width)
        ctx.has_bias = bias is not None
        return out.view(batch, channels, out_h, out_w)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        cols, weight = ctx.saved_tensors
        channels, _, k, _ = weight.shape
        batch, _, out_h, out_w = grad_out.shape
        grad = grad_out.reshape(batch, channels, -1)             # (B, C, L)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_cols = torch.matmul(weight.view(channels, -1).t(), grad).view(batch, k, k, out_h, out_w)
            grad_x = grad_out.new_zeros(batch, 1, *ctx.size)
            for i in range(k):
                for j in range(k):
                    grad_x[:, 0, i:i + out_h, j:j + out_w] += grad_cols[:, i, j]
        if ctx.needs_input_grad[1]:
            grad_w = torch.bmm(grad, cols.transpose(1, 2)).sum(0).view_as(weight)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2))
        return grad_x, grad_w, grad_b


def conv2d_single_channel(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Valid (unpadded, stride 1) 2D convolution of a one-channel input; see :class:`_SingleChannelConv2d`."""
    if x.shape[1] != 1 or weight.shape[1] != 1:
        raise ValueError(f"expected one input channel, got input {tuple(x.shape)}, weight {tuple(weight.shape)}")
    return _SingleChannelConv2d.apply(x, weight, bias)


class ConvE(nn.Module):
    """Convolutional 2D knowledge-graph embeddings.

    Args:
        num_entities: N, the number of entities (scored all at once).
        num_relations: number of relation ids, *including* reciprocal relations when they are used.
        embedding_dim: d, shared by entities and relations (paper: 200).
        embedding_height: the height of the 2D reshape; d must be divisible by it (paper: 20 x 10).
        conv_channels: number of convolution filters (paper: 32).
        kernel_size: square filter size (paper: 3).
        input_dropout, feature_dropout, hidden_dropout: dropout on the stacked input, on whole
            feature maps (``Dropout2d``), and on the projected hidden vector (paper: .2, .2, .3).
        conv_bias: whether the convolution has a bias (official code: yes).
    """

    def __init__(self, num_entities: int, num_relations: int, embedding_dim: int = 200,
                 embedding_height: int = 20, conv_channels: int = 32, kernel_size: int = 3,
                 input_dropout: float = 0.2, feature_dropout: float = 0.2, hidden_dropout: float = 0.3,
                 conv_bias: bool = True):
        super().__init__()
        if embedding_dim % embedding_height:
            raise ValueError(f"embedding_dim={embedding_dim} is not divisible by "
                             f"embedding_height={embedding_height}")
        self.height = embedding_height
        self.width = embedding_dim // embedding_height
        out_h, out_w = 2 * self.height - kernel_size + 1, self.width - kernel_size + 1
        if out_h <= 0 or out_w <= 0:
            raise ValueError(f"kernel_size={kernel_size} is larger than the stacked input "
                             f"{2 * self.height}x{self.width}")
        self.entity = nn.Embedding(num_entities, embedding_dim)
        self.relation = nn.Embedding(num_relations, embedding_dim)
        self.bn0 = nn.BatchNorm2d(1)
        self.input_drop = nn.Dropout(input_dropout)
        self.conv = nn.Conv2d(1, conv_channels, kernel_size, bias=conv_bias)
        self.bn1 = nn.BatchNorm2d(conv_channels)
        self.feature_drop = nn.Dropout2d(feature_dropout)
        self.fc = nn.Linear(conv_channels * out_h * out_w, embedding_dim)
        self.hidden_drop = nn.Dropout(hidden_dropout)
        self.bn2 = nn.BatchNorm1d(embedding_dim)
        self.entity_bias = nn.Parameter(torch.zeros(num_entities))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-normal embeddings (as the official code); PyTorch defaults for conv and linear."""
        nn.init.xavier_normal_(self.entity.weight)
        nn.init.xavier_normal_(self.relation.weight)
        nn.init.zeros_(self.entity_bias)

    def query(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """The ``(B, d)`` query vector that is matched against every entity embedding."""
        e = self.entity(heads).view(-1, 1, self.height, self.width)
        r = self.relation(relations).view(-1, 1, self.height, self.width)
        x = torch.cat([e, r], dim=2)
        x = self.input_drop(self.bn0(x))
        x = conv2d_single_channel(x, self.conv.weight, self.conv.bias)  # == self.conv(x), faster on CPU
        x = self.feature_drop(F.relu(self.bn1(x)))
        x = self.fc(x.flatten(1))
        return F.relu(self.bn2(self.hidden_drop(x)))

    def forward(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, N)`` for ``(head, relation, every entity)``."""
        return torch.addmm(self.entity_bias, self.query(heads, relations), self.entity.weight.t())


class DistMult(nn.Module):
    """DistMult (Yang et al., 2015) with 1-N scoring: ``score(h, r, t) = <e_h, w_r, e_t>``.

    As in the ConvE paper's code: xavier-normal embeddings and dropout on the input embeddings.
    """

    def __init__(self, num_entities: int, num_relations: int, embedding_dim: int = 200,
                 input_dropout: float = 0.2):
        super().__init__()
        self.entity = nn.Embedding(num_entities, embedding_dim)
        self.relation = nn.Embedding(num_relations, embedding_dim)
        self.input_drop = nn.Dropout(input_dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.entity.weight)
        nn.init.xavier_normal_(self.relation.weight)

    def forward(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        q = self.input_drop(self.entity(heads)) * self.input_drop(self.relation(relations))
        return q @ self.entity.weight.t()


def smooth_labels(targets: torch.Tensor, epsilon: float, form: str = "correct") -> torch.Tensor:
    """Label smoothing over N entities.

    ``correct``: ``(1 - e) y + e / N`` (each row still sums to about the number of positives).
    ``official``: ``(1 - e) y + 1 / N``, what the official ConvE code computes (TimDettmers/ConvE#55).
    """
    if epsilon == 0:
        return targets
    n = targets.shape[-1]
    if form == "correct":
        return targets.mul(1.0 - epsilon).add_(epsilon / n)
    if form == "official":
        return targets.mul(1.0 - epsilon).add_(1.0 / n)
    raise ValueError(f"label smoothing form must be 'correct' or 'official', got {form!r}")


class _OneToNBCE(torch.autograd.Function):
    """Mean binary cross-entropy over all ``B x N`` logits against sparse, label-smoothed targets.

    ``targets = (1 - e) * y + c`` with ``y`` one at ``(rows, cols)`` and zero elsewhere, and ``c = e/N``
    (correct) or ``1/N`` (official). The loss is ``mean(softplus(x) - targets * x)`` and its gradient
    ``(sigmoid(x) - targets) / (B N)``; both are computed without ever building the dense target
    matrix, which is the largest tensor of a 1-N step on graphs with many entities.
    """

    @staticmethod
    def forward(ctx, logits, rows, cols, positive: float, constant: float):
        count = logits.numel()
        loss = (F.softplus(logits).sum() - constant * logits.sum()
                - positive * logits[rows, cols].sum()) / count
        grad = torch.sigmoid(logits).sub_(constant)
        grad[rows, cols] -= positive
        ctx.save_for_backward(grad.div_(count))
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss, None, None, None, None


def one_to_n_bce(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, epsilon: float = 0.0,
                 form: str = "correct") -> torch.Tensor:
    """``F.binary_cross_entropy_with_logits(logits, smooth_labels(dense_targets, epsilon, form))``.

    ``(rows, cols)`` are the coordinates of the true tails (no duplicates). Same value and gradient
    as the dense expression (tested), with two fewer ``(B, N)`` tensors and fewer passes over them.
    """
    n = logits.shape[-1]
    if form == "correct":
        constant = epsilon / n
    elif form == "official":
        constant = 1.0 / n if epsilon else 0.0
    else:
        raise ValueError(f"label smoothing form must be 'correct' or 'official', got {form!r}")
    return _OneToNBCE.apply(logits, rows, cols, 1.0 - epsilon, constant)

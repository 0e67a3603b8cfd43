"""BAN and the two attention baselines of the paper's ablation, for VQA and for phrase grounding.

All VQA models share the question encoder (word embeddings -> 1-layer GRU, every token's state), the
residual stack of G glimpses (``q <- W_g f_g + q``, broadcast to every token) and the classifier
(weight-normed MLP on the sum of the valid tokens' states, trained with BCE on soft answer scores). They
differ only in the attention, as in the paper's Table 2 ablation:

* ``ban``: bilinear attention maps over (box, token) pairs, joint softmax, low-rank bilinear pooling of
  the pairs (:mod:`.attention`); the counting module per glimpse is an option.
* ``coattention``: separate distributions for each modality: a self-attention over tokens summarises the
  question, then a low-rank bilinear (MLB) attention over boxes conditioned on that summary per glimpse.
* ``attention``: visual attention only, conditioned on the question's final GRU state.

Inputs (a dict, see :func:`forward`): ``v`` (b, V, d_v) object features (all-zero rows = empty boxes), or
images when the model owns a grid ``encoder``; ``v_mask`` (b, V) bool (optional); ``boxes`` (b, V, 4)
normalised x0, y0, x1, y1 (the counter's input); ``tokens`` (b, Q) long with 0 = padding and
``lengths`` (b,).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from paperzoo.methods.ban.attention import (
    BilinearAttentionMap,
    BilinearPooling,
    FCNet,
    empty_box_mask,
    wn_linear,
)
from paperzoo.methods.ban.counting import Counter

MODELS = ("attention", "coattention", "ban")
PAD = 0


class QuestionEncoder(nn.Module):
    """Word embeddings (index 0 = padding, a zero vector; optionally initialised from word vectors) and a
    unidirectional 1-layer GRU; returns every token's state (b, Q, hidden) and the token mask (b, Q).
    Tokens are right-padded, so a padded position never feeds a valid token's state."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, word_vectors: torch.Tensor | None = None):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        if word_vectors is not None:
            if word_vectors.shape != (vocab_size, embed_dim):
                raise ValueError(f"word_vectors has shape {tuple(word_vectors.shape)}, expected "
                                 f"({vocab_size}, {embed_dim})")
            with torch.no_grad():
                self.embed.weight.copy_(word_vectors)
                self.embed.weight[PAD].zero_()
        self.gru = nn.GRU(embed_dim, hidden, batch_first=True)
        self.hidden = hidden

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states, _ = self.gru(self.embed(tokens))
        return states, tokens != PAD


def last_state(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each sample's state at its last valid token: (b, Q, h), (b, Q) -> (b, h)."""
    last = (mask.sum(1) - 1).clamp_min(0)
    return states[torch.arange(states.size(0), device=states.device), last]


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax with masked entries exactly 0 (all-masked slices give zeros, not NaN)."""
    out = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=dim)
    return out.masked_fill(~mask, 0.0)


class Classifier(nn.Module):
    """The official answer classifier: weight-normed ``h -> 2h``, ReLU, dropout, weight-normed ``2h -> A``."""

    def __init__(self, hidden: int, num_answers: int, dropout: float = 0.5):
        super().__init__()
        self.net = nn.Sequential(wn_linear(hidden, 2 * hidden), nn.ReLU(), nn.Dropout(dropout),
                                 wn_linear(2 * hidden, num_answers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VQAModel(nn.Module):
    """What the three models share: encoders, residual stack bookkeeping, classifier. Subclasses implement
    :meth:`reason` (question states and objects -> the final question states and the attention maps)."""

    def __init__(self, *, vocab_size: int, num_answers: int, v_dim: int, hidden: int = 1024, glimpses: int = 8,
                 embed_dim: int = 300, word_vectors: torch.Tensor | None = None, dropout: float = 0.2,
                 classifier_dropout: float = 0.5, encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.v_dim = encoder.out_dim if encoder is not None else v_dim
        self.hidden, self.glimpses = hidden, glimpses
        self.question = QuestionEncoder(vocab_size, embed_dim, hidden, word_vectors)
        self.q_prj = nn.ModuleList(FCNet(hidden, hidden, act=None, dropout=dropout) for _ in range(glimpses))
        self.classifier = Classifier(hidden, num_answers, classifier_dropout)

    def objects(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(v, v_mask): the batch's object features (through the grid encoder when there is one)."""
        v = self.encoder(batch["v"]) if self.encoder is not None else batch["v"]
        v_mask = batch.get("v_mask")
        return v, (v_mask if v_mask is not None else empty_box_mask(v))

    def reason(self, v: torch.Tensor, v_mask: torch.Tensor, q: torch.Tensor, q_mask: torch.Tensor,
               boxes: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (answer logits (b, A), attention maps: (b, G, V, Q) for BAN, (b, G, V) visual ones otherwise)."""
        v, v_mask = self.objects(batch)
        q, q_mask = self.question(batch["tokens"])
        q, att = self.reason(v, v_mask, q, q_mask, batch.get("boxes"))
        pooled = (q * q_mask[..., None]).sum(1)
        return self.classifier(pooled), att


class BAN(VQAModel):
    """Bilinear attention networks: G bilinear attention maps, one bilinear pooling and residual step per
    glimpse, optional counting module (fed each glimpse's per-box max logit over tokens)."""

    def __init__(self, *, rank_multiplier: int = 3, attention_dropout: float = 0.5, counter: bool = False,
                 counter_objects: int = 10, naive: bool = False, **kw: Any):
        super().__init__(**kw)
        h, g = self.hidden, self.glimpses
        drop = kw.get("dropout", 0.2)
        self.attention = BilinearAttentionMap(self.v_dim, h, h, g, rank_multiplier=rank_multiplier, dropout=drop,
                                              attention_dropout=attention_dropout, naive=naive)
        self.pool = nn.ModuleList(BilinearPooling(self.v_dim, h, h, dropout=drop, naive=naive) for _ in range(g))
        self.counter = Counter(counter_objects) if counter else None
        self.c_prj = (nn.ModuleList(FCNet(counter_objects + 1, h) for _ in range(g)) if counter else None)

    def reason(self, v, v_mask, q, q_mask, boxes):
        att, logits = self.attention(v, q, v_mask, q_mask)
        for g in range(self.glimpses):
            f = self.pool[g](v, q, att[:, g])
            q = q + self.q_prj[g](f)[:, None]
            if self.counter is not None:
                if boxes is None:
                    raise ValueError("the counting module needs the batch's 'boxes'")
                per_box = logits[:, g].max(-1).values  # the box's best token logit; -inf on empty boxes
                q = q + self.c_prj[g](self.counter(boxes, per_box))[:, None]
        return q, att


class _VisualAttention(VQAModel):
    """Shared by the baselines: per glimpse a low-rank bilinear (MLB) attention over boxes conditioned on
    a question vector, the attended object, and MLB fusion into the residual stack."""

    def __init__(self, *, rank_multiplier: int = 3, attention_dropout: float = 0.5, **kw: Any):
        super().__init__(**kw)
        h, g = self.hidden, self.glimpses
        drop = kw.get("dropout", 0.2)
        self.attention = BilinearAttentionMap(self.v_dim, h, h, g, rank_multiplier=rank_multiplier, dropout=drop,
                                              attention_dropout=attention_dropout)
        self.fuse_v = nn.ModuleList(FCNet(self.v_dim, h, dropout=drop) for _ in range(g))
        self.fuse_q = nn.ModuleList(FCNet(h, h, dropout=drop) for _ in range(g))

    def summary(self, q: torch.Tensor, q_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reason(self, v, v_mask, q, q_mask, boxes):
        s = self.summary(q, q_mask)  # (b, h)
        # a one-token "question": the same bilinear scores, so the baselines differ from BAN only in what
        # the attention is over (boxes alone, given a fixed question vector)
        _, logits = self.attention(v, s[:, None], v_mask, None)
        att = masked_softmax(logits[..., 0], v_mask[:, None], dim=-1)  # (b, G, V)
        for g in range(self.glimpses):
            v_hat = torch.bmm(att[:, g, None], v)[:, 0]  # (b, d_v)
            step = self.q_prj[g](self.fuse_v[g](v_hat) * self.fuse_q[g](s))
            s = s + step
            q = q + step[:, None]
        return q, att


class CoAttention(_VisualAttention):
    """Separate attention per modality: a self-attention over tokens gives the question vector, which
    conditions each glimpse's attention over boxes."""

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        h = self.hidden
        self.q_att = nn.Sequential(FCNet(h, h, dropout=kw.get("dropout", 0.2)), wn_linear(h, 1))

    def summary(self, q, q_mask):
        alpha = masked_softmax(self.q_att(q)[..., 0], q_mask, dim=1)  # (b, Q)
        return torch.bmm(alpha[:, None], q)[:, 0]


class SingleAttention(_VisualAttention):
    """Visual attention only: the question is its final GRU state."""

    def summary(self, q, q_mask):
        return last_state(q, q_mask)


def build_vqa_model(name: str, **kw: Any) -> VQAModel:
    """``ban`` / ``coattention`` / ``attention`` with the shared keyword arguments of :class:`VQAModel`
    (``counter`` / ``counter_objects`` / ``naive`` only for ``ban``)."""
    if name == "ban":
        return BAN(**kw)
    for key in ("counter", "counter_objects", "naive"):
        kw.pop(key, None)
    if name == "coattention":
        return CoAttention(**kw)
    if name == "attention":
        return SingleAttention(**kw)
    raise ValueError(f"unknown model {name!r}: use one of {', '.join(MODELS)}")


class GroundingModel(nn.Module):
    """Phrase grounding (the paper's Flickr30k Entities setting, one glimpse): a logit per proposal box.

    ``ban`` with ``query="last"`` (the official model): the phrase's entity is the GRU state at its last
    word, and the box logits are the one-glimpse bilinear attention logits between every box and that
    state (the official code attends from each entity's position in the sentence; a phrase here is the
    whole text). ``query="tokens"``: the map over (box, word) pairs of every word of the phrase, a box's
    logit being the log of its marginal ``sum_j exp(logit[i, j])``, so the softmax of the box logits is
    the map summed over words. ``coattention``: a self-attention over the words gives the phrase vector
    (separate attention per modality), then the same bilinear box logits. The predicted box is the argmax;
    training is BCE on the boxes' targets (IoU >= 0.5), as the official Flickr30k training does."""

    def __init__(self, name: str, *, vocab_size: int, v_dim: int, hidden: int = 1024, embed_dim: int = 300,
                 word_vectors: torch.Tensor | None = None, dropout: float = 0.2, rank_multiplier: int = 3,
                 attention_dropout: float = 0.5, query: str = "last"):
        super().__init__()
        if name not in ("ban", "coattention"):
            raise ValueError(f"unknown grounding model {name!r}: use ban or coattention")
        if query not in ("last", "tokens"):
            raise ValueError(f"unknown grounding query {query!r}: use last or tokens")
        self.name, self.query = name, query
        self.question = QuestionEncoder(vocab_size, embed_dim, hidden, word_vectors)
        self.attention = BilinearAttentionMap(v_dim, hidden, hidden, 1, rank_multiplier=rank_multiplier,
                                              dropout=dropout, attention_dropout=attention_dropout)
        self.q_att = (nn.Sequential(FCNet(hidden, hidden, dropout=dropout), wn_linear(hidden, 1))
                      if name == "coattention" else None)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (box logits (b, V) with -inf on empty boxes, attention map (b, 1, V, Q) for ``query="tokens"``,
        else (b, 1, V): the softmax over boxes)."""
        v = batch["v"]
        v_mask = batch.get("v_mask")
        v_mask = v_mask if v_mask is not None else empty_box_mask(v)
        q, q_mask = self.question(batch["tokens"])
        if self.q_att is None and self.query == "tokens":
            att, logits = self.attention(v, q, v_mask, q_mask)
            # finite stand-ins for the masked pairs keep the gradient finite; empty boxes get -inf after
            box_logits = torch.logsumexp(logits[:, 0].clamp_min(-1e4), dim=-1)
            return box_logits.masked_fill(~v_mask, float("-inf")), att
        if self.q_att is None:
            s = last_state(q, q_mask)
        else:
            alpha = masked_softmax(self.q_att(q)[..., 0], q_mask, dim=1)
            s = torch.bmm(alpha[:, None], q)[:, 0]
        _, logits = self.attention(v, s[:, None], v_mask, None)
        box_logits = logits[:, 0, :, 0]  # -inf on empty boxes
        return box_logits, masked_softmax(box_logits, v_mask, -1)[:, None]

"""Test-leakage audit for link-prediction datasets: the second contribution of the ConvE paper.

Dettmers et al. (2018) showed that WN18 and FB15k leak their test sets through inverse relations:
for most test triples ``(h, r, t)`` the training set already holds ``(t, r', h)`` for a relation
``r'`` that is (nearly) the inverse of ``r``, so a rule-based "inverse model" with no learned
parameters reaches state-of-the-art scores. This module turns that analysis into a tool that works
on any triple dataset (:class:`paperzoo.data.kg.KGSplits`):

* :func:`detect_inverse_pairs` finds near-inverse relation pairs (a relation paired with itself is
  near-symmetric) from the training triples;
* :func:`leakage_fractions` measures, for the test triples, several kinds of overlap with a
  reference set (train, or train + valid);
* :func:`inverse_model_ranks` runs the rule-based inverse model under the filtered ranking protocol
  with the realistic tie policy of :mod:`paperzoo.core.metrics.ranking`;
* :func:`audit` / :func:`audit_path` bundle everything into an :class:`AuditReport` with
  ``to_markdown()`` and ``to_dict()``.

Everything is vectorised with sorted int64 keys and equi-joins; FB15k-237 (237 relations, 272k
training triples) is audited in a few seconds on a CPU.

Notes on the official script (``inverse_model.py`` in TimDettmers/ConvE), and where this differs:

* Its pair detection is the same (both overlap directions, flag if either is ``>= threshold``,
  default 0.8, self-pairs included), but it stores one partner per relation in a dict, so later
  pairs overwrite earlier ones. Here every flagged pair becomes a rule.
* Its random rank among tied candidates is replaced by the expected (realistic) rank, and a test
  triple that is not a candidate is ranked below *all* candidates (the script draws its rank
  uniformly among all unfiltered entities, candidates included).

Which leakage measure the ConvE README means by "Nations has +95% inverse relationships and
Kinship about 48%" is not stated. Measured on the shipped data: reverse-pair leakage
(``(t, r', h)`` in train for any ``r'``) is 100% on Nations but 81.5% on Kinship; no measure at
the default threshold 0.8 gives 48% on Kinship. Two measures reproduce both numbers: the fraction
of test triples whose relation has a near-inverse partner at threshold 0.65 (Nations 100%,
Kinship 48.1%; see :attr:`AuditReport.sweep`), and the official script's inverse-model Hits@10
at a low threshold (0.3 to 0.5: Nations 0.96, Kinship 0.44 to 0.47), which on 14-entity Nations is
close to what random guessing gets.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from paperzoo.api import Figure, ReportSection, overall_verdict
from paperzoo.core.metrics.ranking import both_sides, filtered_ranks
from paperzoo.data import kg

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.8
"""The official script's default overlap threshold for flagging a near-inverse pair."""

SWEEP_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
"""Thresholds at which :func:`audit` reports how much of the dataset the detected rules cover."""

LEAKAGE_KINDS = ("exact_duplicate", "duplicate_pair", "reverse_pair", "reverse_pair_other",
                 "inverse_rule", "any")


# --------------------------------------------------------------------------------------------
# Result containers
# --------------------------------------------------------------------------------------------

@dataclass
class InversePair:
    """A flagged near-inverse relation pair.

    Attributes
    ----------
    relation1, relation2 : str
        Relation names; ``relation1 == relation2`` means the relation is near-symmetric.
    id1, id2 : int
        Relation ids (``id1 <= id2``).
    overlap12 : float
        Share of the training pairs ``(h, t)`` of ``relation1`` whose reverse ``(t, h)`` is a
        training pair of ``relation2``: ``|{(h,t) in P(r1) : (t,h) in P(r2)}| / |P(r1)|``.
    overlap21 : float
        The same with the roles swapped (``/ |P(r2)|``).
    support1, support2 : int
        ``|P(r1)|`` and ``|P(r2)|``, the numbers of distinct training pairs of each relation.
    """

    relation1: str
    relation2: str
    id1: int
    id2: int
    overlap12: float
    overlap21: float
    support1: int
    support2: int

    @property
    def symmetric(self) -> bool:
        return self.id1 == self.id2


@dataclass
class LeakageFractions:
    """Fractions of evaluation triples ``(h, r, t)`` that a reference triple set gives away.

    Attributes
    ----------
    exact_duplicate : float
        ``(h, r, t)`` is itself in the reference set.
    duplicate_pair : float
        ``(h, r', t)`` is in the reference set for some ``r' != r`` (the same entity pair under
        another relation).
    reverse_pair : float
        ``(t, r', h)`` is in the reference set for some relation ``r'``, any relation including
        ``r`` itself: the entity pair occurs reversed.
    reverse_pair_other : float
        As ``reverse_pair`` but with ``r' != r``.
    inverse_rule : float
        ``(t, r', h)`` is in the reference set for a detected near-inverse partner ``r'`` of
        ``r`` (``r' = r`` when ``r`` is near-symmetric): the triple is implied by an inverse rule.
    any : float
        Any of ``exact_duplicate``, ``duplicate_pair`` or ``reverse_pair``.
    """

    exact_duplicate: float
    duplicate_pair: float
    reverse_pair: float
    reverse_pair_other: float
    inverse_rule: float
    any: float


@dataclass
class AuditReport:
    """Everything :func:`audit` measures on one dataset.

    Attributes
    ----------
    dataset, source : str
        Dataset name and where it was loaded from.
    num_entities, num_relations, num_train, num_valid, num_test : int
        Sizes.
    threshold : float
        Overlap threshold used to flag near-inverse pairs.
    inverse_pairs : list of InversePair
        The flagged pairs, strongest first.
    relations_with_partner : float
        Share of relations (among those with training triples) that belong to a flagged pair.
    test_relation_coverage : float
        Share of test triples whose relation belongs to a flagged pair.
    leakage_train, leakage_train_valid : LeakageFractions
        Leakage of the test triples with respect to train and to train + valid.
    inverse_model : dict
        Filtered metrics of the rule-based inverse model (``mrr``, ``mr``, ``hits@k`` over both
        directions, then ``head/...`` and ``tail/...``), rules applied to ``evidence``.
    evidence : str
        ``"train"`` or ``"train+valid"``: the triples the inverse model's rules are applied to.
    sweep : list of dict
        For each threshold in :data:`SWEEP_THRESHOLDS`: ``pairs``, ``relations_with_partner``,
        ``test_relation_coverage`` and ``inverse_rule`` (leakage with respect to train).
    runtime_s : float
        Wall-clock seconds the audit took (loading excluded).
    """

    dataset: str
    source: str
    num_entities: int
    num_relations: int
    num_train: int
    num_valid: int
    num_test: int
    threshold: float
    inverse_pairs: list[InversePair]
    relations_with_partner: float
    test_relation_coverage: float
    leakage_train: LeakageFractions
    leakage_train_valid: LeakageFractions
    inverse_model: dict[str, float]
    evidence: str = "train+valid"
    sweep: list[dict[str, float]] = field(default_factory=list)
    runtime_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN fractions become ``None``)."""
        def clean(x: Any) -> Any:
            if isinstance(x, float) and math.isnan(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list):
                return [clean(v) for v in x]
            return x

        out = clean(asdict(self))
        for pair, raw in zip(out["inverse_pairs"], self.inverse_pairs):
            pair["symmetric"] = raw.symmetric
        return out

    def to_markdown(self) -> str:
        """A readable report: sizes, leakage table, inverse model, flagged pairs, sweep."""
        def pct(x: float) -> str:
            return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}%"

        lines = [f"# Leakage audit: {self.dataset}", ""]
        if self.source:
            lines += [f"Source: `{self.source}`", ""]
        lines += [f"{self.num_entities} entities, {self.num_relations} relations, "
                  f"{self.num_train}/{self.num_valid}/{self.num_test} train/valid/test triples. "
                  f"Audit took {self.runtime_s:.2f} s.", ""]
        lines += ["## Test-set leakage", "",
                  "Share of test triples (h, r, t) given away by the reference set.", "",
                  "| measure | definition | vs train | vs train+valid |", "|---|---|---|---|"]
        definitions = {
            "exact_duplicate": "(h, r, t) itself",
            "duplicate_pair": "(h, r', t), r' != r",
            "reverse_pair": "(t, r', h), any r'",
            "reverse_pair_other": "(t, r', h), r' != r",
            "inverse_rule": "(t, r', h), r' a detected near-inverse of r",
            "any": "duplicate, duplicate pair or reverse pair",
        }
        for kind in LEAKAGE_KINDS:
            lines.append(f"| {kind} | {definitions[kind]} | {pct(getattr(self.leakage_train, kind))} | "
                         f"{pct(getattr(self.leakage_train_valid, kind))} |")
        lines += ["", f"## Inverse model (threshold {self.threshold:g}, rules applied to {self.evidence})",
                  ""]
        if self.inverse_model:
            m = self.inverse_model
            lines += ["| side | MRR | MR | Hits@1 | Hits@3 | Hits@10 |", "|---|---|---|---|---|---|"]
            for side, prefix in (("both", ""), ("head", "head/"), ("tail", "tail/")):
                lines.append(f"| {side} | {m[prefix + 'mrr']:.3f} | {m[prefix + 'mr']:.1f} | "
                             f"{m[prefix + 'hits@1']:.3f} | {m[prefix + 'hits@3']:.3f} | "
                             f"{m[prefix + 'hits@10']:.3f} |")
            lines += ["", "Filtered ranking, realistic ties: entities implied by an inverse rule "
                      "(or by a known triple) score 1, all others 0."]
        else:
            lines.append("No test triples: nothing to rank.")
        n_sym = sum(p.symmetric for p in self.inverse_pairs)
        lines += ["", f"## Near-inverse relation pairs (overlap >= {self.threshold:g} either way)", "",
                  f"{len(self.inverse_pairs)} pair(s), {n_sym} of them a near-symmetric relation; "
                  f"{pct(self.relations_with_partner)} of relations have a partner, covering "
                  f"{pct(self.test_relation_coverage)} of test triples.", ""]
        if self.inverse_pairs:
            lines += ["| relation 1 | relation 2 | overlap 1->2 | overlap 2->1 | pairs 1 | pairs 2 |",
                      "|---|---|---|---|---|---|"]
            for p in self.inverse_pairs:
                r2 = "(itself: symmetric)" if p.symmetric else p.relation2
                lines.append(f"| {p.relation1} | {r2} | {p.overlap12:.3f} | {p.overlap21:.3f} | "
                             f"{p.support1} | {p.support2} |")
        if self.sweep:
            lines += ["", "## Threshold sweep", "",
                      "| threshold | pairs | relations with partner | test triples whose relation has one "
                      "| inverse-rule leakage (vs train) |", "|---|---|---|---|---|"]
            for row in self.sweep:
                lines.append(f"| {row['threshold']:g} | {int(row['pairs'])} "
                             f"| {pct(row['relations_with_partner'])} | {pct(row['test_relation_coverage'])} "
                             f"| {pct(row['inverse_rule'])} |")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Vectorised building blocks
# --------------------------------------------------------------------------------------------

def _equi_join(keys_a: torch.Tensor, keys_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All index pairs ``(i, j)`` with ``keys_a[i] == keys_b[j]`` (a sort-merge join, no loops)."""
    empty = torch.empty(0, dtype=torch.long)
    if keys_a.numel() == 0 or keys_b.numel() == 0:
        return empty, empty
    order_a, order_b = torch.argsort(keys_a), torch.argsort(keys_b)
    uniq_a, count_a = torch.unique_consecutive(keys_a[order_a], return_counts=True)
    uniq_b, count_b = torch.unique_consecutive(keys_b[order_b], return_counts=True)
    start_a, start_b = torch.cumsum(count_a, 0) - count_a, torch.cumsum(count_b, 0) - count_b
    pos = torch.searchsorted(uniq_b, uniq_a).clamp_(max=len(uniq_b) - 1)
    hit = uniq_b[pos] == uniq_a
    group_a, group_b = torch.nonzero(hit).flatten(), pos[hit]
    n_a, n_b = count_a[group_a], count_b[group_b]
    sizes = n_a * n_b
    if sizes.numel() == 0:
        return empty, empty
    group = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    local = torch.arange(int(sizes.sum())) - torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes)
    idx_a = order_a[start_a[group_a][group] + torch.div(local, n_b[group], rounding_mode="floor")]
    idx_b = order_b[start_b[group_b][group] + local % n_b[group]]
    return idx_a, idx_b


def _triple_keys(triples: torch.Tensor, num_entities: int, num_relations: int) -> torch.Tensor:
    """One int64 per triple: ``(h * R + r) * N + t`` (sorting keys sorts triples lexicographically)."""
    return (triples[:, 0] * num_relations + triples[:, 1]) * num_entities + triples[:, 2]


def _unique_triples(triples: torch.Tensor, num_entities: int, num_relations: int) -> torch.Tensor:
    """Distinct triples, sorted; via 1-D keys (``torch.unique(dim=0)`` is ~10x slower on CPU)."""
    keys = torch.unique(_triple_keys(triples, num_entities, num_relations))
    tails = keys % num_entities
    rest = torch.div(keys, num_entities, rounding_mode="floor")
    heads = torch.div(rest, num_relations, rounding_mode="floor")
    return torch.stack([heads, rest % num_relations, tails], 1)


def _check_key_range(num_entities: int, num_relations: int) -> None:
    # the largest key is that of a query with a reciprocal relation: (N * 2R) * N
    if num_entities * num_entities * 2 * max(num_relations, 1) >= 2 ** 62:
        raise OverflowError(f"{num_entities} entities x {num_relations} relations do not fit int64 keys")


def _sorted_contains(sorted_keys: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``keys`` membership in an ascending tensor (binary search; ``torch.isin`` sorts again)."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, keys).clamp_(max=len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


def overlap_counts(train: torch.Tensor, num_relations: int,
                   num_entities: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse-overlap counts between all relation pairs.

    Parameters
    ----------
    train : (n, 3) int64 tensor
        ``(head, relation, tail)`` triples; duplicates are ignored.
    num_relations : int
        ``R``.
    num_entities : int, optional
        ``N``; inferred from ``train`` when omitted.

    Returns
    -------
    counts : (R, R) int64 tensor
        ``counts[r1, r2] = |{(h, t) in P(r1) : (t, h) in P(r2)}|`` where ``P(r)`` is the set of
        entity pairs of relation ``r``. It is symmetric, since ``(h, t) -> (t, h)`` is a bijection
        between the two sets being counted.
    support : (R,) int64 tensor
        ``|P(r)|``.
    """
    if num_entities is None:
        num_entities = int(train[:, [0, 2]].max()) + 1 if len(train) else 0
    train = _unique_triples(train, num_entities, num_relations)
    R = num_relations
    support = torch.bincount(train[:, 1], minlength=R)
    forward = train[:, 0] * num_entities + train[:, 2]
    backward = train[:, 2] * num_entities + train[:, 0]
    i, j = _equi_join(forward, backward)  # train[i] = (h, r1, t), train[j] = (t, r2, h)
    counts = torch.bincount(train[i, 1] * R + train[j, 1], minlength=R * R).view(R, R)
    return counts, support


def pairs_from_counts(counts: torch.Tensor, support: torch.Tensor, threshold: float,
                      relations: Sequence[str] | None = None) -> list[InversePair]:
    """Flag pairs whose reverse overlap reaches ``threshold`` in either direction.

    Parameters
    ----------
    counts, support : tensors
        As returned by :func:`overlap_counts`.
    threshold : float
        A pair ``(r1, r2)`` (``r1 <= r2``; ``r1 == r2`` tests symmetry) is flagged when
        ``counts[r1, r2] / support[r1] >= threshold`` or ``counts[r1, r2] / support[r2] >= threshold``.
    relations : sequence of str, optional
        Names; ids are used when omitted.

    Returns
    -------
    list of InversePair
        Sorted by the larger overlap (descending), then by ids.
    """
    R = len(support)
    names = list(relations) if relations is not None else [str(r) for r in range(R)]
    supp = support.to(torch.float64).clamp(min=1)
    ov12 = counts.to(torch.float64) / supp.unsqueeze(1)   # share of r1's pairs reversed in r2
    ov21 = counts.to(torch.float64) / supp.unsqueeze(0)   # share of r2's pairs reversed in r1
    eps = 1e-12
    flag = ((ov12 >= threshold - eps) | (ov21 >= threshold - eps)) & (counts > 0)
    flag = torch.triu(flag)
    r1, r2 = torch.nonzero(flag, as_tuple=True)
    out = [InversePair(names[a], names[b], a, b, float(ov12[a, b]), float(ov21[a, b]),
                       int(support[a]), int(support[b]))
           for a, b in zip(r1.tolist(), r2.tolist())]
    out.sort(key=lambda p: (-max(p.overlap12, p.overlap21), p.id1, p.id2))
    return out


def detect_inverse_pairs(train: torch.Tensor, num_relations: int, threshold: float = DEFAULT_THRESHOLD,
                         relations: Sequence[str] | None = None,
                         num_entities: int | None = None) -> list[InversePair]:
    """Near-inverse relation pairs of a training set.

    For relations ``r1, r2`` with entity-pair sets ``P(r)``, the overlap of ``r1`` into ``r2`` is
    ``|{(h, t) in P(r1) : (t, h) in P(r2)}| / |P(r1)|``. A pair is flagged when either direction
    is ``>= threshold`` (the official ConvE script's rule; default 0.8). ``r1 == r2`` is allowed
    and means ``r1`` is near-symmetric.

    Parameters
    ----------
    train : (n, 3) int64 tensor
        Training triples.
    num_relations : int
        Number of relations ``R``.
    threshold : float, default 0.8
        Overlap threshold in ``(0, 1]``.
    relations : sequence of str, optional
        Relation names for the result.
    num_entities : int, optional
        Number of entities (inferred when omitted).

    Returns
    -------
    list of InversePair
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    counts, support = overlap_counts(train, num_relations, num_entities)
    return pairs_from_counts(counts, support, threshold, relations)


def rule_edges(pairs: Sequence[InversePair]) -> torch.Tensor:
    """``(E, 2)`` directed rules ``(src, dst)``: ``(h, src, t)`` implies ``(t, dst, h)``.

    Each flagged pair gives both directions (as in the official script); a symmetric relation
    gives one self-rule.
    """
    edges = {(p.id1, p.id2) for p in pairs} | {(p.id2, p.id1) for p in pairs}
    if not edges:
        return torch.empty(0, 2, dtype=torch.long)
    return torch.tensor(sorted(edges), dtype=torch.long)


def apply_rules(triples: torch.Tensor, edges: torch.Tensor, num_entities: int,
                num_relations: int) -> torch.Tensor:
    """Triples implied by the inverse rules: ``(t, dst, h)`` for each ``(h, src, t)`` and rule.

    Parameters
    ----------
    triples : (n, 3) int64 tensor
        Evidence triples.
    edges : (E, 2) int64 tensor
        Rules from :func:`rule_edges`.
    num_entities, num_relations : int
        ``N`` and ``R``.

    Returns
    -------
    (m, 3) int64 tensor
        Implied triples, distinct and sorted (may include triples already in ``triples``).
    """
    if len(edges) == 0 or len(triples) == 0:
        return torch.empty(0, 3, dtype=torch.long)
    i, j = _equi_join(triples[:, 1], edges[:, 0])
    implied = torch.stack([triples[i, 2], edges[j, 1], triples[i, 0]], dim=1)
    return _unique_triples(implied, num_entities, num_relations)


def leakage_fractions(queries: torch.Tensor, reference: torch.Tensor, num_entities: int,
                      num_relations: int, edges: torch.Tensor | None = None) -> LeakageFractions:
    """Leakage of the triples ``queries`` with respect to the triple set ``reference``.

    Parameters
    ----------
    queries : (q, 3) int64 tensor
        Evaluation triples ``(h, r, t)`` (usually test); every row counts once, duplicates too.
    reference : (n, 3) int64 tensor
        Triples a model sees (train, or train + valid).
    num_entities, num_relations : int
        ``N`` and ``R``.
    edges : (E, 2) int64 tensor, optional
        Inverse rules (:func:`rule_edges`) for ``inverse_rule``; no rules when omitted.

    Returns
    -------
    LeakageFractions
        Each field is the share of ``queries`` with that kind of leak (see the class); NaN when
        ``queries`` is empty.
    """
    if len(queries) == 0:
        nan = float("nan")
        return LeakageFractions(nan, nan, nan, nan, nan, nan)
    _check_key_range(num_entities, num_relations)
    N, R = num_entities, num_relations
    ref = _unique_triples(reference, N, R)
    ref_keys = _triple_keys(ref, N, R)
    h, r, t = queries[:, 0], queries[:, 1], queries[:, 2]
    exact = torch.isin(_triple_keys(queries, N, R), ref_keys)
    same_reversed = torch.isin(_triple_keys(torch.stack([t, r, h], 1), N, R), ref_keys)
    # number of distinct relations per entity pair of the reference
    pair_keys, pair_counts = torch.unique(ref[:, 0] * N + ref[:, 2], return_counts=True)

    def relations_on(pairs: torch.Tensor) -> torch.Tensor:
        if len(pair_keys) == 0:
            return torch.zeros_like(pairs)
        pos = torch.searchsorted(pair_keys, pairs).clamp_(max=len(pair_keys) - 1)
        return torch.where(pair_keys[pos] == pairs, pair_counts[pos], torch.zeros_like(pos))

    on_pair = relations_on(h * N + t)
    on_reverse = relations_on(t * N + h)
    duplicate_pair = (on_pair - exact.long()) > 0
    reverse_pair = on_reverse > 0
    reverse_other = (on_reverse - same_reversed.long()) > 0
    if edges is not None and len(edges):
        implied = apply_rules(ref, edges, N, R)
        rule = torch.isin(_triple_keys(queries, N, R), _triple_keys(implied, N, R))
    else:
        rule = torch.zeros_like(exact)
    any_leak = exact | duplicate_pair | reverse_pair

    def frac(mask: torch.Tensor) -> float:
        return mask.to(torch.float64).mean().item()

    return LeakageFractions(frac(exact), frac(duplicate_pair), frac(reverse_pair), frac(reverse_other),
                            frac(rule), frac(any_leak))


def inverse_model_ranks(queries: torch.Tensor, evidence: torch.Tensor, known: torch.Tensor,
                        num_entities: int, num_relations: int, edges: torch.Tensor,
                        batch_size: int = 1024, dense: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Filtered ranks of the rule-based inverse model.

    For a query ``(h, r, ?)`` the candidate tails are the entities ``e`` with ``(e, r2, h)`` in
    ``evidence`` for a rule ``r2 -> r`` (see :func:`rule_edges`), plus those with ``(h, r, e)`` in
    ``evidence`` (which the filter removes unless the test triple duplicates an evidence triple,
    as in the official script); heads likewise. Candidates score 1 and all other entities 0; the
    target's rank is the realistic rank of :func:`paperzoo.core.metrics.ranking.filtered_ranks`
    after removing the other ``known`` triples. With ``c`` unfiltered candidates and ``m``
    unfiltered non-candidates besides the target, a candidate target ranks ``1 + c / 2`` and any
    other target ``1 + c + m / 2``; the first is the expectation of the official script's random
    rank among candidates.

    Parameters
    ----------
    queries : (q, 3) int64 tensor
        Triples to rank (usually test).
    evidence : (n, 3) int64 tensor
        Triples the rules are applied to (train, or train + valid).
    known : (m, 3) int64 tensor
        All true triples used for filtering (train + valid + test).
    num_entities, num_relations : int
        ``N`` and ``R``.
    edges : (E, 2) int64 tensor
        Inverse rules.
    batch_size : int, default 1024
        Queries handled at once.
    dense : bool, default False
        ``True`` scores each batch as a ``(B, N)`` 0/1 matrix and calls
        :func:`~paperzoo.core.metrics.ranking.filtered_ranks`; ``False`` computes the same ranks
        from the counts ``c`` and ``m`` above without the dense matrix: identical values (the
        tests check this), over 10x faster on FB15k-237 and WN18RR, where summing the dense
        boolean comparisons dominates.

    Returns
    -------
    head_ranks, tail_ranks : (q,) float64 tensors
    """
    N, R = num_entities, num_relations
    _check_key_range(N, R)
    candidates = torch.cat([evidence, apply_rules(evidence, edges, N, R)])
    cand_index = kg.QueryIndex(kg.with_reciprocals(candidates, R), 2 * R)
    filt_index = kg.QueryIndex(kg.with_reciprocals(known, R), 2 * R)
    # tail queries (h, r) -> t and head queries (t, r + R) -> h
    flat = torch.cat([queries, torch.stack([queries[:, 2], queries[:, 1] + R, queries[:, 0]], 1)])
    ranks = torch.empty(len(flat), dtype=torch.float64)
    for start in range(0, len(flat), batch_size):
        batch = flat[start:start + batch_size]
        targets = batch[:, 2]
        c_rows, c_cols = cand_index.lookup(batch[:, 0], batch[:, 1])
        f_rows, f_cols = filt_index.lookup(batch[:, 0], batch[:, 1])
        if dense:
            scores = torch.zeros(len(batch), N)
            scores[c_rows, c_cols] = 1.0
            ranks[start:start + len(batch)] = filtered_ranks(scores, targets, f_rows, f_cols)
            continue
        B = len(batch)
        # filtered entities other than the target; candidates that survive the filter
        f_other = f_cols != targets[f_rows]
        n_removed = torch.bincount(f_rows[f_other], minlength=B) + 1  # + the target itself
        c_other = c_cols != targets[c_rows]
        c_kept = c_other & ~_sorted_contains(f_rows * N + f_cols, c_rows * N + c_cols)
        c = torch.bincount(c_rows[c_kept], minlength=B).to(torch.float64)
        target_is_cand = torch.bincount(c_rows[~c_other], minlength=B) > 0
        m = (N - n_removed).to(torch.float64) - c
        ranks[start:start + B] = torch.where(target_is_cand, 1.0 + c / 2, 1.0 + c + m / 2)
    q = len(queries)
    return ranks[q:], ranks[:q]


# --------------------------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------------------------

def _coverage(pairs: Sequence[InversePair], support: torch.Tensor,
              test: torch.Tensor) -> tuple[float, float]:
    """(share of relations with training triples that have a partner, share of test triples whose
    relation has one)."""
    R = len(support)
    has = torch.zeros(R, dtype=torch.bool)
    for p in pairs:
        has[p.id1] = has[p.id2] = True
    present = support > 0
    rel_share = (has & present).sum().item() / max(int(present.sum()), 1)
    test_share = has[test[:, 1]].to(torch.float64).mean().item() if len(test) else float("nan")
    return rel_share, test_share


def _sweep(counts: torch.Tensor, support: torch.Tensor, train: torch.Tensor, test: torch.Tensor,
           num_entities: int, thresholds: Sequence[float]) -> list[dict[str, float]]:
    """Rule coverage and inverse-rule leakage (vs train) at several thresholds, from one join.

    A pair is flagged at threshold ``th`` iff its strength ``counts / min(support1, support2)`` (the
    larger of its two overlaps) is ``>= th``; a test triple ``(h, r, t)`` is rule-implied iff some
    train triple ``(t, r', h)`` has a pair ``(r, r')`` that strong.
    """
    if not thresholds:
        return []
    N = num_entities
    supp = support.to(torch.float64)
    strength = counts.to(torch.float64) / torch.minimum(supp.unsqueeze(1), supp.unsqueeze(0)).clamp(min=1)
    strength[counts == 0] = 0.0
    present = support > 0
    best = strength.max(dim=1).values  # strongest partner of each relation
    test_best = torch.zeros(len(test), dtype=torch.float64)
    if len(test) and len(train):
        i, j = _equi_join(test[:, 2] * N + test[:, 0], train[:, 0] * N + train[:, 2])  # train[j] = (t, r', h)
        test_best.scatter_reduce_(0, i, strength[test[i, 1], train[j, 1]], reduce="amax")
    eps = 1e-12
    nan = math.nan
    rows = []
    for th in thresholds:
        th = float(th)
        has = best >= th - eps
        rows.append({
            "threshold": th,
            "pairs": int(torch.triu(strength >= th - eps).sum()),
            "relations_with_partner": (has & present).sum().item() / max(int(present.sum()), 1),
            "test_relation_coverage": has[test[:, 1]].to(torch.float64).mean().item() if len(test) else nan,
            "inverse_rule": (test_best >= th - eps).to(torch.float64).mean().item() if len(test) else nan,
        })
    return rows


def audit(splits: kg.KGSplits, threshold: float = DEFAULT_THRESHOLD, *, evidence: str = "train+valid",
          sweep: Sequence[float] = SWEEP_THRESHOLDS, batch_size: int = 1024,
          dense: bool = False) -> AuditReport:
    """Audit a link-prediction dataset for test leakage through inverse relations.

    Parameters
    ----------
    splits : KGSplits
        The dataset.
    threshold : float, default 0.8
        Overlap threshold for near-inverse pairs (see :func:`detect_inverse_pairs`); pairs are
        detected on the training triples only.
    evidence : {"train+valid", "train"}, default "train+valid"
        Triples the inverse model applies its rules to (the official script uses train + valid).
    sweep : sequence of float
        Thresholds for :attr:`AuditReport.sweep` (empty to skip).
    batch_size : int, default 1024
        Queries per batch in the inverse model.
    dense : bool, default False
        Rank through a dense score matrix and ``filtered_ranks`` (see :func:`inverse_model_ranks`).

    Returns
    -------
    AuditReport
    """
    if evidence not in ("train+valid", "train"):
        raise ValueError(f"evidence must be 'train+valid' or 'train', got {evidence!r}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    start = time.perf_counter()
    N, R = splits.num_entities, splits.num_relations
    _check_key_range(N, R)
    train, valid, test = splits.train, splits.valid, splits.test
    train_valid = torch.cat([train, valid])

    counts, support = overlap_counts(train, R, N)
    pairs = pairs_from_counts(counts, support, threshold, splits.relations)
    edges = rule_edges(pairs)
    rel_share, test_share = _coverage(pairs, support, test)
    log.info("%s: %d near-inverse pairs at threshold %g (%.2f s)", splits.name, len(pairs), threshold,
             time.perf_counter() - start)

    leak_train = leakage_fractions(test, train, N, R, edges)
    leak_train_valid = leakage_fractions(test, train_valid, N, R, edges)

    sweep_rows = _sweep(counts, support, train, test, N, sweep)

    metrics: dict[str, float] = {}
    if len(test):
        rule_evidence = train_valid if evidence == "train+valid" else train
        head_ranks, tail_ranks = inverse_model_ranks(test, rule_evidence, splits.all_triples(), N, R, edges,
                                                     batch_size, dense)
        metrics = dict(both_sides(head_ranks, tail_ranks))
    else:
        log.warning("%s has no test triples: leakage fractions are NaN and the inverse model is skipped",
                    splits.name)
    runtime = time.perf_counter() - start
    log.info("%s: audit done in %.2f s (inverse-model MRR %s)", splits.name, runtime,
             f"{metrics['mrr']:.3f}" if metrics else "n/a")
    return AuditReport(dataset=splits.name, source=splits.source, num_entities=N, num_relations=R,
                       num_train=len(train), num_valid=len(valid), num_test=len(test), threshold=threshold,
                       inverse_pairs=pairs, relations_with_partner=rel_share,
                       test_relation_coverage=test_share,
                       leakage_train=leak_train, leakage_train_valid=leak_train_valid, inverse_model=metrics,
                       evidence=evidence, sweep=sweep_rows, runtime_s=runtime)


def audit_path(path_or_name: str | os.PathLike, data_root: str | os.PathLike | None = None,
               threshold: float = DEFAULT_THRESHOLD, **kwargs: Any) -> AuditReport:
    """Load a dataset (a catalog name such as ``fb15k237`` or a folder with ``train/valid/test.txt``)
    and :func:`audit` it.

    Parameters
    ----------
    path_or_name : str or path
        Dataset name (see :mod:`paperzoo.data.catalog`) or folder.
    data_root : str or path, optional
        Where named datasets are searched first (see :mod:`paperzoo.data.roots`).
    threshold : float, default 0.8
        Overlap threshold for near-inverse pairs.
    **kwargs
        Passed to :func:`audit` (``evidence``, ``sweep``, ``batch_size``, ``dense``).

    Returns
    -------
    AuditReport
    """
    splits = kg.load(str(path_or_name), data_root)
    return audit(splits, threshold, **kwargs)


__all__ = ["AuditReport", "InversePair", "LeakageFractions", "audit", "audit_path", "detect_inverse_pairs",
           "overlap_counts", "pairs_from_counts", "rule_edges", "apply_rules", "leakage_fractions",
           "inverse_model_ranks", "DEFAULT_THRESHOLD", "SWEEP_THRESHOLDS"]


SUMMARY_DATASETS = ("nations", "kinship", "umls", "wn18rr", "fb15k237")


def summary_table(datasets: Sequence[str] = SUMMARY_DATASETS, data_root: str | os.PathLike | None = None,
                  threshold: float = DEFAULT_THRESHOLD) -> str:
    """One Markdown row per dataset found: leakage, relation coverage and inverse-model scores.

    Datasets that are not found are listed as missing rather than failing the table.
    """
    from paperzoo.data.roots import DataNotFoundError

    lines = [
        "| dataset | reverse pair in train | test triples whose relation has a near-inverse (0.65) | "
        f"near-inverse pairs ({threshold}) | inverse model MRR | inverse model H@10 |",
        "|---|---|---|---|---|---|",
    ]
    for name in datasets:
        try:
            rep = audit_path(name, data_root=data_root, threshold=threshold)
        except DataNotFoundError:
            lines.append(f"| {name} | (not found) | | | | |")
            continue
        coverage = next((s["test_relation_coverage"] for s in rep.sweep if abs(s["threshold"] - 0.65) < 1e-9),
                        float("nan"))
        lines.append(f"| {name} | {rep.leakage_train.reverse_pair:.1%} | {coverage:.1%} | "
                     f"{len(rep.inverse_pairs)} | {rep.inverse_model['mrr']:.3f} | "
                     f"{rep.inverse_model['hits@10']:.3f} |")
    return "\n".join(lines)


CLAIM = ("ConvE scores a (head, relation) query with a 2D convolution over the stacked embeddings against all "
         "entities at once (1-N scoring), reaching filtered MRR .94 on UMLS, .83 on Kinship and .32 on FB15k-237 "
         "(official README after the evaluation fix); a rule-based inverse model exposes the test leakage of "
         "datasets whose relations have inverses in train.")
#: ``reproduced``: test MRR within this much of the paper's (the README's small graphs are within .02).
MRR_TOLERANCE = 0.02
#: The README's UMLS result (preset ``paper_umls``; ``quick`` trains the same model for at most 150 epochs).
README_UMLS = ("paper_umls", 0.944, 0.94)
MIN_CURVE_POINTS = 3


def verdict(run: Any, metrics: dict[str, float], baselines: dict[str, float]) -> str:
    """ConvE's test MRR against the preset's published MRR (``MRR_TOLERANCE``), else its ordering above a
    DistMult run on the same data (``baselines``: model -> test MRR)."""
    cfg = run.config
    if cfg.model != "conve":
        return f"not reproduced: a {cfg.model} run is the baseline, not ConvE"
    from paperzoo.methods.conve.config import PRESETS

    ours = metrics["test/mrr"]
    epochs = f"after {metrics['epochs_run']:.0f} epochs" if "epochs_run" in metrics else ""
    preset = PRESETS.get(run.preset)
    paper = preset.paper.metrics.get("mrr") if preset is not None and preset.paper is not None else None
    facts = f"test MRR {ours:.3f} on {cfg.dataset} {epochs}".rstrip()
    if paper is not None and abs(ours - paper) <= MRR_TOLERANCE:
        return f"reproduced: {facts} vs paper {paper:.2f} (tolerance {MRR_TOLERANCE})"
    if "distmult" in baselines and ours >= baselines["distmult"]:
        target = f"; paper {paper:.2f} not reached" if paper is not None else ""
        return f"ordering reproduced: ConvE {facts} above DistMult {baselines['distmult']:.3f}{target}"
    name, readme, published = README_UMLS
    reason = f"vs paper {paper:.2f}" if paper is not None else "(no published number for this data)"
    return (f"not reproduced in the {run.preset} preset: {facts} {reason}; preset {name} reaches {readme:.3f} "
            f"vs {published:.2f} on UMLS (README)")


def plot_validation(run: Any, path: os.PathLike | str) -> Path | None:
    """Validation MRR / Hits@1 / Hits@10 against epoch with the kept epoch marked; ``None`` when the run
    validated fewer than ``MIN_CURVE_POINTS`` times."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    from paperzoo.core.io import atomic_path

    rows = run.read_history()
    series = {k: [(r["epoch"], r[k]) for r in rows if isinstance(r.get(k), float) and math.isfinite(r[k])]
              for k in ("valid/mrr", "valid/hits@1", "valid/hits@10")}
    series = {k: v for k, v in series.items() if len(v) >= MIN_CURVE_POINTS}
    if "valid/mrr" not in series:
        return None
    fig = MplFigure(figsize=(6, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for key, pts in series.items():
        ax.plot(*zip(*pts), marker="o", markersize=2, label=key.removeprefix("valid/"))
    best = max(series["valid/mrr"], key=lambda p: p[1])
    ax.axvline(best[0], color="0.5", linestyle="--", linewidth=1, label=f"best.pt (epoch {best[0]:.0f})")
    ax.set(xlabel="epoch", ylabel="filtered validation score", ylim=(0, 1.02),
           title=f"{run.config.model} on {run.config.dataset}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path




def report_section(runs: Sequence[Any]) -> ReportSection:
    """The report's ConvE section: claim, verdict (MRR vs the paper, else ConvE above DistMult), a score
    table, each run's validation curves, and the leakage audit of the standard datasets found under the
    runs' data root (``paperzoo data audit-kg``)."""
    from paperzoo.core.runs import finished_runs
    from paperzoo.methods.conve.config import PRESETS

    finished = finished_runs(runs)
    rows = ["| run | dataset | model | MRR | Hits@1 | Hits@10 | paper MRR | epochs |", "|---|---|---|---|---|---|---|---|"]
    verdicts, figures = [], []
    for run, m in finished:
        cfg = run.config
        preset = PRESETS.get(run.preset)
        paper = preset.paper.metrics.get("mrr") if preset is not None and preset.paper is not None else None
        rows.append(f"| {run.path.name} | {cfg.dataset} | {cfg.model} | {m['test/mrr']:.3f} | "
                    f"{m.get('test/hits@1', math.nan):.3f} | {m.get('test/hits@10', math.nan):.3f} | "
                    f"{'–' if paper is None else f'{paper:.2f}'} | {m.get('epochs_run', '–')} |")
        if cfg.model == "conve" or len(finished) == 1:
            baselines = {o.config.model: om["test/mrr"] for o, om in finished
                         if o.config.model != "conve" and o.config.dataset == cfg.dataset}
            verdicts.append((run.path.name, verdict(run, m, baselines)))
        png = plot_validation(run, run.path / "plots" / "validation.png")
        if png is not None:
            figures.append(Figure(png.resolve(), f"{run.path.name}: filtered validation MRR and Hits of "
                                                 f"{cfg.model} on {cfg.dataset} per evaluation (dashed: the "
                                                 f"epoch kept as best.pt, whose test scores are reported)"))
    data_root = next((r.data_root for r in runs if getattr(r, "data_root", None)), None)
    leakage = ("### Inverse-relation leakage (`paperzoo data audit-kg`)\n\n"
               "The ConvE README warns that Nations (+95%) and Kinship (about 48%) have many inverse "
               "relationships, while FB15k-237 and WN18RR were built to remove inverse leakage.\n\n"
               + summary_table(SUMMARY_DATASETS, data_root=data_root))
    return ReportSection(claim=CLAIM, verdict=overall_verdict(verdicts),
                         markdown=("\n".join(rows) + "\n\n" if finished else "") + leakage,
                         figures=tuple(figures))

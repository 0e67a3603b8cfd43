"""The BAN pipeline's pieces: vocabulary, the official schedule and losses, the report's verdicts."""
import math

import pytest
import torch
import torch.nn.functional as F

from paperzoo.methods.ban.config import BANConfig
from paperzoo.methods.ban.run import Vocabulary, grounding_loss, tokenize, vqa_loss


def test_vocabulary_pads_right_truncates_and_maps_unknown_words():
    vocab = Vocabulary.build(["What is the RED object?", "is it left"])
    assert vocab.words[:2] == ["<pad>", "<unk>"] and "red" in vocab.index
    tokens = vocab.encode(["what is the red object", "zebra is", "a b c d e f"], max_tokens=4)
    assert tokens.shape == (3, 4)
    assert tokens[0].tolist() == [vocab.index[w] for w in ("what", "is", "the", "red")]  # truncated
    assert tokens[1].tolist() == [1, vocab.index["is"], 0, 0]  # unknown -> 1, padding 0 on the right
    assert tokens[2].tolist() == [1, 1, 1, 1]
    assert tokenize("Isn't it 2 squares?") == ["isn't", "it", "2", "squares"]


def test_the_official_learning_rate_schedule():
    cfg = BANConfig()
    factors = [cfg.lr_factor(e) for e in range(16)]
    # warm-up 0.5, 1, 1.5, 2 x lr, hold 2x, then x0.25 at epochs 10, 12, 14
    assert factors[:4] == [0.5, 1.0, 1.5, 2.0] and factors[4:10] == [2.0] * 6
    assert factors[10:12] == [0.5, 0.5] and factors[12:14] == [0.125, 0.125] and factors[14] == 2.0 * 0.25 ** 3


def test_vqa_loss_is_bce_times_the_number_of_answers():
    logits, scores = torch.randn(4, 7), torch.rand(4, 7)
    sig = lambda x: 1 / (1 + math.exp(-x))
    expected = sum(-(s * math.log(sig(x)) + (1 - s) * math.log(1 - sig(x)))
                   for x, s in zip(logits.flatten().tolist(), scores.flatten().tolist())) / 4
    assert float(vqa_loss(logits, scores)) == pytest.approx(expected, rel=1e-5)


def test_grounding_loss_sums_over_real_proposals_only():
    logits = torch.tensor([[2.0, -1.0, float("-inf")], [0.5, 0.0, 3.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    per = F.binary_cross_entropy_with_logits(torch.tensor([2.0, -1.0, 0.5, 0.0, 3.0]),
                                             torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0]), reduction="sum")
    assert float(grounding_loss(logits, targets, mask)) == pytest.approx(float(per) / 2)


def test_config_rejects_what_cannot_run():
    from paperzoo.core.config import ConfigError

    with pytest.raises(ConfigError, match="features"):
        BANConfig(dataset="easy_vqa", features="objects")
    with pytest.raises(ConfigError, match="models"):
        BANConfig(dataset="grounding", models=("attention", "ban"))
    with pytest.raises(ConfigError, match="embed_dim"):
        BANConfig(embed_dim=300)
    assert BANConfig(dataset="flickr30k", models=("ban",)).task == "grounding"


def test_report_verdicts():
    from paperzoo.methods.ban.report import _compare, judge_glimpses

    assert judge_glimpses({1: 0.60, 2: 0.62, 4: 0.618, 8: 0.65}).startswith("reproduced")
    assert judge_glimpses({1: 0.60, 2: 0.70, 4: 0.62, 8: 0.71}).startswith("not reproduced")
    assert judge_glimpses({1: 0.60, 8: 0.60}).startswith("not reproduced")

    def runs(pairs):
        return [(None, {"test/ban/accuracy_relational": b, "test/coattention/accuracy_relational": c})
                for b, c in pairs]

    text, ok = _compare(runs([(0.70, 0.68), (0.66, 0.67), (0.69, 0.66)]), "accuracy_relational", "rel")
    assert ok and "at or above in 2/3" in text and "+1.3 points" in text
    assert not _compare(runs([(0.60, 0.68)]), "accuracy_relational", "rel")[1]
    assert _compare(runs([(0.60, 0.68)]), "recall_at_1", "rel") is None

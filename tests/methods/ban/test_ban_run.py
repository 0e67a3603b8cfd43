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


def _write_vqa_v2(root, rng):
    """Tiny VQA v2 train/val files in the official layout, with bottom-up TSV features (3-d, 2-4 boxes)."""
    import base64
    import json

    import numpy as np

    from paperzoo.data.vqa import vqa_v2_files

    folder = root / "vqa_v2"
    folder.mkdir(parents=True)
    for split, first in (("train", 0), ("val", 100)):
        images = [first + i for i in range(3)]
        qs, anns, rows = [], [], []
        for k in range(8):
            image = images[k % 3]
            answer = ["yes", "no", "2"][k % 3]
            qs.append({"image_id": image, "question": f"is there a dog number {k}?", "question_id": first * 10 + k})
            anns.append({"question_id": first * 10 + k, "image_id": image, "answer_type": "other",
                         "multiple_choice_answer": answer,
                         "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": j + 1}
                                     for j in range(10)]})
        for image in images:
            n = 2 + image % 3
            xy = rng.uniform(0, 50, size=(n, 2))
            boxes = np.concatenate([xy, xy + 10], 1).astype(np.float32)
            feats = rng.uniform(0.1, 1, size=(n, 3)).astype(np.float32)
            rows.append("\t".join([str(image), "100", "80", str(n), base64.b64encode(boxes.tobytes()).decode(),
                                   base64.b64encode(feats.tobytes()).decode()]))
        q_name, a_name = vqa_v2_files(split)
        (folder / q_name).write_text(json.dumps({"questions": qs}))
        (folder / a_name).write_text(json.dumps({"annotations": anns}))
        (folder / f"{split}36.tsv").write_text("\n".join(rows) + "\n")


def test_a_vqa2_run_reads_the_official_files_and_bottom_up_features(tmp_path, one_thread):
    import numpy as np

    from paperzoo.core.runs import RunDir
    from paperzoo.methods.ban.run import load_data, run

    _write_vqa_v2(tmp_path / "data", np.random.default_rng(0))
    cfg = BANConfig(dataset="vqa2", models=("coattention", "ban"), hidden=8, glimpses=2, counter=True,
                    counter_objects=3, glove=False, embed_dim=6, epochs=2, batch_size=4, min_answer_count=1)
    data = load_data(cfg, str(tmp_path / "data"))
    assert sorted(data.answers) == ["2", "no", "yes"] and data.v_dim == 3 + 6  # features + box geometry
    # box geometry normalised by the TSV's image size, zero on padded boxes
    assert 0 <= float(data.train.table[..., 3:].min()) and float(data.train.table[..., 3:].max()) <= 1
    assert (data.train.table[~data.train.v_mask] == 0).all() and data.train.v_mask.sum(1).tolist() == [2, 3, 4]
    run_dir = RunDir.create(tmp_path / "run", method="ban", preset="test", config=cfg, data_root=str(tmp_path / "data"))
    result = run(cfg, run_dir)
    assert 0 <= result.metrics["test/ban/accuracy"] <= 1 and "test/coattention/accuracy_other" in result.metrics


@pytest.mark.parametrize("query", ["last", "tokens"])
def test_a_grounding_run_finishes_with_recall_and_its_figure(tmp_path, one_thread, query):
    from paperzoo.core.runs import RunDir
    from paperzoo.methods.ban.run import run

    cfg = BANConfig(dataset="grounding", models=("coattention", "ban"), hidden=8, glimpses=1, feature_dim=8,
                    encoder_width=4, encoder_epochs=1, crop_size=8, train_images=6, val_images=2, test_images=3,
                    questions_per_image=2, epochs=1, batch_size=8, glove=False, embed_dim=6, grounding_query=query)
    result = run(cfg, RunDir.create(tmp_path / "run", method="ban", preset="test", config=cfg))
    assert 0 <= result.metrics["test/ban/recall_at_1"] <= result.metrics["test/ban/recall_at_5"] <= 1
    assert result.metrics["test/recall_upper_bound"] == 1.0  # every object's exact box is a proposal
    assert (tmp_path / "run" / result.artifacts["attention"]).is_file()

"""IMDB with word vectors of its plot keywords as node attributes (``text_features=True``)."""
import math

import pytest

from paperzoo.core.config import ConfigError
from paperzoo.core.runs import RunDir
from paperzoo.data import text
from paperzoo.methods.hgt.config import HGTConfig, for_dataset
from paperzoo.methods.hgt.run import evaluate, load_graph, run


def test_text_features_only_where_there_is_text():
    with pytest.raises(ConfigError, match=r"text_features: only IMDB has text"):
        HGTConfig(dataset="acm", text_features=True)


@pytest.fixture
def imdb_root_with_small_glove(data_root, tmp_path):
    """A data root holding the real IMDB (linked) and a small GloVe text file (a few plot words)."""
    if not (data_root / "hetero" / "imdb").is_dir():
        pytest.skip("imdb missing")
    root = tmp_path / "root"
    (root / "hetero").mkdir(parents=True)
    (root / "hetero" / "imdb").symlink_to(data_root / "hetero" / "imdb")
    (root / "glove").mkdir()
    words = ["murder", "love", "police", "friend", "alien", "school", "war", "family", "death", "sex"]
    (root / "glove" / text.TXT).write_text(
        "".join(f"{w} " + " ".join(str(((i * 7 + j * 3) % 11) / 10 - 0.5) for j in range(6)) + "\n"
                for i, w in enumerate(words)))
    return root


@pytest.mark.parametrize("model", ["hgt", "mlp"])
def test_imdb_text_run_uses_attributes_and_eval_reproduces(imdb_root_with_small_glove, tmp_path, model):
    cfg = for_dataset("imdb_text", model=model, hidden=16, heads=2, epochs=2, min_epochs=0, patience=0,
                      num_threads=1)
    g = load_graph(cfg, str(imdb_root_with_small_glove))
    assert g.node_features["movie"].shape[1] == 7 and g.node_features["keyword"].shape[1] == 7
    rd = RunDir.create(tmp_path / "r", method="hgt", preset="paper_imdb_text", config=cfg,
                       data_root=str(imdb_root_with_small_glove))
    res = run(cfg, rd)
    assert all(math.isfinite(res.metrics[f"test/{k}"]) for k in ("accuracy", "macro_f1"))
    # IMDB here is single-label (3 genres): pooled micro-F1 is the accuracy (measured .344 hgt, .262 mlp)
    assert res.metrics["test/micro_f1"] == pytest.approx(res.metrics["test/accuracy"])
    again = evaluate(RunDir.open(tmp_path / "r"))
    assert again["test/macro_f1"] == pytest.approx(res.metrics["test/macro_f1"])

import dataclasses

import numpy as np
import pytest
import torch

from paperzoo.data import hetero, text
from paperzoo.data.roots import DataNotFoundError
from paperzoo.data.text import WordVectorFormatError, WordVectors


def _write_glove(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / text.TXT).write_text("".join(w + " " + " ".join(str(v) for v in vec) + "\n" for w, vec in rows))
    return folder


def test_read_txt_and_phrase_means(tmp_path):
    _write_glove(tmp_path / "glove", [("love", [1.0, 0.0]), ("war", [0.0, 2.0]), ("story", [3.0, 3.0])])
    wv = text.load_glove(tmp_path)
    assert wv.dim == 2 and wv.words == ["love", "war", "story"]
    vec, known = wv.embed(["Love story", ["war", "love"], "unknownword", ""])
    torch.testing.assert_close(vec[0], torch.tensor([2.0, 1.5]))
    torch.testing.assert_close(vec[1], torch.tensor([0.5, 1.0]))       # several strings pooled
    assert known.tolist() == [2, 2, 0, 0]
    assert torch.equal(vec[2], torch.zeros(2)) and torch.equal(vec[3], torch.zeros(2))


def test_npy_parquet_layout(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    folder = tmp_path / "glove"
    folder.mkdir()
    np.save(folder / text.NPY, np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32))
    pq.write_table(pa.table({"index": ["a", "b"]}), folder / text.INDEX)
    wv = text.load_glove(tmp_path)
    assert wv.words == ["a", "b"]
    torch.testing.assert_close(wv.embed(["b"])[0][0], torch.tensor([3.0, 4.0]))


def test_malformed_and_missing(tmp_path, monkeypatch):
    folder = tmp_path / "glove"
    folder.mkdir()
    (folder / text.TXT).write_text("a 1 2\nb 1\n")
    with pytest.raises(WordVectorFormatError, match=r"glove.6B.50d.txt:2: 1 values, expected 2"):
        text.read_glove_txt(folder / text.TXT)
    (folder / text.TXT).write_text("a 1 x\n")
    with pytest.raises(WordVectorFormatError, match=r":1: non-numeric"):
        text.read_glove_txt(folder / text.TXT)
    with pytest.raises(WordVectorFormatError, match="2 words but vectors of shape"):
        WordVectors(["a", "b"], torch.zeros(3, 2))
    # nothing anywhere: one error naming every place tried
    monkeypatch.setattr(text, "SOURCE", dataclasses.replace(text.SOURCE, packages=()))
    monkeypatch.delenv("PAPERZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError, match=r"(?s)glove_6B_50d_emb.npy.*glove.6B.50d.txt.*empty.*paperzoo\[text\]"):
        text.load_glove(tmp_path / "empty")


def test_imdb_text_attributes(data_root):
    if not (data_root / "hetero" / "imdb").is_dir():
        pytest.skip("imdb missing")
    words = ["murder", "love", "police", "friend", "alien", "high", "school"]
    gen = torch.Generator().manual_seed(0)
    wv = WordVectors(words, torch.randn(len(words), 4, generator=gen))
    plain = hetero.load("imdb", data_root)
    g = hetero.load("imdb", data_root, word_vectors=wv)
    assert not plain.node_features
    assert set(g.node_features) == {"movie", "keyword"}
    assert g.node_features["movie"].shape == (g.num_nodes["movie"], 5)
    assert g.node_features["keyword"].shape == (g.num_nodes["keyword"], 5)
    # a keyword node's vector is the mean of its phrase's known words; the last column flags them
    kw = g.info["keywords"]
    i = kw.index("high school")
    torch.testing.assert_close(g.node_features["keyword"][i, :4], wv.vectors[[5, 6]].mean(0))
    assert g.node_features["keyword"][i, 4] == 1.0
    unknown = [j for j, k in enumerate(kw) if not set(k.split()) & set(words)]
    assert unknown and bool((g.node_features["keyword"][unknown] == 0).all())
    # structure and labels are unchanged; reverse edges and PyG export keep the attributes
    assert torch.equal(plain.y, g.y) and plain.num_nodes == g.num_nodes
    assert set(g.add_reverse_edges().node_features) == {"movie", "keyword"}


def test_validate_rejects_bad_node_features():
    g = hetero.synthetic_temporal(num_papers=30, seed=0)
    g.node_features = {"paper": torch.zeros(g.num_nodes["paper"] + 1, 3)}
    with pytest.raises(ValueError, match=r"node_features\['paper'\] must be a float"):
        g.validate()
    g.node_features = {"paper": torch.full((g.num_nodes["paper"], 3), float("nan"))}
    with pytest.raises(ValueError, match="non-finite"):
        g.validate()
    g.node_features = {"nope": torch.zeros(2, 3)}
    with pytest.raises(ValueError, match="unknown node type 'nope'"):
        g.validate()

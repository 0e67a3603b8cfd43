"""The WordNet 3.0 noun reader, checked against synsets read by hand from data.noun / index.noun."""
import dataclasses

import pytest
import torch

from paperzoo.data import wordnet
from paperzoo.data.roots import DataNotFoundError
from paperzoo.data.text import WordVectors
from paperzoo.data.wordnet import (
    AmbiguousClassName,
    UnknownClassName,
    WordNet,
    WordNetFormatError,
    class_graph,
    embed_synsets,
)

CIFAR10 = ["airplane.n.01", "car.n.01", "bird.n.01", "cat.n.01", "deer.n.01", "dog.n.01", "frog.n.01",
           "horse.n.01", "ship.n.01", "truck.n.01"]
FASHION = ["jersey.n.03", "trouser.n.01", "sweater.n.01", "dress.n.01", "coat.n.01", "sandal.n.01", "shirt.n.01",
           "gym_shoe.n.01", "bag.n.04", "boot.n.01"]


def test_hand_checked_synsets(wn):
    # data.noun line 10845: 02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 023 @ 02083346 n 0000 @ 01317541
    dog = wn.synset("dog.n.01")
    assert dog.offset == 2084071 and dog.wnid == "n02084071"
    assert dog.lemmas == ("dog", "domestic_dog", "Canis_familiaris")
    assert dog.words == ("dog", "domestic dog", "Canis familiaris")
    assert dog.hypernyms == (2083346, 1317541)
    assert [wn.name(h) for h in dog.hypernyms] == ["canine.n.02", "domestic_animal.n.01"]
    assert dog.gloss.startswith("a member of the genus Canis (probably descended from the common wolf)")
    assert wn.synset("n02084071") is dog and wn.synset(2084071) is dog and wn.synset(" Dog.N.01") is dog
    entity = wn.synset("entity.n.01")
    assert entity.offset == 1740 and entity.hypernyms == () and entity.lemmas == ("entity",)
    # instance hypernym (@i), data.noun line 59507: 10954498 18 n 02 Einstein 0 Albert_Einstein 0 002 @i 10428004 n
    einstein = wn.synset("einstein.n.01")
    assert einstein.offset == 10954498 and einstein.lemmas == ("Einstein", "Albert_Einstein")
    assert einstein.hypernyms == (10428004,) and wn.name(10428004) == "physicist.n.01"
    assert wn.name(10954498) == "einstein.n.01"       # nltk's rule: first lemma lower-cased, sense 1
    assert len(wn) == 82115 and "dog.n.01" in wn and "n99999999" not in wn and "dog.n.08" not in wn


def test_lookup_in_sense_order(wn):
    senses = wn.lookup("dog")
    assert [wn.name(s.offset) for s in senses] == ["dog.n.01", "frump.n.01", "dog.n.03", "cad.n.01", "frank.n.02",
                                                   "pawl.n.01", "andiron.n.01"]
    assert wn.lookup("Domestic  dog") == [wn.synset("dog.n.01")]
    assert wn.lookup("nosuchwordxyz") == []


def test_resolve_user_names(wn):
    with pytest.raises(AmbiguousClassName) as info:
        wn.resolve("dog")
    assert info.value.candidates[0] == "dog.n.01" and len(info.value.candidates) == 7
    message = str(info.value)
    assert "\n" not in message
    assert "dog.n.01 (dog, domestic_dog, Canis_familiaris): a member of the genus Canis" in message
    assert "andiron.n.01 (andiron, firedog, dog, dog-iron)" in message
    assert wn.name(wn.resolve("airplane").offset) == "airplane.n.01"
    assert wn.resolve("Domestic dog") is wn.synset("dog.n.01")
    assert wn.resolve("dog.n.03") is wn.synset(10023039) and wn.resolve("n02084071") is wn.synset("dog.n.01")
    with pytest.raises(UnknownClassName) as info:
        wn.resolve("aeroplan")
    assert "aeroplane" in info.value.suggestions
    assert str(info.value).startswith("class name 'aeroplan' is not a WordNet noun; did you mean aeroplane")
    with pytest.raises(UnknownClassName, match="it has 7 noun senses"):
        wn.resolve("dog.n.09")
    with pytest.raises(UnknownClassName, match="not a noun synset"):
        wn.resolve("run.v.01")
    assert isinstance(UnknownClassName("x"), KeyError) and isinstance(AmbiguousClassName("x"), ValueError)


def test_ancestors_shortest_hops(wn):
    hops = {wn.name(o): d for o, d in wn.ancestors("dog.n.01").items()}
    assert hops["dog.n.01"] == 0 and hops["canine.n.02"] == 1 and hops["carnivore.n.01"] == 2
    # animal.n.01 is 2 hops via domestic_animal and 7 via canine -> carnivore -> ... -> chordate: shortest wins
    assert hops["animal.n.01"] == 2
    assert hops["entity.n.01"] == 8 and len(hops) == 15
    assert wn.ancestors("einstein.n.01")[10428004] == 1        # instance hypernyms are followed


def test_closure_and_edges(wn):
    dog, cat = wn.synset("dog.n.01").offset, wn.synset("cat.n.01").offset
    nodes = wn.closure(["dog.n.01", cat, "n02084071"])
    assert nodes[:2] == [dog, cat] and len(nodes) == len(set(nodes))
    assert [wn.name(o) for o in nodes[2:5]] == ["canine.n.02", "domestic_animal.n.01", "feline.n.01"]  # BFS
    assert nodes[-1] == 1740
    edges = wn.hypernym_edges([dog, 2083346, cat, 1317541])
    assert edges.dtype == torch.long and edges.t().tolist() == [[0, 1], [0, 3]]
    assert wn.hypernym_edges([dog, cat]).shape == (2, 0)


@pytest.mark.parametrize("classes,size", [(CIFAR10, 43), (FASHION, 26)])
def test_class_graph(wn, classes, size):
    graph = class_graph(wn, classes)
    assert graph.names[:10] == classes and graph.num_classes == 10 and graph.num_nodes == size
    assert graph.wnids[5] == f"n{graph.offsets[5]:08d}" and "n00001740" in graph.wnids
    child, parent = graph.edges.tolist()
    for c, p in zip(child, parent):
        assert graph.offsets[p] in wn.synset(graph.offsets[c]).hypernyms
    roots = [graph.names[i] for i in range(graph.num_nodes) if i not in set(child)]
    assert roots == ["entity.n.01"]
    # every hypernym of every node is in the graph (the closure is full), and has an edge
    assert len(child) == sum(len(wn.synset(o).hypernyms) for o in graph.offsets)
    with pytest.raises(ValueError, match="given twice"):
        class_graph(wn, ["dog.n.01", "n02084071"])
    with pytest.raises(UnknownClassName):
        class_graph(wn, ["dog"])          # exact keys only; users go through resolve()


def test_embed_synsets_official_rule(wn):
    vocab = WordVectors(["dog", "domestic", "canis", "iron", "shirt", "t", "tee", "t-shirt"],
                        torch.tensor([[1., 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 4], [0, 2, 0], [2, 0, 0], [0, 0, 2],
                                      [5, 5, 5]]))
    offsets = [wn.synset(n).offset for n in ("dog.n.01", "andiron.n.01", "jersey.n.03", "entity.n.01")]
    rows, missing = embed_synsets(wn, offsets, vocab)
    # dog.n.01: mean over lemmas of the mean over each lemma's words (not a flat mean over all words)
    dog = (torch.tensor([1., 0, 0]) + torch.tensor([.5, .5, 0]) + torch.tensor([0., 0, 1])) / 3
    torch.testing.assert_close(rows[0], dog / dog.norm())
    # andiron.n.01 (andiron, firedog, dog, dog-iron): 'dog-iron' is unknown, so the mean of its parts
    andiron = (torch.tensor([1., 0, 0]) + torch.tensor([.5, 0, 2])) / 2
    torch.testing.assert_close(rows[1], andiron / andiron.norm())
    # jersey.n.03 (jersey, T-shirt, tee_shirt): 'T-shirt' lower-cased is a vocabulary word itself
    jersey = (torch.tensor([5., 5, 5]) + torch.tensor([0., 1, 1])) / 2
    torch.testing.assert_close(rows[2], jersey / jersey.norm())
    assert missing == ["entity.n.01"] and torch.equal(rows[3], torch.zeros(3))
    torch.testing.assert_close(rows[:3].norm(dim=1), torch.ones(3))
    # a whole lemma found in the vocabulary wins over its words
    whole = WordVectors(["tee_shirt", "tee", "shirt"], torch.tensor([[0., 0, 3], [1, 0, 0], [0, 1, 0]]))
    jersey = torch.tensor([0., 0, 3]) + torch.tensor([0., 1, 0])          # tee_shirt; T-shirt -> shirt
    torch.testing.assert_close(embed_synsets(wn, offsets[2:3], whole)[0][0], jersey / jersey.norm())
    # as written (the official code): 'Canis_familiaris' and 'T-shirt' miss their capitalised words
    rows, _ = embed_synsets(wn, offsets[:1], vocab, lowercase=False)
    dog = (torch.tensor([1., 0, 0]) + torch.tensor([.5, .5, 0])) / 2
    torch.testing.assert_close(rows[0], dog / dog.norm())


def _fake_dict(root, data_lines, index_lines):
    folder = root / "wordnet" / "dict"
    folder.mkdir(parents=True)
    header = "  1 This software and database is being provided to you, the LICENSEE\n"
    (folder / "data.noun").write_text(header + "".join(line + "\n" for line in data_lines))
    (folder / "index.noun").write_text(header + "".join(line + "\n" for line in index_lines))
    return folder


GOOD_DATA = ["00000100 03 n 01 thing 0 001 ~ 00000200 n 0000 | a thing  ",
             "00000200 03 n 02 Widget 0 gizmo(a) 1 002 @ 00000100 n 0000 + 00000900 v 0101 | a small gadget"]
GOOD_INDEX = ["gizmo n 1 1 @ 1 0 00000200  ", "thing n 1 1 ~ 1 0 00000100  ", "widget n 1 1 @ 1 0 00000200  "]


def test_fake_dict_parses(tmp_path):
    _fake_dict(tmp_path, GOOD_DATA, GOOD_INDEX)
    wn = WordNet.load(tmp_path)
    assert WordNet.load(tmp_path) is wn         # cached per folder
    widget = wn.synset("widget.n.01")
    assert widget.lemmas == ("Widget", "gizmo") and widget.hypernyms == (100,) and widget.gloss == "a small gadget"
    assert wn.name(200) == "widget.n.01" and wn.resolve("gizmo") is widget
    assert wn.ancestors(200) == {200: 0, 100: 1}


def test_ancestors_take_the_shortest_path(tmp_path):
    # 400 -> (300, 200) in file order; 200 -> 150 -> 100 is the long way up, 300 -> 100 the short one
    _fake_dict(tmp_path, [
        "00000100 03 n 01 top 0 000 | the root",
        "00000150 03 n 01 mid 0 001 @ 00000100 n 0000 | long way",
        "00000200 03 n 01 low 0 001 @ 00000150 n 0000 | long way",
        "00000300 03 n 01 short 0 001 @ 00000100 n 0000 | short way",
        "00000400 03 n 01 leaf 0 002 @ 00000300 n 0000 @ 00000200 n 0000 | a leaf"],
        [f"{w} n 1 0 1 0 {o}" for w, o in [("leaf", "00000400"), ("low", "00000200"), ("mid", "00000150"),
                                          ("short", "00000300"), ("top", "00000100")]])
    wn = WordNet.load(tmp_path)
    assert wn.ancestors(400) == {400: 0, 300: 1, 200: 1, 150: 2, 100: 2}
    assert wn.closure([400]) == [400, 300, 200, 100, 150]


@pytest.mark.parametrize("bad,match", [
    ("00000200 03 n 02 Widget 0 gizmo 1 003 @ 00000100 n 0000 | a small gadget", r"data.noun:3: pointer count 3"),
    ("00000200 03 n 0x Widget 0 gizmo 1 001 @ 00000100 n 0000 | a small gadget", r"data.noun:3: invalid literal"),
    ("00000200 03 n 02 Widget 0 gizmo 1 001 @ 00000100 n 0000", r"data.noun:3: expected 'offset"),
    ("00000200 03 v 02 Widget 0 gizmo 1 001 @ 00000100 n 0000 | x", r"data.noun:3: synset type 'v'"),
    ("00000200 03 n 02 Widget 0 gizmo 1 001 @ 00000300 n 0000 | x", r"data.noun:3: synset 00000200 has hypernym 00000300"),
])
def test_malformed_data_noun(tmp_path, bad, match):
    _fake_dict(tmp_path, [GOOD_DATA[0], bad], GOOD_INDEX)
    with pytest.raises(WordNetFormatError, match=match):
        WordNet.load(tmp_path)


@pytest.mark.parametrize("bad,match", [
    ("widget n 2 1 @ 1 0 00000200", r"index.noun:4: 2 synsets and 1 pointer symbols announced but 8 fields"),
    ("widget n 1 1 @ 1 0 00000300", r"index.noun:4: 'widget' lists offset 00000300, which is not a synset"),
])
def test_malformed_index_noun(tmp_path, bad, match):
    _fake_dict(tmp_path, GOOD_DATA, GOOD_INDEX[:2] + [bad])
    with pytest.raises(WordNetFormatError, match=match):
        WordNet.load(tmp_path)


def test_missing_folder_names_places(tmp_path, monkeypatch):
    monkeypatch.delenv("PAPERZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(wordnet, "SOURCE", dataclasses.replace(wordnet.SOURCE, system=()))
    with pytest.raises(DataNotFoundError, match=r"(?s)data.noun, index.noun.*empty/wordnet/dict"):
        WordNet.load(tmp_path / "empty")


def test_embed_with_glove(wn):
    from paperzoo.data.text import load_glove

    try:
        glove = load_glove()
    except (DataNotFoundError, ImportError) as exc:
        pytest.skip(f"GloVe 6B 50-d not available: {str(exc).splitlines()[0]}")
    graph = class_graph(wn, CIFAR10 + FASHION)
    rows, missing = embed_synsets(wn, graph.offsets, glove)
    assert missing == [] and rows.shape == (graph.num_nodes, 50)
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(graph.num_nodes))
    v = {w: glove.vectors[glove.index[w]] for w in ("dog", "domestic", "canis", "familiaris")}
    dog = (v["dog"] + (v["domestic"] + v["dog"]) / 2 + (v["canis"] + v["familiaris"]) / 2) / 3
    torch.testing.assert_close(rows[graph.names.index("dog.n.01")], dog / dog.norm())

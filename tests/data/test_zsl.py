"""The GCNZ ImageNet zero-shot graph: node and edge counts, orientation by WordNet, seen/test splits."""
import json

import pytest
import torch

from paperzoo.data.roots import DataNotFoundError, locate
from paperzoo.data.text import WordVectors
from paperzoo.data.zsl import SOURCE, ImageNetGraphFormatError, load_imagenet_graph


@pytest.fixture(scope="module")
def graph(wn):
    try:
        return load_imagenet_graph(wordnet=wn)
    except DataNotFoundError as exc:
        pytest.skip(f"zsl/imagenet not available (set PAPERZOO_DATA): {str(exc).splitlines()[0]}")


def test_counts_and_splits(graph):
    assert graph.num_nodes == 32297 and len(set(graph.wnids)) == 32297
    assert graph.edges.shape == (2, 34872) and graph.edges.dtype == torch.long   # 69,744 directed pairs / 2
    assert graph.unoriented == 0 and graph.pseudo_nodes == ["fall11", "fa11misc"]
    seen = (locate(SOURCE) / "1k.txt").read_text().split()
    assert [graph.wnids[i] for i in graph.seen] == seen and len(seen) == 1000
    assert {k: len(v) for k, v in graph.test_sets.items()} == {"2-hops": 1549, "3-hops": 7860, "all": 20813}
    assert {k: len(v) for k, v in graph.absent.items()} == {"seen": 0, "2-hops": 0, "3-hops": 0, "all": 29}
    assert not set(graph.test_sets["2-hops"].tolist()) & set(graph.seen.tolist())
    assert graph.names[0] == "choker, collar, dog collar, neckband" and graph.wnids[0] == "n03024882"


def test_edges_are_wordnet_hypernym_links(graph, wn):
    child, parent = graph.edges.tolist()
    pairs = set(zip(child, parent))
    assert len(pairs) == len(child)
    for c, p in pairs:
        a, b = graph.wnids[c], graph.wnids[p]
        if b in graph.pseudo_nodes:
            assert a not in graph.pseudo_nodes or (a, b) == ("fa11misc", "fall11")
        else:
            assert int(b[1:]) in wn.synset(a).hypernyms, (a, b)
    index = {w: i for i, w in enumerate(graph.wnids)}
    for c, p in [("n03024882", "n03814906"),   # choker -> necklace
                 ("n02084071", "n02083346"),   # dog -> canine
                 ("n02084071", "n01317541"),   # dog -> domestic animal (a second parent)
                 ("n00015388", "fall11")]:     # animal -> ImageNet's root
        assert (index[c], index[p]) in pairs
    has_parent = set(child)
    assert [w for i, w in enumerate(graph.wnids) if i not in has_parent] == ["fall11"]


def _tiny(root, nodes, edges):
    folder = root / "zsl" / "imagenet"
    folder.mkdir(parents=True)
    (folder / "invdict_wordn.json").write_text(json.dumps(nodes))
    (folder / "imagenet_graph_edges.json").write_text(json.dumps(edges))
    (folder / "imagenet-split.json").write_text(json.dumps({"train": ["n02084071"], "test": ["n02121620"]}))
    (folder / "imagenet-testsets.json").write_text(json.dumps(
        {"2-hops": ["n02121620"], "3-hops": ["n02121620", "n09999999"], "all": ["n02121620"]}))
    (folder / "words.txt").write_text("n02084071\tdog\nn02083346\tcanine\nn02121620\tcat\n")
    return folder


def test_tiny_graph_orientation(tmp_path, wn):
    # dog, canine, cat, root; dog-canine given child-first, canine-dog both ways, cat-dog is no hypernym link
    nodes = ["n02083346", "n02084071", "n02121620", "fall11"]
    _tiny(tmp_path, nodes, {"num_nodes": 4, "edges": [[0, 1], [1, 0], [2, 1], [3, 0], [2, 3]]})
    graph = load_imagenet_graph(tmp_path, wordnet=wn)
    assert sorted(graph.edges.t().tolist()) == [[0, 3], [1, 0], [2, 3]]
    assert graph.unoriented == 1 and graph.pseudo_nodes == ["fall11"]
    assert graph.seen.tolist() == [1] and graph.test_sets["3-hops"].tolist() == [2]
    assert graph.absent["3-hops"] == ["n09999999"] and graph.names == ["canine", "dog", "cat", "fall11"]
    assert graph.index(["n02121620"]).tolist() == [2]
    assert graph.offsets == [2083346, 2084071, 2121620, None]
    vocab = WordVectors(["dog", "cat"], torch.tensor([[3., 4.], [1., 0.]]))
    rows, missing = graph.node_vectors(wn, vocab)
    assert missing == ["canine.n.02", "fall11"]
    torch.testing.assert_close(rows, torch.tensor([[0., 0.], [.6, .8], [1., 0.], [0., 0.]]))
    with pytest.raises(KeyError, match="n09999999 is not a node"):
        graph.index(["n09999999"])


@pytest.mark.parametrize("name,content,match", [
    ("imagenet_graph_edges.json", '{"num_nodes": 2, "edges": [[0, 1]', r"imagenet_graph_edges.json: not valid JSON"),
    ("imagenet_graph_edges.json", '{"num_nodes": 2, "edges": [[0, 2]]}', r"imagenet_graph_edges.json: edge 0 is \[0, 2\]"),
    ("imagenet_graph_edges.json", '{"num_nodes": 3, "edges": []}', r"num_nodes 3 but .*invdict_wordn.json lists 2"),
    ("invdict_wordn.json", '["n02083346", "n02083346"]', r"invdict_wordn.json: a wnid appears twice"),
    ("imagenet-testsets.json", '{"2-hops": [], "all": []}', r"imagenet-testsets.json: no test set '3-hops'"),
    ("imagenet-split.json", '{"train": "n02084071"}', r"imagenet-split.json: 'train' should be a list"),
    ("words.txt", "n02084071 dog\n", r"words.txt:1: expected 'wnid<TAB>words'"),
])
def test_malformed_files_name_the_file(tmp_path, wn, name, content, match):
    folder = _tiny(tmp_path, ["n02083346", "n02084071"], {"num_nodes": 2, "edges": [[1, 0]]})
    (folder / name).write_text(content)
    with pytest.raises(ImageNetGraphFormatError, match=match):
        load_imagenet_graph(tmp_path, wordnet=wn)


def test_node_vectors_with_glove(graph, wn):
    from paperzoo.data.text import load_glove

    try:
        glove = load_glove()
    except (DataNotFoundError, ImportError) as exc:
        pytest.skip(f"GloVe 6B 50-d not available: {str(exc).splitlines()[0]}")
    rows, missing = graph.node_vectors(wn, glove)
    assert rows.shape == (32297, 50) and missing[-2:] == ["fall11", "fa11misc"]
    assert len(missing) == 2214 + 2          # lemmas looked up lower-cased; 3,627 + 2 as written
    known = rows.norm(dim=1) > 0
    assert int(known.sum()) == 32297 - len(missing)
    torch.testing.assert_close(rows[known].norm(dim=1), torch.ones(int(known.sum())))
    # rare words GloVe 6B lacks: 11 of the 1K seen classes (kuvasz, komondor, pickelhaube, ...), 74 of 2-hops
    assert int((~known[graph.seen]).sum()) == 11 and int((~known[graph.test_sets["2-hops"]]).sum()) == 74
    assert not known[graph.index(["n02104029"])].item() and "kuvasz.n.01" in missing

import pytest
import torch

from paperzoo.data import kg
from paperzoo.data.synthetic import planted_kg, write_kg


def _write(folder, train, valid="", test=""):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{name}.txt").write_text(text)
    return folder


def test_load_round_trip(tmp_path):
    data = planted_kg(seed=1)
    write_kg(data, tmp_path / "toy")
    again = kg.load(str(tmp_path / "toy"))
    assert (again.num_entities, again.num_relations) == (data.num_entities, data.num_relations)
    assert (len(again.train), len(again.valid), len(again.test)) == (len(data.train), len(data.valid), len(data.test))
    # same facts by name
    as_names = lambda d: {(d.entities[h], d.relations[r], d.entities[t]) for h, r, t in d.train.tolist()}
    assert as_names(again) == as_names(data)


def test_malformed_line_names_file_and_line(tmp_path):
    folder = _write(tmp_path / "bad", "a\tr\tb\n\nc\tr\n")
    with pytest.raises(kg.TripleFormatError, match=r"train.txt:3: expected"):
        kg.load_folder(folder)


def test_missing_split_file(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "train.txt").write_text("a\tr\tb\n")
    with pytest.raises(FileNotFoundError, match="valid.txt, test.txt"):
        kg.load_folder(tmp_path / "x")


def test_unseen_entities_are_reported_not_silently_dropped(tmp_path, caplog):
    folder = _write(tmp_path / "u", "a\tr\tb\nb\tr\tc\n", "a\tr\tz\n", "a\tr\tc\nq\tr\ta\n")
    kept = kg.load_folder(folder)
    assert kept.unseen == {"valid": 1, "test": 1} and len(kept.test) == 2
    assert "not in train.txt" in caplog.text
    dropped = kg.load_folder(folder, unseen="drop")
    assert len(dropped.test) == 1 and dropped.unseen["test"] == 1
    with pytest.raises(kg.TripleFormatError, match=r"valid\.txt:1: tail entity 'z' is not in train\.txt \(1 of 1"):
        kg.load_folder(folder, unseen="error")


def test_unseen_error_names_the_line_and_the_unknown_name(tmp_path):
    folder = _write(tmp_path / "u", "a\tr\tb\n", "a\tr\tb\n", "\na\tr\tb\nb\ts\ta\nq\tr\ta\n")
    with pytest.raises(kg.TripleFormatError, match=r"test\.txt:3: relation 's' is not in train\.txt \(2 of 3"):
        kg.load_folder(folder, unseen="error")
    with pytest.raises(ValueError, match="unseen must be"):
        kg.load_folder(folder, unseen="ignore")


@pytest.mark.parametrize("line,problem", [
    ("a\tr\tb\tc", "got 4 field"),
    ("a\t\tb", "the relation field is empty"),
    ("\tr\tb", "the head field is empty"),
    ("a\tr\t ", "the tail field is empty"),
    ("lonely", "got 1 field"),
])
def test_malformed_fields_name_file_line_and_problem(tmp_path, line, problem):
    folder = _write(tmp_path / "bad", f"a\tr\tb\nb\tr\tc\n{line}\n")
    with pytest.raises(kg.TripleFormatError, match=rf"train\.txt:3: expected 'head<TAB>relation<TAB>tail', .*{problem}"):
        kg.load_folder(folder)


def test_non_utf8_names_file_and_line(tmp_path):
    folder = _write(tmp_path / "latin", "a\tr\tb\n")
    (folder / "valid.txt").write_bytes("a\tr\tb\nb\tr\tcaf\u00e9\n".encode("latin-1"))
    with pytest.raises(kg.TripleFormatError, match=r"valid\.txt:2: not UTF-8 text \(byte 0xe9 at column 8\)"):
        kg.load_folder(folder)


def test_byte_order_mark_and_crlf_are_not_part_of_names(tmp_path):
    folder = _write(tmp_path / "bom", "")
    (folder / "train.txt").write_bytes(b"\xef\xbb\xbfa\tr\tb\r\nb\tr\tc\r\n")
    data = kg.load_folder(folder)
    assert data.entities == ["a", "b", "c"] and data.relations == ["r"]


def test_not_a_folder_and_empty_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        kg.load_folder(tmp_path / "nowhere")
    with pytest.raises(kg.TripleFormatError, match=r"train\.txt: no triples"):
        kg.load_folder(_write(tmp_path / "empty", "\n\n"))


def test_query_index_matches_python_dict():
    g = torch.Generator().manual_seed(0)
    triples = torch.stack([torch.randint(20, (300,), generator=g), torch.randint(4, (300,), generator=g),
                           torch.randint(20, (300,), generator=g)], 1)
    index = kg.QueryIndex(triples, 4)
    expected = {}
    for h, r, t in triples.tolist():
        expected.setdefault((h, r), set()).add(t)
    assert len(index) == len(expected)
    heads = torch.tensor([h for h, _ in expected] + [19])
    rels = torch.tensor([r for _, r in expected] + [3])
    pos = index.positions(heads, rels)
    rows, cols = index.coordinates(pos)
    got = {}
    for row, col in zip(rows.tolist(), cols.tolist()):
        got.setdefault(row, set()).add(col)
    for i, key in enumerate(expected):
        assert got[i] == expected[key]
    if (19, 3) not in expected:
        assert pos[-1] == -1 and len(heads) - 1 not in got


def test_reciprocals():
    t = torch.tensor([[0, 1, 2]])
    assert kg.with_reciprocals(t, 5).tolist() == [[0, 1, 2], [2, 6, 0]]


def test_real_dataset_sizes(kg_root):
    data = kg.load("umls", kg_root)
    assert (data.num_entities, data.num_relations) == (135, 46)
    assert (len(data.train), len(data.valid), len(data.test)) == (5216, 652, 661)

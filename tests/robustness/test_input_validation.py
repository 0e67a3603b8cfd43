"""Bad input, as a user meets it: malformed triple files through ``paperzoo data audit-kg`` and a corrupt
model-zoo shard through ``paperzoo run deep_align`` (the CLI in-process, as none of these faults is a
process-level one: exit 2, one error line naming file:line, no traceback, nothing already written lost),
and mismatched networks through the Deep-Align public API (one ValueError naming the tensor)."""
from __future__ import annotations

import importlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from paperzoo import cli
from paperzoo.core import io
from paperzoo.methods.deep_align import DeepAlign, matching
from paperzoo.methods.deep_align import zoo as Z
from paperzoo.methods.deep_align.config import PRESETS
from paperzoo.methods.deep_align.nets import MLPArch, unbatch

da_run = importlib.import_module("paperzoo.methods.deep_align.run")  # the module, not the `run` it exports


def one_error_line(capsys, argv: list[str]) -> str:
    """Run the CLI: exit status 2, exactly one ``paperzoo <cmd>: error:`` line on stderr, no traceback."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"paperzoo {argv[0]}: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _kg(folder: Path, train: bytes) -> Path:
    folder.mkdir(parents=True)
    (folder / "train.txt").write_bytes(train)
    (folder / "valid.txt").write_bytes(b"a\tr\tb\n")
    (folder / "test.txt").write_bytes(b"b\tr\tc\n")
    return folder


@pytest.mark.parametrize("train,where,problem", [
    (b"a\tr\tb\nb\tr\tc\nc\tr\n", "train.txt:3", "got 2 field(s)"),
    (b"a\tr\tb\nb\t\tc\n", "train.txt:2", "the relation field is empty"),
    (b"a\tr\tb\nb\tr\tc\nc\tr\tcaf\xe9\n", "train.txt:3", "not UTF-8 text (byte 0xe9 at column 8)"),
], ids=["fields", "empty", "latin1"])
def test_audit_kg_on_a_malformed_triple_file(tmp_path, capsys, train, where, problem):
    folder = _kg(tmp_path / "kg", train)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    line = one_error_line(capsys, ["data", "audit-kg", str(folder)])
    assert f"{folder / where}: " in line and problem in line
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing written or lost


def test_run_deep_align_on_a_truncated_zoo_shard(tmp_path, capsys):
    cfg = replace(PRESETS["tiny"].config, num_networks=6, shard_size=3, zoo_dir=str(tmp_path / "zoo"))
    arch = da_run.make_arch(cfg, Z.load_task(cfg.task, seed=cfg.seed))
    folder = Path(cfg.zoo_dir)
    for s in range(2):  # a finished two-shard zoo of the run's settings (untrained weights suffice)
        io.save_torch(folder / f"shard_{s:04d}.pt",
                      {"params": arch.init(3, torch.Generator().manual_seed(s)), "meta": [{}] * 3})
    io.write_json(folder / "zoo.json", {"settings": json.loads(json.dumps(asdict(da_run.zoo_settings(cfg, arch)))),
                                        "shards": [0, 1]})
    shard = folder / "shard_0001.pt"
    shard.write_bytes(shard.read_bytes()[:300])  # cut off mid-write
    kept = (folder / "shard_0000.pt").read_bytes()
    line = one_error_line(capsys, ["run", "deep_align", "--preset", "tiny", "--set", f"zoo_dir={folder}",
                                   "--set", "num_networks=6", "--set", "shard_size=3", "--set", "methods=naive",
                                   "--run-dir", str(tmp_path / "run")])
    # e.g. "... is truncated or corrupt (RuntimeError: PytorchStreamReader failed reading zip archive: failed
    # finding central directory); delete it and run again to rebuild it" (torch's reason varies by version)
    assert line.startswith(f"paperzoo run: error: zoo shard {shard} is truncated or corrupt (")
    assert line.endswith("); delete it and run again to rebuild it")
    assert (folder / "shard_0000.pt").read_bytes() == kept  # the intact shard is not rebuilt or lost


def test_deep_align_api_on_networks_of_different_widths():
    arch, wider = MLPArch((16, 16, 16, 4)), MLPArch((16, 16, 24, 4))
    a = arch.init(1, torch.Generator().manual_seed(0))
    b = wider.init(1, torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match=r"^tensor layer1\.weight has shape \(16, 16\) in network a but "
                                         r"\(24, 16\) in network b$"):
        matching.weight_matching(arch.spec(), unbatch(a, 0), unbatch(b, 0))
    torch.manual_seed(0)
    model = DeepAlign(arch, hidden=4, depth=2, out_dim=8)
    with pytest.raises(ValueError, match=r"^network b: tensor layer1\.weight has shape \(24, 16\), the "
                                         r"architecture expects \(16, 16\)$"):
        model.align(a, b)

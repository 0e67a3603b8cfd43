"""Runs that fail stay recoverable, and bad checkpoints get one clear line, as a user meets them
through ``paperzoo run`` / ``paperzoo eval`` (in-process: none of these faults is a process-level one).

Every test trains ConvE's ``tiny`` preset for 1 or 2 epochs (the last one validated, so both
``last.pt`` and ``best.pt`` exist); the finished run is trained once per module and copied.
"""
from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from paperzoo import cli
from paperzoo.data.synthetic import planted_kg, write_kg

conve_run = importlib.import_module("paperzoo.methods.conve.run")  # the module, not the `run` it exports

RUN = ["run", "conve", "--preset", "tiny", "--set", "epochs=1"]


def error_lines(err: str, command: str) -> list[str]:
    """The CLI's error lines (log lines may surround them); asserts no traceback reached the user."""
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith(f"paperzoo {command}: error: ")]


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """The files a failure must leave untouched."""
    names = ("config.yaml", "log.csv")
    return {name: (run_dir / name).read_bytes() for name in names if (run_dir / name).exists()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli.main([*RUN, "--run-dir", str(run_dir)]) == 0
    finally:
        torch.set_num_threads(threads)
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def poison(path: Path, key: str, value: float = float("nan")) -> None:
    """Set one entry of the model tensor ``key`` of checkpoint ``path`` to ``value``."""
    state = torch.load(path, weights_only=True)
    state["model"][key].view(-1)[3] = value
    torch.save(state, path)


# ------------------------------------------------------------------ failed runs stay recoverable
def test_run_failed_on_bad_data_reruns_into_the_same_run_dir(tmp_path, capsys):
    data = tmp_path / "toy"
    write_kg(planted_kg(seed=0), data)
    train = data / "train.txt"
    good = train.read_text()
    train.write_text(good + "e1 b0_sym\n")  # a malformed last line
    run_dir = tmp_path / "run"
    argv = [*RUN, "--set", f"dataset={data}", "--run-dir", str(run_dir)]

    assert cli.main(argv) == 2
    lines = error_lines(capsys.readouterr().err, "run")
    assert len(lines) == 1 and "train.txt" in lines[0]
    failure = json.loads((run_dir / "failed.json").read_text())
    assert "train.txt" in failure["error"] and f"--resume {run_dir}" in failure["retry"]
    config = (run_dir / "config.yaml").read_bytes()
    assert cli.main(["report", str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    capsys.readouterr()
    report = (tmp_path / "report" / "report.md").read_text()
    assert f"- **{run_dir}**: {failure['type']}: {failure['error']}" in report.split("## Failed")[1]

    train.write_text(good)  # the data is fixed: the very same command now finishes the run
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((run_dir / "metrics.json").read_text()) and "test/mrr" in printed
    assert not (run_dir / "failed.json").exists()
    assert (run_dir / "config.yaml").read_bytes() == config


def test_run_killed_midway_continues_with_the_same_command(tmp_path, capsys, crash_after_checkpoint):
    run_dir = tmp_path / "run"
    argv = [*RUN, "--set", "epochs=2", "--run-dir", str(run_dir)]
    undo = crash_after_checkpoint(1)  # killed right after the checkpoint of epoch 1
    assert cli.main(argv) == 130
    undo()
    capsys.readouterr()
    before = snapshot(run_dir)
    assert (run_dir / "checkpoints" / "last.pt").exists() and not (run_dir / "metrics.json").exists()

    # another config into the same folder would mix two runs: refused, with the commands to use
    assert cli.main([*argv, "--set", "lr=0.01"]) == 2
    lines = error_lines(capsys.readouterr().err, "run")
    assert len(lines) == 1 and "lr: 0.003 -> 0.01" in lines[0]
    assert f"paperzoo run --resume {run_dir}" in lines[0] and "another --run-dir" in lines[0]
    assert snapshot(run_dir) == before

    assert cli.main(argv) == 0  # the original command continues from epoch 1
    capsys.readouterr()
    history = [line.split(",")[0] for line in (run_dir / "log.csv").read_text().splitlines()[1:]]
    assert history == ["1", "2"]


def test_finished_run_is_not_overwritten(run_copy, capsys):
    before = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()}
    assert cli.main([*RUN, "--run-dir", str(run_copy)]) == 2
    lines = error_lines(capsys.readouterr().err, "run")
    assert len(lines) == 1 and "finished conve run" in lines[0] and "another --run-dir" in lines[0]
    assert {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()} == before


# --------------------------------------------------------------------- unreadable checkpoints
def test_eval_on_truncated_best_checkpoint(run_copy, capsys):
    best = run_copy / "checkpoints" / "best.pt"
    truncate(best)
    before = snapshot(run_copy)
    assert cli.main(["eval", str(run_copy)]) == 2
    out, err = capsys.readouterr()
    lines = error_lines(err, "eval")
    assert out == "" and len(lines) == 1
    assert f"checkpoint {best} is truncated or corrupt (" in lines[0]
    assert "`paperzoo eval` needs a readable" in lines[0]
    assert "--resume" not in err and "Errno" not in err
    assert snapshot(run_copy) == before


def test_resume_on_truncated_last_checkpoint(run_copy, capsys):
    (run_copy / "metrics.json").unlink()
    last = run_copy / "checkpoints" / "last.pt"
    truncate(last)
    before = snapshot(run_copy)
    best = (run_copy / "checkpoints" / "best.pt").read_bytes()
    assert cli.main(["run", "--resume", str(run_copy)]) == 2
    lines = error_lines(capsys.readouterr().err, "run")
    assert len(lines) == 1 and "Errno" not in lines[0]
    assert lines[0].startswith(f"paperzoo run: error: checkpoint {last} is truncated or corrupt (")
    assert f"delete it and run `paperzoo run --resume {run_copy}`" in lines[0]
    assert snapshot(run_copy) == before and (run_copy / "checkpoints" / "best.pt").read_bytes() == best
    assert json.loads((run_copy / "failed.json").read_text())["type"] == "CorruptCheckpointError"

    last.unlink()  # as the message says: training restarts and the run finishes
    assert cli.main(["run", "--resume", str(run_copy)]) == 0
    assert not (run_copy / "failed.json").exists()


# ------------------------------------------------------------------------ non-finite weights
def test_eval_names_the_non_finite_tensor(run_copy, capsys):
    poison(run_copy / "checkpoints" / "best.pt", "conv.weight")
    assert cli.main(["eval", str(run_copy)]) == 2
    out, err = capsys.readouterr()
    lines = error_lines(err, "eval")
    assert out == "" and len(lines) == 1
    assert f"run {run_copy}: checkpoint {run_copy / 'checkpoints' / 'best.pt'}" in lines[0]
    assert "non-finite values in tensor model.conv.weight (1 NaN, 0 Inf of" in lines[0]
    assert "--resume" not in lines[0]


def test_resume_names_the_non_finite_tensor(run_copy, capsys):
    (run_copy / "metrics.json").unlink()
    poison(run_copy / "checkpoints" / "last.pt", "entity.weight", float("inf"))
    before = snapshot(run_copy)
    assert cli.main(["run", "--resume", str(run_copy)]) == 2
    lines = error_lines(capsys.readouterr().err, "run")
    assert len(lines) == 1 and "tensor model.entity.weight (0 NaN, 1 Inf of" in lines[0]
    assert f"run {run_copy}: checkpoint" in lines[0] and "--resume" in lines[0]
    assert snapshot(run_copy) == before


# ---------------------------------------------------------------------------- arithmetic errors
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")  # no optimizer step when mocked
def test_diverged_training_names_the_run_and_recovers(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    argv = [*RUN, "--run-dir", str(run_dir)]
    monkeypatch.setattr(conve_run, "train_epoch", lambda *args, **kwargs: float("nan"))
    assert cli.main(argv) == 2
    lines = error_lines(capsys.readouterr().err, "run")
    assert len(lines) == 1
    assert lines[0].startswith(f"paperzoo run: error: run {run_dir}: training loss became nan at epoch 1")
    assert json.loads((run_dir / "failed.json").read_text())["type"] == "RunFailed"
    assert not (run_dir / "metrics.json").exists()

    monkeypatch.undo()
    assert cli.main(argv) == 0
    assert not (run_dir / "failed.json").exists()


def test_nan_validation_score_names_the_run(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"

    def nan_scores(self, model, split, prefix=""):
        return {f"{prefix}{k}": float("nan") for k in ("mrr", "hits@1", "hits@10")}

    monkeypatch.setattr(conve_run.Evaluator, "__call__", nan_scores)
    assert cli.main([*RUN, "--run-dir", str(run_dir)]) == 2
    lines = error_lines(capsys.readouterr().err, "run")
    assert len(lines) == 1 and f"run {run_dir}: validation score became nan at epoch 1" in lines[0]
    assert not (run_dir / "checkpoints" / "best.pt").exists()


def test_nan_headline_metric_fails_the_run(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    monkeypatch.setattr(conve_run, "evaluate_model",
                        lambda *args, **kwargs: {"test/mrr": float("nan"), "valid/mrr": 0.5})
    assert cli.main([*RUN, "--run-dir", str(run_dir)]) == 2
    lines = error_lines(capsys.readouterr().err, "run")
    assert len(lines) == 1 and f"run {run_dir}: the headline metric test/mrr is nan" in lines[0]
    assert not (run_dir / "metrics.json").exists()
    assert "test/mrr is nan" in json.loads((run_dir / "failed.json").read_text())["error"]

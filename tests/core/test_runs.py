import math
from dataclasses import replace

import pytest
import torch

from paperzoo.core.config import ConfigError
from paperzoo.core.runs import (
    CheckpointError,
    CorruptCheckpointError,
    NonFiniteCheckpointError,
    RunDir,
    RunExistsError,
    find_nonfinite,
)
from paperzoo.methods.conve.config import PRESETS


def _run(tmp_path):
    return RunDir.create(tmp_path / "r", method="conve", preset="tiny", config=PRESETS["tiny"].config)


def test_create_open_round_trip(tmp_path):
    run = _run(tmp_path)
    again = RunDir.open(run.path)
    assert (again.method, again.preset, again.config) == ("conve", "tiny", PRESETS["tiny"].config)
    with pytest.raises(FileExistsError, match="--resume"):
        _run(tmp_path)


def test_open_with_override_saves_it(tmp_path):
    run = _run(tmp_path)
    RunDir.open(run.path, overrides={"epochs": "30"})
    assert RunDir.open(run.path).config.epochs == 30


def test_bad_saved_config_names_file_and_field(tmp_path):
    run = _run(tmp_path)
    text = run.config_path.read_text().replace("epochs: 12", "epochs: many")
    run.config_path.write_text(text)
    with pytest.raises(ConfigError, match=r"config.yaml: ConvEConfig.epochs"):
        RunDir.open(run.path)


def test_truncated_checkpoint_gives_one_clear_error(tmp_path):
    run = _run(tmp_path)
    assert run.load_checkpoint() is None
    run.save_checkpoint({"method": "conve", "w": torch.randn(1000)})
    data = run.checkpoint_path().read_bytes()
    run.checkpoint_path().write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="last.pt"):
        run.load_checkpoint()


def test_history_and_metrics(tmp_path):
    run = _run(tmp_path)
    run.write_history([{"epoch": 1, "loss": 0.5}])
    run.write_metrics({"test/mrr": 0.25})
    assert run.read_history() == [{"epoch": 1.0, "loss": 0.5}]
    assert run.read_metrics() == {"test/mrr": 0.25}


@pytest.mark.parametrize("corrupt, reason", [
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "failed reading zip archive"),
    (lambda p: p.write_bytes(b""), "the file is empty"),
    (lambda p: p.write_bytes(b"not a checkpoint at all"), "not a torch.save file"),
])
def test_corrupt_checkpoint_message_is_one_line_with_a_short_reason(tmp_path, corrupt, reason):
    run = _run(tmp_path)
    run.save_checkpoint({"method": "conve", "w": torch.randn(1000)})
    corrupt(run.checkpoint_path())
    with pytest.raises(CorruptCheckpointError) as err:
        run.load_checkpoint()
    message = str(err.value)
    assert message.startswith(f"checkpoint {run.checkpoint_path()} is truncated or corrupt (")
    assert reason in err.value.reason and "\n" not in message and "Errno" not in message
    assert len(err.value.reason) <= 120 and f"paperzoo run --resume {run.path}" in message


def test_unreadable_checkpoint_advice_depends_on_purpose(tmp_path):
    run = _run(tmp_path)
    run.checkpoint_path("best").mkdir(parents=True)  # a folder where the file should be
    with pytest.raises(CorruptCheckpointError, match=r"best.pt cannot be read \(is a directory\); delete "):
        run.load_checkpoint("best")
    evaluating = RunDir.open(run.path, purpose="eval")
    with pytest.raises(CorruptCheckpointError) as err:
        evaluating.load_checkpoint("best")
    assert "`paperzoo eval` needs a readable" in str(err.value) and "--resume" not in str(err.value)
    with pytest.raises(ValueError, match="purpose"):
        RunDir.open(run.path, purpose="train")


def test_non_finite_tensor_is_named_by_its_key_path(tmp_path):
    run = _run(tmp_path)
    bad = torch.ones(2, 3)
    bad[1, 2] = float("nan")
    bad[0, 0] = float("-inf")
    run.save_checkpoint({"method": "conve", "model": {"conv.weight": torch.ones(3)},
                         "optimizer": {"state": {0: {"step": torch.tensor(3.0)}, 1: {"exp_avg": bad}}},
                         "loop": {"best": -math.inf}, "rng": [torch.zeros(4, dtype=torch.uint8)]})
    with pytest.raises(NonFiniteCheckpointError) as err:
        run.load_checkpoint()
    assert err.value.key == "optimizer.state.1.exp_avg"
    assert str(err.value).startswith(
        f"run {run.path}: checkpoint {run.checkpoint_path()} holds non-finite values in tensor "
        f"optimizer.state.1.exp_avg (1 NaN, 1 Inf of 6 values); ")


def test_finite_checkpoint_with_inf_python_floats_and_int_tensors_loads(tmp_path):
    run = _run(tmp_path)
    run.save_checkpoint({"method": "conve", "loop": {"best": -math.inf}, "idx": torch.arange(3),
                         "nested": [{"w": torch.zeros(2)}]})
    assert run.load_checkpoint()["loop"]["best"] == -math.inf
    assert find_nonfinite({"a": [torch.zeros(1), {"b": torch.tensor([1.0, math.inf])}]})[0] == "a.1.b"


def test_create_or_continue(tmp_path):
    cfg = PRESETS["tiny"].config
    run = _run(tmp_path)
    run.record_failure(ValueError("data/train.txt:3: bad line"))
    again = RunDir.create_or_continue(run.path, method="conve", preset="tiny", config=cfg, data_root="/data")
    assert again.read_failure()["error"] == "data/train.txt:3: bad line"
    assert RunDir.open(run.path).data_root == "/data"  # the new data root is kept for eval/--resume
    # nothing trained yet: another config restarts the run with it
    other = replace(cfg, epochs=3)
    restarted = RunDir.create_or_continue(run.path, method="conve", preset="quick", config=other)
    assert restarted.config.epochs == 3
    assert RunDir.open(run.path).preset == "quick"
    # with a checkpoint, another config is refused with the commands to use
    run.save_checkpoint({"method": "conve"})
    refused = rf"epochs: 3 -> 12\); continue it with `paperzoo run --resume {run.path}`"
    with pytest.raises(RunExistsError, match=refused):
        RunDir.create_or_continue(run.path, method="conve", preset="quick", config=cfg)
    with pytest.raises(RunExistsError, match="unfinished conve run, not hgt"):
        RunDir.create_or_continue(run.path, method="hgt", preset="tiny", config=cfg)
    run.write_metrics({"test/mrr": 0.5})
    with pytest.raises(RunExistsError, match="already holds a finished conve run; choose another --run-dir"):
        RunDir.create_or_continue(run.path, method="conve", preset="quick", config=other)


def test_failure_record_round_trip(tmp_path):
    run = _run(tmp_path)
    assert run.read_failure() is None
    run.record_failure(RuntimeError("boom"))
    assert run.read_failure()["type"] == "RuntimeError"
    run.clear_failure()
    assert not run.failure_path.exists() and run.read_failure() is None
    run.failure_path.write_text("{half")
    assert run.read_failure() is None


def test_a_run_folder_is_trained_by_one_process_at_a_time(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from paperzoo import runner
    from paperzoo.core.runs import RunBusy

    run = _run(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom paperzoo.core.runs import RunDir\n"
         "run = RunDir(sys.argv[1], method='conve', preset='tiny', config=None)\n"
         "with run.lock():\n    print('held', flush=True)\n    time.sleep(120)\n", str(run.path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunBusy, match=f"process {holder.pid} on "):
            runner.execute(run)  # refused before anything runs or is recorded
        assert not run.failure_path.exists() and not run.metrics_path.exists()
        assert not run.checkpoint_dir.exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    with run.lock():  # the kernel released the killed holder's lock: no stale lock to clear by hand
        with pytest.raises(RunBusy):  # and this process's own hold excludes other openers
            with RunDir(run.path, method="conve", preset="tiny", config=None).lock():
                pass


def test_finished_runs_keeps_runs_with_metrics_in_order(tmp_path):
    from paperzoo.core.runs import finished_runs

    class Run:
        def __init__(self, name, metrics):
            self.name, self.metrics = name, metrics

        def read_metrics(self):
            if self.metrics is None:
                raise FileNotFoundError(self.name)
            return self.metrics

    runs = [Run("a", {"x": 1}), Run("b", None), Run("c", {"x": 3})]
    assert [(r.name, m) for r, m in finished_runs(runs)] == [("a", {"x": 1}), ("c", {"x": 3})]


def test_finished_checkpoint_names_the_missing_file_or_returns_the_state(tmp_path):
    rd = _run(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"best\.pt is missing: the run did not finish"):
        rd.finished_checkpoint("best")
    rd.save_checkpoint({"epoch": 3}, "best")
    assert rd.finished_checkpoint("best")["epoch"] == 3

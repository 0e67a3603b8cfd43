import pytest
import torch

from paperzoo.core.config import ConfigError
from paperzoo.core.runs import CheckpointError, RunDir
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

"""The shared epoch loop: early stopping, min_epochs, best checkpoint, clear error on NaN."""
import pytest
import torch

from paperzoo.core import loop
from paperzoo.core.runs import RunDir


def _setup(tmp_path):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    from paperzoo.methods.conve.config import ConvEConfig

    run = RunDir.create(tmp_path / "r", method="conve", preset="tiny", config=ConvEConfig())
    return model, opt, sched, run


def _train(tmp_path, scores, schedule, loss=1.0):
    model, opt, sched, run = _setup(tmp_path)
    it = iter(scores)
    def train_epoch():
        opt.step()
        return loss

    return loop.train(run, model=model, optimizer=opt, scheduler=sched,
                      generators={"g": torch.Generator()}, schedule=schedule,
                      train_epoch=train_epoch, validate=lambda: (next(it), {"valid/s": 0.0})), run


def test_patience_stops_and_best_is_kept(tmp_path):
    state, run = _train(tmp_path, [0.1, 0.5, 0.4, 0.3, 0.2, 0.1], loop.Schedule(6, patience=2))
    assert state["epoch"] == 4 and state["stopped_early"]
    assert state["best"] == 0.5 and state["best_epoch"] == 2
    assert run.load_checkpoint("best")["epoch"] == 2
    assert [r["epoch"] for r in run.read_history()] == [1, 2, 3, 4]


def test_min_epochs_delays_early_stopping(tmp_path):
    state, _ = _train(tmp_path, [0.5] + [0.1] * 9, loop.Schedule(10, patience=2, min_epochs=6))
    assert state["epoch"] == 6 and state["best_epoch"] == 1


def test_eval_every_and_no_patience(tmp_path):
    state, run = _train(tmp_path, [0.1, 0.2], loop.Schedule(4, eval_every=2))
    assert state["epoch"] == 4 and not state["stopped_early"]
    validated = [row for row in state["history"] if "valid/s" in row]
    assert [row["epoch"] for row in validated] == [2, 4]


def test_non_finite_loss_is_one_clear_error(tmp_path):
    with pytest.raises(FloatingPointError, match="learning rate"):
        _train(tmp_path, [0.1], loop.Schedule(3), loss=float("nan"))

import os
from pathlib import Path

import pytest

os.environ.setdefault("PAPERZOO_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="module")
def one_thread():
    """One torch intra-op thread for a module's tests (tiny tensors: faster than contending for the
    machine's cores); the previous count is restored afterwards. A folder's conftest makes it autouse."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared data root (``$PAPERZOO_DATA``); tests needing real data skip without it."""
    root = os.environ.get("PAPERZOO_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("real data not available: set PAPERZOO_DATA to the shared data folder")
    return Path(root)


@pytest.fixture(scope="session")
def face():
    """The ICT FaceKit head (:func:`paperzoo.data.face.load_face`), parsed once per session; skips without it."""
    from paperzoo.data.face import load_face
    from paperzoo.data.roots import DataNotFoundError

    try:
        return load_face()
    except DataNotFoundError as exc:
        pytest.skip(f"ICT FaceKit not available (set PAPERZOO_DATA): {str(exc).splitlines()[0]}")


@pytest.fixture
def kg_root(data_root: Path) -> Path:
    if not (data_root / "kg").is_dir():
        pytest.skip(f"{data_root / 'kg'} missing")
    return data_root


@pytest.fixture
def crash_after_checkpoint(monkeypatch):
    """``crash_after_checkpoint(n)``: from now on, raise KeyboardInterrupt right after the n-th
    ``last`` checkpoint is written (a run killed between epochs); returns a function that undoes it."""
    from paperzoo.core.runs import RunDir

    original = RunDir.save_checkpoint

    def arm(n: int):
        calls = {"n": 0}

        def crash(self, state, name="last"):
            original(self, state, name)
            if name == "last":
                calls["n"] += 1
                if calls["n"] == n:
                    raise KeyboardInterrupt

        monkeypatch.setattr(RunDir, "save_checkpoint", crash)
        return lambda: monkeypatch.setattr(RunDir, "save_checkpoint", original)

    return arm

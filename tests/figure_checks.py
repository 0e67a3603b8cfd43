"""Checks that a figure a method draws for the report is not empty (shared by the methods' report tests;
``tests/`` is on ``sys.path`` through its conftest, pytest's default "prepend" import mode)."""
import contextlib

import pytest


def assert_drawn_png(path):
    """The file is a PNG whose pixels are not one flat colour, and more than axis lines are drawn."""
    import matplotlib.image

    assert path.is_absolute() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(path)[..., :3]
    assert img.std() > 0.02
    assert (img.mean(-1) < 0.9).mean() > 0.02


@contextlib.contextmanager
def drawn_axes():
    """Record, for every figure saved inside the block, the data artists of each visible axes."""
    from matplotlib.figure import Figure

    seen: list[list[int]] = []
    original = Figure.savefig

    def savefig(self, *args, **kwargs):
        seen.append([len(ax.lines) + len(ax.patches) + len(ax.collections) + len(ax.images)
                     for ax in self.axes if ax.get_visible()])
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", savefig)
        yield seen

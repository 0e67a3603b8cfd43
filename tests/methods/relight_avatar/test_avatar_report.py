"""The report's verdict rule for the appearance ordering."""
from paperzoo.methods.relight_avatar.report import TOLERANCE, judge_ordering


def test_ordering_verdicts():
    assert judge_ordering({"full": 30.0, "linear": 29.0, "sh_spec": 28.0}).startswith("reproduced")
    # within the tolerance counts as at or above
    assert judge_ordering({"full": 30.0, "linear": 30.0 + TOLERANCE / 2, "sh_spec": 28.0}).startswith("reproduced")
    swapped = judge_ordering({"full": 30.0, "linear": 28.0, "sh_spec": 29.0})
    assert swapped.startswith("not reproduced in full") and "full model is best" in swapped
    worst = judge_ordering({"full": 27.0, "linear": 28.0, "sh_spec": 29.0}, what="held-out lights")
    assert worst.startswith("not reproduced on held-out lights")
    assert judge_ordering({"full": 30.0}).startswith("not reproduced: fewer than two")

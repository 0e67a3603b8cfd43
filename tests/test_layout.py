"""Repository layout rules that pytest itself would only report as a confusing collection error."""
from collections import Counter
from pathlib import Path


def test_test_module_basenames_are_unique():
    # tests/ has no __init__.py files (pytest's default "prepend" import mode), so two test files with
    # the same name in different folders cannot both be imported
    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1], f"duplicate test module names: {names.most_common(3)}"

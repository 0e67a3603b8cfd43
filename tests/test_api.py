"""paperzoo.api helpers."""
import subprocess
import sys

import pytest

from paperzoo.api import deferred


def test_deferred_forwards_calls_and_names_its_target():
    hypot = deferred("math:hypot")
    assert hypot(3, 4) == 5.0 and hypot.__name__ == "hypot" and "math:hypot" in hypot.__doc__
    with pytest.raises(ValueError, match="module:function"):
        deferred("math.hypot")


def test_method_packages_do_not_import_torch_until_their_pipeline_runs():
    code = ("import sys, paperzoo.methods.interp_cnn, paperzoo.methods.dgp; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"

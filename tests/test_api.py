"""paperzoo.api helpers."""
import subprocess
import sys

import pytest

from paperzoo.api import deferred, lazy_attributes


def test_deferred_forwards_calls_and_names_its_target():
    hypot = deferred("math:hypot")
    assert hypot(3, 4) == 5.0 and hypot.__name__ == "hypot" and "math:hypot" in hypot.__doc__
    with pytest.raises(ValueError, match="module:function"):
        deferred("math.hypot")


def test_lazy_attributes_import_the_named_submodule_on_first_access():
    getattr_ = lazy_attributes("json", {"decoder": ("JSONDecodeError",), "encoder": ("JSONEncoder",)})
    import json.decoder

    assert getattr_("JSONDecodeError") is json.decoder.JSONDecodeError
    with pytest.raises(AttributeError, match="module 'json' has no attribute 'nope'"):
        getattr_("nope")


def test_method_packages_do_not_import_torch_until_their_pipeline_runs():
    code = ("import sys, paperzoo.methods.interp_cnn, paperzoo.methods.dgp, paperzoo.methods.ban, "
            "paperzoo.methods.relight_avatar; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"

"""``layerlab._lazy``: public names and subpackages load on first attribute access."""

import subprocess
import sys

import pytest


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_subpackage_reachable_after_bare_import():
    out = _run(
        "import sys, layerlab\n"
        "print('layerlab.functional' in sys.modules)\n"
        "f = layerlab.functional.local_conv\n"
        "print('layerlab.functional' in sys.modules, f.__module__)"
    )
    assert out.splitlines() == ["False", "True layerlab.functional.local"]


def test_unknown_name_is_an_attribute_error():
    import layerlab

    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        layerlab.no_such_thing
    with pytest.raises(AttributeError, match="__wrapped__"):
        layerlab.__wrapped__
    assert not hasattr(layerlab, "no_such_thing")

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


def test_public_names_are_the_subpackages_all():
    """The top-level list is read from the subpackages' source; it must equal what they export when
    imported, and each name must be the subpackage's own object."""
    import importlib

    import layerlab

    declared = {}
    for package in layerlab._PUBLIC:
        module = importlib.import_module(f"layerlab.{package}")
        declared.update({name: getattr(module, name) for name in module.__all__})
    assert set(layerlab.__all__) == set(declared) | {"__version__"}
    assert all(getattr(layerlab, name) is value for name, value in declared.items())
    assert {"LocallyConnected2d", "summary", "dense_matrix", "fit", "matrix_picture", "SizeLimitError"} <= set(declared)


def test_public_names_are_read_without_importing_torch():
    out = _run("import sys, layerlab\nprint(len(layerlab.__all__) > 80, 'torch' in sys.modules)")
    assert out == "True False"

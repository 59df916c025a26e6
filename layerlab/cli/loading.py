"""Load a user's model from ``FILE.py:NAME`` or ``package.module:NAME`` (``summary``, ``explain rf``).

**This runs the user's own code**, exactly as ``import`` would: the file's top level is executed,
then ``NAME`` is called. Only point it at files you trust. The file runs as a module named
``layerlab_user_<stem>`` (not ``__main__``), so code under ``if __name__ == "__main__":`` does not
run. Its folder is put at the front of ``sys.path`` while it is imported, so it can import its
sibling modules; for ``package.module:NAME`` the current directory is added the same way (as
``python -m`` does).

``NAME`` may be dotted (``Net.small``). It may name an ``nn.Module`` instance (used as is), a class
or a zero-argument callable returning one (called once), e.g.::

    # model.py
    import torch.nn as nn
    def build():
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))

    $ layerlab summary model.py:build --input 3x32x32
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

from layerlab.errors import ArgumentError

__all__ = ["load_model", "load_object", "split_target"]

_FORMAT = "expected FILE.py:NAME or package.module:NAME, e.g. model.py:build or mypkg.models:Net"


def split_target(target: str) -> tuple[str, str]:
    """Split ``"path/to/model.py:build"`` into ``("path/to/model.py", "build")``.

    Args:
        target (str): ``FILE.py:NAME`` or ``package.module:NAME``; ``NAME`` may be dotted.

    Returns:
        (location, attribute) strings.

    Raises:
        ArgumentError: no ``:``, an empty part, or an attribute that is not a dotted identifier.

    Examples:
        >>> split_target("nets/cnn.py:Net.small")
        ('nets/cnn.py', 'Net.small')
    """
    if ":" not in target:
        raise ArgumentError(f"model target {target!r} has no ':NAME' part; {_FORMAT}")
    location, attribute = target.rsplit(":", 1)  # rsplit keeps Windows drive letters ("C:\\m.py:build")
    if not location or not attribute:
        raise ArgumentError(f"model target {target!r} has an empty {'file/module' if not location else 'NAME'} part; {_FORMAT}")
    if not all(part.isidentifier() for part in attribute.split(".")):
        raise ArgumentError(f"model target {target!r}: {attribute!r} is not a (dotted) Python name; {_FORMAT}")
    return location, attribute


def _is_file(location: str) -> bool:
    return location.endswith(".py") or "/" in location or os.sep in location


@contextmanager
def _on_sys_path(folder: str) -> Iterator[None]:
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def _user_frame(err: BaseException, filename: str | None) -> str:
    """' (line N: code)' of the deepest traceback frame in the user's file, or ''."""
    frames = traceback.extract_tb(err.__traceback__)
    if filename is not None:
        frames = [f for f in frames if os.path.abspath(f.filename) == filename]
    if not frames:
        return ""
    frame = frames[-1]
    code = f": {frame.line.strip()}" if frame.line else ""
    return f" (line {frame.lineno}{code})"


def _import_file(location: str) -> ModuleType:
    path = Path(location).expanduser()
    if not path.exists():
        raise ArgumentError(f"model file {location!r} does not exist (looked in {Path.cwd()}); check the path")
    if not path.is_file():
        raise ArgumentError(f"model file {location!r} is not a file; give a .py file, e.g. model.py:build")
    filename = str(path.resolve())
    digest = hashlib.sha1(filename.encode()).hexdigest()[:8]
    name = f"layerlab_user_{''.join(c if c.isalnum() else '_' for c in path.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(name, filename)
    if spec is None or spec.loader is None:
        raise ArgumentError(f"model file {location!r} cannot be imported as Python; give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and typing look the module up by name
    try:
        with _on_sys_path(str(Path(filename).parent)):
            spec.loader.exec_module(module)
    except SyntaxError as err:
        del sys.modules[name]
        raise ArgumentError(
            f"model file {location!r} has a syntax error at line {err.lineno}: {err.msg}; fix the file"
        ) from err
    except (Exception, SystemExit) as err:  # the user's code may raise anything; KeyboardInterrupt passes
        del sys.modules[name]
        raise ArgumentError(
            f"importing model file {location!r} raised {type(err).__name__}: {err}{_user_frame(err, filename)}; "
            "fix the file (it is run as a module, as `import` would)"
        ) from err
    return module


def _import_module(location: str) -> ModuleType:
    try:
        with _on_sys_path(os.getcwd()):
            return importlib.import_module(location)
    except ModuleNotFoundError as err:
        parts = location.split(".")
        if err.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}:
            raise ArgumentError(
                f"model module {location!r} not found (no module named {err.name!r}); install the package, run from "
                "the folder that contains it, or give a file path like path/to/model.py:build"
            ) from err
        raise ArgumentError(
            f"importing model module {location!r} raised ModuleNotFoundError: {err}; install the missing package"
        ) from err
    except (Exception, SystemExit) as err:
        raise ArgumentError(f"importing model module {location!r} raised {type(err).__name__}: {err}; fix the module") from err


def load_object(target: str) -> Any:
    """Import ``FILE.py`` or ``package.module`` and return its attribute ``NAME``. Runs the user's code.

    Args:
        target (str): ``FILE.py:NAME`` or ``package.module:NAME`` (``NAME`` may be dotted).

    Returns:
        The attribute, unchanged (not called).

    Raises:
        ArgumentError: malformed target, missing file/module, the import raised, or no such attribute
            (the message lists close names found in the module).
    """
    location, attribute = split_target(target)
    module = _import_file(location) if _is_file(location) else _import_module(location)
    value: Any = module
    for depth, part in enumerate(attribute.split(".")):
        try:
            value = getattr(value, part)
        except AttributeError:
            owner = location if depth == 0 else ".".join(attribute.split(".")[:depth])
            names = [n for n in dir(value) if not n.startswith("_")]
            hint = difflib.get_close_matches(part, names, n=3)
            suggestion = f"did you mean {' or '.join(repr(h) for h in hint)}? " if hint else ""
            candidates = ", ".join(n for n in names if callable(getattr(value, n, None)))[:300]
            raise ArgumentError(
                f"{owner!r} has no attribute {part!r} (from target {target!r}); {suggestion}"
                f"callables there: {candidates or 'none'}"
            ) from None
    return value


def load_model(target: str) -> Any:
    """Return the ``torch.nn.Module`` named by ``target``. Runs the user's code.

    The attribute may be an ``nn.Module`` instance (returned as is), a class, or a zero-argument
    callable returning an ``nn.Module`` (called once, with no arguments).

    Args:
        target (str): ``FILE.py:NAME`` or ``package.module:NAME``.

    Returns:
        torch.nn.Module.

    Raises:
        ArgumentError: as :func:`load_object`; ``NAME`` needs arguments, is not callable, raised when
            called, or returned something other than an ``nn.Module``.

    Examples:
        >>> load_model("torch.nn:Identity")
        Identity()
    """
    import torch

    value = load_object(target)
    if isinstance(value, torch.nn.Module):
        return value
    if not callable(value):
        raise ArgumentError(
            f"{target!r} is a {type(value).__name__}, not an nn.Module, a class or a function; point to a function "
            "that returns the model"
        )
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        required = [
            p.name
            for p in signature.parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if required:
            raise ArgumentError(
                f"{target!r} needs argument(s) {', '.join(required)}, but layerlab calls it with none; give them "
                "defaults or add a zero-argument function that builds the model"
            )
    try:
        model = value()
    except (Exception, SystemExit) as err:
        raise ArgumentError(
            f"calling {target}() raised {type(err).__name__}: {err}{_user_frame(err, None)}; fix the builder"
        ) from err
    if not isinstance(model, torch.nn.Module):
        raise ArgumentError(
            f"{target}() returned {type(model).__name__}, expected a torch.nn.Module; return the model itself"
        )
    return model

"""Lazy public exports (PEP 562) for packages whose names live in heavier submodules.

A package lists ``{public name: defining module}`` and gets a module ``__getattr__`` that imports
the defining module on first access (and caches the value), so importing the package itself stays
cheap — and free of torch where its submodules are. Subpackages are reachable as attributes too
(``layerlab.functional.local_conv`` after a bare ``import layerlab``).
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path


def lazy_exports(package: str, exports: dict[str, str], names: list[str]):
    """``(__getattr__, __dir__)`` for ``package``: ``exports[name]`` is imported on first access;
    ``dir(package)`` lists ``names``."""

    def __getattr__(name: str):
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
        elif name.startswith("__"):  # probes such as __wrapped__: not a subpackage
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        else:  # a subpackage, as after `import torch`: `torch.nn.functional` without importing it
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise  # the subpackage exists but one of its own imports is missing
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__


def declared_exports(package: str, modules: tuple[str, ...]) -> dict[str, str]:
    """``{name: module}`` for every name in the ``__all__`` of each of ``modules`` (submodules of
    ``package``), read from their source without importing them (so no torch is imported).

    ``__all__`` must be a literal list of names, or ``sorted(_EXPORTS)`` over a literal
    ``_EXPORTS`` dict (the lazy packages). A name declared by two modules is an error.
    """
    root = Path(sys.modules[package].__file__).parent
    exports: dict[str, str] = {}
    for module in modules:
        path = root.joinpath(*module.split("."))
        source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for name in _static_all(source):
            if name in exports:
                raise ImportError(f"{package}: {name!r} is exported by both {exports[name]} and {module}")
            exports[name] = f"{package}.{module}"
    return exports


def _static_all(source: Path) -> list[str]:
    """The value of ``__all__`` in ``source``, evaluated from its syntax tree."""
    assignments = {
        target.id: node.value
        for node in ast.parse(source.read_text(encoding="utf-8")).body
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    value = assignments["__all__"]
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "sorted":  # sorted(_EXPORTS)
        return sorted(ast.literal_eval(assignments[value.args[0].id]))
    return list(ast.literal_eval(value))

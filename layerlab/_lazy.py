"""Lazy public exports (PEP 562) for packages whose names live in heavier submodules.

A package lists ``{public name: defining module}`` and gets a module ``__getattr__`` that imports
the defining module on first access (and caches the value), so importing the package itself stays
cheap — and free of torch where its submodules are.
"""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, exports: dict[str, str], names: list[str]):
    """``(__getattr__, __dir__)`` for ``package``: ``exports[name]`` is imported on first access;
    ``dir(package)`` lists ``names``."""

    def __getattr__(name: str):
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__

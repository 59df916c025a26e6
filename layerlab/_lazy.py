"""Lazy public exports (PEP 562) for packages whose names live in heavier submodules.

A package lists ``{public name: defining module}`` and gets a module ``__getattr__`` that imports
the defining module on first access (and caches the value), so importing the package itself stays
cheap — and free of torch where its submodules are. Subpackages are reachable as attributes too
(``layerlab.functional.local_conv`` after a bare ``import layerlab``).
"""

from __future__ import annotations

import importlib
import sys


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

"""Memory limits: estimate first, refuse before allocating.

Every function of layerlab that can materialise a huge tensor (the dense-equivalent matrix of a
layer, a dense model, a picture of a large layer, a module's parameters) first estimates its
memory as ``elements × bytes per element`` and raises :class:`~layerlab.errors.SizeLimitError`
when the estimate exceeds the limit. The limit is, in order of precedence:

1. the ``max_bytes`` argument of the call,
2. the environment variable ``LAYERLAB_MAX_BYTES`` (a number of bytes: ``2147483648``, ``2e9``,
   or with a unit ``K``/``M``/``G``/``T`` (powers of 1000) or ``KiB``/``MiB``/``GiB``/``TiB``
   (powers of 1024)),
3. :data:`DEFAULT_MAX_BYTES` = 2 GiB.

:func:`byte_budget` reads any such budget (the data loaders' ``LAYERLAB_DATA_MAX_BYTES`` too).
Imports neither torch nor numpy.
"""

from __future__ import annotations

import os
import re

from layerlab.arith.counts import format_bytes
from layerlab.errors import ArgumentError, SizeLimitError

__all__ = ["DEFAULT_MAX_BYTES", "ENV_VAR", "byte_budget", "max_bytes_limit", "check_size", "size_limit_message",
           "format_bytes"]

DEFAULT_MAX_BYTES = 2 * 1024**3
ENV_VAR = "LAYERLAB_MAX_BYTES"
_MAX_LIMIT = 2**63  # byte counts are int64 everywhere (torch sizes); a larger limit means nothing

# unit without its trailing "B" -> bytes: K/M/G/T are powers of 1000, KI/MI/GI/TI powers of 1024
_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "KI": 1024, "MI": 1024**2, "GI": 1024**3, "TI": 1024**4}


def _parse_bytes(text: str, who: str) -> int:
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper().removesuffix("B") if match else ""
    if not match or unit not in _UNITS:
        raise ArgumentError(
            f"{who} must be a number of bytes such as 2147483648, 2e9 or 2GiB. Received: {text!r}"
        )
    value = float(match.group(1)) * _UNITS[unit]
    if not value < _MAX_LIMIT:  # also catches inf ("1e400")
        raise ArgumentError(
            f"{who} must be a number of bytes below 2**63 (about 9.2e18). Received: {text!r}; use e.g. 2GiB"
        )
    return int(value)


def byte_budget(max_bytes: int | None, env_var: str, default: int) -> int:
    """A budget in bytes: ``max_bytes`` if given, else the environment variable ``env_var``, else
    ``default``.

    Raises:
        ArgumentError: ``max_bytes`` or the variable is not a positive number of bytes below 2**63.
    """
    if max_bytes is not None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or not 1 <= max_bytes < _MAX_LIMIT:
            raise ArgumentError(f"max_bytes must be a positive integer below 2**63. Received: max_bytes={max_bytes!r}")
        return max_bytes
    env = os.environ.get(env_var)
    if env is None or not env.strip():
        return default
    limit = _parse_bytes(env, f"the environment variable {env_var}")
    if limit < 1:
        raise ArgumentError(f"the environment variable {env_var} must be positive. Received: {env!r}")
    return limit


def max_bytes_limit(max_bytes: int | None = None) -> int:
    """The limit in bytes: ``max_bytes`` if given, else ``$LAYERLAB_MAX_BYTES``, else 2 GiB."""
    return byte_budget(max_bytes, ENV_VAR, DEFAULT_MAX_BYTES)


def check_size(what: str, elements: int, bytes_per_element: int, *, max_bytes: int | None = None,
               hint: str) -> int:
    """Raise :class:`SizeLimitError` when ``elements × bytes_per_element`` exceeds the limit.

    Args:
        what: who asks and for what, e.g. ``"dense_matrix(Conv2d(...)) on 3x224x224"``.
        elements: number of elements that would be allocated.
        bytes_per_element: size of one element (``dtype.itemsize``, index bytes included).
        max_bytes: explicit limit (default: ``$LAYERLAB_MAX_BYTES`` or 2 GiB).
        hint: the way out, e.g. ``"use sparse=True"``.

    Returns:
        The estimate in bytes (when it fits).
    """
    limit = max_bytes_limit(max_bytes)
    estimate = int(elements) * int(bytes_per_element)
    if estimate > limit:
        raise SizeLimitError(
            f"{what} would allocate {elements:,} elements × {bytes_per_element} bytes = "
            f"{format_bytes(estimate)}, over the limit of {format_bytes(limit)}; nothing was "
            f"allocated. {hint}, or raise the limit with {_PYTHON_WAY_OUT}the environment variable {ENV_VAR}"
        )
    return estimate


# the way out that check_size names from Python; a command line names its flag instead
_PYTHON_WAY_OUT = "max_bytes=... or "


def size_limit_message(message: str, flag: str | None) -> str:
    """``message`` of a :class:`SizeLimitError` as a command prints it: the way out is the command's
    ``flag`` (e.g. ``"--max-bytes"``) instead of the ``max_bytes=`` argument, or only the environment
    variable when the command has no such flag.

    Examples:
        >>> text = "raise the limit with max_bytes=... or the environment variable LAYERLAB_MAX_BYTES"
        >>> size_limit_message(text, "--max-bytes")
        'raise the limit with --max-bytes N or the environment variable LAYERLAB_MAX_BYTES'
        >>> size_limit_message(text, None)
        'raise the limit with the environment variable LAYERLAB_MAX_BYTES'
    """
    return message.replace(_PYTHON_WAY_OUT, f"{flag} N or " if flag else "")

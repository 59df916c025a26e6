"""The bounds every data loader applies before allocating: the data budget and the class count.

**Data budget.** Each load charges what it is about to allocate (decoded file data plus the
float32 arrays built from it) to one :class:`DataBudget` *before* allocating it, and raises
:class:`~layerlab.errors.SizeLimitError` when the total would pass the budget. The budget is, in
order of precedence:

1. the ``max_bytes`` argument of :func:`data_max_bytes` (``DataBudget(max_bytes=...)``),
2. the environment variable ``LAYERLAB_DATA_MAX_BYTES``, read like ``LAYERLAB_MAX_BYTES``
   (:func:`layerlab.limits.byte_budget`: a number of bytes, e.g. ``8589934592``, ``8e9`` or ``8GiB``),
3. :data:`DEFAULT_DATA_MAX_BYTES` = 2 GiB: CIFAR-10 (60,000 x 3x32x32) costs 0.9 GiB, MNIST 0.2 GiB.

**Classes.** A data set has at most :data:`MAX_CLASSES` classes; numbered class lists are only
built after this check, so a file holding the label ``2**40`` cannot make layerlab build a list of
``2**40`` names.
"""

from __future__ import annotations

from layerlab.errors import DataError, SizeLimitError
from layerlab.limits import byte_budget

__all__ = ["DATA_BUDGET_ENV", "DEFAULT_DATA_MAX_BYTES", "DEFLATE_MAX_RATIO", "MAX_CLASSES", "DataBudget", "data_max_bytes",
           "check_top_label", "numbered_classes"]

DEFAULT_DATA_MAX_BYTES = 2 * 1024**3
DATA_BUDGET_ENV = "LAYERLAB_DATA_MAX_BYTES"
DEFLATE_MAX_RATIO = 1032  # zlib technical details: deflate never expands its input by more than ~1032:1
MAX_CLASSES = 100_000  # ImageNet-21k has ~22,000; a classifier head of 100,000 outputs is the most a layer lab needs


def data_max_bytes(max_bytes: int | None = None) -> int:
    """The data budget in bytes: ``max_bytes`` if given, else ``$LAYERLAB_DATA_MAX_BYTES``, else 2 GiB.

    Raises:
        ArgumentError: ``max_bytes`` or the environment variable is not a positive number of bytes.
    """
    return byte_budget(max_bytes, DATA_BUDGET_ENV, DEFAULT_DATA_MAX_BYTES)


def _gib(n: int) -> str:
    return f"{n:,} bytes" + (f" ({n / 1024**3:.1f} GiB)" if n >= 1024**3 // 10 else "")


class DataBudget:
    """Running total of what one load allocates, refused past the budget before allocating.

    Args:
        max_bytes: the budget; ``None`` reads :func:`data_max_bytes`. Default: ``None``.

    Examples:
        >>> b = DataBudget(max_bytes=1000)
        >>> b.charge(600, "x.npz: member x")
        >>> b.charge(600, "x.npz: member y")
        Traceback (most recent call last):
        ...
        layerlab.errors.SizeLimitError: x.npz: member y needs 600 bytes, and the load would then hold 1,200 bytes, over the data budget of 1,000 bytes; nothing was allocated. Use a smaller data set, or raise the budget with the environment variable LAYERLAB_DATA_MAX_BYTES (e.g. LAYERLAB_DATA_MAX_BYTES=8GiB)
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        self.limit = data_max_bytes(max_bytes)
        self.used = 0

    def charge(self, nbytes: int, what: str) -> None:
        """Add ``nbytes`` for ``what`` (who and for what, e.g. ``"FILE: 60000x3072 uint8 pixels"``).

        Raises:
            SizeLimitError: the total would pass the budget; nothing is charged.
        """
        total = self.used + int(nbytes)
        if total > self.limit:
            raise SizeLimitError(
                f"{what} needs {_gib(int(nbytes))}, and the load would then hold {_gib(total)}, over the "
                f"data budget of {_gib(self.limit)}; nothing was allocated. Use a smaller data set, or "
                f"raise the budget with the environment variable {DATA_BUDGET_ENV} (e.g. "
                f"{DATA_BUDGET_ENV}=8GiB)"
            )
        self.used = total


def check_top_label(top_label, who: str) -> None:
    """Refuse labels that would make more than :data:`MAX_CLASSES` classes (checked before casting).

    Args:
        top_label: the largest label in the data (any real number type).
        who: the file or data set, for the message.

    Raises:
        DataError: ``top_label >= MAX_CLASSES``.
    """
    if top_label >= MAX_CLASSES:
        shown = f"{int(top_label):,}" if float(top_label) < 1e30 else f"{float(top_label):.3g}"
        raise DataError(f"{who}: the largest label is {shown}; layerlab accepts at most {MAX_CLASSES:,} "
                        f"classes (labels 0..{MAX_CLASSES - 1:,}); the labels are corrupt or not class "
                        f"indices, renumber them 0..K-1")


def numbered_classes(top_label: int, who: str) -> list[str]:
    """Class names ``"0" .. str(top_label)`` for files that carry no names, after :func:`check_top_label`."""
    check_top_label(top_label, who)
    return [str(k) for k in range(int(top_label) + 1)]

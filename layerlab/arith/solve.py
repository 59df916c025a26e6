"""The inverse problem: which (stride, padding[, output_padding]) map size ``a`` to size ``b``.

Searched exhaustively over ``1 ≤ stride ≤ max_stride`` and ``0 ≤ padding ≤ d·(k − 1)`` (more
padding than the kernel span makes windows of padding only, or crops whole kernel overlaps), and
for transposed convs ``0 ≤ output_padding < max(stride, dilation)`` (torch's rule).
"""

from __future__ import annotations

from dataclasses import dataclass

from layerlab.arith._args import positive_int
from layerlab.arith.sizes import Geometry, effective_kernel, transposed_formula, transposed_output_size
from layerlab.errors import ArgumentError


@dataclass(frozen=True)
class Solution:
    """One way to map ``in_size`` to ``out_size``.

    Attributes:
        transposed: a transposed convolution (else a convolution).
        kernel_size, stride, padding, output_padding, dilation: the layer's arguments.
        formula: the output-size formula filled in, e.g. ``(32 − 1)·2 − 2·1 + 1·(4−1) + 0 + 1 = 64``.
        dropped: input positions a convolution's floor never reaches (0 = every input is used).
    """

    transposed: bool
    kernel_size: int
    stride: int
    padding: int
    output_padding: int
    dilation: int
    formula: str
    dropped: int = 0

    def describe(self) -> str:
        """e.g. ``ConvTranspose(kernel_size=4, stride=2, padding=1)``."""
        parts = [f"kernel_size={self.kernel_size}", f"stride={self.stride}", f"padding={self.padding}"]
        if self.output_padding:
            parts.append(f"output_padding={self.output_padding}")
        if self.dilation != 1:
            parts.append(f"dilation={self.dilation}")
        return f"{'ConvTranspose' if self.transposed else 'Conv'}({', '.join(parts)})"

    def as_dict(self) -> dict:
        return {"transposed": self.transposed, "kernel_size": self.kernel_size, "stride": self.stride,
                "padding": self.padding, "output_padding": self.output_padding,
                "dilation": self.dilation, "formula": self.formula, "dropped": self.dropped}


def solve(
    in_size: int,
    out_size: int,
    kernel_size: int,
    *,
    transposed: bool | None = None,
    dilation: int = 1,
    max_stride: int | None = None,
) -> list[Solution]:
    """All (stride, padding[, output_padding]) that map ``in_size`` to ``out_size``.

    Args:
        in_size: input length along one dim.
        out_size: wanted output length.
        kernel_size: kernel length.
        transposed: ``True`` only transposed convs, ``False`` only convs, ``None`` both (default: None).
        dilation: kernel dilation (default: 1).
        max_stride: largest stride tried; ``None`` means ``in_size`` for convs and ``out_size``
            for transposed convs (default: None).

    Returns:
        Solutions sorted: those using every input first, then by padding, stride, output_padding,
        convs before transposed convs. Empty when nothing fits: :func:`unsolvable_reason` says why.

    Examples:
        >>> [s.describe() for s in solve(32, 64, 4)]
        ['ConvTranspose(kernel_size=4, stride=2, padding=1)']
        >>> [s.describe() for s in solve(64, 32, 4)]
        ['Conv(kernel_size=4, stride=2, padding=1)']
    """
    _check(in_size, out_size, kernel_size, transposed, dilation, max_stride)
    found = []
    span = effective_kernel(kernel_size, dilation)
    if transposed is not True:
        # one output: the stride has no effect, only stride 1 is listed
        for stride in range(1, 2 if out_size == 1 else (max_stride or in_size) + 1):
            for padding in range(span):
                g = Geometry("", in_size, kernel_size, stride, (padding, padding), dilation)
                if g.out_size == out_size:
                    end = (out_size - 1) * stride + span - padding
                    found.append(Solution(False, kernel_size, stride, padding, 0, dilation,
                                          g.formula().removeprefix(": "), max(0, in_size - end)))
    if transposed is not False:
        # one input: the stride only bounds output_padding, only stride 1 is listed
        for stride in range(1, 2 if in_size == 1 else (max_stride or out_size) + 1):
            for output_padding in range(max(stride, dilation)):
                for padding in range(span):
                    size = transposed_output_size(in_size, kernel_size, stride, padding, output_padding, dilation)
                    if size == out_size:
                        formula = transposed_formula("", in_size, kernel_size, stride, padding,
                                                     output_padding, dilation).removeprefix(": ")
                        found.append(Solution(True, kernel_size, stride, padding, output_padding,
                                              dilation, formula))
    return sorted(found, key=lambda s: (s.dropped > 0, s.padding, s.stride, s.output_padding, s.transposed))


def unsolvable_reason(
    in_size: int,
    out_size: int,
    kernel_size: int,
    *,
    transposed: bool | None = None,
    dilation: int = 1,
    max_stride: int | None = None,
) -> str:
    """Why :func:`solve` found nothing, with the nearest sizes that can be reached ('' when it
    found something).

    Examples:
        >>> print(unsolvable_reason(32, 64, 3, transposed=False))
        no conv maps 32 → 64 with kernel_size=3 (any stride, padding ≤ d·(k−1) = 2); the nearest reachable size is 34. Try another kernel size, or a transposed conv.
    """
    if solve(in_size, out_size, kernel_size, transposed=transposed, dilation=dilation, max_stride=max_stride):
        return ""
    span = effective_kernel(kernel_size, dilation)
    kinds = {None: "conv or transposed conv", True: "transposed conv", False: "conv"}[transposed]
    reachable = set()
    for kind in ((False, True) if transposed is None else (transposed,)):
        limit = max_stride or (in_size if not kind else max(out_size, in_size))
        for stride in range(1, limit + 1):
            for padding in range(span):
                if kind:
                    reachable.update(transposed_output_size(in_size, kernel_size, stride, padding, op, dilation)
                                     for op in range(max(stride, dilation)))
                else:
                    reachable.add(Geometry("", in_size, kernel_size, stride, (padding, padding), dilation).out_size)
    reachable = {n for n in reachable if n >= 1}
    below = max((n for n in reachable if n < out_size), default=None)
    above = min((n for n in reachable if n > out_size), default=None)
    near = [str(n) for n in (below, above) if n is not None]
    nearest = (f"the nearest reachable size{'s are' if len(near) > 1 else ' is'} {' and '.join(near)}"
               if near else "no size is reachable")
    strides = f"stride ≤ {max_stride}" if max_stride else "any stride"
    return (f"no {kinds} maps {in_size} → {out_size} with kernel_size={kernel_size}"
            f"{f', dilation={dilation}' if dilation != 1 else ''} ({strides}, padding ≤ d·(k−1) = "
            f"{span - 1}); {nearest}. Try another kernel size, or "
            f"{'a transposed conv' if transposed is False else 'a conv' if transposed else 'padding the input'}.")


def _check(in_size, out_size, kernel_size, transposed, dilation, max_stride) -> None:
    for name, value in (("in_size", in_size), ("out_size", out_size), ("kernel_size", kernel_size),
                        ("dilation", dilation)):
        positive_int("solve", name, value)
    positive_int("solve", "max_stride", max_stride, optional=True)
    if transposed not in (None, True, False) or isinstance(transposed, int) and not isinstance(transposed, bool):
        raise ArgumentError(f"solve: transposed must be None, True or False. Received: transposed={transposed!r}")

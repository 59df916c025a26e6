"""The inverse problem: which (stride, padding[, output_padding]) map size ``a`` to size ``b``.

Every solution with ``0 ≤ padding ≤ d·(k − 1)`` (more padding than the kernel span makes windows
of padding only, or crops whole kernel overlaps), ``stride ≤ max_stride`` when given, and for
transposed convs ``0 ≤ output_padding < max(stride, dilation)`` (torch's rule). For each padding
the strides are solved in closed form, so large sizes cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from layerlab.arith._args import positive_int
from layerlab.arith.sizes import Geometry, effective_kernel, transposed_formula
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
        max_stride: largest stride tried; ``None`` means no limit (default: None).

    Returns:
        Solutions sorted: those using every input first, then by padding, stride, output_padding,
        convs before transposed convs. Strides that give the same result are listed once: a conv
        to a single output lists the smallest stride, a transposed conv from a single input stride 1.
        Empty when nothing fits: :func:`unsolvable_reason` says why.

    Examples:
        >>> [s.describe() for s in solve(32, 64, 4)]
        ['ConvTranspose(kernel_size=4, stride=2, padding=1)']
        >>> [s.describe() for s in solve(64, 32, 4)]
        ['Conv(kernel_size=4, stride=2, padding=1)']
    """
    _check(in_size, out_size, kernel_size, transposed, dilation, max_stride)
    found = []
    if transposed is not True:
        found += _conv_solutions(in_size, out_size, kernel_size, dilation, max_stride)
    if transposed is not False:
        found += _transposed_solutions(in_size, out_size, kernel_size, dilation, max_stride)
    return sorted(found, key=lambda s: (s.dropped > 0, s.padding, s.stride, s.output_padding, s.transposed))


def _conv_solutions(a: int, b: int, k: int, d: int, max_stride: int | None) -> list[Solution]:
    """``floor(N/s) + 1 = b`` with ``N = a + 2p − k_eff``: ``(b−1)·s ≤ N < b·s``, so
    ``N/b < s ≤ N/(b−1)`` (any ``s > N`` when ``b = 1``: the smallest is listed)."""
    span = effective_kernel(k, d)
    found = []
    for padding in range(span):
        n = a + 2 * padding - span
        if n < 0:
            continue
        strides = [n + 1] if b == 1 else range(n // b + 1, n // (b - 1) + 1)
        for stride in strides:
            if max_stride is not None and stride > max_stride:
                break
            g = Geometry("", a, k, stride, (padding, padding), d)
            end = (b - 1) * stride + span - padding
            found.append(Solution(False, k, stride, padding, 0, d, g.formula().removeprefix(": "),
                                  max(0, a - end)))
    return found


def _transposed_solutions(a: int, b: int, k: int, d: int, max_stride: int | None) -> list[Solution]:
    """``(a−1)·s + op = M`` with ``M = b + 2p − k_eff`` and ``0 ≤ op < max(s, d)``: since
    ``op < s + d``, ``(M − d)/a < s ≤ M/(a−1)`` (stride 1 only when ``a = 1``)."""
    span = effective_kernel(k, d)
    found = []
    for padding in range(span):
        m = b + 2 * padding - span
        if m < 0:
            continue
        strides = [1] if a == 1 else range(max(1, (m - d) // a), m // (a - 1) + 1)
        for stride in strides:
            if max_stride is not None and stride > max_stride:
                break
            output_padding = m - (a - 1) * stride
            if 0 <= output_padding < max(stride, d):
                formula = transposed_formula("", a, k, stride, padding, output_padding, d).removeprefix(": ")
                found.append(Solution(True, k, stride, padding, output_padding, d, formula))
    return found


def unsolvable_reason(
    in_size: int,
    out_size: int,
    kernel_size: int,
    *,
    transposed: bool | None = None,
    dilation: int = 1,
    max_stride: int | None = None,
) -> str:
    """Why :func:`solve` found nothing, with the nearest output sizes below and above that can be
    reached (each looked for among 1,000 candidates); ``''`` when it found something.

    Examples:
        >>> print(unsolvable_reason(32, 64, 3, transposed=False))
        no conv maps 32 → 64 with kernel_size=3 (any stride, padding ≤ d·(k−1) = 2); the nearest reachable size is 34. Try another kernel size, or a transposed conv.
    """
    options = {"transposed": transposed, "dilation": dilation, "max_stride": max_stride}
    if solve(in_size, out_size, kernel_size, **options):
        return ""
    span = effective_kernel(kernel_size, dilation)
    kinds = {None: "conv or transposed conv", True: "transposed conv", False: "conv"}[transposed]
    # a conv reaches at most in + k_eff − 1 (stride 1, padding k_eff − 1), a transposed conv from
    # one input at most k_eff + d − 1, from more at least in − k_eff + 1: start the scans there
    tops = [in_size + span - 1] if transposed is not True else []
    if transposed is not False:
        tops.append(span + dilation - 1 if in_size == 1 else out_size - 1)
    top = min(out_size - 1, max(tops))
    bottom = out_size + 1 if transposed is not True else max(out_size + 1, in_size - span + 1)
    below = next((n for n in range(top, max(0, top - 1000), -1) if solve(in_size, n, kernel_size, **options)), None)
    above = next((n for n in range(bottom, bottom + 1000) if solve(in_size, n, kernel_size, **options)), None)
    near = [str(n) for n in (below, above) if n is not None]
    nearest = (f"the nearest reachable size{'s are' if len(near) > 1 else ' is'} {' and '.join(near)}"
               if near else "no size within 1,000 is reachable")
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

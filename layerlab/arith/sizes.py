"""Output-size formulas of windowed layers, one spatial dimension at a time, and their text.

Sources: the ``Shape:`` sections of the PyTorch docs of ``Conv2d``, ``ConvTranspose2d``,
``MaxPool2d``; Dumoulin & Visin, "A guide to convolution arithmetic for deep learning" (2016),
relations 1–14. ``k_eff = d·(k − 1) + 1`` is the span of a dilated kernel.

Convolution / pooling (floor mode)::

    out = floor((in + p_l + p_r − d·(k − 1) − 1) / s) + 1

Pooling with ``ceil_mode=True`` rounds up, then drops the last window when it would start in the
right padding or beyond (PyTorch's ``pooling_output_shape``)::

    out = ceil((in + 2p − d·(k − 1) − 1) / s) + 1;   if (out − 1)·s ≥ in + p: out −= 1

Transposed convolution::

    out = (in − 1)·s − 2p + d·(k − 1) + output_padding + 1

``padding='same'`` (stride 1) pads ``d·(k − 1)`` in total, ``floor`` of half on the left and the odd
extra on the right (as PyTorch); ``'valid'`` pads nothing. Adaptive pooling window ``i`` covers
``[floor(i·in/out), ceil((i+1)·in/out))``.

This module is the one home of these rules: the specs, the functional ops, the conversions, the
pictures and the CLI call it.
"""

from __future__ import annotations

from dataclasses import dataclass

from layerlab.errors import ShapeError

# padding modes of torch's convs (``padding_mode``)
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

# spatial dimension names and what one step along each is called in warnings
DIM_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}
UNITS = {"L": "position(s)", "D": "slice(s)", "H": "row(s)", "W": "column(s)"}


def effective_kernel(kernel_size: int, dilation: int = 1) -> int:
    """Span of a dilated kernel: ``d·(k − 1) + 1``."""
    return dilation * (kernel_size - 1) + 1


def same_padding(kernel_size: int, dilation: int = 1) -> tuple[int, int]:
    """(left, right) padding of ``padding='same'`` (stride 1), as PyTorch: total ``d·(k − 1)``,
    left ``total // 2``, the odd extra on the right."""
    total = dilation * (kernel_size - 1)
    return total // 2, total - total // 2


def padding_pairs(padding, kernel_size, dilation) -> tuple[tuple[int, int], ...]:
    """(left, right) padding per spatial dim of a conv-like layer.

    Args:
        padding: ``'valid'`` (no padding), ``'same'`` (:func:`same_padding` per dim: the odd extra
            on the right, as PyTorch) or one int per dim (both sides).
        kernel_size, dilation: one int per dim.

    Examples:
        >>> padding_pairs("same", (4, 3), (1, 2))
        ((1, 2), (2, 2))
        >>> padding_pairs((1, 0), (3, 3), (1, 1))
        ((1, 1), (0, 0))
    """
    if padding == "valid":
        return tuple((0, 0) for _ in kernel_size)
    if padding == "same":
        return tuple(same_padding(k, d) for k, d in zip(kernel_size, dilation))
    return tuple((p, p) for p in padding)


def output_size(
    in_size: int,
    kernel_size: int,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output length of a convolution or pooling along one dimension.

    Args:
        in_size: input length.
        kernel_size: kernel length ``k``.
        stride: step ``s`` (default: 1).
        padding: ``p`` on both sides, or a ``(left, right)`` pair (default: 0).
        dilation: spacing ``d`` of the kernel taps (default: 1).
        ceil_mode: round up as pooling's ``ceil_mode`` (default: False).

    Returns:
        ``floor((in + p_l + p_r − d·(k−1) − 1)/s) + 1`` (or the ceil_mode rule); the value may be
        < 1 when the kernel does not fit, which the specs turn into a :class:`ShapeError`.

    Examples:
        >>> output_size(32, 3, padding=1)
        32
        >>> output_size(5, 2, stride=2, ceil_mode=True)
        3
    """
    left, right = _pair(padding)
    span = in_size + left + right - effective_kernel(kernel_size, dilation)
    if not ceil_mode:
        return span // stride + 1
    out = (span + stride - 1) // stride + 1  # PyTorch's div_rtn: floor of the rounded-up numerator
    if (out - 1) * stride >= in_size + left:
        out -= 1
    return out


def output_sizes(in_size, kernel_size, stride, padding, dilation, ceil_mode: bool = False) -> tuple[int, ...]:
    """:func:`output_size` per spatial dim: every argument one entry per dim (``padding`` an int or
    a ``(left, right)`` pair per dim).

    Examples:
        >>> output_sizes((8, 7), (3, 3), (2, 1), ((1, 1), (0, 0)), (1, 2))
        (4, 3)
    """
    return tuple(
        output_size(n, k, s, p, d, ceil_mode)
        for n, k, s, p, d in zip(in_size, kernel_size, stride, padding, dilation)
    )


def window_output_sizes(who: str, in_size, kernel_size, stride, padding, dilation) -> tuple[int, ...]:
    """:func:`output_sizes` of an op that needs at least one output position per dim (local and tiled
    convolutions).

    Raises:
        ShapeError: some output size would be < 1.
    """
    out_size = output_sizes(in_size, kernel_size, stride, padding, dilation)
    if any(o < 1 for o in out_size):
        raise ShapeError(
            f"{who}: the input's spatial size {tuple(in_size)} is too small for kernel_size={tuple(kernel_size)}, "
            f"padding={tuple(padding)}, dilation={tuple(dilation)}: output size would be {out_size}; use a larger "
            "input or more padding"
        )
    return out_size


def _pair(padding) -> tuple[int, int]:
    """``p`` -> ``(p, p)``; a ``(left, right)`` pair unchanged."""
    return (padding, padding) if isinstance(padding, int) else tuple(padding)


def transposed_output_size(
    in_size: int,
    kernel_size: int,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int = 0,
    dilation: int = 1,
) -> int:
    """Output length of a transposed convolution along one dimension.

    ``out = (in − 1)·s − 2p + d·(k − 1) + output_padding + 1`` (PyTorch ``ConvTranspose2d`` docs;
    Dumoulin & Visin relation 14); ``padding`` is ``p`` on both sides or a ``(left, right)`` pair
    (then ``p_l + p_r`` replaces ``2p``). May be < 1 for impossible settings.

    Examples:
        >>> transposed_output_size(4, 4, stride=2, padding=1)
        8
    """
    left, right = _pair(padding)
    return (in_size - 1) * stride - left - right + effective_kernel(kernel_size, dilation) + output_padding


@dataclass(frozen=True)
class Geometry:
    """One dimension of a windowed layer: input, kernel, stride, (left, right) padding, dilation."""

    dim: str
    in_size: int
    kernel_size: int
    stride: int
    padding: tuple[int, int]
    dilation: int
    ceil_mode: bool = False

    @property
    def span(self) -> int:
        """``k_eff = d·(k − 1) + 1``."""
        return effective_kernel(self.kernel_size, self.dilation)

    @property
    def padded(self) -> int:
        """``in + p_l + p_r``."""
        return self.in_size + self.padding[0] + self.padding[1]

    @property
    def out_size(self) -> int:
        return output_size(
            self.in_size, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode
        )

    def formula(self) -> str:
        """The output-size formula filled with numbers, e.g.
        ``H: floor((32 + 2·1 − 1·(3−1) − 1)/1) + 1 = 32``."""
        left, right = self.padding
        pad = f"2·{left}" if left == right else f"({left}+{right})"
        body = f"({self.in_size} + {pad} − {self.dilation}·({self.kernel_size}−1) − 1)/{self.stride}"
        if not self.ceil_mode:
            return f"{self.dim}: floor({body}) + 1 = {self.out_size}"
        raw = (self.padded - self.span + self.stride - 1) // self.stride + 1
        if raw == self.out_size:
            return f"{self.dim}: ceil({body}) + 1 = {self.out_size}"
        return (
            f"{self.dim}: ceil({body}) + 1 − 1 = {self.out_size} (the last window would start at "
            f"{(raw - 1) * self.stride} ≥ in + p = {self.in_size + left}, in the padding: dropped)"
        )

    def warnings(self) -> list[str]:
        """Input positions the windows never reach (floor drops them) and windows reading past the
        padded edge (ceil_mode)."""
        out = self.out_size
        left, right = self.padding
        end = (out - 1) * self.stride + self.span  # end of the last window, padded coordinates
        found = []
        dropped = self.in_size - (end - left)
        unit = UNITS[self.dim]
        if dropped > 0:
            rem = (self.padded - self.span) % self.stride
            pad = f"2·{left}" if left == right else f"({left}+{right})"
            found.append(
                f"{self.dim}: floor drops the last {dropped} {unit} of the input: "
                f"(in + 2p − d(k−1) − 1) mod s = ({self.in_size} + {pad} − "
                f"{self.dilation}·({self.kernel_size}−1) − 1) mod {self.stride} = {rem}"
            )
        if self.ceil_mode and end > self.padded:
            found.append(
                f"{self.dim}: ceil_mode: the last window reads {end - self.padded} {unit} past the "
                f"padded edge (it ends at {end}, the padded input has {self.padded}); those taps are "
                f"ignored"
            )
        return found


def transposed_formula(
    dim: str, in_size: int, kernel_size: int, stride: int, padding: int, output_padding: int,
    dilation: int,
) -> str:
    """e.g. ``H: (4 − 1)·2 − 2·1 + 1·(4−1) + 0 + 1 = 8``."""
    out = transposed_output_size(in_size, kernel_size, stride, padding, output_padding, dilation)
    return (
        f"{dim}: ({in_size} − 1)·{stride} − 2·{padding} + {dilation}·({kernel_size}−1) + "
        f"{output_padding} + 1 = {out}"
    )


def adaptive_windows(in_size: int, out_size: int) -> list[tuple[int, int]]:
    """Windows ``[start, end)`` of adaptive pooling (PyTorch): ``start = floor(i·in/out)``,
    ``end = ceil((i+1)·in/out)``."""
    return [(i * in_size // out_size, -(-(i + 1) * in_size // out_size)) for i in range(out_size)]

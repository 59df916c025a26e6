"""Transposed-conv coverage: how many kernel taps reach each output pixel.

A transposed conv scatters every input pixel ``i`` to outputs ``o = i·stride − padding + t·dilation``
for each tap ``t``. When the kernel size is not a multiple of the stride, neighbouring outputs receive
different numbers of taps — the uneven overlap behind the checkerboard artefacts of GAN generators
(Odena, Dumoulin & Olah, "Deconvolution and checkerboard artifacts", Distill 2016): kernel 3 /
stride 2 alternates 1, 2, 4 taps in 2-d, kernel 4 / stride 2 gives 4 everywhere in the interior.

The count is computed from the transposed conv's connectivity (its dense-equivalent matrix for one
channel, :func:`layerlab.convert.entries.conv_family_entries`): the number of non-zeros per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from layerlab.arith import effective_kernel
from layerlab.arith._args import ntuple
from layerlab.convert.entries import conv_family_entries
from layerlab.convert.geometry import LayerGeometry
from layerlab.errors import ArgumentError
from layerlab.limits import check_size

__all__ = ["Coverage", "coverage_map", "draw_coverage"]


@dataclass(frozen=True)
class Coverage:
    """Taps per output pixel of a transposed conv.

    Attributes:
        counts: ``(*output_size)`` int array.
        kernel_size, stride, padding, dilation, output_padding, input_size: the configuration.
        interior: ``(min, max)`` over outputs at least ``dilation·(kernel−1)`` from every border
            (``None`` when the output has no such interior).
        uniform: ``interior`` min equals max (no checkerboard).
    """

    counts: np.ndarray
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    output_padding: tuple[int, ...]
    input_size: tuple[int, ...]
    interior: tuple[int, int] | None

    @property
    def uniform(self) -> bool:
        return self.interior is not None and self.interior[0] == self.interior[1]

    def as_dict(self) -> dict:
        return {
            "kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
            "dilation": list(self.dilation), "output_padding": list(self.output_padding),
            "input_size": list(self.input_size), "output_size": list(self.counts.shape),
            "min": int(self.counts.min()), "max": int(self.counts.max()),
            "interior_min": None if self.interior is None else self.interior[0],
            "interior_max": None if self.interior is None else self.interior[1],
            "uniform_interior": self.uniform,
        }


def coverage_map(kernel_size, stride, *, padding=0, dilation=1, output_padding=0, input_size=8,
                 ndim: int | None = None, max_bytes: int | None = None) -> Coverage:
    """Count the kernel taps that reach every output pixel of a transposed conv.

    Args:
        kernel_size, stride: int or one per dim.
        padding, dilation, output_padding: as ``torch.nn.ConvTranspose*d`` (defaults ``0``, ``1``, ``0``).
        input_size: spatial input size (default: ``8`` per dim).
        ndim: number of spatial dims (default: from the first tuple argument, else 2).
        max_bytes: memory limit (default: ``$LAYERLAB_MAX_BYTES`` or 2 GiB).

    Examples:
        >>> coverage_map(3, 2).interior, coverage_map(4, 2, padding=1).interior
        ((1, 4), (4, 4))
    """
    if ndim is None:
        ndim = next((len(v) for v in (kernel_size, stride, padding, dilation, input_size)
                     if isinstance(v, (tuple, list))), 2)
    kernel = ntuple("coverage", "kernel_size", kernel_size, ndim, minimum=1)
    stride_ = ntuple("coverage", "stride", stride, ndim, minimum=1)
    pad = ntuple("coverage", "padding", padding, ndim, minimum=0)
    dil = ntuple("coverage", "dilation", dilation, ndim, minimum=1)
    out_pad = ntuple("coverage", "output_padding", output_padding, ndim, minimum=0)
    size = ntuple("coverage", "input_size", input_size, ndim, minimum=1)
    geometry = LayerGeometry("transpose", 1, 1, 1, kernel, stride_, dil, pad, pad, output_padding=out_pad)
    out_size = geometry.output_size(size)
    if any(o < 1 for o in out_size):
        raise ArgumentError(f"coverage: the output size would be {out_size} for input_size={size}, "
                            f"padding={pad}; use less padding or a larger input")
    taps = int(np.prod(size)) * int(np.prod(kernel))
    check_size(f"coverage map of a transposed conv on {size}", taps, 3 * 8, max_bytes=max_bytes,
               hint="Use a smaller input_size")
    entries = conv_family_entries(geometry, size, torch.zeros(int(np.prod(kernel))))
    counts = np.bincount(entries.rows.numpy(), minlength=int(np.prod(out_size))).reshape(out_size)
    margin = tuple(effective_kernel(k, d) - 1 for d, k in zip(dil, kernel))
    inner = counts[tuple(slice(m, n - m) for m, n in zip(margin, out_size))]
    interior = (int(inner.min()), int(inner.max())) if inner.size else None
    return Coverage(counts, kernel, stride_, pad, dil, out_pad, size, interior)


def draw_coverage(coverage: Coverage, ax) -> None:
    """Draw the counts as an image with the numbers written in (1-d as a strip, 3-d middle slice)."""
    counts = coverage.counts
    note = ""
    if counts.ndim == 1:
        counts = counts[None, :]
    elif counts.ndim == 3:
        counts = counts[counts.shape[0] // 2]
        note = " (middle depth slice)"
    im = ax.imshow(counts, interpolation="nearest", cmap="magma", vmin=0, vmax=max(int(counts.max()), 1))
    if counts.size <= 40 * 40:
        for (r, c), value in np.ndenumerate(counts):
            ax.text(c, r, str(value), ha="center", va="center", fontsize=6,
                    color="white" if value < counts.max() * 0.6 else "black")
    k = "×".join(map(str, coverage.kernel_size))
    s = "×".join(map(str, coverage.stride))
    verdict = ("uniform interior" if coverage.uniform else
               "uneven interior: checkerboard" if coverage.interior else "no interior")
    lo, hi = coverage.interior or (int(counts.min()), int(counts.max()))
    ax.set_title(f"ConvTranspose kernel {k}, stride {s}: taps per output pixel{note}\n"
                 f"interior {lo}–{hi} ({verdict})", fontsize=8)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("output column (width)" if coverage.counts.ndim > 1 else "output position", fontsize=7)
    if coverage.counts.ndim > 1:
        ax.set_ylabel("output row (height)", fontsize=7)
    else:  # a one-row strip: its row index means nothing
        ax.set_yticks([])
    ax.tick_params(labelsize=7)
    bar = ax.figure.colorbar(im, ax=ax, shrink=0.6)
    bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    bar.set_label("kernel taps reaching the output pixel", fontsize=7)
    bar.ax.tick_params(labelsize=7)

"""conv ⊂ local ⊂ dense side by side: the three matrices of the same in/out shape.

For an input ``C_in × *spatial`` and a conv with ``out_channels`` filters, the conv, its locally
connected equivalent (:func:`layerlab.convert.conv_to_local`) and the dense layer with the same
input and output sizes have matrices of the same shape; they differ in ties and zeros. The weight
counts go in the titles (3×32×32 → 32×32×32, kernel 3, padding 'same': conv 864, local 884,736,
dense 100,663,296). Matrices wider than ``max_pixels`` are drawn twice: aggregated (whole matrix,
one pixel per block) and cropped (the top-left corner at one pixel per entry); the dense layer is
never built, its picture is computed from its shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from layerlab.convert import conv_to_local
from layerlab.viz.matrix import MatrixPicture, draw_matrix, full_matrix_picture, matrix_picture

__all__ = ["Family", "family_pictures", "draw_family"]


@dataclass(frozen=True)
class Family:
    """Conv, local and dense pictures for one configuration.

    Attributes:
        input_shape, output_shape: per-sample shapes.
        weights: ``{"conv": n, "local": n, "dense": n}`` weight counts (biases excluded).
        rows: one tuple of three :class:`MatrixPicture` per drawn row (exact; or aggregate and crop).
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    weights: dict[str, int]
    rows: tuple[tuple[MatrixPicture, ...], ...]

    def as_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
            "weights": dict(self.weights),
            "matrix_shape": list(self.rows[0][0].shape),
            "pictures": [{"layer": p.title.split(":")[0], "mode": p.mode, "block": list(p.block),
                          "caption": p.caption} for row in self.rows for p in row],
        }


def family_pictures(conv, input_shape, *, max_pixels: int = 512, crop_pixels: int = 96,
                    max_bytes: int | None = None) -> Family:
    """Compute the conv / local / dense pictures of a conv on a per-sample input shape.

    Args:
        conv: a ``Conv*d`` (torch.nn or layerlab).
        input_shape: ``(C_in, *spatial)``.
        max_pixels: largest image side before aggregating / cropping (default: ``512``).
        crop_pixels: side of the cropped corner, small enough to see the ties (default: ``96``).
        max_bytes: memory limit (default: ``$LAYERLAB_MAX_BYTES`` or 2 GiB).

    Examples:
        >>> family = family_pictures(torch.nn.Conv2d(1, 1, 3, bias=False), (1, 6, 6))
        >>> family.weights
        {'conv': 9, 'local': 144, 'dense': 576}
    """
    local = conv_to_local(conv, tuple(input_shape[1:]))
    out_shape = (conv.out_channels, *local.output_size)
    out_f, in_f = math.prod(out_shape), math.prod(input_shape)
    weights = {"conv": conv.weight.numel(), "local": local.weight.numel(), "dense": out_f * in_f}
    modes = ("exact",) if max(out_f, in_f) <= max_pixels else ("aggregate", "crop")
    rows = tuple(
        (matrix_picture(conv, input_shape, mode=mode, max_pixels=side, max_bytes=max_bytes, name="Conv"),
         matrix_picture(local, input_shape, mode=mode, max_pixels=side, max_bytes=max_bytes, name="Local"),
         full_matrix_picture(out_f, in_f, mode=mode, max_pixels=side, max_bytes=max_bytes, name="Dense"))
        for mode, side in zip(modes, (max_pixels, crop_pixels))
    )
    return Family(tuple(input_shape), out_shape, weights, rows)


def draw_family(family: Family, figure) -> None:
    """Draw the pictures of a :class:`Family` on a figure (one row per mode, three columns)."""
    axes = figure.subplots(len(family.rows), 3, squeeze=False)
    for row_axes, pictures in zip(axes, family.rows):
        for ax, picture in zip(row_axes, pictures):
            draw_matrix(picture, ax)
    shape_in = "×".join(map(str, family.input_shape))
    shape_out = "×".join(map(str, family.output_shape))
    figure.suptitle(f"conv ⊂ local ⊂ dense: {shape_in} → {shape_out}, the same matrix shape, "
                    "different ties (colours) and zeros (blank)", fontsize=10)

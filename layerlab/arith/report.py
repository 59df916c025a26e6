"""What ``spec.analyse(input_shape)`` returns: :class:`LayerReport`, and the :class:`Window` that
the receptive-field code reads."""

from __future__ import annotations

from dataclasses import dataclass, field

# window marker of layers whose every output sees the whole input (dense, flatten, global pooling)
GLOBAL = "global"


@dataclass(frozen=True)
class Window:
    """One spatial dimension of a windowed layer, as the receptive-field recursion needs it.

    Args:
        kernel_size: taps ``k``.
        stride: step ``s`` (for ``transposed=True``: the upsampling factor).
        padding: left padding ``p`` (for transposed: the crop of the output on each side).
        dilation: tap spacing ``d`` (default: 1).
        transposed: True for transposed convolution / integer upsampling (default: False).
    """

    kernel_size: int
    stride: int
    padding: int
    dilation: int = 1
    transposed: bool = False


@dataclass(frozen=True)
class LayerReport:
    """The arithmetic of one layer on one per-sample input shape.

    Attributes:
        kind: layer name, e.g. ``"Conv2d"``, ``"LocallyConnected2d"``.
        input_shape: per-sample input shape, e.g. ``(3, 32, 32)``.
        output_shape: per-sample output shape.
        formulas: one filled-in formula per output dimension, e.g.
            ``"H: floor((32 + 2·1 − 1·(3−1) − 1)/1) + 1 = 32"``.
        params: trainable parameters.
        buffers: non-trainable state (BatchNorm's running_mean, running_var, num_batches_tracked).
        macs: multiply-accumulates of the weight contraction per sample (FLOPs = 2·MACs).
        other_ops: separately named element-wise work per sample: ``bias_add``, ``activation``,
            ``compare`` (max pooling), ``add`` and ``divide`` (average pooling), ``normalise``,
            ``affine``, ``interpolate``.
        activation_elements: elements of the output tensor per sample.
        window: per spatial dimension a :class:`Window`; ``None`` for shape-preserving layers;
            :data:`GLOBAL` for dense, flatten and global pooling.
        warnings: e.g. ``"H: floor drops the last 1 row(s) of the input: ..."``.
        macs_effective: transposed convolution only: the products that land inside the output
            (those cropped by ``padding`` are not counted); ``None`` for every other layer, where
            it equals ``macs``.
    """

    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    formulas: tuple[str, ...]
    params: int
    buffers: int
    macs: int
    other_ops: dict[str, int] = field(default_factory=dict)
    activation_elements: int = 0
    window: tuple[Window, ...] | str | None = None
    warnings: tuple[str, ...] = ()
    macs_effective: int | None = None

    @property
    def flops(self) -> int:
        """``2·macs`` (one multiply and one add per MAC)."""
        return 2 * self.macs

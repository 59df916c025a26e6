"""Receptive field through a chain of layers, exactly, cell by cell — and the outputs one input reaches.

Each layer's *connectivity* (which input feature can influence which output feature) is its
structural non-zero pattern: the entries of its dense-equivalent matrix
(:func:`layerlab.convert.matrix.layer_entries`) for linear layers, the pooling window for max
pooling, the identity for the point-wise layers of :mod:`layerlab.arith.elementwise` (activations,
dropout; not softmax, which reads a whole line along ``dim``), for reshapes and for normalisations
(their statistics are ignored, as in :mod:`layerlab.arith.receptive`). Propagating a one-hot output cell
backwards through the chain gives the exact set of input cells it depends on, borders and padding
included; propagating an input cell forwards gives the outputs it reaches. :func:`receptive_map`
also reports the closed-form field of :func:`layerlab.arith.receptive_field` for comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torch import nn

from layerlab.analysis import spec_of
from layerlab.analysis.trace import Step, trace_chain
from layerlab.arith import ElementwiseSpec, receptive_field
from layerlab.arith.elementwise import is_pointwise
from layerlab.convert.entries import adaptive_index, window_index
from layerlab.convert.matrix import layer_entries
from layerlab.errors import ArgumentError

__all__ = ["ReceptiveMap", "receptive_map", "trace_chain", "draw_receptive"]

# normalisations (their statistics are ignored) and reshapes (flat order kept): identity patterns
_NORMS_AND_RESHAPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.Flatten, nn.Unflatten)
_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_ADAPTIVE_MAX = (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)


def _window_pairs(module, step: Step):
    """(rows, cols) of a max pooling window per channel (``rows`` index the flat output)."""
    channels, in_size, out_size = step.input_shape[0], step.input_shape[1:], step.output_shape[1:]
    if isinstance(module, _ADAPTIVE_MAX):
        index, valid, _ = adaptive_index(in_size, out_size)
    else:
        pool = spec_of(module)
        index, valid = window_index(in_size, out_size, pool.kernel_size, pool.stride, pool.padding, pool.dilation)
    L, K = index.shape
    c = torch.arange(channels).view(channels, 1, 1)
    rows = (c * L + torch.arange(L).view(1, L, 1)).expand(channels, L, K)
    cols = (c * math.prod(in_size) + index.view(1, L, K)).expand(channels, L, K)
    mask = valid.view(1, L, K).expand(channels, L, K)
    return rows[mask], cols[mask]


def _is_global_max(module) -> bool:
    spec_fn = getattr(module, "layer_spec", None)
    if spec_fn is None or type(spec_fn()).__name__ != "AdaptivePoolSpec":
        return False
    return spec_fn().op == "max" and spec_fn().flatten_output


def connectivity(step: Step, max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(rows, cols)`` of the layer's structural non-zeros, or ``None`` for an identity pattern."""
    module = step.module
    spec = spec_of(module)
    if isinstance(module, _NORMS_AND_RESHAPES) or (isinstance(spec, ElementwiseSpec) and is_pointwise(spec.name)):
        return None
    if isinstance(module, _MAX_POOLS + _ADAPTIVE_MAX):
        rows, cols = _window_pairs(module, step)
        return rows.numpy(), cols.numpy()
    if _is_global_max(module):
        channels, positions = step.input_shape[0], math.prod(step.input_shape[1:])
        return np.repeat(np.arange(channels), positions), np.arange(channels * positions)
    try:
        entries = layer_entries(module, step.input_shape, max_bytes=max_bytes)
    except ArgumentError as err:
        raise ArgumentError(
            f"receptive field: cannot follow {step.name!r} ({module!r}): {err}. Supported: linear layers, "
            "max pooling, element-wise layers, normalisation"
        ) from err
    return entries.rows.numpy(), entries.cols.numpy()


@dataclass(frozen=True)
class ReceptiveMap:
    """Exact receptive field of one output cell and the outputs one input cell reaches.

    Attributes:
        input_shape, output_shape: per-sample shapes of the network input and of the chosen layer output.
        layer: name of the layer whose output is analysed.
        output_index: the chosen output cell (index into ``output_shape``).
        field: ``input_shape`` bool array: input cells the output cell depends on.
        input_index: the chosen input cell.
        reach: ``output_shape`` bool array: output cells the input cell influences.
        extent: per spatial dim ``(first, last)`` input position in ``field`` (``None`` when empty).
        arith: the closed-form field of :func:`layerlab.arith.receptive_field` after that layer
            (``{"size": [...], "jump": [...], "start": [...], ...}``) or ``None`` if unavailable.
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    layer: str
    output_index: tuple[int, ...]
    field: np.ndarray
    input_index: tuple[int, ...]
    reach: np.ndarray
    extent: tuple[tuple[int, int], ...] | None
    arith: dict | None = None

    @property
    def size(self) -> tuple[int, ...]:
        """Spatial extent of the exact field per dim (last − first + 1)."""
        return tuple(b - a + 1 for a, b in self.extent) if self.extent else ()


def _index(value, shape, who: str, default) -> tuple[int, ...]:
    if value is None:
        return default
    index = (value,) if isinstance(value, int) else tuple(value)
    if len(index) != len(shape) or not all(isinstance(i, int) and 0 <= i < n for i, n in zip(index, shape)):
        raise ArgumentError(f"receptive field: {who} must be {len(shape)} indices within {shape}. "
                            f"Received: {who}={value!r}")
    return index


def _arith_field(chain: list[Step], input_shape) -> dict | None:
    """The closed-form field after the last step, from the arith specs (None if a layer has no spec)."""
    reports = []
    for step in chain:
        spec = spec_of(step.module)
        if spec is None:
            return None
        reports.append(spec.analyse(step.input_shape))
    return receptive_field(reports, tuple(input_shape))[-1].as_dict()


def receptive_map(model: nn.Module, input_shape, *, output_index=None, input_index=None, layer: str | None = None,
                  max_bytes: int | None = None) -> ReceptiveMap:
    """Exact receptive field of an output cell, and the outputs one input cell reaches.

    Args:
        model: a chain of layers (``nn.Sequential`` or a module whose forward calls its leaves in order).
        input_shape: per-sample input shape, e.g. ``(1, 28, 28)``.
        output_index: output cell ``(c, *position)`` of ``layer``'s output (default: channel 0 at the
            centre).
        input_index: input cell ``(c, *position)`` (default: channel 0 at the centre).
        layer: analyse the output of this layer (a name from ``model.named_modules()``; default: the last).
        max_bytes: memory limit for the layers' connectivity (default: ``$LAYERLAB_MAX_BYTES`` or 2 GiB).

    Examples:
        >>> stack = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3), torch.nn.Conv2d(1, 1, 3, stride=2))
        >>> receptive_map(stack, (1, 16, 16)).size
        (5, 5)
    """
    input_shape = tuple(int(n) for n in input_shape)
    chain = trace_chain(model, input_shape, who="receptive field")
    if layer is not None:
        names = [s.name for s in chain]
        if layer not in names:
            raise ArgumentError(f"receptive field: no layer named {layer!r} on the model's path. Received: "
                                f"layer={layer!r}; choose one of {names}")
        chain = chain[: names.index(layer) + 1]
    out_shape = chain[-1].output_shape
    out_index = _index(output_index, out_shape, "output_index", (0, *(n // 2 for n in out_shape[1:])))
    in_index = _index(input_index, input_shape, "input_index", (0, *(n // 2 for n in input_shape[1:])))
    links = [connectivity(step, max_bytes) for step in chain]
    mask = np.zeros(math.prod(out_shape), dtype=bool)
    mask[np.ravel_multi_index(out_index, out_shape)] = True
    for step, link in zip(reversed(chain), reversed(links)):  # backwards: which inputs feed the mask
        if link is not None:
            rows, cols = link
            previous = np.zeros(math.prod(step.input_shape), dtype=bool)
            previous[cols[mask[rows]]] = True
            mask = previous
    field_mask = mask.reshape(input_shape)
    mask = np.zeros(math.prod(input_shape), dtype=bool)
    mask[np.ravel_multi_index(in_index, input_shape)] = True
    for step, link in zip(chain, links):  # forwards: which outputs the input reaches
        if link is not None:
            rows, cols = link
            following = np.zeros(math.prod(step.output_shape), dtype=bool)
            following[rows[mask[cols]]] = True
            mask = following
    spatial = field_mask.any(axis=0)
    extent = None
    if spatial.any() and spatial.ndim:
        where = np.nonzero(spatial)
        extent = tuple((int(w.min()), int(w.max())) for w in where)
    return ReceptiveMap(input_shape, out_shape, chain[-1].name, out_index, field_mask, in_index,
                        mask.reshape(out_shape), extent, _arith_field(chain, input_shape))


def _plane(mask: np.ndarray) -> tuple[np.ndarray, str, tuple[str, str]]:
    """A 2-d picture of a ``(C, *spatial)`` mask: channels counted; 1-d as a strip, 3-d as max over depth.

    Returns the image, what a cell's value counts, and the ``(x, y)`` axis names.
    """
    if mask.ndim == 1:
        return mask[None, :].astype(float), "flat features", ("feature index", "")
    counts = mask.sum(axis=0).astype(float)
    if counts.ndim == 1:
        return counts[None, :], "channels per position", ("position", "")
    if counts.ndim == 3:
        return counts.max(axis=0), "channels per position, max over depth", ("column (width)", "row (height)")
    return counts, "channels per position", ("column (width)", "row (height)")


def draw_receptive(rmap: ReceptiveMap, axes) -> None:
    """Draw the field (left axes) and the reach (right axes) of a :class:`ReceptiveMap`.

    Both panels have axis labels, integer ticks and a labelled colour bar with integer ticks.
    """
    left, right = axes
    for ax, mask, title, side, counted in (
        (left, rmap.field, f"input cells feeding output {rmap.output_index} of {rmap.layer!r}", "input",
         "input channels in the field"),
        (right, rmap.reach, f"outputs of {rmap.layer!r} reached by input {rmap.input_index}",
         f"output of {rmap.layer!r}", "output channels reached"),
    ):
        image, how, (x_name, y_name) = _plane(mask)
        shown = np.where(image > 0, image, np.nan)
        ax.set_facecolor("white")
        # a one-row strip fills the panel's height (else it is a thin line beside a full-height colour bar)
        im = ax.imshow(shown, interpolation="nearest", cmap="viridis", vmin=0, vmax=max(image.max(), 1),
                       aspect="auto" if image.shape[0] == 1 else "equal")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel(f"{side} {x_name}\ncolour = {how}; blank = none", fontsize=7)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if y_name:
            ax.set_ylabel(f"{side} {y_name}", fontsize=7)
        else:  # a one-row strip: its row index means nothing
            ax.set_yticks([])
        ax.tick_params(labelsize=7)
        bar = ax.figure.colorbar(im, ax=ax, shrink=0.6)
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        bar.set_label(counted if "channels" in how else "in the field" if ax is left else "reached", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    if rmap.extent and len(rmap.extent) in (1, 2):
        size = " × ".join(str(s) for s in rmap.size)
        arith = "" if rmap.arith is None else f" (formula: {' × '.join(str(s) for s in rmap.arith['size'])})"
        left.set_title(left.get_title() + f"\nexact field {size}{arith}", fontsize=8)

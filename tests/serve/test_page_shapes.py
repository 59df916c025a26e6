"""For random valid layers, the page opened by URL shows the output shape, params and MACs that
``layerlab shape --json`` prints for the same input and layer string."""

from __future__ import annotations

import random

import pytest
from browser_page import shape_json

from layerlab.arith import analyse_stack, parse_shape
from layerlab.arith.parse import parse_stack
from layerlab.errors import LayerlabError

SEED = 20261206
CONFIGS_PER_KIND = 16
KINDS = ("Dense", "Conv1d", "Conv2d", "LocallyConnected1d", "LocallyConnected2d", "TiledConv1d", "TiledConv2d",
         "ConvTranspose1d", "ConvTranspose2d", "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d")


def _size(rng: random.Random, ndim: int, low: int, high: int) -> str:
    """An int, or (one time in four, for 2-d layers) a tuple of per-dim ints, as layer-string text."""
    if ndim == 2 and rng.random() < 0.25:
        return f"({rng.randint(low, high)}, {rng.randint(low, high)})"
    return str(rng.randint(low, high))


def _candidate(rng: random.Random, kind: str) -> tuple[str, str]:
    """An input shape and a layer string of ``kind`` (not necessarily valid)."""
    if kind == "Dense":
        return str(rng.randint(1, 300)), f"Dense({rng.randint(1, 300)})"
    ndim = int(kind[-2])
    spatial = [rng.choice((rng.randint(1, 12), rng.randint(5, 40), rng.randint(40, 64))) for _ in range(ndim)]
    channels = rng.choice((1, 1, 2, 3, 4, 6, 8))
    input_shape = "x".join(map(str, [channels, *spatial]))
    kernel = _size(rng, ndim, 1, 5)
    keywords = {}
    if rng.random() < 0.5:
        keywords["stride"] = _size(rng, ndim, 1, 3)
    if rng.random() < 0.5:
        keywords["dilation"] = _size(rng, ndim, 1, 3)
    if kind.startswith(("MaxPool", "AvgPool")):
        keywords.pop("dilation", None) if kind.startswith("AvgPool") else None
        if rng.random() < 0.4:
            keywords["padding"] = str(rng.randint(0, 2))
        args = [kernel]
    else:
        out = rng.choice((1, 2, 3, 4, 6, 8, 12))
        paddings = ["0", "1", "2", "(1, 0)" if ndim == 2 else "3"]
        if not kind.startswith("ConvTranspose"):
            paddings += ["'same'", "'valid'"]
        if rng.random() < 0.6:
            keywords["padding"] = rng.choice(paddings)
        if rng.random() < 0.3:
            keywords["groups"] = str(rng.choice((2, 3, 4)))
        if kind.startswith("TiledConv"):
            keywords["tile_size"] = _size(rng, ndim, 1, 3)
        if kind.startswith("ConvTranspose") and rng.random() < 0.5:
            keywords["output_padding"] = str(rng.randint(0, 2))
        args = [str(out), kernel]
    text = ", ".join(args + [f"{key}={value}" for key, value in keywords.items()])
    return input_shape, f"{kind}({text})"


def _valid(input_shape: str, layer: str) -> bool:
    """Whether the engine accepts the layer on the input (only valid configurations are drawn here)."""
    try:
        analyse_stack(parse_stack([layer]), parse_shape(input_shape))
    except LayerlabError:
        return False
    return True


def random_configs(seed: int = SEED, per_kind: int = CONFIGS_PER_KIND) -> list[tuple[str, str]]:
    """``per_kind`` valid (input, layer) pairs of every kind, drawn with a fixed seed."""
    rng = random.Random(seed)
    configs = []
    for kind in KINDS:
        found = []
        while len(found) < per_kind:
            candidate = _candidate(rng, kind)
            if _valid(*candidate) and candidate not in found:
                found.append(candidate)
        configs += found
    return configs


CONFIGS = random_configs()


def test_the_random_configurations_cover_every_kind_and_are_many():
    assert len(CONFIGS) >= 200
    assert {layer.split("(")[0] for _, layer in CONFIGS} == set(KINDS)


@pytest.mark.parametrize("input_shape, layer", CONFIGS, ids=[f"{i}-{layer}" for i, (_, layer) in enumerate(CONFIGS)])
def test_page_shows_the_shape_params_and_macs_of_layerlab_shape(page, input_shape, layer):
    expected = shape_json(input_shape, [layer])
    page.open(input_shape, [layer])
    assert not page.testid("error"), page.text("error")
    assert page.text("output-shape") == "×".join(map(str, expected["output_shape"]))
    assert page.text("params") == f"{expected['total']['params']:,}"
    assert page.text("macs") == f"{expected['total']['macs']:,}"

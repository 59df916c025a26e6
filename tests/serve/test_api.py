"""The JSON API of ``layerlab serve`` against independent references: ``layerlab shape --json``, the
non-zeros of ``layerlab.convert.dense_matrix``, torch's own ops and autograd."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from layerlab import nn as lnn
from layerlab.analysis import spec_of
from layerlab.arith import parse_layer
from layerlab.cli.main import main
from layerlab.convert import dense_matrix
from layerlab.serve import api
from layerlab.serve.api import answer


def query(input_shape: str, *layers: str, **extra) -> str:
    parts = [f"input={input_shape}", *(f"layer={layer}" for layer in layers)]
    return "&".join(parts + [f"{key}={value}" for key, value in extra.items()])


def ok(path: str, q: str) -> dict:
    status, document = answer(path, q)
    assert status == 200, document
    json.dumps(document)  # JSON-ready
    return document


def refused(path: str, q: str, status: int = 400) -> dict:
    got, document = answer(path, q)
    assert got == status, document
    return document["error"]


def shape_json(capsys, input_shape: str, *layers: str) -> dict:
    assert main(["shape", input_shape, *layers, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def shape_error(capsys, input_shape: str, *layers: str) -> str:
    assert main(["shape", input_shape, *layers]) == 2
    return capsys.readouterr().err.removeprefix("layerlab shape: error: ").rstrip("\n")


# ----------------------------------------------------------------------------- /api/view
STACKS = [
    ("3x32x32", ["Conv2d(8,3,stride=2)"]),
    ("3x64x64", ["Conv2d(64, 4, stride=2, padding=1)", "LeakyReLU(0.2)", "Conv2d(128,4,2,1)", "BatchNorm2d()"]),
    ("1x28x28", ["Conv2d(8,3)", "MaxPool2d(2)", "Flatten()", "Linear(10)"]),
    ("4x9x9", ["ConvTranspose2d(2,3,stride=2,output_padding=1,groups=2)"]),
    ("2x12", ["LocallyConnected1d(4,3,padding='same')", "TiledConv1d(4,3,2)"]),
    ("784", ["Linear(10)"]),
    ("3x8x8", []),
]


@pytest.mark.parametrize("input_shape, layers", STACKS)
def test_view_stack_is_what_layerlab_shape_json_prints(capsys, input_shape, layers):
    document = ok("/api/view", query(input_shape, *layers))
    assert document["stack"] == shape_json(capsys, input_shape, *layers)
    assert document["input"] == list(map(int, input_shape.split("x")))
    assert document["layers"] == layers
    assert document["error"] is None
    assert ("layer" in document) == (len(layers) == 1)


def test_view_layer_matches_the_stack_and_writes_the_shape_with_times_signs(capsys):
    document = ok("/api/view", query("3x32x32", "Conv2d(8,3,stride=2)"))
    layer, row = document["layer"], document["stack"]["layers"][0]
    assert layer["output_shape_text"] == "8×15×15"
    assert [layer["params"], layer["macs"], layer["formulas"], layer["warnings"]] == \
        [row["params"], row["macs"], row["formulas"], row["warnings"]]
    assert layer["output_shape"] == row["output_shape"][1:]


INVALID = [
    ("1x5x5", ["Conv2d(2,7)"], 1, "layer"),
    ("1x28x28", ["Conv2d(8,3)", "Flatten()", "Linear(10, in_features=100)"], 3, "layer"),
    ("1x5x5", ["Conv2d(1, 32, 3)"], 1, "layer"),  # torch's order: the rewrite is appended
    ("1x5x5", ["Conv2d(4,3,groups=3)"], 1, "layer"),
    ("1x5x5", ["Conv9d(4,3)"], 1, "layer"),
    ("1x5x", ["Conv2d(4,3)"], None, "input"),
    ("0x5x5", ["Conv2d(4,3)"], None, "input"),
]


@pytest.mark.parametrize("input_shape, layers, index, parameter", INVALID)
def test_view_error_is_the_engines_message_exactly_as_layerlab_shape_prints_it(capsys, input_shape, layers, index,
                                                                                parameter):
    status, document = answer("/api/view", query(input_shape, *layers))
    assert status == 400
    assert document["error"] == {"message": shape_error(capsys, input_shape, *layers), "layer": index,
                                 "parameter": parameter}
    assert document["stack"] is None and "layer" not in document
    assert document["layers"] == layers


def test_view_error_of_a_torch_ordered_layer_shows_the_rewrite():
    error = refused("/api/view", query("1x5x5", "Conv2d(1, 32, 3)"))
    assert error["message"].endswith("write 'Conv2d(32, 3, in_channels=1)'.")


FAMILY = [
    ("3x16x16", "Conv2d(8,3,stride=2,padding=1)", 2),
    ("4x10x12", "LocallyConnected2d(6,(3,2),dilation=2,groups=2,bias='shared')", 3),
    ("2x9x9", "TiledConv2d(4,3,(2,3),bias=False)", 2),
    ("3x20", "Conv1d(5,4,padding='same',bias=False)", 4),
]


def _module(kind: str, spec, shape, tile):
    """A torch module of ``kind`` with ``spec``'s geometry (the reference for the family's params)."""
    c = shape[0]
    bias = spec.bias not in (False, None)
    args = dict(stride=spec.stride, padding=spec.padding, dilation=spec.dilation, groups=spec.groups)
    ndim = spec.ndim
    if kind == "conv":
        return getattr(torch.nn, f"Conv{ndim}d")(c, spec.out_channels, spec.kernel_size, bias=bias, device="meta",
                                                 **args)
    local_bias = spec.bias if isinstance(spec.bias, str) and spec.bias != "location" else bias
    if kind == "local":
        return getattr(lnn, f"LocallyConnected{ndim}d")(c, spec.out_channels, spec.kernel_size, bias=local_bias,
                                                        input_size=shape[1:], device="meta", **args)
    tiles = getattr(spec, "tile_size", tile)
    return getattr(lnn, f"TiledConv{ndim}d")(c, spec.out_channels, spec.kernel_size, tiles, bias=local_bias,
                                             device="meta", **args)


@pytest.mark.parametrize("input_shape, layer, tile", FAMILY)
def test_family_counts_the_parameters_the_modules_have(input_shape, layer, tile):
    document = ok("/api/view", query(input_shape, layer, tile=tile))
    family = document["layer"]["family"]
    shape = tuple(map(int, input_shape.split("x")))
    spec = parse_layer(layer)
    for kind in ("conv", "local", "tiled"):
        module = _module(kind, spec, shape, tile)
        assert family[kind]["params"] == sum(p.numel() for p in module.parameters()), kind
        assert family[kind]["macs"] == document["layer"]["macs"]
    n_in, n_out = math.prod(shape), math.prod(document["layer"]["output_shape"])
    bias = spec.bias not in (False, None)
    assert family["dense"]["params"] == n_in * n_out + (n_out if bias else 0)
    assert family["dense"]["macs"] == n_in * n_out


def test_family_of_layers_without_a_member_says_why():
    pool = ok("/api/view", query("3x8x8", "MaxPool2d(2)"))["layer"]["family"]
    assert pool["conv"] == {"layer": None, "params": None, "macs": None,
                            "reason": "pooling has no weights: no conv, tiled or locally connected counterpart"}
    assert pool["dense"]["params"] == 192 * 48
    transposed = ok("/api/view", query("3x4x4", "ConvTranspose2d(2,3)"))["layer"]["family"]
    assert transposed["tiled"] == {"layer": None, "params": None, "macs": None,
                                   "reason": "layerlab has no tiled transposed convolution"}
    relu = ok("/api/view", query("3x4x4", "ReLU()"))["layer"]
    assert relu["family"]["dense"]["reason"] == "ReLU is not a member of the conv / tiled / local / dense family"
    assert relu["code"] is None


@pytest.mark.parametrize("layer", ["ConvTranspose2d(4,3,stride=2,output_padding=1,groups=2)",
                                   "LocallyConnectedTranspose2d(4,3,stride=2,output_padding=1,groups=2,bias='shared')"])
def test_family_of_a_transposed_layer_is_the_transposed_conv_and_local_layer(layer):
    document = ok("/api/view", query("2x3x4", layer))["layer"]
    family, spec = document["family"], parse_layer(layer)
    args = dict(stride=2, output_padding=1, groups=2)
    conv = torch.nn.ConvTranspose2d(2, 4, 3, bias=True, device="meta", **args)
    local = lnn.LocallyConnectedTranspose2d(2, 4, 3, bias="shared" if spec.bias == "shared" else True,
                                            input_size=(3, 4), device="meta", **args)
    for kind, module in (("conv", conv), ("local", local)):
        assert family[kind]["params"] == sum(p.numel() for p in module.parameters()), kind
        assert family[kind]["macs"] == document["macs"]
    assert family["tiled"]["params"] is None


def test_family_of_a_low_rank_layer_is_its_window_with_one_filter_bank():
    layer = "LowRankLocallyConnected2d(4,3,3,stride=2,padding=1)"
    document = ok("/api/view", query("2x9x8", layer))["layer"]
    spec = parse_layer(layer)
    for kind in ("conv", "local", "tiled"):
        module = _module(kind, spec, (2, 9, 8), 2)
        assert document["family"][kind]["params"] == sum(p.numel() for p in module.parameters()), kind
        assert document["family"][kind]["macs"] * spec.rank == document["macs"]  # R basis convolutions


CODE = [
    ("2x5x4", "LocallyConnectedTranspose2d(4,3,stride=2,padding=1,output_padding=1,groups=2,bias='shared')"),
    ("2x7x6", "LowRankLocallyConnected2d(4,(3,2),3,stride=2,dilation=(1,2),combining='full',normalize=None)"),
    ("3x16x16", "Conv2d(8,3,stride=2,padding=1,dilation=2,groups=1,bias=False,padding_mode='reflect')"),
    ("4x16x16", "ConvTranspose2d(6,4,stride=2,padding=1,output_padding=1,groups=2)"),
    ("4x10x12", "LocallyConnected2d(6,(3,2),dilation=2,groups=2,bias='shared')"),
    ("2x9x9", "TiledConv2d(4,3,(2,3),padding='same',bias=False)"),
    ("3x9x9", "MaxPool2d(3,2,1,dilation=2,ceil_mode=True)"),
    ("3x9x9", "AvgPool2d(3,2,1,count_include_pad=False)"),
    ("3x20", "Conv1d(5,4)"),
    ("30", "Linear(7,bias=False)"),
]


@pytest.mark.parametrize("input_shape, layer", CODE)
def test_code_builds_the_layer_shown(input_shape, layer):
    shape = tuple(map(int, input_shape.split("x")))
    view = ok("/api/view", query(input_shape, layer))["layer"]
    for flavour in ("torch", "layerlab"):
        namespace = {}
        exec(view["code"][flavour], namespace)
        module = namespace["layer"]
        report = spec_of(module).analyse(shape)
        assert [list(report.output_shape), report.params] == [view["output_shape"], view["params"]], flavour
        out = module(torch.zeros(1, *shape))
        assert list(out.shape[1:]) == view["output_shape"]
    if layer.startswith(("Locally", "Tiled", "LowRank")):
        assert view["code"]["torch"].startswith("# torch.nn has no ")


def test_grid_says_which_channels_the_page_draws_and_how():
    grid = ok("/api/view", query("3x32x32", "Conv2d(8,3)"))["layer"]["grid"]
    # 2,048 cells: two 32×32 channels of the input, two 30×30 of the output
    assert grid["input"] == {"shape": [3, 32, 32], "positions": "c,i,j", "channels_shown": 2, "cells_shown": 2048,
                             "drawn": True, "canvas": False}
    assert (grid["output"]["channels_shown"], grid["output"]["cells_shown"]) == (2, 1800)
    small = ok("/api/view", query("6x8x8", "Conv2d(8,3)"))["layer"]["grid"]
    assert [small[side]["channels_shown"] for side in ("input", "output")] == [api.CHANNELS_SHOWN] * 2
    flat = ok("/api/view", query("2000", "Linear(10)"))["layer"]["grid"]
    assert flat["input"]["cells_shown"] == api.MAX_FEATURES_SHOWN and flat["output"]["positions"] == "i"
    # one channel always; cells up to 64×64 positions, a canvas beyond, nothing beyond 128×128
    edge = ok("/api/view", query("2x64x64", "ConvTranspose2d(1,2)"))["layer"]["grid"]
    assert [(g["channels_shown"], g["cells_shown"], g["canvas"]) for g in edge.values()] == [(1, 4096, False),
                                                                                             (1, 4225, True)]
    big = ok("/api/view", query("1x200x200", "Conv2d(1,3)"))["layer"]["grid"]["input"]
    assert (big["drawn"], big["channels_shown"], big["canvas"]) == (False, 0, False)


@pytest.mark.parametrize("input_shape, layer", [
    ("2x4x5", "ConvTranspose2d(4,3,stride=2,padding=1,output_padding=1,groups=2)"),
    ("1x5", "ConvTranspose1d(1,4,stride=3,dilation=2,output_padding=2)"),
    ("1x3x3", "ConvTranspose2d(1,(2,3),stride=(2,1),padding=(0,1))"),
])
def test_coverage_is_the_transposed_conv_of_ones(input_shape, layer):
    shape = tuple(map(int, input_shape.split("x")))
    spec = parse_layer(layer)
    coverage = ok("/api/view", query(input_shape, layer))["layer"]["coverage"]
    ndim = spec.ndim
    op = getattr(F, f"conv_transpose{ndim}d")
    reference = op(torch.ones(1, 1, *shape[1:]), torch.ones(1, 1, *spec.kernel_size), stride=spec.stride,
                   padding=spec.padding, output_padding=spec.output_padding, dilation=spec.dilation)[0, 0]
    assert coverage["counts"] == reference.long().tolist()
    assert (coverage["min"], coverage["max"]) == (int(reference.min()), int(reference.max()))
    assert coverage["output_padding"] == [list(range(n - p, n)) for n, p in zip(reference.shape, spec.output_padding)]


def test_tile_must_be_a_positive_integer():
    error = refused("/api/view", query("3x8x8", "Conv2d(4,3)", tile="0"))
    assert error == {"message": "tile must be a positive integer, e.g. tile=2. Received: tile=0", "layer": None,
                     "parameter": "tile"}


# ----------------------------------------------------------------------------- the reference matrices
LAYERS = [
    ("2x5x6", "Conv2d(4,3)"),
    ("2x7x6", "Conv2d(4,3,stride=2,padding=1)"),
    ("1x9x8", "Conv2d(2,3,dilation=2,padding=2)"),
    ("4x5x5", "Conv2d(6,(3,2),groups=2,padding=(1,0))"),
    ("2x6x6", "Conv2d(2,3,padding='same',padding_mode='reflect')"),
    ("1x5x5", "Conv2d(1,3,padding=2,padding_mode='circular')"),
    ("2x3x4", "ConvTranspose2d(4,3,stride=2,padding=1,output_padding=1,groups=2)"),
    ("1x4", "ConvTranspose1d(2,4,stride=3,dilation=2)"),
    ("2x5x6", "LocallyConnected2d(4,3,stride=2,padding=1,groups=2)"),
    ("2x3x4", "LocallyConnectedTranspose2d(4,3,stride=2,padding=1,output_padding=1,groups=2)"),
    ("1x4", "LocallyConnectedTranspose1d(2,(3,),stride=3,dilation=2)"),
    ("2x6x7", "TiledConv2d(2,3,(2,3),padding=1)"),
    ("3x9", "TiledConv1d(2,3,4,dilation=2)"),
    ("7", "Linear(5)"),
    ("2x7x7", "AvgPool2d(3,2,1,ceil_mode=True)"),
    ("2x6x7", "AdaptiveAvgPool2d((3,4))"),
    ("2x4x4", "GlobalAvgPool()"),
]


def reference(shape, text):
    """``(module, matrix)``: a torch module with the layer's geometry, its weight set to 1..P (float64), and its
    ``dense_matrix``; ``module`` is ``None`` for a layer without weights."""
    spec = parse_layer(text)
    c = shape[0]
    name = spec.name
    if isinstance(spec, type(parse_layer("Linear(1)"))):
        module = torch.nn.Linear(shape[0], spec.out_features, bias=False)
    elif name.startswith("ConvTranspose"):
        module = getattr(torch.nn, name)(c, spec.out_channels, spec.kernel_size, spec.stride, spec.padding,
                                         spec.output_padding, spec.groups, bias=False, dilation=spec.dilation)
    elif name.startswith("Conv"):
        module = getattr(torch.nn, name)(c, spec.out_channels, spec.kernel_size, spec.stride, spec.padding,
                                         spec.dilation, spec.groups, bias=False, padding_mode=spec.padding_mode)
    elif name.startswith("LocallyConnectedTranspose"):
        module = getattr(lnn, name)(c, spec.out_channels, spec.kernel_size, spec.stride, spec.padding,
                                    spec.output_padding, spec.dilation, spec.groups, bias=False, input_size=shape[1:])
    elif name.startswith("Locally"):
        module = getattr(lnn, name)(c, spec.out_channels, spec.kernel_size, spec.stride, spec.padding, spec.dilation,
                                    spec.groups, bias=False, input_size=shape[1:])
    elif name.startswith("Tiled"):
        module = getattr(lnn, name)(c, spec.out_channels, spec.kernel_size, spec.tile_size, spec.stride,
                                    spec.padding, spec.dilation, spec.groups, bias=False)
    elif name.startswith("AvgPool"):
        module = getattr(torch.nn, name)(spec.kernel_size, spec.stride, spec.padding, spec.ceil_mode)
    elif name.startswith("MaxPool"):  # the depthwise conv of the same window connects the same cells
        module = getattr(torch.nn, f"Conv{spec.ndim}d")(c, c, spec.kernel_size, spec.stride, spec.padding,
                                                        spec.dilation, groups=c, bias=False)
    elif name.startswith("Adaptive"):
        module = getattr(torch.nn, name)(spec.output_size)
    else:
        module = lnn.GlobalAvgPool()
    module = module.double()
    weight = getattr(module, "weight", None)
    if weight is not None:
        with torch.no_grad():
            weight.copy_(torch.arange(1, weight.numel() + 1, dtype=torch.float64).view_as(weight))
    matrix = dense_matrix(module, shape)
    return (module if weight is not None and not name.startswith("MaxPool") else None), matrix


def cells(shape):
    return [",".join(map(str, cell)) for cell in itertools.product(*map(range, shape))]


LINK_LAYERS = LAYERS + [("3x7x7", "MaxPool2d(3,2,1,dilation=2)"), ("2x5", "ReLU()")]


@pytest.mark.parametrize("input_shape, layer", LINK_LAYERS)
def test_links_are_the_non_zeros_of_dense_matrix(input_shape, layer):
    shape = tuple(map(int, input_shape.split("x")))
    if layer == "ReLU()":
        module, matrix = None, torch.eye(math.prod(shape), dtype=torch.float64)
    else:
        module, matrix = reference(shape, layer)
    out_shape = ok("/api/view", query(input_shape, layer))["layer"]["output_shape"]
    ins, outs = cells(shape), cells(out_shape)
    for row, cell in enumerate(outs):
        found = ok("/api/links", query(input_shape, layer, out=cell))
        assert found["out"] == cell
        assert found["in"] == [ins[c] for c in matrix[row].nonzero().flatten().tolist()], cell
        if module is not None:  # the weights of the links add up to the entries (weight k+1 has id k)
            total = torch.zeros(len(ins), dtype=torch.float64)
            for link in found["links"]:
                total[ins.index(link["in"])] += link["weight"] + 1
            assert torch.equal(total, matrix[row]), cell
    for col, cell in enumerate(ins):
        found = ok("/api/links", query(input_shape, layer, **{"in": cell}))
        assert found["out"] == [outs[r] for r in matrix[:, col].nonzero().flatten().tolist()], cell


@pytest.mark.parametrize("input_shape, layer", LINK_LAYERS)
def test_exact_matrix_ids_are_dense_matrix_with_the_weight_set_to_1_to_P(input_shape, layer):
    shape = tuple(map(int, input_shape.split("x")))
    if layer == "ReLU()":
        module, matrix = None, torch.eye(math.prod(shape), dtype=torch.float64)
    else:
        module, matrix = reference(shape, layer)
    document = ok("/api/matrix", query(input_shape, layer))
    assert document["mode"] == "exact" and document["bins"] is None
    ids = torch.tensor(document["ids"], dtype=torch.float64)
    assert (document["rows"], document["cols"]) == tuple(matrix.shape)
    nonzero = matrix != 0
    assert torch.equal(ids >= 0, nonzero)
    assert document["connections"] == int(nonzero.sum())
    if module is not None:
        assert document["weights"] == module.weight.numel()
        assert document["weight_shape"] == list(module.weight.shape)
        rebuilt = torch.where(ids >= 0, ids + 1, 0)
        for row, col, summed in document["sums"]:  # entries that add several taps (folding padding modes)
            rebuilt[row, col] = sum(w + 1 for w in summed)
        assert torch.equal(rebuilt, matrix)
        assert bool(document["sums"]) == ("reflect" in layer)  # circular padding 2 < 5 − 3 + 1: no tap twice
    else:
        assert document["weights"] == 0 and document["weight_shape"] == []
        assert set(ids.unique().tolist()) <= {-1, 0}


LOWRANK = [  # (input, layer, module options, the conv of the same window)
    ("2x5x6", "LowRankLocallyConnected2d(4,3,2,stride=2,padding=1,groups=2)", {},
     "Conv2d(4,3,stride=2,padding=1,groups=2)"),
    ("1x6x5", "LowRankLocallyConnected2d(2,(3,2),3,dilation=(2,1),padding=(2,0))", {"combining": "full"},
     "Conv2d(2,(3,2),dilation=(2,1),padding=(2,0))"),
    ("2x7", "LowRankLocallyConnected1d(2,3,2,stride=2)", {"normalize": None}, "Conv1d(2,3,stride=2)"),
]


def lowrank_reference(shape, text, extra):
    """``(module, matrix, alpha)``: a low-rank layer with its basis weight set to 1..P (float64), its
    ``dense_matrix`` and its combining weights ``(*out, R)`` flattened to ``(∏out, R)``."""
    spec = parse_layer(text)
    module = getattr(lnn, spec.name)(shape[0], spec.out_channels, spec.kernel_size, spec.rank, spec.stride,
                                     spec.padding, spec.dilation, spec.groups, bias=False, input_size=shape[1:],
                                     **extra).double()
    with torch.no_grad():
        module.weight.copy_(torch.arange(1, module.weight.numel() + 1, dtype=torch.float64).view_as(module.weight))
        for logits in module.parameters():  # combining logits: distinct per position, so no two mixes agree
            if logits is not module.weight:
                logits.copy_(torch.rand(logits.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    alpha = module.combining_weights().detach()
    return module, dense_matrix(module, shape), alpha.reshape(-1, spec.rank)


@pytest.mark.parametrize("input_shape, layer, extra, _", LOWRANK)
def test_lowrank_links_mix_their_basis_taps_into_the_dense_matrix(input_shape, layer, extra, _):
    shape = tuple(map(int, input_shape.split("x")))
    module, matrix, alpha = lowrank_reference(shape, layer, extra)
    basis = module.weight.flatten()
    out_shape = ok("/api/view", query(input_shape, layer))["layer"]["output_shape"]
    ins, outs = cells(shape), cells(out_shape)
    positions = math.prod(out_shape[1:])
    for row, cell in enumerate(outs):
        found = ok("/api/links", query(input_shape, layer, out=cell))
        assert found["weight_shape"] == list(module.weight.shape) and found["weights"] == module.weight.numel()
        assert found["in"] == [ins[c] for c in matrix[row].nonzero().flatten().tolist()], cell
        total = torch.zeros(len(ins), dtype=torch.float64)
        for link in found["links"]:  # entry = Σ_r α_r(p)·basis[r].flat[tap]
            assert len(link["basis"]) == module.rank and link["basis"][0] == link["weight"]
            total[ins.index(link["in"])] += (alpha[row % positions] * basis[link["basis"]]).sum()
        assert torch.allclose(total, matrix[row]), cell
    for col, cell in enumerate(ins):
        found = ok("/api/links", query(input_shape, layer, **{"in": cell}))
        assert found["out"] == [outs[r] for r in matrix[:, col].nonzero().flatten().tolist()], cell


@pytest.mark.parametrize("input_shape, layer, extra, conv", LOWRANK)
def test_lowrank_exact_matrix_ids_are_the_conv_taps_of_basis_0(input_shape, layer, extra, conv):
    shape = tuple(map(int, input_shape.split("x")))
    module, matrix, _ = lowrank_reference(shape, layer, extra)
    document = ok("/api/matrix", query(input_shape, layer))
    ids = torch.tensor(document["ids"])
    assert torch.equal(ids >= 0, matrix != 0) and document["connections"] == int((matrix != 0).sum())
    assert document["weight_shape"] == list(module.weight.shape)
    assert document["ids"] == ok("/api/matrix", query(input_shape, conv))["ids"]  # the conv's taps


@pytest.mark.parametrize("input_shape, layer", [LAYERS[1], LAYERS[6], LAYERS[11], LAYERS[4], LAYERS[14], LAYERS[3],
                                                LAYERS[5], LAYERS[7], LAYERS[8], LAYERS[13], LAYERS[15],
                                                ("6x5x7", "Conv2d(4,3,groups=2,padding=1)")])
@pytest.mark.parametrize("bins", [3, 5, 7])
def test_aggregated_matrix_is_the_binned_non_zeros_of_dense_matrix(monkeypatch, input_shape, layer, bins):
    monkeypatch.setattr(api, "EXACT_ENTRIES", 0)
    monkeypatch.setattr(api, "MAX_BINS", bins)
    shape = tuple(map(int, input_shape.split("x")))
    _, matrix = reference(shape, layer)
    document = ok("/api/matrix", query(input_shape, layer))
    assert document["mode"] == "aggregated" and document["ids"] is None
    found = document["bins"]
    rows, cols = found["row_edges"], found["col_edges"]
    assert rows[0] == cols[0] == 0 and (rows[-1], cols[-1]) == tuple(matrix.shape)
    assert len(rows) - 1 <= bins and len(cols) - 1 <= bins
    nonzero = (matrix != 0).long()
    expected = np.array([[int(nonzero[a:b, c:d].sum()) for c, d in zip(cols, cols[1:])] for a, b in zip(rows, rows[1:])])
    filled = np.nonzero(expected)  # the bins listed: those holding connections, row-major
    assert (found["rows"], found["cols"]) == (filled[0].tolist(), filled[1].tolist())
    assert found["counts"] == expected[filled].tolist()
    areas = np.outer(np.diff(rows), np.diff(cols))
    assert np.allclose(found["fraction"], (expected / areas)[filled], atol=1e-6)
    assert found["max_count"] == expected.max()
    assert document["connections"] == int(nonzero.sum())


def test_a_64x64_matrix_is_aggregated_into_128_bins_of_32():
    document = ok("/api/matrix", query("1x64x64", "Conv2d(1,3,padding=1)"))
    assert (document["rows"], document["cols"], document["mode"]) == (4096, 4096, "aggregated")
    assert document["bins"]["row_edges"] == list(range(0, 4097, 32))
    assert document["connections"] == 64 * 64 * 9 - 4 * 64 * 3 + 4


def test_matrix_too_large_to_count_is_refused(monkeypatch):
    monkeypatch.setattr(api, "MAX_CONNECTIONS", 1000)
    error = refused("/api/matrix", query("2x16x16", "Conv2d(4,3)"))
    assert error["message"] == ("the matrix of Conv2d(? → 4, kernel_size=3) on 2×16×16 has 14,112 connections; "
                                "layerlab serve draws at most 1,000. Fix: a smaller input or fewer channels")


# ----------------------------------------------------------------------------- /api/links: errors
@pytest.mark.parametrize("extra, message, parameter", [
    ({}, "give exactly one of out=c,i,j (an output cell: which inputs feed it) and in=c,i,j (an input cell: which "
         "outputs it feeds). Received: neither", "out"),
    ({"out": "0,0,0", "in": "0,0,0"}, "give exactly one of out=c,i,j (an output cell: which inputs feed it) and "
                                      "in=c,i,j (an input cell: which outputs it feeds). Received: both", "out"),
    ({"out": "0,3"}, "out must be a cell c,i,j of the 4×3×3 map (3 non-negative integers). Received: out=0,3", "out"),
    ({"out": "0,3,0"}, "out=0,3,0 is outside the 4×3×3 map; each index must be below its size (c,i,j)", "out"),
    ({"in": "a,b,c"}, "in must be a cell c,i,j of the 1×5×5 map (3 non-negative integers). Received: in=a,b,c", "in"),
])
def test_links_refuse_bad_cells(extra, message, parameter):
    error = refused("/api/links", query("1x5x5", "Conv2d(4,3)", **extra))
    assert error == {"message": message, "layer": None, "parameter": parameter}


def test_links_of_a_stack_need_an_index():
    q = query("1x8x8", "Conv2d(2,3)", "MaxPool2d(2)")
    assert refused("/api/links", q + "&out=0,0,0")["message"] == \
        "the stack has 2 layers; say which with index=N (1 to 2)"
    assert ok("/api/links", q + "&out=1,1,1&index=2")["in"] == ["1,2,2", "1,2,3", "1,3,2", "1,3,3"]
    assert refused("/api/links", q + "&out=0,0,0&index=3")["message"] == \
        "index must be 1 to 2 (the stack's layers). Received: index=3"


@pytest.mark.parametrize("input_shape, layer, message", [
    ("3x4x4", "BatchNorm2d()", "BatchNorm2d(?) has no fixed connections between input and output cells to draw. "
                               "Cells are linked for: Linear, Conv*d, ConvTranspose*d, LocallyConnected*d, "
                               "LocallyConnectedTranspose*d, LowRankLocallyConnected*d, "
                               "TiledConv*d, MaxPool*d, AvgPool*d, AdaptiveMaxPool*d, AdaptiveAvgPool*d, "
                               "GlobalMaxPool, GlobalAvgPool, element-wise layers (ReLU, Dropout, Identity, ...)."),
    ("3x4x4", "Linear(5)", "Linear(? → 5) acts on the last dim of the (3, 4, 4) input; its connections are drawn "
                           "for a flat input. Fix: add Flatten() before it."),
    ("1x200x200", "Conv2d(1,3)", "Conv2d(? → 1, kernel_size=3): the map 1×200×200 has 40,000 positions; cells are "
                                 "drawn for at most 16,384 (128×128). Fix: a smaller input"),
])
def test_links_refuse_layers_and_maps_they_cannot_draw(input_shape, layer, message):
    assert refused("/api/links", query(input_shape, layer, out="0,0,0"))["message"] == message


@pytest.mark.parametrize("path", ["/api/links", "/api/matrix"])
@pytest.mark.parametrize("input_shape, layer, shape", [
    ("1x1000000000", "Conv1d(1,3)", "1×1000000000"),
    ("1x8", "ConvTranspose1d(1,3,stride=100000000)", "1×700000003"),
    ("100000", "Linear(10)", "100000"),
])
def test_maps_too_large_to_draw_are_refused_before_any_cell_is_listed(path, input_shape, layer, shape):
    error = refused(path, query(input_shape, layer, out="0,0"))
    positions = math.prod(map(int, shape.split("×")[1:] or [shape]))
    assert error["message"].endswith(f"the map {shape} has {positions:,} positions; cells are drawn for at most "
                                     "16,384 (128×128). Fix: a smaller input")


@pytest.mark.parametrize("path", ["/api/links", "/api/matrix", "/api/view"])
def test_a_huge_kernel_on_a_small_map_is_refused_before_its_taps_are_listed(path):
    layer = "Conv1d(1,1000000000,stride=1000000000,padding=499999996)"  # 1 output reading 10⁹ taps
    message = ("Conv1d(? → 1, kernel_size=1000000000, stride=1000000000, padding=499999996): 1 output positions × "
               "kernel 1,000,000,000 = 1,000,000,000 taps along one dim; cells are drawn for at most 1,048,576. Fix: a "
               "smaller kernel or input")
    if path == "/api/view":  # a view answers with shapes; a transposed conv's coverage says why it is missing
        transposed = "ConvTranspose1d(1,1000000000,padding=499999999)"
        coverage = ok(path, query("1x2", transposed))["layer"]["coverage"]
        assert coverage["counts"] is None and coverage["reason"].endswith("taps along one dim; cells are drawn for "
                                                                          "at most 1,048,576. Fix: a smaller kernel or input")
        return
    assert refused(path, query("1x8", layer, out="0,0"))["message"] == message


# ----------------------------------------------------------------------------- /api/rf
RF_STACKS = [
    ("1x16x16", ["Conv2d(2,3)", "MaxPool2d(2)", "Conv2d(2,3)"], (1, 2)),
    ("1x12x13", ["Conv2d(2,3,stride=2,padding=1)", "Conv2d(2,3,dilation=2,padding=2)"], (0, 6)),
    ("1x20x20", ["Conv2d(2,(5,3),stride=(2,3))", "AvgPool2d(2)"], (3, 1)),
    ("1x10", ["Conv1d(2,3)", "Conv1d(2,3,stride=2)"], (2,)),
]


@pytest.mark.parametrize("input_shape, layers, unit", RF_STACKS)
def test_rf_box_is_the_input_cells_whose_gradient_reaches_the_unit(input_shape, layers, unit):
    shape = tuple(map(int, input_shape.split("x")))
    document = ok("/api/rf", query(input_shape, *layers, out=",".join(map(str, unit))))
    assert document["exact"] and not document["global"] and document["index"] == len(layers)
    modules, channels = [], shape[0]
    for text in layers:  # positive weights: no cancellation, the gradient's support is the field
        spec = parse_layer(text)
        if text.startswith("Conv"):
            module = getattr(torch.nn, spec.name)(channels, spec.out_channels, spec.kernel_size, spec.stride,
                                                  spec.padding, spec.dilation)
            torch.nn.init.constant_(module.weight, 1.0)
            channels = spec.out_channels
        else:  # average pooling: max pooling's gradient reaches only the largest input of each window
            module = getattr(torch.nn, f"AvgPool{spec.ndim}d")(spec.kernel_size, spec.stride, spec.padding)
        modules.append(module)
    x = torch.ones(1, *shape, requires_grad=True)
    y = torch.nn.Sequential(*modules)(x)
    y[(0, 0, *unit)].backward()
    support = (x.grad[0, 0] != 0).nonzero()
    box = [[int(support[:, d].min()), int(support[:, d].max())] for d in range(len(unit))]
    assert document["box"] == box


def test_rf_of_a_global_layer_is_the_whole_input():
    document = ok("/api/rf", query("3x8x6", "Conv2d(4,3)", "Flatten()", "Linear(10)"))
    assert document["global"] and document["box"] == [[0, 7], [0, 5]] and document["out"] is None


def test_rf_of_a_transposed_stack_is_marked_approximate():
    document = ok("/api/rf", query("1x8x8", "ConvTranspose2d(1,3,stride=2)", out="3,4"))
    assert document["exact"] is False


def test_rf_refuses_a_unit_outside_the_output():
    error = refused("/api/rf", query("1x8x8", "Conv2d(2,3)", out="6,0"))
    assert error["message"] == "out=6,0 is outside the 6×6 map; each index must be below its size (c,i)"


# ----------------------------------------------------------------------------- requests
def test_a_long_query_is_refused_before_it_is_read():
    error = refused("/api/view", "input=3x8x8&layer=" + "ReLU()" * 1000)
    assert error["message"] == ("the query string has 6,018 characters; at most 4,096 are read. Fix: fewer or "
                                "shorter layer= parameters")


def test_too_many_layers_are_refused():
    error = refused("/api/view", query("3x8x8", *["ReLU()"] * 65))
    assert error["message"] == "the stack has 65 layers; at most 64 are shown. Fix: fewer layer= parameters"


def test_missing_and_repeated_parameters_say_what_is_expected():
    assert refused("/api/view", "layer=ReLU()")["message"] == \
        "the query has no input= parameter. Expected e.g. input=3x32x32"
    assert refused("/api/view", "input=3x8x8&input=1x4x4")["message"] == \
        "the query has 2 input= parameters, expected one, e.g. input=3x32x32. Received: 3x8x8, 1x4x4"


def test_huge_sizes_answer_at_once_with_shapes_and_no_grids():
    document = ok("/api/view", query("3x1000000000x1000000000", "Conv2d(8,3,stride=2)"))
    assert document["layer"]["output_shape"] == [8, 499999999, 499999999]
    assert document["layer"]["grid"]["input"]["drawn"] is False
    transposed = ok("/api/view", query("1x100000x100000", "ConvTranspose2d(1,3,stride=2)"))["layer"]
    assert transposed["coverage"]["counts"] is None


def test_unknown_endpoint_and_model_without_one_answer_404():
    assert refused("/api/nope", "", 404)["message"] == \
        "unknown endpoint /api/nope; expected one of /api/view, /api/links, /api/matrix, /api/rf, /api/model"
    assert answer("/api/model", "") == (200, {  # the bare page asks: not an error
        "schema": "layerlab.serve/1", "model": None,
        "reason": "no model: start the server with layerlab serve --model FILE.py:NAME --input SHAPE"})
    assert answer("/api/model", "", {"schema": "layerlab.summary/1"}) == (200, {"schema": "layerlab.summary/1"})


def test_the_api_imports_no_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from layerlab.serve.api import answer\n"
            "print(answer('/api/matrix', 'input=1x4&layer=Conv1d(1,3)')[0])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "200\n"), done.stderr


def test_transposed_local_layer_has_the_coverage_of_its_transposed_conv():
    local = ok("/api/view", query("2x4x3", "LocallyConnectedTranspose2d(2,3,stride=2,output_padding=1)"))["layer"]
    conv = ok("/api/view", query("2x4x3", "ConvTranspose2d(2,3,stride=2,output_padding=1)"))["layer"]
    assert local["coverage"] == conv["coverage"] and local["coverage"]["max"] == 4


MODEL_STACK = ["Conv2d(4,3)", "ReLU()", "MaxPool2d(2)", "Upsample(scale_factor=3)", "Conv2d(2,3,stride=2,padding=1)",
               "Flatten()", "Linear(10)"]
MODEL_FILE = """
import torch.nn as nn


def build():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Upsample(scale_factor=3),
                         nn.Conv2d(4, 2, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(2 * 20 * 20, 10))
"""


@pytest.fixture(scope="module")
def model_document(tmp_path_factory):
    """``layerlab summary --json`` of a model whose layers are :data:`MODEL_STACK`."""
    path = tmp_path_factory.mktemp("model") / "net.py"
    path.write_text(MODEL_FILE)
    out = subprocess.run([sys.executable, "-m", "layerlab", "summary", f"{path}:build", "--input", "1x28x28", "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("index, out", [(1, "0,0"), (1, "25,3"), (3, "6,12"), (4, "0,38"), (5, "19,7"), (5, "3,4"),
                                        (7, None)])
def test_rf_of_a_models_row_is_that_of_the_same_stack(model_document, index, out):
    extra = {"index": index, **({"out": out} if out else {})}
    status, from_model = answer("/api/rf", "model=1&" + "&".join(f"{k}={v}" for k, v in extra.items()), model_document)
    assert status == 200, from_model
    from_stack = ok("/api/rf", query("1x28x28", *MODEL_STACK, **extra))
    assert from_model.pop("layer") == f"{model_document['layers'][index - 1]['type']} (module {index - 1})"
    from_stack.pop("layer")
    assert from_model == from_stack


def test_rf_of_a_model_refuses_rows_without_a_field_and_servers_without_a_model(model_document):
    status, document = answer("/api/rf", "model=1&index=9", model_document)
    assert (status, document["error"]) == (400, {
        "message": "index must be a row of the model's table with a receptive field (rows 1–7). Received: index=9",
        "layer": None, "parameter": "index"})
    assert refused("/api/rf", "model=1")["message"] == api.NO_MODEL

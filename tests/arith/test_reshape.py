"""Shape-only layers (arith.reshape): shapes against torch, parsing, mapping, receptive fields
against the gradient support of real torch modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from layerlab.analysis import spec_of, summary
from layerlab.arith import analyse_stack, parse_layer, receptive_field
from layerlab.arith.report import GLOBAL
from layerlab.arith.reshape import ChannelShuffleSpec, PadSpec, PermuteSpec, PixelShuffleSpec, UnflattenSpec, UnfoldSpec
from layerlab.errors import ArgumentError, ShapeError

CASES = [
    ("Unflatten(1, (2, 4, 4))", nn.Unflatten(1, (2, 4, 4)), (32,)),
    ("Unflatten(-1, (2, 3))", nn.Unflatten(-1, (2, 3)), (4, 6)),
    ("ZeroPad1d((1, 3))", nn.ZeroPad1d((1, 3)), (2, 5)),
    ("ZeroPad2d((1, 2, 3, 4))", nn.ZeroPad2d((1, 2, 3, 4)), (3, 5, 6)),
    ("ZeroPad2d(-1)", nn.ZeroPad2d(-1), (3, 5, 6)),
    ("ConstantPad3d(1, 0.5)", nn.ConstantPad3d(1, 0.5), (2, 3, 4, 5)),
    ("ReflectionPad2d(2)", nn.ReflectionPad2d(2), (3, 5, 6)),
    ("ReplicationPad1d((0, 4))", nn.ReplicationPad1d((0, 4)), (3, 2)),
    ("CircularPad2d((1, 0, 2, 1))", nn.CircularPad2d((1, 0, 2, 1)), (3, 5, 6)),
    ("PixelShuffle(2)", nn.PixelShuffle(2), (8, 3, 4)),
    ("PixelUnshuffle(3)", nn.PixelUnshuffle(3), (2, 6, 9)),
    ("ChannelShuffle(2)", nn.ChannelShuffle(2), (4, 3, 3)),
    ("Dropout2d(0.1)", nn.Dropout2d(0.1), (4, 3, 3)),
    ("AlphaDropout(0.2)", nn.AlphaDropout(0.2), (4, 3, 3)),
    ("Identity()", nn.Identity(), (4, 3, 3)),
    ("Unfold((2, 3), 2, 1, 2)", nn.Unfold((2, 3), dilation=2, padding=1, stride=2), (3, 9, 8)),
    ("Fold((6, 7), 3)", nn.Fold((6, 7), 3), (18, 20)),
    ("Fold(5, 2, padding=1, stride=2)", nn.Fold(5, 2, stride=2, padding=1), (8, 9)),
]


@pytest.mark.parametrize("text, module, shape", CASES, ids=[c[0] for c in CASES])
def test_shape_matches_torch_from_module_and_from_string(text, module, shape):
    expected = tuple(module.eval()(torch.zeros(1, *shape)).shape[1:])
    from_module = spec_of(module).analyse(shape)
    assert from_module.output_shape == expected
    assert parse_layer(text).analyse(shape).output_shape == expected
    assert (from_module.params, from_module.macs) == (0, 0)


def test_summary_of_a_dense_conversion_with_unflatten_is_complete():
    model = nn.Sequential(nn.Linear(784, 8 * 26 * 26), nn.Unflatten(1, (8, 26, 26)), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 26 * 26, 10))
    result = summary(model, (784,))
    assert result.complete
    assert [row.output_shape for row in result.layers][1] == (1, 8, 26, 26)


@pytest.mark.parametrize("modules", [
    [nn.ZeroPad2d((2, 0, 1, 3)), nn.Conv2d(1, 1, 3)],
    [nn.Conv2d(1, 4, 3), nn.PixelUnshuffle(2), nn.Conv2d(16, 1, 3)],
    [nn.Conv2d(1, 4, 3), nn.ReplicationPad2d(1), nn.Conv2d(4, 4, 3), nn.PixelShuffle(2), nn.Conv2d(1, 1, 3)],
    [nn.Conv2d(1, 4, 3), nn.ChannelShuffle(2), nn.Conv2d(4, 1, 3, stride=2)],
])
def test_field_is_the_gradient_support_of_an_inner_output(modules):
    """Positive weights: an output's gradient on the input is non-zero exactly on its field (the
    largest over outputs for PixelShuffle, whose outputs differ by their offset in the block)."""
    torch.manual_seed(0)
    model = nn.Sequential(*modules).double()
    for p in model.parameters():
        p.data.uniform_(0.5, 1.5)
    shape = (1, 40, 40)
    fields = receptive_field(analyse_stack([spec_of(m) for m in modules], shape), shape)[-1].dims
    x = torch.ones(1, *shape, dtype=torch.float64, requires_grad=True)
    out = model(x)
    widest = [0, 0]
    for o in range(4, 8):  # inner outputs, away from the padded border
        x.grad = None
        out[0, 0, o, o].backward(retain_graph=True)
        rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
        for axis, hit in enumerate((rows, cols)):
            widest[axis] = max(widest[axis], int(hit.max() - hit.min()) + 1)
    assert widest == [d.size for d in fields]


@pytest.mark.parametrize("make, message", [
    (lambda: PadSpec(2, (1, 2, 3)), r"ZeroPad2d: padding must be an int or 4 ints \(last dim first: left, right, \.\.\.\)\. "
                                    r"Received: padding=\(1, 2, 3\)"),
    (lambda: PadSpec(2, -1, "Reflection"), r"ReflectionPad2d: padding must be non-negative\. Received: padding=-1"),
    (lambda: UnflattenSpec(1, (0, 3)), r"Unflatten: unflattened_size must be a tuple of positive ints"),
    (lambda: PixelShuffleSpec(0), r"PixelShuffle: the factor must be a positive int\. Received: 0"),
    (lambda: ChannelShuffleSpec(0), r"ChannelShuffle: groups must be a positive int\. Received: groups=0"),
    (lambda: UnflattenSpec(0, (2, 2)).analyse((4,)), r"Unflatten\(0, \(2, 2\)\): dim 0 is the batch.*Fix: dim=1"),
    (lambda: PermuteSpec((0, 2, 1)), r"Permute: dims must be a permutation of 1\.\.rank \(0 is the batch\)\. "
                                     r"Received: dims=\(0, 2, 1\)"),
])
def test_argument_errors_are_pinned(make, message):
    with pytest.raises(ArgumentError, match=message):
        make()


@pytest.mark.parametrize("spec, shape, message", [
    (PadSpec(2, 3, "Reflection"), (1, 3, 8), r"ReflectionPad2d\(3\): H: reflection padding 3 must be smaller than the "
                                             r"input size 3\. Fix: pad less or use ReplicationPad\."),
    (PadSpec(1, 4, "Circular"), (1, 3), r"CircularPad1d\(4\): L: circular padding 4 must be at most the input size 3"),
    (PadSpec(1, -2), (1, 3), r"ZeroPad1d\(-2\): L: cropping 4 leaves no elements of 3\. Fix: crop less\."),
    (PadSpec(2, 1), (3, 5), r"ZeroPad2d\(1\) expects a per-sample input \(C, 2 spatial dims\) with 3 dims, gets \(3, 5\)"),
    (UnflattenSpec(1, (2, 5)), (12,), r"Unflatten\(1, \(2, 5\)\): 2·5 = 10, but dim 1 of the input \(12,\) has 12\. "
                                      r"Fix: sizes whose product is 12\."),
    (UnflattenSpec(3, (2, 2)), (4,), r"dim out of range for the per-sample input \(4,\)"),
    (PixelShuffleSpec(2), (6, 3, 3), r"PixelShuffle\(2\): 6 input channels are not divisible by 2² = 4"),
    (PixelShuffleSpec(2, inverse=True), (1, 5, 4), r"PixelUnshuffle\(2\): the input 5×4 is not divisible by 2"),
    (ChannelShuffleSpec(3), (4, 2, 2), r"ChannelShuffle\(3\): groups=3 must divide the channels"),
    (UnfoldSpec(3, output_size=(6, 7)), (18, 21), r"Fold\(output_size=\(6, 7\), kernel_size=3\) expects a per-sample input "
                                                 r"\(C·3·3, 20\) \(20 blocks fit in 6×7\), gets \(18, 21\)\."),
    (UnfoldSpec(5), (1, 4, 4), r"Unfold\(kernel_size=5\): the input's spatial size \(4, 4\) is too small"),
    (PermuteSpec((2, 1)), (3, 4, 5), r"Permute\(0, 2, 1\) expects a per-sample input with 2 dims, gets \(3, 4, 5\) with 3\."),
])
def test_shape_errors_are_pinned(spec, shape, message):
    with pytest.raises(ShapeError, match=message):
        spec.analyse(shape)


def test_permute_moves_dims_like_torch_and_a_move_makes_the_field_global():
    x = torch.randn(2, 28, 27, 3)
    report = PermuteSpec((3, 1, 2)).analyse((28, 27, 3))
    assert report.output_shape == tuple(x.permute(0, 3, 1, 2).shape[1:]) == (3, 28, 27)
    assert report.window == GLOBAL and report.params == report.macs == 0
    assert PermuteSpec((1, 2)).analyse((4, 5)).window is None  # nothing moves

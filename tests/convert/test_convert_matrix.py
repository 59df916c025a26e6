"""dense_matrix / dense_bias against independent references: the autograd Jacobian, basis-vector
probing of the layer itself, and the layer's own forward in float64."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import layerlab.nn as lnn
from layerlab.convert import dense_bias, dense_matrix
from layerlab.errors import ArgumentError, ShapeError, SizeLimitError

F64 = torch.float64


def _jacobian(layer, shape):
    """Reference 1: the autograd Jacobian of the flattened forward (independent of index arithmetic)."""
    x = torch.randn(torch.Size(shape).numel(), dtype=F64)
    return torch.autograd.functional.jacobian(lambda v: layer(v.view(1, *shape)).flatten(), x)


def _probe(layer, shape):
    """Reference 2: columns of M = layer(e_j) − layer(0), one basis vector at a time."""
    n = torch.Size(shape).numel()
    with torch.no_grad():
        basis = torch.eye(n, dtype=F64).view(n, *shape)
        zero = layer(torch.zeros(1, *shape, dtype=F64)).flatten(1)
        return (layer(basis).flatten(1) - zero).T, zero[0]


def _random_bn(bn):
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    if bn.affine:
        bn.weight.data.normal_()
        bn.bias.data.normal_()
    return bn.eval()


LAYERS = [
    (lambda: nn.Conv1d(3, 6, 3, stride=3, groups=3), (3, 10)),
    (lambda: nn.Conv1d(2, 4, 4, padding="same", dilation=2), (2, 9)),
    (lambda: nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2), (2, 7, 6)),
    (lambda: nn.Conv2d(2, 4, (2, 3), padding="same", dilation=(2, 1)), (2, 5, 6)),
    (lambda: nn.Conv2d(1, 3, 3, stride=(2, 1), padding=(0, 2), bias=False), (1, 6, 5)),
    (lambda: nn.Conv2d(2, 3, 3, padding=2, padding_mode="reflect", stride=2), (2, 5, 6)),
    (lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="replicate"), (2, 4, 5)),
    (lambda: nn.Conv2d(2, 3, 3, padding=2, padding_mode="circular", dilation=2), (2, 5, 6)),
    (lambda: nn.Conv3d(2, 2, 2, stride=(1, 2, 1), padding=1), (2, 3, 4, 3)),
    (lambda: nn.ConvTranspose1d(2, 3, 4, stride=2, dilation=2), (2, 5)),
    (lambda: nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2), (4, 3, 4)),
    (lambda: nn.ConvTranspose3d(1, 2, 2, stride=2), (1, 2, 3, 2)),
    (lambda: nn.Linear(5, 3), (5,)),
    (lambda: nn.Linear(5, 3), (2, 5)),
    (lambda: nn.AvgPool1d(2), (2, 7)),
    (lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (2, 6, 7)),
    (lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 6, 7)),
    (lambda: nn.AvgPool3d(2, divisor_override=3), (1, 4, 4, 5)),
    (lambda: nn.AdaptiveAvgPool1d(4), (2, 10)),
    (lambda: nn.AdaptiveAvgPool2d((3, None)), (2, 7, 5)),
    (lambda: _random_bn(nn.BatchNorm2d(3)), (3, 4, 4)),
    (lambda: _random_bn(nn.BatchNorm1d(3, affine=False)), (3, 5)),
    (lambda: nn.Flatten(), (2, 3, 2)),
    (lambda: nn.Dropout(0.5).eval(), (4,)),
    (lambda: lnn.Dense(3, in_features=4), (4,)),
    (lambda: lnn.Conv2d(2, 3, 3, padding=1), (2, 4, 4)),
    (lambda: lnn.LocallyConnected2d(2, 4, 3, stride=2, padding=1, groups=2, input_size=(5, 4)), (2, 5, 4)),
    (lambda: lnn.LocallyConnected1d(2, 3, 2, bias="shared", padding=1, padding_mode="reflect", input_size=(5,)), (2, 5)),
    (lambda: lnn.LocallyConnected3d(1, 2, 2, input_size=(2, 3, 3)), (1, 2, 3, 3)),
    (lambda: lnn.TiledConv2d(2, 2, 2, tile_size=(2, 3), padding=1), (2, 4, 5)),
    (lambda: lnn.TiledConv1d(2, 4, 3, tile_size=2, groups=2, bias="shared"), (2, 7)),
    (lambda: lnn.ConvTranspose2d(2, 3, 3, stride=2), (2, 3, 2)),
    (lambda: lnn.AvgPool2d(2, stride=1), (2, 3, 4)),
    (lambda: lnn.GlobalAvgPool(), (3, 2, 5)),
    (lambda: _random_bn(lnn.BatchNorm1d(3)), (3,)),
]


@pytest.mark.parametrize("make, shape", LAYERS, ids=[f"{i}" for i in range(len(LAYERS))])
def test_matrix_equals_jacobian_probe_and_forward(make, shape):
    torch.manual_seed(0)
    layer = make().to(F64)
    matrix = dense_matrix(layer, shape, dtype=F64)
    bias = dense_bias(layer, shape, dtype=F64)
    torch.testing.assert_close(matrix, _jacobian(layer, shape), rtol=0, atol=1e-12)
    probed, zero = _probe(layer, shape)
    torch.testing.assert_close(matrix, probed, rtol=0, atol=1e-12)
    torch.testing.assert_close(bias, zero, rtol=0, atol=1e-12)
    x = torch.randn(3, *shape, dtype=F64)
    torch.testing.assert_close(x.flatten(1) @ matrix.T + bias, layer(x).flatten(1), rtol=0, atol=1e-10)
    sparse = dense_matrix(layer, shape, sparse=True, dtype=F64)
    assert sparse.is_sparse
    torch.testing.assert_close(sparse.to_dense(), matrix, rtol=0, atol=0)


# output_padding by hand: the conv maps in -> o = floor((in + 2p − d·2 − 1)/s) + 1 (kernel 3), the
# transposed conv maps o -> (o − 1)·s − 2p + 2d + 1 + output_padding, which must give back in; e.g.
# in 8, s 2, p 1, d 1: o = 4, (4 − 1)·2 − 2 + 2 + 1 = 7, so output_padding 1
@pytest.mark.parametrize("stride, padding, dilation, groups, in_size, out_padding", [
    (2, 1, 1, 1, (8,), (1,)),
    (2, 1, 1, 2, (7, 6), (0, 1)),
    (3, 0, 2, 1, (7, 6), (2, 1)),
    (2, 1, 1, 1, (7, 6, 5), (0, 1, 0)),
])
def test_transposed_conv_matrix_is_transpose_of_conv(stride, padding, dilation, groups, in_size, out_padding):
    """ConvTranspose(C_out -> C_in) with the conv's weight has matrix M_conv^T (shapes swapped)."""
    torch.manual_seed(1)
    ndim = len(in_size)
    conv_cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[ndim - 1]
    tconv_cls = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[ndim - 1]
    in_shape = (2, *in_size)
    conv = conv_cls(2, 4, 3, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=False).to(F64)
    out_spatial = tuple(conv(torch.zeros(1, *in_shape, dtype=F64)).shape[2:])
    tconv = tconv_cls(4, 2, 3, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=False,
                      output_padding=out_padding).to(F64)
    with torch.no_grad():
        tconv.weight.copy_(conv.weight)  # both (4, 2/groups, *k)
    m_conv = dense_matrix(conv, in_shape)
    m_tconv = dense_matrix(tconv, (4, *out_spatial))
    assert m_tconv.shape == m_conv.T.shape == (2 * math.prod(in_size), 4 * math.prod(out_spatial))
    torch.testing.assert_close(m_tconv, m_conv.T, rtol=0, atol=0)
    assert tuple(tconv(torch.zeros(1, 4, *out_spatial, dtype=F64)).shape[2:]) == in_size


def test_conv_matrix_has_few_distinct_values_local_none_tied():
    conv = nn.Conv2d(1, 1, 3, bias=False)
    matrix = dense_matrix(conv, (1, 6, 6))
    assert matrix.shape == (16, 36)
    assert (matrix != 0).sum() == 16 * 9
    assert set(matrix[matrix != 0].tolist()) == set(conv.weight.flatten().tolist())


@pytest.mark.parametrize("layer", [nn.ReLU(), nn.MaxPool2d(2), nn.LayerNorm(4), nn.Sigmoid()])
def test_nonlinear_layer_is_refused(layer):
    with pytest.raises(ArgumentError, match=r"is not a linear layer .*Supported: Linear/Dense.*jacobian"):
        dense_matrix(layer, (1, 4, 4))


def test_batchnorm_in_training_mode_is_refused():
    with pytest.raises(ArgumentError, match=r"statistics of the batch .*Call layer.eval\(\)"):
        dense_matrix(nn.BatchNorm2d(3), (3, 4, 4))


def test_dropout_in_training_mode_is_refused():
    with pytest.raises(ArgumentError, match=r"random mask, not a fixed matrix. Call layer.eval\(\) first"):
        dense_matrix(nn.Dropout(0.2), (4,))


def test_lazy_layer_is_refused():
    with pytest.raises(ArgumentError, match=r"lazy layer whose weight is not materialised yet. Run one forward"):
        dense_matrix(nn.LazyLinear(3), (4,))


@pytest.mark.parametrize("shape, match", [
    ((3, 6, 6), r"expected a per-sample input shape \(C_in=2, 2 spatial sizes\).*Received: input_shape=\(3, 6, 6\)"),
    ((2, 6), r"expected a per-sample input shape \(C_in=2, 2 spatial sizes\)"),
    ((2, 2, 2), r"too small for kernel_size=\(3, 3\).*output size would be \(0, 0\)"),
    ((), r"input_shape must be a per-sample shape of positive sizes"),
])
def test_bad_input_shape_for_conv(shape, match):
    with pytest.raises(ShapeError, match=match):
        dense_matrix(nn.Conv2d(2, 3, 3), shape)


def test_bad_input_shape_for_linear():
    with pytest.raises(ShapeError, match=r"expected 5 input features in the last dimension. Received: "
                       r"input_shape=\(4,\); flatten the input first"):
        dense_matrix(nn.Linear(5, 3), (4,))


def test_huge_layer_refused_instantly_and_sparse_suggested():
    conv = nn.Conv2d(64, 64, 3, padding=1, bias=False)  # 64x224x224 -> matrix 3.2M x 3.2M
    n = 64 * 224 * 224
    with pytest.raises(SizeLimitError, match=rf"would allocate {n * n:,} elements × 4 bytes = "
                       r"37\.5 TiB, over the limit of 2\.0 GiB; nothing was allocated\. .*use sparse=True"):
        dense_matrix(conv, (64, 224, 224))


def test_sparse_is_refused_when_even_the_structure_is_too_big():
    conv = nn.Conv2d(512, 512, 3, padding=1, bias=False)
    with pytest.raises(SizeLimitError, match=r"the structure of Conv2d.*Use a smaller input shape"):
        dense_matrix(conv, (512, 224, 224), sparse=True)


def test_limit_from_argument_and_environment(monkeypatch):
    conv = nn.Conv2d(1, 1, 3, bias=False)  # on 1x20x20: 324 x 400 float32 = 518,400 bytes
    assert dense_matrix(conv, (1, 20, 20), max_bytes=518_400).shape == (324, 400)
    with pytest.raises(SizeLimitError, match=r"129,600 elements × 4 bytes = 506\.2 KiB, over the limit of 506\.2 KiB"):
        dense_matrix(conv, (1, 20, 20), max_bytes=518_399)
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "500KiB")
    with pytest.raises(SizeLimitError, match=r"over the limit of 500\.0 KiB.*LAYERLAB_MAX_BYTES"):
        dense_matrix(conv, (1, 20, 20))
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "0.6MB")
    assert dense_matrix(conv, (1, 20, 20)).shape == (324, 400)
    monkeypatch.setenv("LAYERLAB_MAX_BYTES", "lots")
    with pytest.raises(ArgumentError, match=r"LAYERLAB_MAX_BYTES must be a number of bytes such as .* "
                       r"Received: 'lots'"):
        dense_matrix(conv, (1, 20, 20))


def test_bad_max_bytes_argument():
    with pytest.raises(ArgumentError, match=r"max_bytes must be a positive integer below 2\*\*63\. Received: max_bytes=0"):
        dense_matrix(nn.Conv1d(1, 1, 1), (1, 3), max_bytes=0)

"""Golden fixtures: hand-checked params and MACs of classic networks, cross-checked against the
same networks built in torch (``sum(p.numel())`` and FlopCounterMode)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from layerlab.arith import (
    ConvSpec,
    ConvTransposeSpec,
    DenseSpec,
    FlattenSpec,
    NormSpec,
    PoolSpec,
    analyse_stack,
    elementwise,
)


def torch_counts(model: nn.Module, shape) -> tuple[int, int, tuple[int, ...]]:
    """(params, MACs = FlopCounterMode / 2, output shape) of one sample."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model.eval()(torch.zeros(1, *shape))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2, tuple(out.shape[1:])


def test_cifar_tutorial_cnn():
    """The PyTorch CIFAR-10 tutorial net on 3×32×32.

    conv1 3→6 k5:  6×28×28, params 6·3·25 + 6 = 456,       MACs 6·784·75  = 352,800
    pool 2:        6×14×14
    conv2 6→16 k5: 16×10×10, params 16·6·25 + 16 = 2,416,  MACs 16·100·150 = 240,000
    pool 2:        16×5×5, flatten 16·5·5 = 400
    fc1 400→120:   params 48,120,  MACs 48,000
    fc2 120→84:    params 10,164,  MACs 10,080
    fc3 84→10:     params 850,     MACs 840
    total params 62,006; MACs 651,720
    """
    specs = [ConvSpec(2, 6, 5), elementwise("ReLU"), PoolSpec(2, "max", 2), ConvSpec(2, 16, 5),
             elementwise("ReLU"), PoolSpec(2, "max", 2), FlattenSpec(), DenseSpec(120), elementwise("ReLU"),
             DenseSpec(84), elementwise("ReLU"), DenseSpec(10)]
    reports = analyse_stack(specs, (3, 32, 32))
    assert [r.params for r in reports if r.params] == [456, 2416, 48120, 10164, 850]
    assert [r.macs for r in reports if r.macs] == [352800, 240000, 48000, 10080, 840]
    assert reports[6].output_shape == (400,) and reports[6].formulas == ("features: 16·5·5 = 400",)
    total_params, total_macs = sum(r.params for r in reports), sum(r.macs for r in reports)
    assert (total_params, total_macs) == (62006, 651720)
    model = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                          nn.ReLU(), nn.Linear(84, 10))
    assert torch_counts(model, (3, 32, 32)) == (total_params, total_macs, (10,))


def test_lenet5():
    """LeNet-5 on 1×32×32 (subsampling as average pooling).

    C1 1→6 k5:    6×28×28, params 6·25 + 6 = 156,          MACs 6·784·25   = 117,600
    S2 pool 2:    6×14×14
    C3 6→16 k5:   16×10×10, params 16·6·25 + 16 = 2,416,   MACs 16·100·150 = 240,000
    S4 pool 2:    16×5×5
    C5 16→120 k5: 120×1×1, params 120·400 + 120 = 48,120,  MACs 120·400    = 48,000
    F6 120→84:    params 10,164, MACs 10,080
    out 84→10:    params 850,    MACs 840
    total params 61,706; MACs 416,520
    """
    specs = [ConvSpec(2, 6, 5), elementwise("Tanh"), PoolSpec(2, "avg", 2), ConvSpec(2, 16, 5),
             elementwise("Tanh"), PoolSpec(2, "avg", 2), ConvSpec(2, 120, 5), elementwise("Tanh"),
             FlattenSpec(), DenseSpec(84), elementwise("Tanh"), DenseSpec(10)]
    reports = analyse_stack(specs, (1, 32, 32))
    assert [r.output_shape for r in reports if r.params] == [(6, 28, 28), (16, 10, 10), (120, 1, 1), (84,), (10,)]
    assert [r.params for r in reports if r.params] == [156, 2416, 48120, 10164, 850]
    assert sum(r.params for r in reports) == 61706 and sum(r.macs for r in reports) == 416520
    model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(),
                          nn.AvgPool2d(2), nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(), nn.Linear(120, 84),
                          nn.Tanh(), nn.Linear(84, 10))
    assert torch_counts(model, (1, 32, 32)) == (61706, 416520, (10,))


def dcgan_generator_specs(nz=100, ngf=64, nc=3):
    specs = []
    for c_out, stride, padding in ((ngf * 8, 1, 0), (ngf * 4, 2, 1), (ngf * 2, 2, 1), (ngf, 2, 1)):
        specs += [ConvTransposeSpec(2, c_out, 4, stride=stride, padding=padding, bias=False),
                  NormSpec("batch", ndim=2), elementwise("ReLU")]
    return specs + [ConvTransposeSpec(2, nc, 4, stride=2, padding=1, bias=False), elementwise("Tanh")]


def test_dcgan_generator():
    """DCGAN generator, nz = 100, ngf = 64 (Radford et al. 2016; the PyTorch DCGAN tutorial).

    ConvT 100→512 k4 s1 p0: 1→4 ((1−1)·1 − 0 + 3 + 1), params 100·512·16 = 819,200
        MACs C_in·∏in·C_out·∏k = 100·1·512·16 = 819,200
    ConvT 512→256 k4 s2 p1: 4→8,   params 2,097,152, MACs 512·16·256·16   = 33,554,432
    ConvT 256→128:          8→16,  params   524,288, MACs 256·64·128·16   = 33,554,432
    ConvT 128→64:           16→32, params   131,072, MACs 128·256·64·16   = 33,554,432
    ConvT 64→3:             32→64, params     3,072, MACs 64·1024·3·16    =  3,145,728
    BatchNorm 512/256/128/64: params 2·(512+256+128+64) = 1,920; buffers 2·960 + 4 = 1,924
    total params 3,574,784 + 1,920 = 3,576,704; MACs 104,628,224
    """
    reports = analyse_stack(dcgan_generator_specs(), (100, 1, 1))
    assert reports[0].formulas[0] == "H: (1 − 1)·1 − 2·0 + 1·(4−1) + 0 + 1 = 4"
    assert reports[-1].output_shape == (3, 64, 64)
    assert sum(r.params for r in reports) == 3576704
    assert sum(r.buffers for r in reports) == 1924
    assert sum(r.macs for r in reports) == 104628224
    layers = []
    for c_in, c_out, stride, padding in ((100, 512, 1, 0), (512, 256, 2, 1), (256, 128, 2, 1), (128, 64, 2, 1)):
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride, padding, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    model = nn.Sequential(*layers, nn.ConvTranspose2d(64, 3, 4, 2, 1, bias=False), nn.Tanh())
    assert torch_counts(model, (100, 1, 1)) == (3576704, 104628224, (3, 64, 64))
    assert sum(b.numel() for b in model.buffers()) == 1924


def test_dcgan_discriminator():
    """DCGAN discriminator, ndf = 64, convs without bias.

    Conv 3→64 k4 s2 p1:    64→32 (floor((64 + 2 − 3 − 1)/2) + 1), params 3·64·16 = 3,072,
        MACs C_out·∏out·C_in·∏k = 64·1024·3·16 = 3,145,728
    Conv 64→128:   32→16, params   131,072, MACs 128·256·64·16  = 33,554,432
    Conv 128→256:  16→8,  params   524,288, MACs 256·64·128·16  = 33,554,432
    Conv 256→512:  8→4,   params 2,097,152, MACs 512·16·256·16  = 33,554,432
    Conv 512→1 k4 s1 p0: 4→1, params 8,192, MACs 8,192
    BatchNorm 128/256/512: params 2·896 = 1,792
    total params 2,763,776 + 1,792 = 2,765,568; MACs 103,817,216
    """
    specs = [ConvSpec(2, 64, 4, stride=2, padding=1, bias=False), elementwise("LeakyReLU")]
    for c_out in (128, 256, 512):
        specs += [ConvSpec(2, c_out, 4, stride=2, padding=1, bias=False), NormSpec("batch", ndim=2),
                  elementwise("LeakyReLU")]
    specs += [ConvSpec(2, 1, 4, bias=False), elementwise("Sigmoid")]
    reports = analyse_stack(specs, (3, 64, 64))
    assert reports[0].formulas[0] == "H: floor((64 + 2·1 − 1·(4−1) − 1)/2) + 1 = 32"
    assert reports[-1].output_shape == (1, 1, 1)
    assert sum(r.params for r in reports) == 2765568
    assert sum(r.macs for r in reports) == 103817216
    layers = [nn.Conv2d(3, 64, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
    for c_in, c_out in ((64, 128), (128, 256), (256, 512)):
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
    model = nn.Sequential(*layers, nn.Conv2d(512, 1, 4, 1, 0, bias=False), nn.Sigmoid())
    assert torch_counts(model, (3, 64, 64)) == (2765568, 103817216, (1, 1, 1))

"""Models that ``layerlab summary`` is checked and timed on, beyond the zoo (no torchvision needed).

- :func:`patch_transformer`: a patch conv and a 2-layer ``nn.TransformerEncoder`` (d=64, 4 heads,
  feed-forward 128, 16 tokens) with a linear head, on ``3x32x32``: 79,946 params,
  1,311,360 MACs (hand count below).
- :func:`lstm_classifier`: ``nn.LSTM(40, 64)`` over 20 steps and ``nn.Linear(64, 10)``, on
  ``20x40``: 27,786 params, 533,120 MACs.
- :func:`functional_net`: a conv and a custom ``forward`` with ``torch.matmul``, ``einsum``,
  ``F.scaled_dot_product_attention``, ``F.conv_transpose2d`` and ``F.interpolate``, on ``3x8x8``.
- :func:`resnet50`: ResNet-50 (bottleneck blocks 3-4-6-3, 1000 classes), 25,557,032 params, on
  ``3x224x224``.
- :func:`vit_base`: a 12-layer transformer (ViT-Base: d=768, 12 heads, feed-forward 3072,
  16×16 patches), 86,414,056 params, on ``3x224x224``.

Hand counts (MACs per sample), ``T`` tokens, ``d`` width, ``F`` feed-forward width:

- patch_transformer: patch conv ``16·64·(3·8·8) = 196,608``; per layer attention in/out
  projections ``16·64·192 + 16·64·64 = 262,144``, scores and weighted sum ``16·16·64·2 =
  32,768``, feed-forward ``2·16·64·128 = 262,144`` (557,056 per layer, two layers); head
  ``64·10 = 640``: total 1,311,360.
- lstm_classifier: ``T·4·H·(I + H) = 20·4·64·(40 + 64) = 532,480`` plus the head ``64·10 = 640``:
  533,120.

Usage: ``from summary_models import MODELS`` (this folder on ``sys.path``); ``MODELS`` maps a name
to ``(builder, input shape)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchTransformer(nn.Module):
    """``(B, 3, H, W)`` → patches ``(B, T, d)`` → transformer encoder → mean over tokens → classes."""

    def __init__(self, dim: int = 64, heads: int = 4, layers: int = 2, ffn: int = 128, patch: int = 8,
                 classes: int = 10, dropout: float = 0.1) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        layer = nn.TransformerEncoderLayer(dim, heads, ffn, dropout=dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        return self.head(self.encoder(tokens).mean(1))


class LSTMClassifier(nn.Module):
    """``(B, T, 40)`` → LSTM(40, 64) → last step → Linear(64, 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(40, 64, batch_first=True)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class FunctionalNet(nn.Module):
    """A conv, then functional ops in the model's own forward (each gets a row of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.mix = nn.Parameter(torch.randn(16, 16) / 4)
        self.up = nn.Parameter(torch.randn(8, 2, 2, 2) / 4)  # conv_transpose2d weight (C_in, C_out/groups, k, k), groups 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)                                                    # (B, 8, 8, 8)
        tokens = y.flatten(2).transpose(1, 2)                               # (B, 64, 8)
        scores = torch.matmul(tokens, tokens.transpose(1, 2))               # (B, 64, 64)
        mixed = torch.einsum("bij,bjc->bic", scores.softmax(-1), tokens)    # (B, 64, 8)
        heads = mixed.reshape(-1, 64, 2, 4).transpose(1, 2)                 # (B, 2, 64, 4)
        attended = F.scaled_dot_product_attention(heads, heads, heads)      # (B, 2, 64, 4)
        grid = attended.transpose(2, 3).reshape(-1, 8, 8, 8)                # (B, 8, 8, 8)
        grid = F.conv_transpose2d(grid, self.up, stride=2, groups=2)        # (B, 4, 16, 16)
        grid = F.interpolate(grid, scale_factor=0.5, mode="bilinear")       # (B, 4, 8, 8)
        return torch.matmul(grid.flatten(2)[..., :16], self.mix)            # (B, 4, 16)


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1×1, 3×3 (stride), 1×1 ×4 channels, with a projected shortcut when needed."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = 4 * width
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def resnet50(classes: int = 1000) -> nn.Module:
    """ResNet-50 (He et al. 2016), torchvision's layout: 25,557,032 params."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                               nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
            cin = 4 * width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def vit_base(classes: int = 1000) -> nn.Module:
    """A 12-layer ViT-Base-sized transformer on 16×16 patches (no class token or position embedding)."""
    return PatchTransformer(dim=768, heads=12, layers=12, ffn=3072, patch=16, classes=classes)


MODELS = {
    "patch_transformer": (PatchTransformer, (3, 32, 32)),
    "lstm_classifier": (LSTMClassifier, (20, 40)),
    "functional_net": (FunctionalNet, (3, 8, 8)),
    "resnet50": (resnet50, (3, 224, 224)),
    "vit_base": (vit_base, (3, 224, 224)),
}

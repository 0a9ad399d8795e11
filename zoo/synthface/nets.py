"""Small CNN building blocks shared by the synthetic world's identity network and attribute judge.

Both networks are a `ConvTrunk` (a stride-2 stem and residual stages of 3x3 convolutions, BatchNorm and PReLU)
over a 64x64 RGB image in [-1, 1], ending on a small spatial map (4x4 for the default four downsamplings) that
the two networks read out differently: the identity network flattens it into an embedding (ArcFace-style
"BN - flatten - FC - BN" output layer), the judge pools a shared feature for its per-attribute heads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["conv_bn_act", "ResBlock", "ConvTrunk", "count_parameters", "warmup_cosine"]


def conv_bn_act(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (no bias) - BatchNorm - PReLU (one slope per channel)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout))


class ResBlock(nn.Module):
    """conv-BN-PReLU, conv-BN, plus a shortcut (1x1 strided conv + BN when the shape changes), then PReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv_bn_act(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
        self.act = nn.PReLU(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class ConvTrunk(nn.Module):
    """Stem `conv_bn_act(3, widths[0], stride 2)` then one stage per later width: a stride-2 `ResBlock` followed by
    `depth - 1` stride-1 blocks. 64x64 input with widths (c0, c1, c2, c3) -> [N, c3, 4, 4]."""

    def __init__(self, widths: Sequence[int] = (24, 48, 96, 128), depth: int = 1):
        super().__init__()
        widths = [int(w) for w in widths]
        self.stem = conv_bn_act(3, widths[0], stride=2)
        stages = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            blocks = [ResBlock(cin, cout, stride=2)] + [ResBlock(cout, cout) for _ in range(int(depth) - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_channels = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def warmup_cosine(step: int, steps: int, warmup: int, lr: float, final: float = 0.01) -> float:
    """Learning rate at `step`: linear warmup over `warmup` steps, then cosine decay to `final * lr`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t)))


def training_domains(n: int, g: torch.Generator, photo_prob: float) -> torch.Tensor:
    """[n] domain indices: photo (0) with probability photo_prob, else one of the other domains uniformly."""
    from zoo.synthface.domains import DOMAIN_NAMES

    other = 1 + torch.randint(len(DOMAIN_NAMES) - 1, (n,), generator=g)
    return torch.where(torch.rand(n, generator=g) < photo_prob, torch.zeros_like(other), other)


def adamw_with_decay_groups(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and kernels only (not on biases and norm parameters)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)

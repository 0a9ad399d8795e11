"""The synthetic world's inversion encoder (e4e-style): a 64x64 image in [-1, 1] -> W+ of the synthetic generator.

Architecture: a small residual CNN pyramid (64 -> 32 -> 16 -> 8 -> 4 px) and one head per pyramid level, as e4e
maps coarse / medium / fine W+ indices from coarse / medium / fine features:

* the 4x4 level predicts the base code w (one style_dim vector) and the deltas of W+ indices 1..3,
* the 8x8 level the deltas of the middle indices, the 16x16 level those of the finest indices,

and W+[:, i] = latent_avg + w + delta_i with delta_0 = 0 (e4e: the first index is the base itself; the deltas are
regularised towards 0 during training so the code stays close to W, which is what editing methods expect). The
output layers start at zero, so an untrained encoder returns latent_avg everywhere.

`load_encoder(device)` returns the trained encoder (`weights/encoder.safetensors`, see `train_encoder.py`);
`encoder(images)` -> W+ `[N, n_latent, style_dim]`; `encoder.parts(images)` -> (base [N, D], deltas [N, L, D]).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.synthface import training

__all__ = ["Encoder", "level_of_index", "load_encoder", "NAME"]

NAME = "encoder"
INPUT_SIZE = 64


def level_of_index(n_latent: int) -> list[int]:
    """Pyramid level (0: 4x4, 1: 8x8, 2: 16x16) feeding each W+ index: the first 4 indices (4-8 px layers) read the
    coarsest features, the last third the finest (StyleCLIP / e4e's coarse-medium-fine split, scaled to n_latent)."""
    coarse = min(4, n_latent)
    rest = n_latent - coarse
    medium = (rest + 1) // 2
    return [0] * coarse + [1] * medium + [2] * (rest - medium)


class ResBlock(nn.Module):
    """conv3x3 (stride s) - LeakyReLU - conv3x3 - LeakyReLU, plus a 1x1 (strided) skip."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1, stride) if (stride != 1 or cin != cout) else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = self.conv2(h)
        return F.leaky_relu(h + self.skip(x), 0.2)


class LevelHead(nn.Module):
    """Features of one pyramid level -> `k` style_dim vectors (pooled to 4x4, flattened, one hidden layer)."""

    def __init__(self, channels: int, k: int, style_dim: int, hidden: int):
        super().__init__()
        self.k, self.style_dim = k, style_dim
        self.fc = nn.Linear(channels * 16, hidden)
        self.out = nn.Linear(hidden, k * style_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != 4:
            x = F.adaptive_avg_pool2d(x, 4)
        h = F.leaky_relu(self.fc(x.flatten(1)), 0.2)
        return self.out(h).view(-1, self.k, self.style_dim)


class Encoder(nn.Module):
    """Image [N, 3, 64, 64] in [-1, 1] -> W+ [N, n_latent, style_dim] = latent_avg + w + delta (delta_0 = 0)."""

    def __init__(self, n_latent: int = 10, style_dim: int = 128, widths: Sequence[int] = (32, 48, 64, 96, 128),
                 hidden: int = 256):
        super().__init__()
        if len(widths) != 5:
            raise ValueError("widths: 5 stage widths (64, 32, 16, 8, 4 px)")
        self.n_latent, self.style_dim = n_latent, style_dim
        self.widths, self.hidden = tuple(widths), hidden
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1), nn.LeakyReLU(0.2))
        self.stages = nn.ModuleList([ResBlock(widths[i], widths[i + 1], 2) for i in range(4)])  # 32, 16, 8, 4 px
        self.levels = level_of_index(n_latent)
        counts = [self.levels.count(j) for j in range(3)]  # level 0's first vector is the base w (delta_0 = 0)
        level_channels = [widths[4], widths[3], widths[2]]  # 4x4, 8x8, 16x16 features
        self.heads = nn.ModuleList([LevelHead(level_channels[j], counts[j], style_dim, hidden) for j in range(3)])
        self.register_buffer("latent_avg", torch.zeros(style_dim))

    def set_latent_avg(self, latent_avg: Tensor) -> None:
        self.latent_avg.copy_(latent_avg.detach().reshape(-1).to(self.latent_avg))

    @torch.no_grad()
    def scale_w(self, factor: float) -> Encoder:
        """In place: every code this encoder returns becomes ``factor`` x what it was (the heads' output layers and
        ``latent_avg``), for a generator whose W was rescaled by ``zoo.stylegan2.w_scale.scale_w``."""
        if not factor > 0:
            raise ValueError(f"factor must be a positive number, got {factor!r}")
        for head in self.heads:
            head.out.weight.mul_(factor)
            head.out.bias.mul_(factor)
        self.latent_avg.mul_(factor)
        return self

    def parts(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(base w offset [N, D], deltas [N, n_latent, D] with deltas[:, 0] = 0)."""
        if images.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                                   antialias=True)
        x = self.stem(images)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        f16, f8, f4 = feats[1], feats[2], feats[3]
        outs = [self.heads[0](f4), self.heads[1](f8), self.heads[2](f16)]
        base = outs[0][:, 0]
        per_level = [outs[0][:, 1:], outs[1], outs[2]]
        deltas = torch.cat(per_level, 1)  # indices 1.. n_latent-1 in order (levels are contiguous)
        deltas = torch.cat([torch.zeros_like(deltas[:, :1]), deltas], 1)
        return base, deltas

    def forward(self, images: Tensor) -> Tensor:
        base, deltas = self.parts(images)
        return self.latent_avg + base.unsqueeze(1) + deltas

    def config(self) -> dict:
        return {"n_latent": self.n_latent, "style_dim": self.style_dim, "widths": list(self.widths),
                "hidden": self.hidden}


def load_encoder(device: str = "cpu", weights_dir: Path = training.WEIGHTS_DIR) -> Encoder:
    """The trained inversion encoder for the synthetic generator (eval mode, frozen)."""
    state, config = training.load_weights(NAME, Path(weights_dir))
    arch = config["architecture"]
    enc = Encoder(arch["n_latent"], arch["style_dim"], arch["widths"], arch["hidden"])
    enc.load_state_dict(state)
    return enc.eval().requires_grad_(False).to(device)

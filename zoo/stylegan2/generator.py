"""The StyleGAN2 generator with rosinality's `stylegan2-pytorch` module tree and state-dict keys.

State-dict keys (``g_ema`` of a rosinality checkpoint)::

    style.1 .. style.{n_mlp}            EqualLinear weight [D, D] / bias [D]    (style.0 is PixelNorm, no keys)
    input.input                         [1, C4, 4, 4]
    conv1.*                             StyledConv at 4x4
    to_rgb1.*                           ToRGB at 4x4 (no upsample buffer)
    convs.{2k}.*, convs.{2k+1}.*        StyledConvs at 8*2^k (the even one upsamples: conv.blur.kernel [4, 4])
    to_rgbs.{k}.*                       ToRGB at 8*2^k (upsample.kernel [4, 4])
    noises.noise_{i}                    fixed noise buffers [1, 1, r, r], r = 2 ** ((i + 5) // 2)

W+ index ↔ module table (exactly how rosinality's ``forward`` indexes ``latent[:, i]``; ``L = log2(size)``,
``n_latent = 2L - 2``)::

    W+ index        drives                          resolution
    0               conv1                           4
    1               to_rgb1, convs.0                4 (to_rgb1), 8
    2k + 2          convs.{2k+1}                    8 * 2^k
    2k + 3          to_rgbs.{k}, convs.{2k+2}       8 * 2^k (to_rgbs.k), 16 * 2^k
    n_latent - 1    to_rgbs.{L-3}                   size

    e.g. size 1024 (18 indices): 0 conv1 | 1 to_rgb1 convs.0 | 2 convs.1 | 3 to_rgbs.0 convs.2 | 4 convs.3 |
    5 to_rgbs.1 convs.4 | ... | 15 to_rgbs.6 convs.14 | 16 convs.15 | 17 to_rgbs.7

StyleCLIP's coarse / medium / fine split refers to W+ indices 0-3 / 4-7 / 8+ (``latent_split``).

Style space S (``Generator.styles`` / ``Generator.synthesis``): one vector per modulated layer, each conv layer's
and each ToRGB's kept separately, in execution order (``Generator.style_layers`` / ``style_names``)::

    conv1, to_rgb1, convs.0, convs.1, to_rgbs.0, convs.2, convs.3, to_rgbs.1, ...

(``3 * (L - 2) + 2`` vectors: 26 at 1024). Vector ``j`` has the *input* width of its layer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from zoo.stylegan2.layers import (ConstantInput, EqualLinear, PixelNorm, StyledConv, ToRGB,
                                  set_modconv_impl)
from zoo.stylegan2.ops import DEFAULT_BLUR

MEAN_LATENT_SEED = 0x5747  # fixed seed of the mean_latent(4096) fallback for a checkpoint without latent_avg


def rosinality_channels(channel_multiplier: int = 2) -> dict[int, int]:
    """rosinality's channel table (feature maps per resolution)."""
    cm = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm,
            1024: 16 * cm}


def latent_split(n_latent: int) -> dict[str, list[int]]:
    """StyleCLIP's coarse (0-3) / medium (4-7) / fine (8+) groups of W+ indices."""
    return {"coarse": list(range(0, min(4, n_latent))), "medium": list(range(4, min(8, n_latent))),
            "fine": list(range(8, n_latent))}


@dataclass(frozen=True)
class StyleLayer:
    """One modulated layer: a coordinate block of the style space S."""

    index: int  # position in the S list
    name: str  # module path in the generator / key prefix in the state dict, e.g. "convs.3", "to_rgbs.1"
    kind: str  # "conv" or "torgb"
    w_index: int  # the W+ index whose vector it modulates with
    resolution: int  # output resolution of the layer
    channels: int  # length of its style vector (the layer's input channels)
    upsample: bool  # True for the first conv of every resolution above 4


def _channel_table(size: int, channel_multiplier: int | None, channels: int | Mapping[int, int] | None
                   ) -> dict[int, int]:
    resolutions = [2 ** i for i in range(2, int(math.log2(size)) + 1)]
    if channels is None:
        table = rosinality_channels(2 if channel_multiplier is None else channel_multiplier)
    elif isinstance(channels, int):
        table = {res: channels for res in resolutions}
    else:
        table = {int(k): int(v) for k, v in channels.items()}
    missing = [res for res in resolutions if res not in table]
    if missing:
        raise ValueError(f"no channel count for resolutions {missing}; pass channels={{res: n, ...}}")
    return {res: table[res] for res in resolutions}


class Generator(nn.Module):
    """StyleGAN2 generator (mapping + synthesis) loading rosinality ``g_ema`` state dicts strictly.

    ``Generator(size, style_dim=512, n_mlp=8, channel_multiplier=2, channels=None)``: ``channels`` overrides the
    rosinality channel table with one width for every resolution (int) or a ``{resolution: width}`` dict, giving
    reduced-width generators with the full key set.

    Calling conventions (images are ``[N, 3, size, size]``, roughly in [-1, 1], not clamped):

    * ``G(w)`` / ``G(w_plus)``: W ``[N, D]`` (repeated to every index) or W+ ``[N, n_latent, D]``;
    * ``G(z, input_space="z", truncation=0.7)``: mapped, then truncated towards ``latent_avg``;
    * ``G.synthesis(G.styles(w_plus))``: the same image through the style space S.

    Noise: by default the fixed ``noises.noise_i`` buffers (StyleCLIP's ``randomize_noise=False``);
    ``randomize_noise=True`` draws fresh noise per call; ``noise=[...]`` passes ``num_layers`` tensors.
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int | None = 2,
                 channels: int | Mapping[int, int] | None = None, blur_kernel: Sequence[float] = DEFAULT_BLUR,
                 lr_mlp: float = 0.01):
        super().__init__()
        log_size = int(round(math.log2(size))) if size > 0 else 0
        if size < 4 or 2 ** log_size != size:
            raise ValueError(f"size must be a power of two >= 4, got {size}")
        self.size, self.log_size, self.style_dim, self.n_mlp = size, log_size, style_dim, n_mlp
        self.channel_multiplier = channel_multiplier
        self.channels = _channel_table(size, channel_multiplier, channels)
        self.blur_kernel = tuple(blur_kernel)
        self.n_latent = 2 * log_size - 2
        self.num_layers = 2 * (log_size - 2) + 1  # noise inputs: conv1 + two per resolution above 4

        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True)
                                                  for _ in range(n_mlp)])
        ch = self.channels
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False, blur_kernel=blur_kernel)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        in_channel = ch[4]
        for i in range(3, log_size + 1):
            out_channel = ch[2 ** i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim, blur_kernel=blur_kernel))
            in_channel = out_channel
        # the checkpoint's average W (rosinality "latent_avg"); not part of the g_ema state dict
        self.register_buffer("latent_avg", None, persistent=False)
        self._mean_latent_cache: torch.Tensor | None = None
        self.load_notes: list[str] = []  # what the loader supplied that the checkpoint lacked (`describe`)
        self.style_layers: list[StyleLayer] = self._build_style_layers()

    # ----------------------------------------------------------------------------------------------- structure
    def _build_style_layers(self) -> list[StyleLayer]:
        ch = self.channels
        layers = [StyleLayer(0, "conv1", "conv", 0, 4, ch[4], False),
                  StyleLayer(1, "to_rgb1", "torgb", 1, 4, ch[4], False)]
        for k in range(self.log_size - 2):
            res = 2 ** (k + 3)
            prev = ch[res // 2]
            layers.append(StyleLayer(len(layers), f"convs.{2 * k}", "conv", 2 * k + 1, res, prev, True))
            layers.append(StyleLayer(len(layers), f"convs.{2 * k + 1}", "conv", 2 * k + 2, res, ch[res], False))
            layers.append(StyleLayer(len(layers), f"to_rgbs.{k}", "torgb", 2 * k + 3, res, ch[res], False))
        return layers

    @property
    def style_names(self) -> list[str]:
        """Names of the S-space vectors, in the order of ``styles()``."""
        return [layer.name for layer in self.style_layers]

    def style_module(self, name: str) -> nn.Module:
        """The StyledConv / ToRGB called ``name`` (``"conv1"``, ``"to_rgb1"``, ``"convs.3"``, ``"to_rgbs.0"``)."""
        return self.get_submodule(name)

    def layer_groups(self) -> list[list[tuple[str, nn.Module]]]:
        """For every W+ index, the ``(name, module)`` pairs it drives (see the module docstring's table)."""
        groups: list[list[tuple[str, nn.Module]]] = [[] for _ in range(self.n_latent)]
        for layer in self.style_layers:
            groups[layer.w_index].append((layer.name, self.style_module(layer.name)))
        return groups

    def resolution_groups(self) -> dict[int, list[tuple[str, nn.Module]]]:
        """For every resolution 4..size, the ``(name, module)`` pairs producing it, in execution order."""
        groups: dict[int, list[tuple[str, nn.Module]]] = {}
        for layer in self.style_layers:
            groups.setdefault(layer.resolution, []).append((layer.name, self.style_module(layer.name)))
        return groups

    def set_modconv_impl(self, impl: str) -> Generator:
        """``"batched"`` (default, fastest on CPU) or ``"grouped"`` (rosinality's grouped convolution)."""
        set_modconv_impl(self, impl)
        return self

    @property
    def device(self) -> torch.device:
        return self.input.input.device

    # ------------------------------------------------------------------------------------------------- latents
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z ``[N, D]`` → w ``[N, D]`` (PixelNorm + MLP)."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean of ``mapping(z)`` over ``n`` standard-normal z; ``[D]``."""
        z = torch.randn(n, self.style_dim, generator=generator, device="cpu").to(self.device)
        return self.mapping(z).mean(0)

    def get_latent_avg(self) -> torch.Tensor:
        """The checkpoint's ``latent_avg``, or (when it has none) ``mean_latent(4096)`` with a fixed seed."""
        if self.latent_avg is not None:
            return self.latent_avg
        cache = self._mean_latent_cache
        if cache is None or cache.device != self.device:
            cache = self.mean_latent(4096, torch.Generator().manual_seed(MEAN_LATENT_SEED))
            self._mean_latent_cache = cache
        return cache

    def set_latent_avg(self, latent_avg: torch.Tensor | None) -> None:
        """Set (or clear) the average W used by ``truncate``; any ``[D]`` / ``[1, D]`` / ``[1, 1, D]`` tensor."""
        if latent_avg is not None:
            latent_avg = latent_avg.detach().reshape(-1).to(self.device, torch.float32)
            if latent_avg.numel() != self.style_dim:
                raise ValueError(f"latent_avg has {latent_avg.numel()} values, expected style_dim={self.style_dim}")
        self.latent_avg = latent_avg
        self._mean_latent_cache = None

    def truncate(self, w: torch.Tensor, truncation: float, latent_avg: torch.Tensor | None = None) -> torch.Tensor:
        """``avg + truncation * (w - avg)`` for W ``[N, D]`` or W+ ``[N, L, D]``; truncation 1 returns ``w``."""
        if truncation == 1:
            return w
        avg = self.get_latent_avg() if latent_avg is None else latent_avg.reshape(-1).to(w)
        return avg + truncation * (w - avg)

    def to_w_plus(self, latent: torch.Tensor, input_space: str = "w", truncation: float = 1.0,
                  truncation_latent: torch.Tensor | None = None) -> torch.Tensor:
        """Any accepted input → W+ ``[N, n_latent, D]`` (z is mapped first; truncation applies to every input)."""
        d, n = self.style_dim, self.n_latent
        if input_space not in ("z", "w", "w+"):
            raise ValueError(f"input_space must be 'z', 'w' or 'w+', got {input_space!r}")
        shape = tuple(latent.shape)
        if latent.ndim == 2 and shape[1] == d and input_space in ("z", "w"):
            w = self.mapping(latent) if input_space == "z" else latent
            return self.truncate(w, truncation, truncation_latent).unsqueeze(1).expand(-1, n, -1)
        if latent.ndim == 3 and shape[1:] == (n, d) and input_space in ("w", "w+"):
            return self.truncate(latent, truncation, truncation_latent)
        accepted = f"z [N, {d}]" if input_space == "z" else f"W [N, {d}] or W+ [N, {n}, {d}]"
        raise ValueError(f"latent of shape {list(shape)} does not fit this generator: expected {accepted}")

    # ----------------------------------------------------------------------------------------------- synthesis
    def styles(self, w_plus: torch.Tensor) -> list[torch.Tensor]:
        """W+ ``[N, n_latent, D]`` (or W ``[N, D]``) → the S-space vectors, ordered as ``style_layers``."""
        if w_plus.ndim == 2:
            w_plus = self.to_w_plus(w_plus)
        return [self.style_module(layer.name).style(w_plus[:, layer.w_index]) for layer in self.style_layers]

    def named_styles(self, w_plus: torch.Tensor) -> dict[str, torch.Tensor]:
        """``styles`` as an ordered ``{name: vector}`` dict (also accepted by ``synthesis``)."""
        return dict(zip(self.style_names, self.styles(w_plus)))

    def fixed_noise(self) -> list[torch.Tensor]:
        """The checkpoint's noise buffers ``noises.noise_0 ..``, ``[1, 1, r, r]`` each."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def make_noise(self, batch: int = 1, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh N(0, 1) noise maps ``[batch, 1, r, r]`` for every noise input (reproducible with ``generator``)."""
        return [torch.randn(batch, *buf.shape[1:], generator=generator).to(self.device)
                for buf in self.fixed_noise()]

    def synthesis(self, styles: Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
                  noise: Sequence[torch.Tensor | None] | None = None, randomize_noise: bool = False) -> torch.Tensor:
        """S-space vectors (list in ``style_names`` order, or ``{name: vector}``) → images ``[N, 3, size, size]``.

        ``noise``: ``None`` uses the fixed buffers (or fresh noise when ``randomize_noise``); otherwise a list of
        ``num_layers`` maps, where a ``None`` entry means fresh noise for that layer."""
        if isinstance(styles, Mapping):
            missing = [name for name in self.style_names if name not in styles]
            if missing:
                raise ValueError(f"styles lack the layers {missing[:5]}")
            styles = [styles[name] for name in self.style_names]
        if len(styles) != len(self.style_layers):
            raise ValueError(f"expected {len(self.style_layers)} style vectors, got {len(styles)}")
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.fixed_noise()
        elif len(noise) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} noise maps, got {len(noise)}")

        batch = styles[0].shape[0]
        x = self.conv1(self.input(batch), styles[0], noise[0])
        image = self.to_rgb1(x, styles[1])
        for k in range(self.log_size - 2):
            s = 2 + 3 * k
            x = self.convs[2 * k](x, styles[s], noise[2 * k + 1])
            x = self.convs[2 * k + 1](x, styles[s + 1], noise[2 * k + 2])
            image = self.to_rgbs[k](x, styles[s + 2], image)
        return image

    def forward(self, latent: torch.Tensor, *, input_space: str = "w", truncation: float = 1.0,
                truncation_latent: torch.Tensor | None = None, noise: Sequence[torch.Tensor | None] | None = None,
                randomize_noise: bool = False) -> torch.Tensor:
        """Images ``[N, 3, size, size]`` from z (``input_space="z"``), W ``[N, D]`` or W+ ``[N, n_latent, D]``."""
        w_plus = self.to_w_plus(latent, input_space, truncation, truncation_latent)
        return self.synthesis(self.styles(w_plus), noise=noise, randomize_noise=randomize_noise)

    def config(self) -> dict:
        """Architecture hyper-parameters (enough to rebuild the module)."""
        return {"size": self.size, "style_dim": self.style_dim, "n_mlp": self.n_mlp,
                "channel_multiplier": self.channel_multiplier, "channels": dict(self.channels),
                "blur_kernel": list(self.blur_kernel)}

    def extra_repr(self) -> str:
        return (f"size={self.size}, style_dim={self.style_dim}, n_mlp={self.n_mlp}, n_latent={self.n_latent}, "
                f"channels={self.channels}")

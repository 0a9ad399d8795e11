"""StyleGAN2 building blocks with rosinality's parameter names, shapes and runtime scaling.

Equalised learning rate: every weight is stored at unit scale and multiplied at run time by ``1/sqrt(fan_in)``
(times ``lr_mul`` for the mapping network, whose stored weights are therefore ``1/lr_mul`` = 100x larger, and whose
stored biases are multiplied by ``lr_mul``).

The style space S: a modulated convolution splits into ``style(w) -> s`` (its ``modulation`` EqualLinear, with bias
initialised to 1) and ``forward(x, s)``, so that edits can act on ``s`` directly.

Two equivalent ways to run a modulated convolution are implemented (``ModulatedConv2d.impl``):

* ``"batched"`` (default): scale the *input* by ``s``, run one ordinary convolution with the shared weight for the
  whole batch, multiply the output by the demodulation coefficients ``rsqrt(s^2 @ sum_k(W^2)^T + 1e-8)``.
  Mathematically identical to modulating the weight; it lets the CPU use one large dense convolution.
* ``"grouped"``: rosinality's layout, a per-sample modulated weight ``[N*out, in, k, k]`` and a grouped
  convolution with ``groups=N``.

Both agree with rosinality to float32 rounding (about 1e-6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from zoo.stylegan2.ops import (DEFAULT_BLUR, LRELU_GAIN, LRELU_SLOPE, Blur, Upsample, blur_pad_after_upsample,
                              fused_leaky_relu)

MODCONV_IMPLS = ("batched", "grouped")


class PixelNorm(nn.Module):
    """Normalise every vector to unit root-mean-square (no parameters; ``style.0`` in the checkpoint)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: keys ``weight`` ``[out, in]`` and ``bias`` ``[out]``.

    ``y = x @ (weight * lr_mul / sqrt(in))^T + bias * lr_mul``, followed by the fused leaky ReLU when
    ``activation`` is true (the mapping network)."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)

    def extra_repr(self) -> str:
        return (f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, lr_mul={self.lr_mul}, "
                f"activation={self.activation}")


class ModulatedConv2d(nn.Module):
    """Modulated (and optionally demodulated) convolution.

    Keys: ``weight`` ``[1, out, in, k, k]``, ``modulation.weight`` ``[in, style_dim]``, ``modulation.bias``
    ``[in]`` and, for the 2x upsampling variant, the ``blur.kernel`` buffer ``[4, 4]``.

    Upsampling variant: stride-2 transposed convolution (output ``2H + 1``) followed by the FIR blur with the
    ``factor**2``-scaled kernel and padding ``(1, 1)``, giving ``2H``.
    """

    impl: str = "batched"

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, blur_kernel: Sequence[float] = DEFAULT_BLUR):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        self.scale = 1.0 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)
        if upsample:
            self.blur = Blur(blur_kernel, blur_pad_after_upsample(len(blur_kernel), kernel_size), upsample_factor=2)

    def style(self, w: torch.Tensor) -> torch.Tensor:
        """The S-space vector ``[N, in_channel]`` of this layer for the W vectors ``w`` ``[N, style_dim]``."""
        return self.modulation(w)

    def demod_coefficients(self, s: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``[N, out]`` coefficients ``rsqrt(sum_{in,k,k} (weight * s)^2 + 1e-8)`` for the scaled weight."""
        return torch.rsqrt((s * s) @ weight.square().sum((2, 3)).t() + 1e-8)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if self.impl == "grouped":
            return self._forward_grouped(x, s)
        out, coef = self.forward_undemodulated(x, s)
        return out if coef is None else out * coef.view(coef.shape[0], -1, 1, 1)

    def forward_undemodulated(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Batched path without the final scaling: ``(conv(x * s, W), demodulation coefficients [N, out] or
        None)``, so that callers can fuse the demodulation with what follows."""
        weight = self.weight[0] * self.scale
        x = x * s.view(x.shape[0], -1, 1, 1)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        return out, (self.demod_coefficients(s, weight) if self.demodulate else None)

    def _forward_grouped(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        batch, in_channel, height, width = x.shape
        k, out_channel = self.kernel_size, self.out_channel
        weight = self.scale * self.weight * s.view(batch, 1, in_channel, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum((2, 3, 4)) + 1e-8).view(batch, out_channel, 1, 1, 1)
        x = x.reshape(1, batch * in_channel, height, width)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * in_channel, out_channel, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=batch)
            return self.blur(out.view(batch, out_channel, out.shape[2], out.shape[3]))
        out = F.conv2d(x, weight.reshape(batch * out_channel, in_channel, k, k), padding=self.padding, groups=batch)
        return out.view(batch, out_channel, out.shape[2], out.shape[3])

    def extra_repr(self) -> str:
        return (f"{self.in_channel}, {self.out_channel}, kernel_size={self.kernel_size}, "
                f"demodulate={self.demodulate}, upsample={self.upsample}")


class NoiseInjection(nn.Module):
    """``x + weight * noise`` with a learned scalar ``weight`` ``[1]``; ``noise=None`` draws fresh N(0, 1) noise
    ``[N, 1, H, W]``."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, x.shape[2], x.shape[3]).normal_()
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    """Per-channel ``bias`` ``[C]`` + leaky ReLU (slope 0.2) with gain sqrt(2)."""

    def __init__(self, channel: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class ConstantInput(nn.Module):
    """The learned ``input`` ``[1, C, 4, 4]`` the synthesis network starts from."""

    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv → noise injection → bias + leaky ReLU. Keys ``conv.*``, ``noise.weight``,
    ``activate.bias``."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, upsample: bool = False,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, demodulate=True,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def style(self, w: torch.Tensor) -> torch.Tensor:
        return self.conv.style(w)

    def forward(self, x: torch.Tensor, s: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if self.conv.impl == "grouped":  # rosinality's order of operations, one module after the other
            return self.activate(self.noise(self.conv(x, s), noise))
        # Fused epilogue. The leaky ReLU is positively homogeneous, so with g = sqrt(2):
        #   lrelu(conv * d + n_w * noise + b) * g  ==  lrelu(conv * (g d) + (g n_w * noise + g b))
        # which is one addcmul (the addend is [1, C, H, W] for fixed noise) and one in-place leaky ReLU.
        out, coef = self.conv.forward_undemodulated(x, s)
        batch, channels, height, width = out.shape
        if noise is None:
            noise = out.new_empty(batch, 1, height, width).normal_()
        gain = LRELU_GAIN
        addend = (self.noise.weight * gain) * noise + (self.activate.bias * gain).view(1, channels, 1, 1)
        out = torch.addcmul(addend, out, (coef * gain).view(batch, channels, 1, 1))
        return F.leaky_relu_(out, LRELU_SLOPE)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB without demodulation, plus ``bias`` ``[1, 3, 1, 1]``, plus the 2x FIR-upsampled
    skip image from the previous resolution (``upsample.kernel`` buffer; absent for ``to_rgb1``)."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def style(self, w: torch.Tensor) -> torch.Tensor:
        return self.conv.style(w)

    def forward(self, x: torch.Tensor, s: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.conv.impl == "grouped":
            out = self.conv(x, s)
        else:  # a 1x1 conv with a per-sample weight is a batched matrix product
            batch, channels, height, width = x.shape
            weight = self.conv.weight[0, :, :, 0, 0] * self.conv.scale  # [3, in]
            out = torch.bmm(weight.unsqueeze(0) * s.unsqueeze(1), x.reshape(batch, channels, height * width))
            out = out.view(batch, 3, height, width)
        out = out + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


def set_modconv_impl(module: nn.Module, impl: str) -> None:
    """Switch every ModulatedConv2d under ``module`` to ``"batched"`` or ``"grouped"``."""
    if impl not in MODCONV_IMPLS:
        raise ValueError(f"unknown modulated-conv implementation {impl!r}; choose from {MODCONV_IMPLS}")
    for sub in module.modules():
        if isinstance(sub, ModulatedConv2d):
            sub.impl = impl

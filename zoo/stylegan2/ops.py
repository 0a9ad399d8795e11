"""Low-level StyleGAN2 operations in plain PyTorch (no compiled extensions).

rosinality's `stylegan2-pytorch` routes every resampling through one general ``upfirdn2d`` (upsample by zero
insertion, pad, FIR filter, downsample). The generator only needs two special cases, and both map onto native,
well-optimised convolutions:

* **blur** (up=1, down=1, pad=(p0, p1)): a depthwise ``conv2d`` with the flipped FIR kernel, one group per channel.
* **2x upsample** (up=2, pad=((K-2+1)//2 + 1, (K-2)//2)): a depthwise ``conv_transpose2d`` with stride 2. Writing
  out both sums shows ``upfirdn2d(x, k, up=2, pad=(p0, p1))[j] = sum_i x[i] * k[j + (K-1-p0) - 2i]``, which is
  exactly a transposed convolution with padding ``K-1-p0`` (1 for the usual 4-tap kernel) and no kernel flip.

Kernels follow rosinality's convention: a 1-D tap list such as ``[1, 3, 3, 1]`` becomes the normalised outer
product, multiplied by ``factor**2`` when it follows a 2x upsampling so that the mean intensity is kept.

``fused_leaky_relu`` is the CPU formula of rosinality's fused bias + leaky-ReLU: ``leaky_relu(x + b, 0.2) * sqrt(2)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

DEFAULT_BLUR = (1, 3, 3, 1)
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def make_blur_kernel(taps: Sequence[float] = DEFAULT_BLUR, gain: float = 1.0) -> torch.Tensor:
    """The 2-D FIR kernel ``outer(taps, taps) / sum * gain`` (float32, ``[K, K]``)."""
    k = torch.as_tensor(list(taps), dtype=torch.float32)
    if k.ndim == 1:
        k = torch.outer(k, k)
    return k / k.sum() * gain


def blur_pad_after_upsample(n_taps: int, conv_kernel: int = 3, factor: int = 2) -> tuple[int, int]:
    """Padding of the blur that follows a stride-2 transposed convolution (rosinality's ModulatedConv2d rule):
    it turns the ``2H + k - 2`` output of the transposed conv into exactly ``2H`` pixels."""
    p = (n_taps - factor) - (conv_kernel - 1)
    return (p + 1) // 2 + factor - 1, p // 2 + 1


def upsample_pad(n_taps: int, factor: int = 2) -> tuple[int, int]:
    """Padding of the plain 2x FIR upsampling (rosinality's Upsample rule)."""
    p = n_taps - factor
    return (p + 1) // 2 + factor - 1, p // 2


def blur2d(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """FIR-filter every channel of ``x`` ``[N, C, H, W]`` with ``kernel`` ``[K, K]`` after padding each spatial side
    by ``pad = (before, after)`` (true convolution, as upfirdn2d with up=down=1)."""
    channels = x.shape[1]
    weight = torch.flip(kernel, (0, 1)).to(x.dtype)[None, None].expand(channels, 1, *kernel.shape)
    p0, p1 = pad
    if p0 == p1:
        return F.conv2d(x, weight, padding=p0, groups=channels)
    if min(p0, p1) < 0:
        raise ValueError(f"negative blur padding {pad} is not supported")
    return F.conv2d(F.pad(x, (p0, p1, p0, p1)), weight, groups=channels)


def upsample2d(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """2x FIR upsampling of ``x`` ``[N, C, H, W]`` (upfirdn2d with up=2 and ``pad``) as a depthwise transposed
    convolution. ``kernel`` already carries the ``factor**2`` gain."""
    channels = x.shape[1]
    taps = kernel.shape[0]
    padding = taps - 1 - pad[0]
    # wanted size 2H + p0 + p1 - K + 1; a transposed conv gives 2(H-1) - 2*padding + K (+ output_padding)
    extra = (pad[0] + pad[1] - taps + 1) - (-2 - 2 * padding + taps)
    if padding < 0 or not 0 <= extra < 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"unsupported upsampling geometry: kernel {tuple(kernel.shape)}, pad {pad}")
    weight = kernel.to(x.dtype)[None, None].expand(channels, 1, taps, taps)
    return F.conv_transpose2d(x, weight, stride=2, padding=padding, output_padding=extra, groups=channels)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = LRELU_SLOPE,
                     scale: float = LRELU_GAIN) -> torch.Tensor:
    """``leaky_relu(x + bias, slope) * scale`` with ``bias`` broadcast over dimension 1."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


class Blur(nn.Module):
    """Depthwise FIR blur with a ``kernel`` buffer (state-dict key ``...blur.kernel``, as in rosinality)."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.taps, self.gain = tuple(taps), upsample_factor ** 2 if upsample_factor > 1 else 1
        self.register_buffer("kernel", self.make_kernel())
        self.pad = tuple(pad)

    def make_kernel(self) -> torch.Tensor:
        """The kernel this blur is built with (rosinality: ``make_kernel(taps) * factor**2`` after upsampling)."""
        return make_blur_kernel(self.taps, self.gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blur2d(x, self.kernel, self.pad)

    def extra_repr(self) -> str:
        return f"taps={self.kernel.shape[0]}, pad={self.pad}"


class Upsample(nn.Module):
    """2x FIR upsampling with a ``kernel`` buffer (state-dict key ``...upsample.kernel``, as in rosinality)."""

    def __init__(self, taps: Sequence[float], factor: int = 2):
        super().__init__()
        if factor != 2:
            raise ValueError("only 2x upsampling is implemented")
        self.taps, self.gain = tuple(taps), factor ** 2
        self.register_buffer("kernel", self.make_kernel())
        self.pad = upsample_pad(len(taps), factor)

    def make_kernel(self) -> torch.Tensor:
        """The kernel this upsampling is built with (rosinality: ``make_kernel(taps) * factor**2``)."""
        return make_blur_kernel(self.taps, self.gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample2d(x, self.kernel, self.pad)

    def extra_repr(self) -> str:
        return f"taps={self.kernel.shape[0]}, pad={self.pad}"


def upfirdn2d_reference(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
                        pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Slow, literal upfirdn2d (zero-insert, pad, convolve, subsample); for tests of the fast paths only."""
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(n, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    p0, p1 = pad
    x = F.pad(x, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    taps = kernel.shape[0]
    weight = torch.flip(kernel, (0, 1))[None, None].expand(c, 1, taps, taps)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down]

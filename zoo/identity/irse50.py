"""IR-SE50 ArcFace, the identity network of the StyleCLIP / pSp / e4e identity loss.

`IRSE50` reproduces, key for key, the state dict of `Backbone(input_size=112, num_layers=50, mode='ir_se',
drop_ratio=0.6, affine=True)` of the TreB1eN InsightFace_Pytorch lineage, i.e. the public `model_ir_se50.pth`
that StyleCLIP, pSp and e4e load (their READMEs link it; it was converted from TreB1eN's IR-SE50):

    input_layer.{0: Conv2d 3->64 3x3, 1: BatchNorm2d, 2: PReLU}
    body.{0..23}: 3 + 4 + 14 + 3 bottlenecks with depths 64, 128, 256, 512 (the first of each stage strides 2),
        shortcut_layer: MaxPool2d(1, stride) when the depth is unchanged (no parameters), else
                        {0: Conv2d 1x1 stride, 1: BatchNorm2d}
        res_layer: {0: BatchNorm2d(in), 1: Conv2d 3x3, 2: PReLU, 3: Conv2d 3x3 stride, 4: BatchNorm2d,
                    5: SE {fc1: Conv2d 1x1 C->C/16, fc2: Conv2d 1x1 C/16->C, no biases}}
    output_layer.{0: BatchNorm2d(512), 1: Dropout, 2: Flatten, 3: Linear(512*7*7 -> 512), 4: BatchNorm1d(512)}

That is 397 entries (54 BatchNorms, each with num_batches_tracked), 343 without the num_batches_tracked buffers.
The public file may predate those buffers (PyTorch 0.4.1); missing ones are filled with 0, as PyTorch's own
BatchNorm loader does for old state dicts, so such files load strictly. The input is an RGB face crop in [-1, 1],
112 x 112, which is exactly what the StyleCLIP/pSp identity loss feeds (generator output, cropped and pooled by
`stylegan_face_crop`); the output is an L2-normalised 512-d embedding.

`IdentityLoss(embedder, crop)` is 1 - cos(embed(crop(x)), embed(crop(x_source))) with the source side detached,
averaged over the batch (StyleCLIP's `IDLoss`); any differentiable embedding network (an `nn.Module`) can be used.
`identity_crop(generator)` is the crop rule the loss and the identity metric share.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError
from zoo.checkpoints import load_strict, load_torch_file

IRSE50_SOURCE = ("model_ir_se50.pth, linked from the StyleCLIP, pSp and e4e READMEs (converted from TreB1eN "
                 "InsightFace_Pytorch's IR-SE50)")
IRSE50_FORMAT = "IR-SE50 ArcFace state dict (TreB1eN/pSp Backbone(112, 50, 'ir_se'))"

# (depth, units) per stage; the first unit of each stage has stride 2
_STAGES = {50: ((64, 3), (128, 4), (256, 14), (512, 3)),
           100: ((64, 3), (128, 13), (256, 30), (512, 3)),
           152: ((64, 3), (128, 8), (256, 36), (512, 3))}


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


class _BottleneckIRSE(nn.Module):
    """Pre-activation residual unit: BN-conv-PReLU-conv-BN-SE plus a (projected) shortcut."""

    def __init__(self, in_channels: int, depth: int, stride: int, se: bool = True):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        layers = [nn.BatchNorm2d(in_channels),
                  nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
                  nn.PReLU(depth),
                  nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
                  nn.BatchNorm2d(depth)]
        if se:
            layers.append(_SqueezeExcite(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRSE50(nn.Module):
    """IR-SE ArcFace backbone for 112 x 112 RGB faces in [-1, 1] -> L2-normalised 512-d embeddings."""

    input_size = 112

    def __init__(self, num_layers: int = 50, drop_ratio: float = 0.6, affine: bool = True, se: bool = True):
        super().__init__()
        if num_layers not in _STAGES:
            raise ValueError(f"num_layers must be one of {sorted(_STAGES)}, got {num_layers}")
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units, channels = [], 64
        for depth, count in _STAGES[num_layers]:
            for i in range(count):
                units.append(_BottleneckIRSE(channels, depth, 2 if i == 0 else 1, se=se))
                channels = depth
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(drop_ratio), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512, affine=affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"IR-SE50 takes {self.input_size}x{self.input_size} faces, got {tuple(x.shape)}")
        return F.normalize(self.output_layer(self.body(self.input_layer(x))), dim=-1)


def _fill_num_batches_tracked(module: nn.Module, state: dict) -> dict:
    """Add the `num_batches_tracked` buffers that state dicts saved before PyTorch 0.4.1 lack."""
    state = dict(state)
    for name, sub in module.named_modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.track_running_stats:
            key = f"{name}.num_batches_tracked" if name else "num_batches_tracked"
            if key not in state and (f"{name}.running_mean" in state):
                state[key] = torch.tensor(0, dtype=torch.long)
    return state


def load_irse50(path, device: str | torch.device = "cpu") -> IRSE50:
    """Load `model_ir_se50.pth` strictly into a frozen, eval-mode `IRSE50` on `device`."""
    state = load_torch_file(path, "IR-SE50 weights", IRSE50_SOURCE)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = dict(state["state_dict"])
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    net = IRSE50()
    state = _fill_num_batches_tracked(net, state)
    load_strict(net, state, "IR-SE50 weights", IRSE50_FORMAT, IRSE50_SOURCE, path)
    return net.to(device).eval().requires_grad_(False)


def stylegan_face_crop(images: torch.Tensor) -> torch.Tensor:
    """StyleCLIP's identity crop of generator output: adaptive-average-pool to 256 x 256, keep rows 35:223 and
    columns 32:220 (the inner face), adaptive-average-pool to 112 x 112. Assumes FFHQ-aligned faces (StyleGAN
    FFHQ at 1024 or 256, or any square FFHQ-aligned size); other layouts need their own crop."""
    if images.ndim != 4:
        raise ValueError(f"expected [N, C, H, W] images, got shape {tuple(images.shape)}")
    if images.shape[-2:] != (256, 256):
        images = F.adaptive_avg_pool2d(images, (256, 256))
    return F.adaptive_avg_pool2d(images[:, :, 35:223, 32:220], (112, 112))


ARCFACE_LAYOUT = "arcface"  # `face_layout` of a generator that draws faces where the ArcFace template puts them
IDENTITY_CROPS = {"none": None, "stylegan": stylegan_face_crop}


def identity_crop_name(generator) -> str:
    """The identity crop for a generator's output, the one rule the identity loss and the identity metric share:
    "none" for a generator marked with ``face_layout == "arcface"`` (the synthetic world's, whose loader marks it:
    its faces already sit on the ArcFace template), else "stylegan" (FFHQ-aligned StyleGAN2 at any size:
    `stylegan_face_crop` pools to 256 first, as StyleCLIP's IDLoss does). A `Weighted` entry is read through."""
    generator = getattr(generator, "network", generator)
    return "none" if getattr(generator, "face_layout", None) == ARCFACE_LAYOUT else "stylegan"


def identity_crop(generator) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The crop function `identity_crop_name` names (None: whole images)."""
    return IDENTITY_CROPS[identity_crop_name(generator)]


class IdentityLoss(nn.Module):
    """1 - cos(embed(crop(x)), embed(crop(x_source))), the source side detached.

    `embedder` maps cropped images to embeddings (IR-SE50 by default in the method configs; the synthetic world
    supplies its own small network); it is put in eval mode and frozen. `crop` prepares images for it
    (default `stylegan_face_crop`; None feeds images unchanged)."""

    def __init__(self, embedder: nn.Module,
                 crop: Callable[[torch.Tensor], torch.Tensor] | None = stylegan_face_crop):
        super().__init__()
        if not isinstance(embedder, nn.Module):
            raise BenchError(f"the identity loss needs a differentiable PyTorch network (an nn.Module: the "
                             f"arcface_irse50 backbone), got a {type(embedder).__name__}; ONNX recognizers "
                             "(insightface_onnx, sface) have no gradients and serve as identity judges only")
        self.embedder = embedder.eval().requires_grad_(False)
        self.crop = crop

    def train(self, mode: bool = True):
        super().train(mode)
        self.embedder.eval()
        return self

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        x = self.crop(images) if self.crop is not None else images
        return F.normalize(self.embedder(x).flatten(1), dim=-1)

    def per_sample(self, images: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """[N] losses, 1 - cosine similarity per pair."""
        if images.shape[0] != source.shape[0]:
            raise ValueError(f"batch sizes differ: {images.shape[0]} edited vs {source.shape[0]} source images")
        with torch.no_grad():
            target = self.embed(source)
        return 1 - (self.embed(images) * target).sum(dim=-1)

    def forward(self, images: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        return self.per_sample(images, source).mean()


__all__ = ["ARCFACE_LAYOUT", "IDENTITY_CROPS", "IRSE50", "IdentityLoss", "identity_crop", "identity_crop_name",
           "load_irse50", "stylegan_face_crop", "IRSE50_SOURCE", "IRSE50_FORMAT"]

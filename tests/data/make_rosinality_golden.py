"""Make ``tests/data/stylegan2_rosinality_golden.pt``: outputs of the *reference* rosinality generator.

How the golden file was made (not run in CI)::

    git clone https://github.com/rosinality/stylegan2-pytorch /path/to/stylegan2-pytorch
    STYLEGAN2_PYTORCH_DIR=/path/to/stylegan2-pytorch python tests/data/make_rosinality_golden.py

The reference ``model.py`` is imported from that checkout unchanged. Its ``op`` package compiles CUDA kernels at
import time, so a small CPU stand-in is put in ``sys.modules["op"]`` first: ``upfirdn2d`` written out literally
(zero insertion, padding, FIR convolution, subsampling), the CPU formula of ``fused_leaky_relu``, and plain
``F.conv2d`` / ``F.conv_transpose2d`` for ``conv2d_gradfix`` (which is what those ops do on CPU).

The reference Generator(64, style_dim=64, n_mlp=2, channel_multiplier=1) loads, strictly, the deterministic
random state dict ``zoo.stylegan2.random_rosinality_state_dict(...)`` for the config below; its sha256 is stored
so that the test fails loudly if torch's random number generator ever changes. Stored outputs (fixed noise,
``randomize_noise=False``): images for W+ latents, images for a z batch with truncation 0.7 around a stored
``latent_avg``, and the S-space vectors (every layer's modulation output) of the W+ latents.

``tests/test_stylegan2_reference.py`` imports this file to compare live when STYLEGAN2_PYTORCH_DIR is set.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "stylegan2_rosinality_golden.pt"
CONFIG = {"size": 64, "style_dim": 64, "n_mlp": 2, "channel_multiplier": 1, "seed": 1234}
LATENT_SEED = 99
N_IMAGES = 3
TRUNCATION = 0.7


# ------------------------------------------------------------------------------------------ CPU stand-in for op
def _upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """Literal upfirdn2d: insert up-1 zeros after every sample, pad (negative = crop), convolve, keep every down-th."""
    n, c, h, w = x.shape
    if up > 1:
        x = torch.stack([x] + [torch.zeros_like(x)] * (up - 1), dim=3).reshape(n, c, h * up, w)
        x = torch.stack([x] + [torch.zeros_like(x)] * (up - 1), dim=4).reshape(n, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [p0, p1, p0, p1])  # F.pad crops for negative pads
    kh, kw = kernel.shape
    flipped = torch.flip(kernel, [0, 1]).to(x)
    x = F.conv2d(x.reshape(n * c, 1, x.shape[2], x.shape[3]), flipped.view(1, 1, kh, kw))
    x = x.view(n, c, x.shape[2], x.shape[3])
    return x[:, :, ::down, ::down]


def _fused_leaky_relu(x, bias=None, negative_slope=0.2, scale=2 ** 0.5):
    if bias is not None:
        x = x + bias.view(1, bias.shape[0], *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


class _FusedLeakyReLU(nn.Module):
    def __init__(self, channel, bias=True, negative_slope=0.2, scale=2 ** 0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope, self.scale = negative_slope, scale

    def forward(self, x):
        return _fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


def install_cpu_op_shim() -> None:
    shim = types.ModuleType("op")
    shim.upfirdn2d = _upfirdn2d
    shim.fused_leaky_relu = _fused_leaky_relu
    shim.FusedLeakyReLU = _FusedLeakyReLU
    shim.conv2d_gradfix = types.SimpleNamespace(conv2d=F.conv2d, conv_transpose2d=F.conv_transpose2d,
                                                no_weight_gradients=None)
    sys.modules["op"] = shim


def import_reference_model(checkout: str | Path):
    """rosinality's ``model`` module from a checkout, with the CPU op stand-in."""
    checkout = Path(checkout).expanduser().resolve()
    if not (checkout / "model.py").is_file():
        raise FileNotFoundError(f"{checkout} is not a stylegan2-pytorch checkout (no model.py)")
    install_cpu_op_shim()
    sys.modules.pop("model", None)
    sys.path.insert(0, str(checkout))
    try:
        return importlib.import_module("model")
    finally:
        sys.path.remove(str(checkout))


# ------------------------------------------------------------------------------------------------------ golden
def reference_styles(ref, w_plus: torch.Tensor) -> list[torch.Tensor]:
    """Every modulation output, ordered conv1, to_rgb1, convs.0, convs.1, to_rgbs.0, ... with the W+ index
    rosinality's forward uses for that layer."""
    out = [ref.conv1.conv.modulation(w_plus[:, 0]), ref.to_rgb1.conv.modulation(w_plus[:, 1])]
    for k in range(len(ref.to_rgbs)):
        out.append(ref.convs[2 * k].conv.modulation(w_plus[:, 2 * k + 1]))
        out.append(ref.convs[2 * k + 1].conv.modulation(w_plus[:, 2 * k + 2]))
        out.append(ref.to_rgbs[k].conv.modulation(w_plus[:, 2 * k + 3]))
    return out


def reference_names(n_rgbs: int) -> list[str]:
    names = ["conv1", "to_rgb1"]
    for k in range(n_rgbs):
        names += [f"convs.{2 * k}", f"convs.{2 * k + 1}", f"to_rgbs.{k}"]
    return names


@torch.no_grad()
def make_golden(checkout: str | Path) -> dict:
    sys.path.insert(0, str(HERE.parent.parent))  # the repository root, for zoo.stylegan2
    from zoo.checkpoints import state_hash
    from zoo.stylegan2.checkpoint import random_rosinality_state_dict

    model = import_reference_model(checkout)
    cfg = CONFIG
    state = random_rosinality_state_dict(cfg["size"], cfg["style_dim"], cfg["n_mlp"], cfg["channel_multiplier"],
                                         seed=cfg["seed"])
    ref = model.Generator(cfg["size"], cfg["style_dim"], cfg["n_mlp"], channel_multiplier=cfg["channel_multiplier"])
    ref.load_state_dict(state, strict=True)
    ref.eval()

    rng = torch.Generator().manual_seed(LATENT_SEED)
    n_latent, dim = ref.n_latent, cfg["style_dim"]
    w_plus = ref.style(torch.randn(N_IMAGES * n_latent, dim, generator=rng)).view(N_IMAGES, n_latent, dim)
    latent_avg = ref.style(torch.randn(512, dim, generator=rng)).mean(0)
    z = torch.randn(N_IMAGES, dim, generator=rng)

    images_w_plus, _ = ref([w_plus], input_is_latent=True, randomize_noise=False)
    images_z, _ = ref([z], truncation=TRUNCATION, truncation_latent=latent_avg, randomize_noise=False)
    return {
        "config": dict(cfg),
        "state_sha256": state_hash(state),
        "torch_version": str(torch.__version__),
        "n_latent": n_latent,
        "latent_avg": latent_avg.clone(),
        "w_plus": w_plus.clone(),
        "images_w_plus": images_w_plus.clone(),
        "z": z.clone(),
        "truncation": TRUNCATION,
        "w_from_z": ref.get_latent(z).clone(),
        "images_z": images_z.clone(),
        "style_names": reference_names(len(ref.to_rgbs)),
        "styles": [s.clone() for s in reference_styles(ref, w_plus)],
    }


def main() -> int:
    checkout = os.environ.get("STYLEGAN2_PYTORCH_DIR")
    if not checkout:
        print("set STYLEGAN2_PYTORCH_DIR to a checkout of https://github.com/rosinality/stylegan2-pytorch",
              file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    golden = make_golden(checkout)
    torch.save(golden, GOLDEN)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size / 1024:.0f} KiB), state sha256 {golden['state_sha256']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Reading and writing rosinality `stylegan2-pytorch` generator checkpoints.

Accepted files:

* ``.pt`` / ``.pth`` / ``.ckpt``: ``{"g_ema": state_dict, "latent_avg": tensor, ...}`` as written by rosinality's
  ``convert_weight.py`` and ``train.py`` (other entries such as ``g``, ``d``, ``args``, optimiser states are
  ignored), or a bare ``g_ema`` state dict.
* ``.safetensors``: the ``g_ema`` state dict, plus an optional ``latent_avg`` tensor.

Every architecture hyper-parameter (size, style_dim, n_mlp, per-resolution channels, channel_multiplier) is read
from the state-dict shapes, then the keys are matched strictly, with two exceptions that real files need
(`fill_buffers`): the FIR ``*.blur.kernel`` / ``*.upsample.kernel`` buffers, which are fixed by the architecture, are
rebuilt exactly when absent, and absent ``noises.noise_*`` maps (older rosinality files, e.g. the FFHQ-256
``550000.pt``; rosinality's answer in stylegan2-pytorch issues #71 and #176 is ``strict=False``) are drawn from
``NOISE_SEED`` with a warning and recorded in the generator's ``load_notes`` (shown by `describe`). NVIDIA's
``.pkl`` networks are refused with the way to convert them (`zoo.checkpoints.refuse_plain_pickle`).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from bench.errors import CheckpointError
from zoo.checkpoints import first_keys, error_detail, load_strict, load_torch_file, require_file
from zoo.stylegan2.generator import Generator, rosinality_channels
from zoo.stylegan2.ops import make_blur_kernel

WHAT = "StyleGAN2 generator checkpoint"
FORMAT = ("rosinality stylegan2-pytorch generator checkpoint ({'g_ema': state_dict, 'latent_avg': tensor} .pt, or "
          "a .safetensors file holding the g_ema state dict and 'latent_avg')")
SOURCE = ("rosinality/stylegan2-pytorch README (converted from NVlabs stylegan2 'stylegan2-ffhq-config-f.pkl' "
          "with convert_weight.py)")

NOISE_SEED = 0x4E01  # fixed seed of the noise maps a checkpoint lacks (all drawn in index order, missing ones kept)
_KERNEL_SUFFIXES = (".blur.kernel", ".upsample.kernel")
_NOISE_KEY = re.compile(r"^noises\.noise_(\d+)$")
_STYLE_KEY = re.compile(r"^style\.(\d+)\.weight$")
_CONV_KEY = re.compile(r"^convs\.(\d+)\.")
_RGB_KEY = re.compile(r"^to_rgbs\.(\d+)\.")


def _fail(path, message: str) -> CheckpointError:
    where = f" {path}" if path is not None else ""
    return CheckpointError(f"{WHAT}{where} is not a valid {FORMAT}: {message} (public weights: {SOURCE})")


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """``(g_ema state dict, latent_avg or None)`` from a ``.pt`` or ``.safetensors`` file (CPU tensors)."""
    path = require_file(path, WHAT, SOURCE)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
            state = dict(load_file(str(path), device="cpu"))
        except Exception as exc:
            raise CheckpointError(f"cannot read {WHAT} {path}: {error_detail(exc)} "
                                  f"(public weights: {SOURCE})") from exc
        latent_avg = state.pop("latent_avg", None)
        return state, latent_avg
    obj = load_torch_file(path, WHAT, SOURCE)
    if "g_ema" in obj:
        state = obj["g_ema"]
        if not isinstance(state, Mapping):
            raise _fail(path, f"'g_ema' holds a {type(state).__name__}, expected a state dict")
        latent_avg = obj.get("latent_avg")
    elif "input.input" in obj or any(_STYLE_KEY.match(str(k)) for k in obj):
        state, latent_avg = {k: v for k, v in obj.items() if k != "latent_avg"}, obj.get("latent_avg")
    else:
        raise _fail(path, f"no 'g_ema' entry; top-level keys: {first_keys(obj)}")
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise _fail(path, f"'latent_avg' is a {type(latent_avg).__name__}, expected a tensor")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise _fail(path, f"non-tensor entries in the state dict: {first_keys(dict.fromkeys(bad))}")
    return dict(state), latent_avg


def infer_config(state: Mapping[str, torch.Tensor], path: str | Path | None = None) -> dict:
    """Architecture of a rosinality ``g_ema`` state dict from its key names and shapes.

    size from the number of ``convs.*`` (2 per resolution above 4) / ``to_rgbs.*``; style_dim from
    ``style.1.weight`` (or a modulation weight); n_mlp from the ``style.*`` keys; channels per resolution from
    the conv weights; channel_multiplier when the channels match rosinality's table (``None`` otherwise)."""

    def shape(key: str) -> tuple[int, ...] | None:
        value = state.get(key)
        return tuple(value.shape) if isinstance(value, torch.Tensor) else None

    styles = sorted(int(m.group(1)) for k in state if (m := _STYLE_KEY.match(k)))
    conv_ids = [int(m.group(1)) for k in state if (m := _CONV_KEY.match(k))]
    rgb_ids = [int(m.group(1)) for k in state if (m := _RGB_KEY.match(k))]
    if shape("input.input") is None and not conv_ids and not styles:
        raise _fail(path, "missing keys: input.input, style.1.weight, convs.0.conv.weight, ...; found keys: "
                          + first_keys(state))
    n_res = max([(max(conv_ids) + 2) // 2 if conv_ids else 0, max(rgb_ids) + 1 if rgb_ids else 0])
    size = 4 * 2 ** n_res

    style_dim = None
    for key in (["style.1.weight"] + [f"style.{i}.weight" for i in styles]
                + ["conv1.conv.modulation.weight", "to_rgb1.conv.modulation.weight"]):
        if (s := shape(key)) is not None and len(s) == 2:
            style_dim = s[1]
            break
    if style_dim is None:
        raise _fail(path, "cannot infer style_dim: missing keys: style.1.weight, conv1.conv.modulation.weight")

    def channels_at(candidates: list[tuple[str, int]]) -> int | None:
        for key, dim in candidates:
            s = shape(key)
            if s is not None and len(s) > dim:
                return s[dim]
        return None

    channels: dict[int, int] = {}
    c4 = channels_at([("input.input", 1), ("conv1.conv.weight", 1), ("conv1.activate.bias", 0),
                      ("to_rgb1.conv.weight", 2)])
    if c4 is None:
        raise _fail(path, "cannot infer the 4x4 channels: missing keys: input.input, conv1.conv.weight")
    channels[4] = c4
    for k in range(n_res):
        res = 8 * 2 ** k
        c = channels_at([(f"convs.{2 * k}.conv.weight", 1), (f"convs.{2 * k}.activate.bias", 0),
                         (f"convs.{2 * k + 1}.conv.weight", 2), (f"convs.{2 * k + 1}.conv.weight", 1),
                         (f"to_rgbs.{k}.conv.weight", 2)])
        if c is None:
            raise _fail(path, f"cannot infer the channels at {res}x{res}: missing keys: convs.{2 * k}.conv.weight, "
                              f"convs.{2 * k + 1}.conv.weight")
        channels[res] = c

    channel_multiplier = None  # only visible from 64x64 up; None for other (e.g. reduced) widths
    if 64 in channels and channels[64] % 256 == 0:
        cm = channels[64] // 256
        table = rosinality_channels(cm)
        if all(table.get(res) == c for res, c in channels.items()):
            channel_multiplier = cm
    return {"size": size, "style_dim": style_dim, "n_mlp": max(styles) if styles else 0,
            "channel_multiplier": channel_multiplier, "channels": channels}


def _empty_generator(config: Mapping, device: str | torch.device = "cpu") -> Generator:
    """A Generator with uninitialised parameters (built on the meta device, no random init)."""
    with torch.device("meta"):
        generator = Generator(config["size"], config["style_dim"], config["n_mlp"],
                              channel_multiplier=config.get("channel_multiplier"), channels=config.get("channels"))
    return generator.to_empty(device=device)


def _rebuilt_kernels(generator: Generator, keys: list[str]) -> dict[str, torch.Tensor]:
    """The FIR kernels named by `keys`, exactly as the generator's Blur / Upsample modules build them."""
    return {key: generator.get_submodule(key[: -len(".kernel")]).make_kernel() for key in keys}


def _drawn_noise(generator: Generator, keys: list[str]) -> dict[str, torch.Tensor]:
    """The noise maps named by `keys`: every map ``[1, 1, r, r]`` is drawn in index order from ``NOISE_SEED``, so
    a map does not depend on which others the file has."""
    rng = torch.Generator().manual_seed(NOISE_SEED)
    drawn = {f"noises.noise_{i}": torch.randn(tuple(buf.shape), generator=rng)
             for i, buf in enumerate(generator.fixed_noise())}
    return {key: drawn[key] for key in keys}


def fill_buffers(generator: Generator, state: Mapping[str, torch.Tensor],
                 path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """``state`` plus the buffers real rosinality files may lack: FIR kernels (rebuilt exactly) and noise maps
    (drawn from ``NOISE_SEED``, with a warning and a note in ``generator.load_notes``). Every other key is left to
    the strict check."""
    expected = generator.state_dict()
    absent = [k for k in expected if k not in state]
    kernels = [k for k in absent if k.endswith(_KERNEL_SUFFIXES)]
    noises = [k for k in absent if _NOISE_KEY.match(k)]
    if not (kernels or noises):
        return dict(state)
    filled = {**state, **_rebuilt_kernels(generator, kernels), **_drawn_noise(generator, noises)}
    if noises:
        where = f" {path}" if path is not None else ""
        note = (f"{len(noises)} of {generator.num_layers} noise maps absent from the checkpoint, drawn from seed "
                f"{NOISE_SEED:#x}")
        generator.load_notes.append(note)
        warnings.warn(f"{WHAT}{where}: {note} (older rosinality files have no noises.noise_* buffers; images with "
                      "the fixed noise then differ from those of a file that has them)", stacklevel=3)
    if kernels:
        generator.load_notes.append(f"{len(kernels)} FIR kernels absent from the checkpoint, rebuilt (fixed by the "
                                    "architecture)")
    return filled


def generator_from_state_dict(state: Mapping[str, torch.Tensor], latent_avg: torch.Tensor | None = None,
                              channels: int | Mapping[int, int] | None = None, device: str | torch.device = "cpu",
                              path: str | Path | None = None) -> Generator:
    """Build a Generator for ``state`` (architecture inferred, or ``channels`` forced) and load it strictly."""
    config = infer_config(state, path)
    if channels is not None:
        config = {**config, "channels": channels}
    try:
        generator = _empty_generator(config)
    except ValueError as exc:
        raise _fail(path, str(exc)) from exc
    load_strict(generator, fill_buffers(generator, state, path), WHAT, FORMAT, SOURCE, path)
    if latent_avg is not None:
        if latent_avg.numel() != generator.style_dim:
            raise _fail(path, f"latent_avg has shape {tuple(latent_avg.shape)}, expected ({generator.style_dim},)")
        generator.set_latent_avg(latent_avg)
    return generator.to(device).eval()


def load_generator(path: str | Path, device: str | torch.device = "cpu",
                   channels: int | Mapping[int, int] | None = None) -> Generator:
    """Load a rosinality ``.pt`` (``g_ema`` + ``latent_avg``) or ``.safetensors`` generator, strictly.

    ``channels`` (one width, or ``{resolution: width}``) replaces the inferred channel table, which then must
    match the file. The generator is returned in eval mode with its ``latent_avg`` (if the file has one)."""
    state, latent_avg = read_checkpoint(path)
    return generator_from_state_dict(state, latent_avg, channels=channels, device=device, path=path)


def save_generator(generator: Generator, path: str | Path, latent_avg: torch.Tensor | None = None) -> Path:
    """Write ``generator`` in rosinality format, ``{"g_ema": state_dict, "latent_avg": tensor}`` (``.pt``), or as
    a flat ``.safetensors`` (state dict + ``latent_avg``); reloading gives bit-identical tensors.

    ``latent_avg`` defaults to the generator's own (omitted when it has none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in generator.state_dict().items()}
    if latent_avg is None:
        latent_avg = generator.latent_avg
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        if latent_avg is not None:
            state["latent_avg"] = latent_avg.detach().to("cpu", copy=True).contiguous()
        save_file(state, str(path))
        return path
    obj: dict = {"g_ema": state}
    if latent_avg is not None:
        obj["latent_avg"] = latent_avg.detach().to("cpu", copy=True)
    torch.save(obj, path)
    return path


def rosinality_shapes(size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                      channels: int | Mapping[int, int] | None = None) -> dict[str, tuple[int, ...]]:
    """Key → shape of a rosinality ``g_ema`` state dict (no memory allocated)."""
    with torch.device("meta"):
        generator = Generator(size, style_dim, n_mlp, channel_multiplier=channel_multiplier, channels=channels)
    return {k: tuple(v.shape) for k, v in generator.state_dict().items()}


def random_rosinality_state_dict(size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                                 seed: int = 0, channels: int | Mapping[int, int] | None = None,
                                 rgb_gain: float = 0.2) -> dict[str, torch.Tensor]:
    """A complete, deterministic random ``g_ema`` state dict (rosinality key set and shapes) for tests.

    Keys are filled in sorted order from one ``torch.Generator`` seeded with ``seed``; each key draws one
    ``randn`` of its shape, then is scaled (stored-value convention, see layers.py): mapping weights ``x 100``
    (lr_mul 0.01), mapping biases ``x 10``, modulation biases ``1 + 0.1 x``, conv weights ``x 1`` (ToRGB's
    ``x rgb_gain`` so that the summed RGB skips stay mostly inside [-1, 1]), noise strengths / activation and
    RGB biases ``x 0.1``; FIR ``kernel`` buffers get rosinality's fixed [1, 3, 3, 1] kernel (no draw)."""
    shapes = rosinality_shapes(size, style_dim, n_mlp, channel_multiplier, channels)
    rng = torch.Generator().manual_seed(seed)
    kernel = make_blur_kernel(gain=4)
    state: dict[str, torch.Tensor] = {}
    for key in sorted(shapes):
        shape = shapes[key]
        if key.endswith(".kernel"):
            state[key] = kernel.clone()
            continue
        x = torch.randn(shape, generator=rng)
        if key.startswith("style."):
            x = x * (100.0 if key.endswith(".weight") else 10.0)
        elif key.endswith("modulation.bias"):
            x = 1.0 + 0.1 * x
        elif key.endswith(("noise.weight", "activate.bias")) or (key.startswith("to_rgb") and key.endswith(".bias")):
            x = 0.1 * x
        elif "to_rgb" in key and key.endswith("conv.weight"):
            x = rgb_gain * x
        state[key] = x
    return dict(sorted(state.items()))


def describe(generator: Generator) -> str:
    """One line: size, widths, parameter count and what the loader supplied (``load_notes``)."""
    n = sum(p.numel() for p in generator.parameters())
    notes = "".join(f"; {note}" for note in getattr(generator, "load_notes", []))
    return (f"StyleGAN2 {generator.size}x{generator.size}, style_dim {generator.style_dim}, n_mlp {generator.n_mlp}, "
            f"channels {sorted(set(generator.channels.values()), reverse=True)}, {n / 1e6:.1f}M parameters{notes}")


__all__ = ["FORMAT", "NOISE_SEED", "SOURCE", "WHAT", "describe", "fill_buffers", "generator_from_state_dict",
           "infer_config", "load_generator", "random_rosinality_state_dict", "read_checkpoint", "rosinality_shapes",
           "save_generator"]


def random_generator(size: int = 1024, device: str | torch.device = "cpu", style_dim: int = 512, n_mlp: int = 8,
                     channel_multiplier: int = 2, seed: int = 0) -> Generator:
    """A full-size generator with random weights in the rosinality layout: for speed and memory measurements only
    (a random network is never a quality result)."""
    state = random_rosinality_state_dict(size, style_dim, n_mlp, channel_multiplier, seed=seed)
    return generator_from_state_dict(state, torch.zeros(style_dim), device=device)

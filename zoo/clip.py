"""CLIP backbones through open_clip, with the preprocessing and text conventions of StyleCLIP and StyleGAN-NADA.

Loading (`load_clip(model, pretrained, device)`)
    * `model` is an open_clip architecture name (`open_clip.list_models()`, "ViT-B/32" is accepted for
      "ViT-B-32" as open_clip itself does), a name added with `register_model_config`, or an open_clip schema
      name: `local-dir:PATH` / `hf-hub:ORG/REPO`.
    * `pretrained` is
        - None: random weights (tests, synthetic worlds that load their own weights afterwards);
        - an open_clip tag ("openai", "laion2b_s34b_b79k", ... `open_clip.list_pretrained_tags_by_model(model)`),
          downloaded by open_clip from the Hugging Face hub into ~/.cache/huggingface/hub. With HF_HUB_OFFLINE=1
          a tag that is not cached fails at once with a `CheckpointError` telling how to supply the weights;
        - a local file (open_clip / OpenAI state dict, `.pt`, `.pth`, `.bin`, `.safetensors`), loaded by
          `open_clip.load_checkpoint` (its format conversions included) with an exact key check. OpenAI's
          TorchScript files (what `clip.load` caches in ~/.cache/clip) are refused with the way to convert them:
          loading one would run its code;
        - `local-dir:PATH`: open_clip's own folder format (open_clip_config.json with `model_cfg` and optional
          `preprocess_cfg`, plus a *.safetensors / *.bin / *.pth weights file; open_clip ignores *.pt there). In
          open_clip 3.x this is a *model-name* schema, so it is passed to `open_clip.create_model` as the model
          name and `model` is then only used in messages (`model` may also be the `local-dir:` string itself, with
          `pretrained` unset). `local-dir:` and `hf-hub:` models are created with `require_pretrained=True`:
          open_clip would otherwise only log a warning and return random weights when it finds none.
    * Tags whose weights were trained with QuickGELU (all "openai" tags) are created with `force_quick_gelu=True`
      when the architecture's config lacks it: open_clip 3.x only warns about that mismatch, which would otherwise
      silently give wrong embeddings for e.g. ("ViT-B-32", "openai"). Weights loaded from a *file* carry no such
      information: use the "-quickgelu" architecture ("ViT-B-32-quickgelu") or `quick_gelu=True` for OpenAI
      weights from a file; a file loaded into a GELU architecture that has QuickGELU-trained tags warns unless
      `quick_gelu` is given. The activation is part of the backbone's hash (`ClipBackbone.hash_settings`).

Custom architectures (`register_model_config(name, config)`) are written as JSON files and registered with
`open_clip.add_model_config`, so they are created by exactly the same `open_clip.create_model` path as real CLIP.

Image preprocessing (`ClipBackbone.preprocess`) takes generator output in [-1, 1], differentiably:
    * resize="bicubic": the model's own preprocessing: resize of the short side to the model's input size, then
      centre crop (torchvision `Resize(size)` + `CenterCrop(size)`), with the interpolation and resize mode of its
      open_clip preprocess config (bicubic unless it says bilinear; "squash" resizes without a crop, "longest" is
      taken for square images to a square input only; other values are refused at load time). `antialias=True`
      by default: CLIP's own preprocessing resizes a PIL image, which is antialiased (on a 1024 px face, 224 px
      input, it matches open_clip's PIL transform to ~0.004 per pixel; without antialiasing 0.57), so judges and
      the global directions' relevance use it.
      StyleGAN-NADA's losses pass `antialias=False`: its code applies the transform to generator tensors, which
      the torchvision versions it ran on resized without antialiasing (`methods.nada.NADA_ANTIALIAS`).
    * resize="area" (StyleCLIP): the exact area average, i.e. the linear map that StyleCLIP's
      `AvgPool2d(S // 32)(Upsample(scale_factor=7)(x))` computes for S x S -> 224 x 224; for other sizes it is
      the same fractional-overlap average. Square inputs only.
    * normalize=True: map [-1, 1] -> [0, 1], resize, subtract the model's mean and divide by its std.
      normalize=False feeds the resized values unchanged, i.e. the raw [-1, 1] generator output, as StyleCLIP's
      latent optimisation and mapper do (their CLIP loss never normalises).

Text (`encode_text`, `template_embedding`, `text_direction`) follows StyleCLIP's global directions: each text is put
into the 79 ImageNet templates of `zoo/data/imagenet_templates_79.txt`, each prompt is encoded and L2-normalised,
the prompts are averaged and the mean is normalised again. StyleGAN-NADA skips the re-normalisation before taking
differences: `renormalize=False` gives its convention.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError, CheckpointError, UnknownNameError
from zoo.checkpoints import error_detail, first_keys, is_torchscript_archive, require_file

TEMPLATES_FILE = Path(__file__).parent / "data" / "imagenet_templates_79.txt"

_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz", ".npy", ".ckpt")
_HOW_TO_GET = (
    "open_clip downloads public CLIP weights: run `python -c \"import open_clip; "
    "open_clip.create_model('{model}', pretrained='{tag}')\"` on a machine with internet (they are cached under "
    "~/.cache/huggingface/hub, which can be copied), or load them from a file with model '{file_model}'{note} and "
    "pretrained=/path/to/weights (open_clip_pytorch_model.bin / .safetensors), or pass "
    "pretrained='local-dir:/path/to/folder'"
)
_HUB_FOLDERS = ("open_clip model folders are the Hugging Face hub repositories of open_clip models "
                "(open_clip_config.json + open_clip_model.safetensors or open_clip_pytorch_model.bin): download one on "
                "a machine with internet and pass 'local-dir:/path/to/folder'")


def _public_weights(name: str, tag: str | None = None) -> str:
    """Where public weights for the open_clip architecture `name` come from, for error messages: how to fetch the
    tag `tag` (default 'openai' when the architecture has it, else its first tag) and which architecture name a
    weights *file* of that tag needs ("ViT-B-32-quickgelu" for OpenAI's weights: a file carries no QuickGELU flag)."""
    import open_clip

    if name.startswith(("local-dir:", "hf-hub:")) or name not in open_clip.list_models():
        return _HUB_FOLDERS
    tags = open_clip.list_pretrained_tags_by_model(name)
    if tag is None:
        tag = "openai" if "openai" in tags else (tags[0] if tags else None)
    if tag is None:
        return (f"open_clip publishes no weights for the architecture {name!r} "
                "(open_clip.list_pretrained_tags_by_model is empty): use the weights file it was trained into")
    trained_quick = bool((open_clip.get_pretrained_cfg(name, tag) or {}).get("quick_gelu", False))
    arch_quick = bool((open_clip.get_model_config(name) or {}).get("quick_gelu", False))
    file_model = f"{name}-quickgelu" if trained_quick and not arch_quick else name
    note = f" (the {tag!r} weights were trained with QuickGELU)" if file_model != name else ""
    return _HOW_TO_GET.format(model=name, tag=tag, file_model=file_model, note=note)


# --------------------------------------------------------------------------------------------------------- templates
@functools.lru_cache(maxsize=8)
def _read_templates(path: str) -> tuple[str, ...]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BenchError(f"cannot read prompt templates {path}: {exc}") from exc
    templates = tuple(line.strip() for line in lines if line.strip())
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise BenchError(f"prompt template file {path} must hold one template per line with exactly one '{{}}'"
                         + (f"; offending: {bad[:3]}" if bad else "; it is empty"))
    return templates


def load_templates(path: str | Path | None = None) -> list[str]:
    """The prompt templates, one per line with a `{}` placeholder; by default CLIP's 79 ImageNet templates (the
    ones StyleCLIP's global directions and StyleGAN-NADA use). The one place that reads template files."""
    return list(_read_templates(str(Path(path) if path is not None else TEMPLATES_FILE)))


# ------------------------------------------------------------------------------------------------------ area resize
@functools.lru_cache(maxsize=32)
def _area_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """[n_out, n_in] float64 weights: output cell i averages the input interval [i*n_in/n_out, (i+1)*n_in/n_out),
    each input pixel weighted by its overlap with that interval."""
    edges = torch.arange(n_out + 1, dtype=torch.float64) * (n_in / n_out)
    pix = torch.arange(n_in, dtype=torch.float64)
    lo = torch.maximum(edges[:-1, None], pix[None, :])
    hi = torch.minimum(edges[1:, None], pix[None, :] + 1)
    weights = (hi - lo).clamp_min(0)
    return weights / weights.sum(dim=1, keepdim=True)


def area_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Exact area-average resize of square [N, C, S, S] images to [N, C, size, size] (differentiable).

    Equals StyleCLIP's nearest `Upsample(scale_factor=k)` followed by `AvgPool2d(S*k // size)` whenever
    S*k is a multiple of `size` (k=7, size=224 in StyleCLIP), without building the k-times larger image."""
    if images.ndim != 4:
        raise ValueError(f"expected [N, C, H, W] images, got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if h != w:
        raise ValueError(f"area resize needs square images, got {h}x{w}")
    if h == size:
        return images
    mat = _area_matrix(int(h), int(size)).to(device=images.device, dtype=images.dtype)
    return torch.einsum("ih,nchw,jw->ncij", mat, images, mat)


# open_clip's inference interpolations (its image_transform reads 'random' as bicubic outside training) and modes
_INTERPOLATIONS = {"bicubic": "BICUBIC", "bilinear": "BILINEAR", "random": "BICUBIC"}
_RESIZE_MODES = ("shortest", "squash", "longest")


def _resize_crop(images: torch.Tensor, size: tuple[int, int], antialias: bool, interpolation: str = "bicubic",
                 resize_mode: str = "shortest") -> torch.Tensor:
    """open_clip's inference transform on tensors, as StyleGAN-NADA applies torchvision's: resize_mode "shortest":
    `Resize(size)` (short side) + `CenterCrop(size)`; "squash": `Resize((h, w))`; "longest" (long side, then pad)
    only where it equals the others (square images to a square input). `interpolation`: bicubic or bilinear."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    th, tw = size
    h, w = images.shape[-2:]
    if (h, w) == (th, tw):
        return images
    mode = getattr(InterpolationMode, _INTERPOLATIONS[interpolation])
    if resize_mode == "squash" or (h == w and th == tw):
        return TF.resize(images, [th, tw], interpolation=mode, antialias=antialias)
    if resize_mode == "longest":
        raise ValueError(f"resize_mode 'longest' (resize the long side, then pad) is implemented for square images "
                         f"to a square input only; got {h}x{w} images for a {th}x{tw} input")
    if th == tw:
        resize_to: list[int] = [th]  # torchvision: the short side becomes th, the long side int(th * long / short)
    else:
        scale = max(th / h, tw / w)
        resize_to = [max(th, round(h * scale)), max(tw, round(w * scale))]
    out = TF.resize(images, resize_to, interpolation=mode, antialias=antialias)
    return TF.center_crop(out, [th, tw])


def _preprocess_choice(cfg: dict, key: str, default: str, valid, model: str) -> str:
    """An open_clip preprocess-config entry this module implements, or a CheckpointError naming the valid ones."""
    value = cfg.get(key) or default
    if value not in valid:
        raise CheckpointError(f"CLIP {model or 'model'}: preprocess {key} {value!r} is not implemented here; "
                              f"valid: {', '.join(valid)}")
    return str(value)


def activation_of(model: nn.Module) -> str:
    """"quick_gelu" when an open_clip model's transformers use QuickGELU (OpenAI's weights need it), else "gelu"."""
    from open_clip.transformer import QuickGELU

    return "quick_gelu" if any(isinstance(m, QuickGELU) for m in model.modules()) else "gelu"


# ---------------------------------------------------------------------------------------------------- custom configs
_CONFIG_DIR: tempfile.TemporaryDirectory | None = None
_REGISTERED: dict[str, dict] = {}  # names registered here -> their model config
_PREPROCESS_OVERRIDES: dict[str, dict] = {}


def _config_dir() -> Path:
    global _CONFIG_DIR
    if _CONFIG_DIR is None:
        _CONFIG_DIR = tempfile.TemporaryDirectory(prefix="clipedit-open_clip-configs-")
    return Path(_CONFIG_DIR.name)


def register_model_config(name: str, config: dict, preprocess: dict | None = None) -> str:
    """Register a custom CLIP architecture with open_clip (`open_clip.add_model_config` on a JSON file written to a
    per-process temporary folder), so `load_clip(name)` and `open_clip.create_model(name)` build it.

    `config` is an open_clip model config: `embed_dim`, `vision_cfg`, `text_cfg` (and optionally `quick_gelu`,
    `custom_text`...). `preprocess` optionally overrides the preprocessing config `load_clip` gives the model
    (`mean`, `std`, `interpolation`, ...; open_clip's default is OpenAI's mean/std). Registering the same name
    again replaces an earlier registration made here; a built-in open_clip name cannot be replaced.
    Returns the name."""
    import open_clip

    if not isinstance(name, str) or not name or "/" in name or ":" in name or name != name.strip():
        raise BenchError(f"invalid CLIP model config name {name!r} (no '/', ':' or surrounding spaces)")
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in config]
    if missing:
        raise BenchError(f"CLIP model config {name!r} lacks {', '.join(missing)} (open_clip needs embed_dim, "
                         "vision_cfg and text_cfg)")
    try:
        text = json.dumps(config, indent=2, sort_keys=True)
    except TypeError as exc:
        raise BenchError(f"CLIP model config {name!r} is not JSON-serialisable: {exc}") from exc
    normalized = json.loads(text)
    if name in open_clip.list_models() and name not in _REGISTERED \
            and open_clip.get_model_config(name) != normalized:
        raise BenchError(f"CLIP model config name {name!r} is already an open_clip architecture; choose another")
    path = _config_dir() / f"{name}.json"
    path.write_text(text, encoding="utf-8")
    open_clip.add_model_config(path)
    _REGISTERED[name] = normalized
    if preprocess is not None:
        _PREPROCESS_OVERRIDES[name] = dict(preprocess)
    else:
        _PREPROCESS_OVERRIDES.pop(name, None)
    return name


def register_model_config_dir(path: str | Path) -> list[str]:
    """Register every open_clip model config (`*.json` with embed_dim, vision_cfg, text_cfg; other JSON files are
    skipped) in a folder, each through `register_model_config` under its file stem, so a built-in open_clip name
    cannot be replaced. A `preprocess_cfg` section in a file becomes that model's preprocessing override.
    Returns the architecture names it registered."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise BenchError(f"CLIP model config folder not found: {folder}")
    configs = {}
    for file in sorted(folder.glob("*.json")):
        try:
            cfg = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BenchError(f"cannot read CLIP model config {file}: {exc}") from exc
        if isinstance(cfg, dict) and all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
            configs[file.stem] = cfg
    names = []
    for name, cfg in configs.items():
        model_cfg = {k: v for k, v in cfg.items() if k != "preprocess_cfg"}
        names.append(register_model_config(name, model_cfg, preprocess=cfg.get("preprocess_cfg")))
    return names


# ------------------------------------------------------------------------------------------------------------ loading
def _is_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub sees it (it reads the variable once, at import) or as set now."""
    try:
        from huggingface_hub import constants
        if constants.is_offline_mode():
            return True
    except (ImportError, AttributeError):
        pass
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _looks_like_path(value: str) -> bool:
    return (os.sep in value or "/" in value or value.startswith((".", "~"))
            or value.lower().endswith(_WEIGHT_SUFFIXES))


def _weights_in_dir(folder: Path) -> list[Path]:
    """The weights files open_clip's `local-dir:` loader looks for (*.safetensors, *.bin, *.pth; not *.pt)."""
    return sorted(p for ext in ("*.safetensors", "*.bin", "*.pth") for p in folder.glob(ext))


def _load_file_into(model: nn.Module, path: Path, name: str) -> None:
    """open_clip's own checkpoint loader (format conversions included), then an exact key check."""
    import open_clip

    fmt = f"open_clip {name} state dict"
    if is_torchscript_archive(path):
        raise CheckpointError(
            f"CLIP weights {path} are a TorchScript archive (OpenAI's `clip.load` file, e.g. ~/.cache/clip/"
            f"ViT-B-32.pt), not a state dict; it is not run here. Use pretrained='openai' (open_clip fetches the "
            "same weights), or convert it once: `sd = torch.jit.load(PATH, map_location='cpu').state_dict()`, drop "
            "its 'input_resolution', 'context_length' and 'vocab_size' entries, `torch.save(sd, 'clip.pt')`, and "
            "load that file with the QuickGELU architecture (e.g. 'ViT-B-32-quickgelu')")
    try:
        incompatible = open_clip.load_checkpoint(model, str(path), strict=False)
    except RuntimeError as exc:  # size mismatches (raised even with strict=False)
        raise CheckpointError(f"CLIP weights {path} are not a valid {fmt}: {error_detail(exc)} "
                              f"(public weights: {_public_weights(name)})") from exc
    except Exception as exc:  # unreadable / unsafe pickle / not a state dict
        raise CheckpointError(f"cannot read CLIP weights {path}: {error_detail(exc)} "
                              f"(public weights: {_public_weights(name)})") from exc
    missing = list(getattr(incompatible, "missing_keys", []) or [])
    unexpected = list(getattr(incompatible, "unexpected_keys", []) or [])
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {first_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {first_keys(unexpected)}")
        raise CheckpointError(f"CLIP weights {path} are not a valid {fmt}: " + "; ".join(parts)
                              + f" (public weights: {_public_weights(name)})")


def _create(open_clip, name: str, device, **kwargs) -> nn.Module:
    try:
        return open_clip.create_model(name, device=device, **kwargs)
    except (RuntimeError, ValueError, FileNotFoundError, OSError) as exc:
        raise CheckpointError(f"open_clip could not create {name!r}: {error_detail(exc)} "
                              f"(public weights: {_public_weights(name, kwargs.get('pretrained'))})") from exc


def _quick_gelu_tags(open_clip, name: str) -> list[str]:
    """The open_clip tags of the architecture `name` whose weights were trained with QuickGELU."""
    return [t for t in open_clip.list_pretrained_tags_by_model(name)
            if (open_clip.get_pretrained_cfg(name, t) or {}).get("quick_gelu", False)]


def _warn_gelu_file(open_clip, name: str, path: Path) -> None:
    """Warn when a weights file goes into a GELU architecture whose published weights include QuickGELU ones
    (OpenAI's): a file does not say which activation it was trained with, and the wrong one gives wrong
    embeddings without any error."""
    tags = _quick_gelu_tags(open_clip, name)
    if not tags:
        return
    alternative = f"{name}-quickgelu"
    use = (f"the architecture {alternative!r} or quick_gelu: true" if alternative in open_clip.list_models()
           else "quick_gelu: true")
    warnings.warn(f"CLIP weights {path} are loaded into {name!r}, which uses GELU, while open_clip's weights "
                  f"{', '.join(tags[:4])}{' ...' if len(tags) > 4 else ''} for it were trained with QuickGELU; if the "
                  f"file holds such weights (OpenAI's), its embeddings are wrong: use {use}. Pass quick_gelu: false "
                  "for weights trained with GELU (this warning then goes)", stacklevel=3)


def _quick_gelu_force(open_clip, name: str, quick_gelu: bool | None, trained_quick: bool) -> bool:
    """`force_quick_gelu` for `open_clip.create_model`: the explicit choice, else what the weights were trained
    with. quick_gelu=False with an architecture or tag that is QuickGELU is a contradiction, refused."""
    arch_quick = bool((open_clip.get_model_config(name) or {}).get("quick_gelu", False))
    if quick_gelu is False and (arch_quick or trained_quick):
        why = "the architecture is a QuickGELU one" if arch_quick else "these weights were trained with QuickGELU"
        raise BenchError(f"CLIP {name}: quick_gelu: false contradicts the weights asked for ({why})")
    return bool(quick_gelu or trained_quick) and not arch_quick


def load_clip(model: str, pretrained: str | os.PathLike | None = None, device: str | torch.device = "cpu", *,
              trainable: bool = False, cache_dir: str | None = None,
              quick_gelu: bool | None = None) -> "ClipBackbone":
    """Build an open_clip CLIP (see the module docstring for the accepted `model` / `pretrained` values) and wrap
    it as a frozen, eval-mode `ClipBackbone` on `device` (`trainable=True` keeps gradients on its parameters).

    `quick_gelu` (architecture names only): True builds the architecture with QuickGELU (OpenAI's weights from a
    file), False states GELU weights (no warning for a file); None (default) follows the tag, and for a file warns
    when the architecture has QuickGELU-trained tags (e.g. "ViT-B-32" and OpenAI's weights)."""
    import open_clip

    pretrained = os.fspath(pretrained) if pretrained is not None else None
    model = str(model)
    local_dir = None
    if pretrained is not None and pretrained.startswith("local-dir:"):
        local_dir = pretrained
    elif model.startswith("local-dir:"):
        if pretrained is not None:
            raise BenchError(f"a local-dir: model ({model}) brings its own weights; leave pretrained unset "
                             f"(got pretrained={pretrained!r})")
        local_dir = model

    if quick_gelu is not None and (local_dir is not None or model.startswith("hf-hub:")):
        raise BenchError(f"quick_gelu applies to open_clip architecture names; a {model.split(':')[0]}: model "
                         f"({local_dir or model}) takes its activation from its own open_clip_config.json")
    if local_dir is not None:
        folder = Path(local_dir[len("local-dir:"):]).expanduser()
        config = folder / "open_clip_config.json"
        if not folder.is_dir() or not config.is_file():
            raise CheckpointError(f"open_clip local-dir folder {folder} must exist and hold open_clip_config.json "
                                  "(with 'model_cfg', optionally 'preprocess_cfg') and a weights file, as in an "
                                  "open_clip Hugging Face hub repository")
        if not _weights_in_dir(folder):
            pt = sorted(p.name for p in folder.glob("*.pt"))
            hint = (f"; open_clip does not look at .pt files ({', '.join(pt)}): rename the state dict to "
                    "open_clip_pytorch_model.bin") if pt else ""
            raise CheckpointError(f"open_clip local-dir folder {folder} holds no weights file open_clip loads "
                                  f"(*.safetensors, *.bin, *.pth, e.g. open_clip_model.safetensors){hint} "
                                  f"({_HUB_FOLDERS})")
        source = f"local-dir:{folder}"
        net = _create(open_clip, source, device, require_pretrained=True)  # never a random network in its place
        return ClipBackbone(net, open_clip.get_tokenizer(source), name=source, pretrained=str(folder),
                            trainable=trainable)

    if model.startswith("hf-hub:"):
        if pretrained is not None:
            raise BenchError(f"an hf-hub: model ({model}) brings its own weights; leave pretrained unset")
        try:
            net = open_clip.create_model(model, device=device, cache_dir=cache_dir, require_pretrained=True)
            tokenizer = open_clip.get_tokenizer(model, cache_dir=cache_dir)
        except Exception as exc:
            offline = " (HF_HUB_OFFLINE=1 is set)" if _is_offline() else ""
            raise CheckpointError(f"open_clip could not load {model}{offline}: {error_detail(exc)}; download it on "
                                  "a machine with internet or use pretrained='local-dir:/path/to/folder'") from exc
        return ClipBackbone(net, tokenizer, name=model, pretrained=model, trainable=trainable)

    name = model.replace("/", "-")  # open_clip's own spelling rule ("ViT-B/32" -> "ViT-B-32")
    if name not in open_clip.list_models():
        raise UnknownNameError("open_clip model", model, open_clip.list_models())
    force = dict(_PREPROCESS_OVERRIDES.get(name, {})) or None
    tokenizer = open_clip.get_tokenizer(name)

    if pretrained is None:
        net = _create(open_clip, name, device, pretrained=None, pretrained_image=False, pretrained_text=False,
                      force_quick_gelu=_quick_gelu_force(open_clip, name, quick_gelu, False),
                      force_preprocess_cfg=force)
        return ClipBackbone(net, tokenizer, name=name, pretrained=None, trainable=trainable)

    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained) if not os.path.exists(pretrained) else {}
    if tag_cfg:
        try:  # fetch (or find in the cache) first, so that a missing download fails before building anything
            open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir)
        except Exception as exc:
            why = "HF_HUB_OFFLINE=1 is set and they are not cached" if _is_offline() else error_detail(exc)
            raise CheckpointError(f"could not download the open_clip weights {name}/{pretrained} ({why}). "
                                  + _public_weights(name, pretrained)) from exc
        trained_quick = bool(tag_cfg.get("quick_gelu", False))
        net = _create(open_clip, name, device, pretrained=pretrained, cache_dir=cache_dir,
                      force_quick_gelu=_quick_gelu_force(open_clip, name, quick_gelu, trained_quick),
                      force_preprocess_cfg=force)
        return ClipBackbone(net, tokenizer, name=name, pretrained=pretrained, trainable=trainable)

    path = Path(pretrained).expanduser()
    if path.is_dir():
        hint = f"; use pretrained='local-dir:{path}'" if (path / "open_clip_config.json").is_file() else ""
        raise CheckpointError(f"CLIP weights path {path} is a folder, expected a weights file{hint}")
    if path.is_file():
        net = _create(open_clip, name, device, pretrained=None, pretrained_image=False, pretrained_text=False,
                      force_quick_gelu=_quick_gelu_force(open_clip, name, quick_gelu, False),
                      force_preprocess_cfg=force)
        _load_file_into(net, path, name)
        if quick_gelu is None and activation_of(net) == "gelu":
            _warn_gelu_file(open_clip, name, path)
        return ClipBackbone(net, tokenizer, name=name, pretrained=str(path), trainable=trainable)
    if _looks_like_path(pretrained):
        require_file(path, "CLIP weights", _public_weights(name))  # raises: names the file and the public weights
    err = UnknownNameError(f"open_clip pretrained tag for {name}", pretrained,
                           open_clip.list_pretrained_tags_by_model(name))
    err.args = (err.args[0] + " (or pass a weights file path or 'local-dir:PATH')",)
    raise err


# ----------------------------------------------------------------------------------------------------------- backbone
def _to_pair(size) -> tuple[int, int]:
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


class ClipBackbone(nn.Module):
    """A CLIP model with differentiable image preprocessing for generator output and cached template text
    embeddings. Frozen and in eval mode unless built with `trainable=True`."""

    def __init__(self, model: nn.Module, tokenizer, name: str = "", pretrained: str | None = None,
                 trainable: bool = False):
        import open_clip

        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.pretrained = pretrained
        self.trainable = trainable
        cfg = open_clip.get_model_preprocess_cfg(model)
        self.image_hw = _to_pair(cfg.get("size", getattr(getattr(model, "visual", None), "image_size", 224)))
        self.image_size = self.image_hw[0] if self.image_hw[0] == self.image_hw[1] else self.image_hw
        self.mean = tuple(float(v) for v in cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.std = tuple(float(v) for v in cfg.get("std", open_clip.OPENAI_DATASET_STD))
        self.interpolation = _preprocess_choice(cfg, "interpolation", "bicubic", _INTERPOLATIONS, name)
        self.resize_mode = _preprocess_choice(cfg, "resize_mode", "shortest", _RESIZE_MODES, name)
        self.activation = activation_of(model)
        # on the network's device: `device` reads it, and the loaders build the network on the asked-for device
        where = next(model.parameters(), torch.empty(0)).device
        self.register_buffer("_mean", torch.tensor(self.mean, device=where).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std, device=where).view(1, -1, 1, 1), persistent=False)
        self._text_cache: dict[tuple[str, tuple[str, ...]], torch.Tensor] = {}
        self.model.requires_grad_(trainable)
        self.train(False)

    # -- module state
    def hash_settings(self) -> dict:
        """What changes the embeddings besides the weights and buffers, for `zoo.checkpoints.state_hash` (the
        methods' cache keys, the FID fingerprint): the activation and the preprocessing's interpolation and resize
        mode where they differ from GELU / bicubic / shortest (so that those hashes stay as they were)."""
        settings = {"activation": self.activation, "interpolation": self.interpolation,
                    "resize_mode": self.resize_mode}
        defaults = {"activation": "gelu", "interpolation": "bicubic", "resize_mode": "shortest"}
        return {k: v for k, v in settings.items() if v != defaults[k]}

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, pretrained={self.pretrained!r}, activation={self.activation}, "
                f"input={self.image_hw}, interpolation={self.interpolation}, resize_mode={self.resize_mode}")

    def train(self, mode: bool = True):
        """Frozen backbones stay in eval mode whatever the caller's module tree does."""
        return super().train(bool(mode) and self.trainable)

    @property
    def device(self) -> torch.device:
        return self._mean.device

    @property
    def embed_dim(self) -> int:
        dim = getattr(getattr(self.model, "visual", None), "output_dim", None)
        if dim is None:
            dim = int(self.encode_text(["a"]).shape[-1])
        return int(dim)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp()) if hasattr(self.model, "logit_scale") else 100.0

    def clear_text_cache(self) -> None:
        self._text_cache.clear()

    # -- images
    def preprocess(self, images: torch.Tensor, resize: str = "bicubic", normalize: bool = True,
                   antialias: bool = True) -> torch.Tensor:
        """Generator output [N, 3, H, W] in [-1, 1] -> the model's input [N, 3, S, S] (differentiable).

        resize: "bicubic" (CLIP's own preprocessing: its config's interpolation, bicubic unless it says bilinear,
        and resize mode, short side + centre crop unless it says squash) or "area" (StyleCLIP's exact area average,
        square inputs). normalize=False skips both the [-1, 1] -> [0, 1] map and the mean/std (StyleCLIP's
        optimisation feeds raw generator output). `antialias` only applies to "bicubic"."""
        if images.ndim != 4 or images.shape[1] != self._mean.shape[1]:
            raise ValueError(f"expected [N, {self._mean.shape[1]}, H, W] images, got shape {tuple(images.shape)}")
        x = (images + 1) / 2 if normalize else images
        if resize == "bicubic":
            x = _resize_crop(x, self.image_hw, antialias, self.interpolation, self.resize_mode)
        elif resize == "area":
            if self.image_hw[0] != self.image_hw[1]:
                raise ValueError(f"area resize needs a square model input, this model takes {self.image_hw}")
            x = area_resize(x, self.image_hw[0])
        else:
            raise ValueError(f"unknown resize {resize!r}; valid: 'bicubic', 'area'")
        if normalize:
            x = (x - self._mean.to(x.dtype)) / self._std.to(x.dtype)
        return x

    def encode_images(self, images: torch.Tensor, resize: str = "bicubic", normalize: bool = True,
                      antialias: bool = True, normalize_embeddings: bool = True) -> torch.Tensor:
        """Differentiable image embeddings [N, D] of generator output in [-1, 1] (see `preprocess`)."""
        feats = self.model.encode_image(self.preprocess(images, resize=resize, normalize=normalize,
                                                        antialias=antialias))
        return F.normalize(feats, dim=-1) if normalize_embeddings else feats

    # -- text
    @torch.no_grad()
    def encode_text(self, texts: Sequence[str] | str, batch_size: int = 256) -> torch.Tensor:
        """L2-normalised text embeddings [len(texts), D], encoded in batches without gradients."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        chunks = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(texts[start:start + batch_size]).to(self.device)
            chunks.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1))
        if not chunks:
            return torch.zeros(0, self.embed_dim, device=self.device)
        return torch.cat(chunks)

    def template_embedding(self, texts: Sequence[str] | str, templates: Sequence[str] | None = None,
                           renormalize: bool = True, batch_size: int = 256) -> torch.Tensor:
        """[len(texts), D]: for each text, the mean of the L2-normalised embeddings of every template filled with
        it, normalised again (StyleCLIP; `renormalize=False` returns the plain mean, NADA's convention).
        Results are cached per (text, templates) while the backbone is frozen."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        temps = tuple(load_templates() if templates is None else templates)
        bad = [t for t in temps if "{}" not in t]
        if not temps or bad:
            raise BenchError(f"prompt templates need a '{{}}' placeholder; offending: {bad[:3]}")
        todo = list(dict.fromkeys(t for t in texts if (t, temps) not in self._text_cache))
        if todo:
            prompts = [template.format(text) for text in todo for template in temps]
            emb = self.encode_text(prompts, batch_size=batch_size).view(len(todo), len(temps), -1).mean(dim=1)
            fresh = dict(zip(todo, emb))
            if not self.trainable:
                self._text_cache.update({(t, temps): e for t, e in fresh.items()})
        else:
            fresh = {}
        means = torch.stack([fresh[t] if t in fresh else self._text_cache[(t, temps)].to(self.device)
                             for t in texts]) if texts else torch.zeros(0, self.embed_dim, device=self.device)
        return F.normalize(means, dim=-1) if renormalize else means

    def text_direction(self, neutral: str, target: str, templates: Sequence[str] | None = None,
                       renormalize: bool = True) -> torch.Tensor:
        """Unit vector [D] along template_embedding(target) - template_embedding(neutral)."""
        emb = self.template_embedding([neutral, target], templates=templates, renormalize=renormalize)
        delta = emb[1] - emb[0]
        norm = float(delta.norm())
        if not math.isfinite(norm) or norm < 1e-12:
            raise BenchError(f"text direction {neutral!r} -> {target!r} is zero: the two texts embed identically")
        return delta / norm

    def forward(self, images: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.encode_images(images, **kwargs)

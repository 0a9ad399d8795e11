"""Safe, strict, explained checkpoint loading shared by every network in the zoo.

* `torch.load(weights_only=True)` or safetensors only: a checkpoint never runs code.
* A missing file, an unreadable file or a state dict whose keys/shapes do not match raise one `CheckpointError`
  that names the expected format, the first few offending keys (`first_keys`) and where the public weights come
  from; `error_detail` words the reason in one line (every loader's), never passing on torch's advice to load
  with weights_only=False, and TorchScript archives are recognised without loading them (`is_torchscript_archive`).
* `file_sha256` and `state_hash`: fingerprints of a weights file and of a state dict (plus settings);
  `module_hash`: a module's `state_hash`, remembered per module object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import weakref
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import CheckpointError

_SHOW = 5  # how many offending keys an error message lists


def first_keys(keys, n: int = _SHOW) -> str:
    """The first `n` of `keys` in sorted order, for error messages: "a, b, c (+4 more)", or "(none)"."""
    keys = sorted(str(k) for k in keys)
    if not keys:
        return "(none)"
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def require_file(path: str | Path, what: str, source: str) -> Path:
    """Return `path` as a Path, or raise a CheckpointError saying what was expected and where to get it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path} (public weights: {source})")
    return path


# sentences of torch.load's error text that advise loading with weights_only=False (running the file's code)
_TORCH_ADVICE = ("weights only load failed", "re-running", "trusted source", "trust the source", "can still be loaded",
                 "we changed the default value", "file an issue", "check the documentation",
                 "alternatively, to load with")


def error_detail(exc: BaseException, max_lines: int = 3, max_len: int = 300) -> str:
    """Why a file could not be read or loaded, in one line, for every loader's error message: the exception type,
    then
    * torch's "Unsupported global: GLOBAL module.Name ..." / "Unsupported operand ..." reason when it gives one;
    * for a header line ending in ':' followed by items (a strict `load_state_dict`: missing / unexpected /
      mismatched keys), the first `max_lines` items joined by '; ';
    * else the first sentence that is not torch's advice to turn `weights_only` off (never passed on).
    ANSI colour codes are removed and each part is cut at `max_len` characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # torch bolds part of its message with ANSI codes
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    match = re.search(r"Unsupported (?:global|operand)[^\n]*?(?=\. Please|\.?$)", text, re.MULTILINE)
    if match:
        parts = [match.group(0).strip()]
    elif len(lines) > 1 and lines[0].endswith(":"):
        parts = lines[1:1 + max_lines]
    else:
        sentences = [s.strip() for line in lines for s in re.split(r"(?<=\.)\s+", line) if s.strip()]
        parts = [next((s for s in sentences if not any(a in s.lower() for a in _TORCH_ADVICE)), "")]
    reason = "; ".join(p if len(p) <= max_len else p[:max_len] + "..." for p in parts if p)
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether `path` is a TorchScript archive (`torch.jit.save`, e.g. OpenAI's `clip.load` files): a zip holding
    `constants.pkl` or `code/` entries below its root folder, which a `torch.save` zip never has. Only the zip's
    names are read."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    inside = [n.split("/", 1)[-1] for n in names]  # below the archive's root folder (the file's stem, any name)
    return any(n == "constants.pkl" or n.startswith("code/") for n in inside)


# what a legacy (pre-zip) torch.save file pickles first: torch's magic number, as a 10-byte LONG1 (after the PROTO
# opcode, and a FRAME header from protocol 4 on)
_TORCH_LEGACY_MAGIC = b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
_PICKLE_SCAN = 1 << 20  # bytes of a pickle searched for the module names that tell NVIDIA's kinds apart
NVIDIA_TF_PICKLE = ("an NVIDIA TensorFlow StyleGAN pickle (NVlabs stylegan2 / stylegan2-ada, e.g. "
                    "stylegan2-ffhq-config-f.pkl)")
NVIDIA_ADA_PICKLE = "an NVIDIA stylegan2-ada-pytorch / stylegan3 pickle (e.g. ffhq.pkl)"
_PICKLE_ROUTES = {
    NVIDIA_TF_PICKLE: ("convert it once with rosinality/stylegan2-pytorch's convert_weight.py (`python "
                       "convert_weight.py --repo /path/to/NVlabs/stylegan2 stylegan2-ffhq-config-f.pkl`, which needs "
                       "TensorFlow 1.x and a clone of NVlabs/stylegan2) and load the .pt it writes"),
    NVIDIA_ADA_PICKLE: ("these are not supported: their weights can only be read by running NVIDIA's code; "
                        "community converters to rosinality's layout run it for you (dvschultz/stylegan2-ada-pytorch's "
                        "SG2_ADA_PT_to_Rosinality.ipynb, linked from NVlabs/stylegan2-ada-pytorch issue #44, or the "
                        "script in rosinality/stylegan2-pytorch issue #206); load the .pt they write"),
    "a Python pickle": "save the network's state_dict() with torch.save instead",
}


def plain_pickle_kind(path: str | Path) -> str | None:
    """What a file that is a plain Python pickle (not a torch.save zip or legacy torch file) holds: one of
    NVIDIA_TF_PICKLE (it names dnnlib.tflib), NVIDIA_ADA_PICKLE (torch_utils.persistence) or "a Python pickle";
    None for anything else. Only the file's first bytes are read, never unpickled."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return None
    with open(path, "rb") as handle:
        head = handle.read(_PICKLE_SCAN)
    if _TORCH_LEGACY_MAGIC in head[:24]:
        return None
    if not (head.startswith(b"\x80") or path.suffix.lower() == ".pkl"):  # protocol >= 2 starts with PROTO
        return None
    if b"dnnlib.tflib" in head:
        return NVIDIA_TF_PICKLE
    if b"torch_utils" in head:
        return NVIDIA_ADA_PICKLE
    return "a Python pickle"


def refuse_plain_pickle(path: Path, what: str, source: str) -> None:
    """Raise a CheckpointError when `path` is a plain pickle (NVIDIA's .pkl networks hold code, which a checkpoint
    load never runs), naming its kind and the way to a loadable file."""
    kind = plain_pickle_kind(path)
    if kind is not None:
        raise CheckpointError(f"{what} {path} is {kind}, not a torch.save checkpoint: such pickles hold code (the "
                              f"network classes) and are not loaded here; {_PICKLE_ROUTES[kind]} "
                              f"(public weights: {source})")


def load_torch_file(path: str | Path, what: str, source: str) -> dict:
    """`torch.load` with weights_only=True on CPU. rosinality training checkpoints also pickle their argparse
    namespace, which is allowed as a safe global (it holds plain values only). TorchScript archives and plain
    pickles (NVIDIA's .pkl networks) are refused before torch reads them, with the way to a loadable file."""
    path = require_file(path, what, source)
    if is_torchscript_archive(path):
        raise CheckpointError(f"{what} {path} is a TorchScript archive (torch.jit.save), not a checkpoint of tensors; "
                              f"save the module's state_dict() with torch.save instead (public weights: {source})")
    refuse_plain_pickle(path, what, source)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code, wrong container
        raise CheckpointError(f"cannot read {what} {path}: {error_detail(exc)} (public weights: {source})") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{what} {path} holds a {type(obj).__name__}, expected a dict of tensors "
                              f"(public weights: {source})")
    return dict(obj)


def check_state_dict(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], what: str,
                     fmt: str, source: str, path: str | Path | None = None) -> None:
    """Raise a CheckpointError unless `state` has exactly the keys and shapes of `expected`."""
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    mismatched = [k for k in set(state) & set(expected)
                  if tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    where = f" {path}" if path is not None else ""
    parts = []
    if missing:
        parts.append(f"missing keys: {first_keys(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {first_keys(unexpected)}")
    if mismatched:
        shown = sorted(mismatched)[:_SHOW]
        parts.append("shape mismatch: " + ", ".join(
            f"{k} {tuple(state[k].shape)} vs expected {tuple(expected[k].shape)}" for k in shown))
    raise CheckpointError(f"{what}{where} is not a valid {fmt}: " + "; ".join(parts) + f" (public weights: {source})")


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str, fmt: str, source: str,
                path: str | Path | None = None) -> nn.Module:
    """Check keys and shapes with a readable error, then `load_state_dict(strict=True)`."""
    check_state_dict(state, module.state_dict(), what, fmt, source, path)
    module.load_state_dict(state, strict=True)
    return module


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Content hash of a file (for run manifests and preparation caches)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def state_hash(state: Mapping[str, torch.Tensor] | nn.Module, extra: Any = None) -> str:
    """sha256 of a state dict (or a module's) and, when given, of `extra` (settings, as sorted JSON, first): for
    each tensor in name order, its name, dtype and shape, then its bytes in its own dtype (bfloat16 included).
    A module's non-persistent buffers count too (under `buffer:<name>`): they are not in its state dict but change
    what it computes (a generator's `latent_avg`, which truncation pulls towards; a CLIP's preprocessing mean/std).
    A module with a `hash_settings()` method adds the settings it returns (a CLIP's activation and preprocessing,
    `zoo.clip.ClipBackbone`), which its weights do not show.
    The key of the methods' caches of what they compute from loaded networks (`bench.cachefile` re-exports it) and
    the fingerprint tests compare checkpoints by."""
    digest = hashlib.sha256()
    if extra is not None:
        digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    hook = getattr(state, "hash_settings", None) if isinstance(state, nn.Module) else None
    settings = hook() if callable(hook) else None
    if settings:  # what changes the output besides the weights (a CLIP's QuickGELU)
        digest.update(("settings|" + json.dumps(settings, sort_keys=True, default=str)).encode())
    items = list(state.state_dict().items() if isinstance(state, nn.Module) else state.items())
    if isinstance(state, nn.Module):
        persistent = {name for name, _ in items}
        items += [(f"buffer:{name}", t) for name, t in state.named_buffers() if name not in persistent]
    for name, tensor in sorted(items, key=lambda item: item[0]):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


_MODULE_HASHES: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()


def module_hash(module: nn.Module) -> str:
    """`state_hash(module)`, computed once per module object and remembered while the module lives (a
    `weakref.WeakKeyDictionary` keyed by the module): hashing a 1024 px generator and a CLIP reads every weight
    (~0.7 s), which a method's cache key would otherwise pay inside each timed preparation, cache hits included.
    The weights must not change while the module is alive — true of the frozen networks the methods key their
    caches by; code (tests) that changes a module's weights must hash a new module, or call `state_hash`."""
    digest = _MODULE_HASHES.get(module)
    if digest is None:
        digest = _MODULE_HASHES[module] = state_hash(module)
    return digest

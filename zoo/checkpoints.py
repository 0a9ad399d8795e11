"""Safe, strict, explained checkpoint loading shared by every network in the zoo.

* `torch.load(weights_only=True)` or safetensors only: a checkpoint never runs code.
* A missing file, an unreadable file or a state dict whose keys/shapes do not match raise one `CheckpointError`
  that names the expected format, the first few offending keys and where the public weights come from.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from bench.errors import CheckpointError

_SHOW = 5  # how many offending keys an error message lists


def _first(keys, n: int = _SHOW) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def require_file(path: str | Path, what: str, source: str) -> Path:
    """Return `path` as a Path, or raise a CheckpointError saying what was expected and where to get it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path} (public weights: {source})")
    return path


def load_torch_file(path: str | Path, what: str, source: str) -> dict:
    """`torch.load` with weights_only=True on CPU. rosinality training checkpoints also pickle their argparse
    namespace, which is allowed as a safe global (it holds plain values only)."""
    path = require_file(path, what, source)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code, wrong container
        raise CheckpointError(f"cannot read {what} {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{what} {path} holds a {type(obj).__name__}, expected a dict of tensors")
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
        parts.append(f"missing keys: {_first(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_first(unexpected)}")
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

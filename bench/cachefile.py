"""Files the harness writes and reads back: atomic writes, damage-tolerant loads, content hashes of inputs.

* `atomic_save(obj, path)` (torch) and `write_json_atomic(path, data)`: the bytes go to a temp file of this process's
  own in the same folder (`temp_path`: pid + a random part), are flushed to disk, then `os.replace`d over `path`. A
  reader sees the old file or the new one, never a part of one; two processes writing the same name (runs sharing a
  `--prepare-cache`, `--workers` processes, two runs on one method cache) never write into the same temp file, and
  the last replace wins (both hold the same state: the name is a hash of what the state depends on).
* `load_or_none(path, **torch_load_kwargs)`: the object, or None when the file is missing or damaged (a truncated or
  foreign file, e.g. from a version that wrote every process's state through one temp name). A damaged file is
  logged, deleted and made again by the caller, instead of failing every later run.
* `save_array_atomic(array, path)` and `load_array_or_none(path)`: the same pair for a numpy array (`.npy`, no
  pickles), e.g. the FID/KID reference features shared by runs in ~/.cache/clipedit-bench/fid_reference.
* `remove_damaged(path, reason, before)`: what the loaders do with a file they cannot use (a cached state whose
  method refuses it too): a warning naming it, then the file is deleted unless another process replaced it since.
* `content_hash(path)`, `with_content_hashes(value)`: what a cache key or a run manifest records for a file or folder
  named in a suite (weights, a latents file, a folder of style images): its content, so that replacing weights at
  the same path is seen.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import pickle
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from zoo.checkpoints import error_detail, file_sha256, state_hash  # noqa: F401  (state_hash: the methods' cache keys)

log = logging.getLogger(__name__)

LOCAL_DIR = "local-dir:"  # open_clip's prefix for a folder of weights, e.g. {clip: "local-dir:/models/clip"}

# what torch.load raises on a file it cannot read back: a zip without its end (RuntimeError from the stream reader,
# or OSError EINVAL), a legacy pickle cut short (EOFError), bytes that are no pickle or objects weights_only refuses
# (UnpicklingError)
_DAMAGED = (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, zipfile.BadZipFile, OSError)


def temp_path(path: str | Path) -> Path:
    """A temp name next to `path` that no other process or call uses: `.{name}.{pid}.{random}.tmp`."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


def _write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:  # an interrupted or failed write leaves no temp file behind
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_save(obj: Any, path: str | Path) -> Path:
    """`torch.save(obj)` to `path`, atomically (see the module docstring)."""
    return _write_atomic(path, lambda handle: torch.save(obj, handle))


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """`data` as indented, key-sorted JSON at `path`, atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """`text` (UTF-8) at `path`, atomically: for JSON made by its own serialiser (a report, a baseline)."""
    return _write_atomic(path, lambda handle: handle.write(text.encode()))


def save_array_atomic(array: Any, path: str | Path) -> Path:
    """`np.save(array)` to `path` (no pickled objects), atomically."""
    array = np.asarray(array)
    return _write_atomic(path, lambda handle: np.save(handle, array, allow_pickle=False))


def load_or_none(path: str | Path, **torch_load_kwargs: Any) -> Any:
    """`torch.load(path, **torch_load_kwargs)`, or None when `path` does not exist or cannot be read back; a damaged
    file is deleted (unless another process has replaced it meanwhile) with a warning naming it."""
    return _load_or_none(path, lambda p: torch.load(p, **torch_load_kwargs))


def load_array_or_none(path: str | Path) -> np.ndarray | None:
    """`np.load(path)` (no pickles), or None when `path` does not exist or cannot be read back (a truncated or
    foreign file: deleted, as `load_or_none` does)."""
    return _load_or_none(path, _load_one_array)


def _load_one_array(path: Path) -> np.ndarray:
    loaded = np.load(path, allow_pickle=False)
    if not isinstance(loaded, np.ndarray):  # an .npz archive under this name (np.load reads it by its magic)
        loaded.close()
        raise ValueError(f"an .npz archive of {len(loaded.files)} array(s), not one .npy array")
    return loaded


def _load_or_none(path: str | Path, load: Callable[[Path], Any]) -> Any:
    path = Path(path)
    try:
        before = path.stat()
        return load(path)
    except FileNotFoundError:
        return None
    except _DAMAGED as exc:
        if isinstance(exc, torch.cuda.OutOfMemoryError) or "CUDA" in str(exc):
            raise  # the file is fine; this machine cannot hold or place it
        if isinstance(exc, OSError) and exc.errno != errno.EINVAL:
            raise  # a permission or disk problem, not a damaged file
        remove_damaged(path, error_detail(exc), before)
        return None


def remove_damaged(path: str | Path, reason: str, before: os.stat_result | None = None) -> None:
    """Log that the cache file `path` cannot be used (`reason`) and delete it, so that it is made again; `before`
    (its stat when it was read): keep it if another process has replaced it since (a new, good file)."""
    path = Path(path)
    log.warning("cache file %s is damaged (%s); deleting it, it will be made again", path, reason)
    try:
        now = path.stat()
        if before is None or (now.st_ino, now.st_mtime_ns, now.st_size) == (
                before.st_ino, before.st_mtime_ns, before.st_size):
            path.unlink()
    except FileNotFoundError:
        pass


# -------------------------------------------------------------------------------------------------- content hashes
def content_hash(path: str | Path, memo: dict[str, str] | None = None) -> str:
    """sha256 of a file's bytes; for a folder, sha256 of its files' sorted (relative path, content hash) pairs, all
    levels down (names starting with '.' skipped: temp files, .DS_Store). `memo` (path → hash) spares reading a file
    twice where its content is taken as fixed (one run's cache keys)."""
    path = Path(path).expanduser()
    if memo is not None:
        key = str(path.resolve())
        if key not in memo:
            memo[key] = content_hash(path)
        return memo[key]
    if path.is_file():  # read every time: a file rewritten within the clock's tick keeps its size and mtime
        return file_sha256(path)
    digest = hashlib.sha256(b"folder\n")
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        relative = file.relative_to(path)
        if any(part.startswith(".") for part in relative.parts):
            continue
        digest.update(f"{relative.as_posix()}\t{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def named_path(value: Any) -> Path | None:
    """The existing file or folder a spec or parameter value names (`local-dir:PATH` included), else None."""
    if not isinstance(value, str) or not value.strip() or "\n" in value:
        return None
    text = value[len(LOCAL_DIR):] if value.startswith(LOCAL_DIR) else value
    try:
        path = Path(text).expanduser()
        return path if path.exists() else None
    except (OSError, ValueError):  # a name too long, a NUL byte: not a path
        return None


def with_content_hashes(value: Any, skip: frozenset[str] = frozenset(), memo: dict[str, str] | None = None) -> Any:
    """`value` (JSON-like) with every string naming an existing file or folder replaced by {"path": the string,
    "content": its content hash}, in nested dicts and lists too; dict entries whose key is in `skip` stay as written."""
    if isinstance(value, dict):
        return {k: v if k in skip else with_content_hashes(v, skip, memo) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [with_content_hashes(v, skip, memo) for v in value]
    path = named_path(value)
    return value if path is None else {"path": value, "content": content_hash(path, memo)}

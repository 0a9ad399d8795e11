"""Loading the embedded synthetic face world's trained networks as one backbone set."""

from __future__ import annotations

from pathlib import Path

from bench.errors import CheckpointError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def load_synthface(arg=None, device: str = "cpu", weights_dir: str | Path | None = None):
    """Load every synthetic-world network from `weights_dir` (default: the weights committed beside this file)."""
    weights_dir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    if not weights_dir.is_dir() or not any(weights_dir.glob("*.safetensors")):
        raise CheckpointError(
            f"synthetic face world weights not found in {weights_dir}: the project trains these networks itself "
            "and commits them; this checkout does not have them yet")
    raise CheckpointError(f"synthetic face world loader does not know the files in {weights_dir} yet")

"""The embedded synthetic face world as one backbone set (`backbones: synthface` in a suite).

Roles (networks used by methods as losses, then judges used only for scoring):

    generator         StyleGAN2 64×64 distilled from the renderer        weights/generator.safetensors
    clip              CLIP (open_clip custom config)                     weights/clip.safetensors
    identity          identity embedder (PyTorch) for identity losses    weights/identity.safetensors
    encoder           inversion encoder, image → W+                      weights/encoder.safetensors
    judge_clip        a second, independently trained CLIP               weights/judge_clip.safetensors
    judge_identity    the identity network's ONNX export, via insightface weights/identity.onnx
    judge_attributes  attribute + domain classifier                      weights/attributes.safetensors

`bench.backbone_set` moves the `judge_*` roles to the judges (`clip`, `identity`, `attributes`) unless the suite
names its own. Each role loads only if its weights are committed; a missing role is listed in the error of
whatever needs it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from bench.errors import CheckpointError
from zoo.checkpoints import file_sha256

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

# role → (weights file, "module:function" loader taking (device, weights_dir)); one line per network
ROLES: dict[str, tuple[str, str]] = {
    "generator": ("generator.safetensors", "zoo.synthface.train_generator:load"),
    "clip": ("clip.safetensors", "zoo.synthface.train_clip:load"),
    "identity": ("identity.safetensors", "zoo.synthface.train_identity:load_identity"),
    "encoder": ("encoder.safetensors", "zoo.synthface.encoder:load_encoder"),
    "judge_clip": ("judge_clip.safetensors", "zoo.synthface.train_judge_clip:load"),
    "judge_identity": ("identity.onnx", "zoo.synthface.train_identity:load_identity_judge"),
    "judge_attributes": ("attributes.safetensors", "zoo.synthface.train_attributes:load_attribute_judge"),
}


def _call(target: str, role: str, device: str, weights_dir: Path):
    module_name, _, function = target.partition(":")
    loader = getattr(importlib.import_module(module_name), function)
    return loader(device=device, weights_dir=weights_dir)


def load_synthface(arg=None, device: str = "cpu", weights_dir: str | Path | None = None):
    """Every synthetic-world network whose weights exist, as a `BackboneSet` with content hashes.

    `arg` (the suite's `{synthface: DIR}`) or `weights_dir` names another folder of the world's weights, e.g. a
    retrained network beside copies of the committed others; default the committed `weights/`."""
    from bench.backbone_set import BackboneSet

    folder = weights_dir if weights_dir is not None else arg
    weights_dir = Path(folder).expanduser() if folder is not None else WEIGHTS_DIR
    if not weights_dir.is_dir():
        raise CheckpointError(f"synthface weights folder not found: {weights_dir} (the committed one is "
                              f"{WEIGHTS_DIR})")
    present = {role: spec for role, spec in ROLES.items() if (weights_dir / spec[0]).is_file()}
    if "generator" not in present:
        raise CheckpointError(
            f"synthetic face world generator not found: {weights_dir / ROLES['generator'][0]}. The project trains "
            "it itself (python -m zoo.synthface.train generator) and commits the weights")
    roles = {role: _call(target, role, device, weights_dir) for role, (_, target) in present.items()}
    hashes = {role: "sha256:" + file_sha256(weights_dir / name) for role, (name, _) in present.items()}
    return BackboneSet(roles, hashes)

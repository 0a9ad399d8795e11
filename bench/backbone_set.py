"""Loading a suite's `backbones:` and `judges:` blocks into networks, once per run, with content hashes.

A role maps to one spec or a list of weighted specs. The special role `set` names a whole backbone set (the
synthetic world), whose loader returns a dict role → network; explicit roles override entries of the set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.suite import BackboneSpec, Suite
from zoo.checkpoints import file_sha256


@dataclass
class Weighted:
    network: Any
    weight: float


@dataclass
class BackboneSet:
    """Loaded networks by role; `hashes` maps "block.role" to the content hash recorded in the manifest."""

    roles: dict[str, Any]
    hashes: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, role: str) -> Any:
        return self.roles[role]

    def get(self, role: str, default: Any = None) -> Any:
        return self.roles.get(role, default)

    def __contains__(self, role: str) -> bool:
        return role in self.roles


def spec_hash(spec: BackboneSpec) -> str:
    """The content hash of the spec's file when its argument is a file, else a hash of the spec itself."""
    if isinstance(spec.arg, str):
        path = Path(spec.arg).expanduser()
        if path.is_file():
            return "sha256:" + file_sha256(path)
    blob = json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()
    return "spec:" + hashlib.sha256(blob).hexdigest()[:16]


def load_spec(spec: BackboneSpec, device: str) -> Any:
    from zoo.backbones import BACKBONES

    loader = BACKBONES.get(spec.kind)
    args = () if spec.arg is None else (spec.arg,)
    return loader(*args, device=device, **spec.options)


def load_block(block: dict[str, BackboneSpec | list[BackboneSpec]], device: str, prefix: str) -> BackboneSet:
    roles: dict[str, Any] = {}
    hashes: dict[str, str] = {}
    if "set" in block:
        spec = block["set"]
        loaded = load_spec(spec, device)
        roles.update(loaded.roles if isinstance(loaded, BackboneSet) else loaded)
        hashes.update({f"{prefix}.set": spec_hash(spec)})
        if isinstance(loaded, BackboneSet):
            hashes.update({f"{prefix}.{k}": v for k, v in loaded.hashes.items()})
    for role, value in block.items():
        if role == "set":
            continue
        if isinstance(value, list):
            roles[role] = [Weighted(load_spec(spec, device), spec.weight) for spec in value]
            for i, spec in enumerate(value):
                hashes[f"{prefix}.{role}.{i}"] = spec_hash(spec)
        else:
            roles[role] = load_spec(value, device)
            hashes[f"{prefix}.{role}"] = spec_hash(value)
    return BackboneSet(roles, hashes)


def load_backbones(suite: Suite, device: str = "cpu") -> tuple[BackboneSet, BackboneSet]:
    """(loss networks, judges). Judges not named explicitly fall back to the set's `judge_*` roles."""
    losses = load_block(suite.backbones, device, "backbones")
    judges = load_block(suite.judges, device, "judges") if suite.judges else BackboneSet({}, {})
    for role in [r for r in losses.roles if r.startswith("judge_")]:  # judges never serve as losses
        network, digest = losses.roles.pop(role), losses.hashes.pop(f"backbones.{role}", None)
        name = role[len("judge_"):]
        if name not in judges.roles:
            judges.roles[name] = network
            if digest is not None:
                judges.hashes[f"judges.{name}"] = digest
    return losses, judges

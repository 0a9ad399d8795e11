"""Loading a suite's `backbones:` and `judges:` blocks into networks, once per run, with content hashes.

A role maps to one spec or a list of weighted specs. The special role `set` names a whole backbone set (the
synthetic world), whose loader returns a dict role → network; explicit roles override entries of the set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from bench.cachefile import content_hash, named_path
from bench.suite import BackboneSpec, Suite


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
    """What the manifest and the prepare cache record for a network: `sha256:<file hash>` for a spec that is a
    weights file and nothing else (`{stylegan2: ffhq.pt}`), else a hash of the spec with the content hash of every
    file or folder its argument or options name (`{clip: ViT-B-32, pretrained: /w/clip.pt}`, `local-dir:` folders),
    so that new weights at the same path read as another network."""
    named = {"arg": spec.arg, **{f"options.{k}": v for k, v in spec.options.items()}}
    contents = {field: content_hash(path) for field, value in named.items() if (path := named_path(value))}
    arg_path = named_path(spec.arg)
    if arg_path is not None and arg_path.is_file() and not spec.options:
        return "sha256:" + contents["arg"]
    described = spec.model_dump(mode="json")
    blob = json.dumps({"spec": described, "contents": contents} if contents else described, sort_keys=True).encode()
    return "spec:" + hashlib.sha256(blob).hexdigest()[:16]


def load_spec(spec: BackboneSpec, device: str) -> Any:
    from zoo.backbones import BACKBONES

    loader = BACKBONES.get(spec.kind)
    args = () if spec.arg is None else (spec.arg,)
    return loader(*args, device=device, **spec.options)


def load_block(block: dict[str, BackboneSpec | list[BackboneSpec]], device: str, prefix: str,
               hashes: bool = True) -> BackboneSet:
    """The block's networks by role; with `hashes`, each spec's content hash too (which reads every weights file:
    a `--workers` process, whose hashes nobody reads, passes False and gets an empty `hashes`)."""
    roles: dict[str, Any] = {}
    digests: dict[str, str] = {}
    if "set" in block:
        spec = block["set"]
        loaded = load_spec(spec, device)
        roles.update(loaded.roles if isinstance(loaded, BackboneSet) else loaded)
        if hashes:
            digests.update({f"{prefix}.set": spec_hash(spec)})
            if isinstance(loaded, BackboneSet):
                digests.update({f"{prefix}.{k}": v for k, v in loaded.hashes.items()})
    for role, value in block.items():
        if role == "set":
            continue
        for key in [k for k in digests if k == f"{prefix}.{role}" or k.startswith(f"{prefix}.{role}.")]:
            del digests[key]  # the set's network for this role is replaced: its hash no longer describes the run
        if isinstance(value, list):
            roles[role] = [Weighted(load_spec(spec, device), spec.weight) for spec in value]
            if hashes:
                for i, spec in enumerate(value):
                    digests[f"{prefix}.{role}.{i}"] = spec_hash(spec)
        else:
            roles[role] = load_spec(value, device)
            if hashes:
                digests[f"{prefix}.{role}"] = spec_hash(value)
    return BackboneSet(roles, digests)


def load_backbones(suite: Suite, device: str = "cpu", hashes: bool = True,
                   with_judges: bool = True) -> tuple[BackboneSet, BackboneSet]:
    """(loss networks, judges). Judges not named explicitly fall back to the set's `judge_*` roles. `hashes=False`
    skips the content hashes (empty `hashes`); `with_judges=False` loads no `judges:` block and returns no judges (a
    `--workers` process runs preparations, which use the loss networks only)."""
    losses = load_block(suite.backbones, device, "backbones", hashes)
    if not with_judges:
        for role in [r for r in losses.roles if r.startswith("judge_")]:  # judges never serve as losses
            del losses.roles[role]
            losses.hashes.pop(f"backbones.{role}", None)
        return losses, BackboneSet({}, {})
    judges = load_block(suite.judges, device, "judges", hashes) if suite.judges else BackboneSet({}, {})
    for role in [r for r in losses.roles if r.startswith("judge_")]:  # judges never serve as losses
        network, digest = losses.roles.pop(role), losses.hashes.pop(f"backbones.{role}", None)
        name = role[len("judge_"):]
        if name not in judges.roles:
            judges.roles[name] = network
            if digest is not None:
                judges.hashes[f"judges.{name}"] = digest
    return losses, judges

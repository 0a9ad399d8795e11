"""The suite schema: one typed config for every YAML prompt suite, validated with pydantic.

A suite names its networks (`backbones`: used by methods as losses; `judges`: used only for scoring), its sources,
its edits, the method variants to compare and the metrics to compute. Errors point at file, line and field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench.errors import BenchError
from bench.yaml_source import SourcedDoc, load_with_includes


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackboneSpec(_Strict):
    """One network: a registered backbone name, the loader's first argument, and keyword arguments.

    Written in YAML as a one-key mapping plus options, e.g. ``{stylegan2: ffhq.pt}`` or
    ``{clip: ViT-B-32, pretrained: openai, weight: 1.0}``, or as a bare name (``synthface``).
    `weight` is not passed to the loader: methods that sum losses over several networks use it.
    """

    kind: str
    arg: Any = None
    options: dict[str, Any] = Field(default_factory=dict)
    weight: float = 1.0

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"kind": value}
        if isinstance(value, dict) and "kind" not in value:
            if not value:
                raise ValueError("empty backbone spec; write e.g. {stylegan2: path/to/ffhq.pt}")
            kind, *_ = value
            options = {k: v for k, v in value.items() if k not in (kind, "weight")}
            return {"kind": kind, "arg": value[kind], "options": options, "weight": value.get("weight", 1.0)}
        return value


BackboneRole = BackboneSpec | list[BackboneSpec]


class GeneratorSources(_Strict):
    kind: Literal["generator"] = "generator"
    count: int = Field(16, ge=1)
    seed: int = 0
    truncation: float = Field(0.7, ge=0.0, le=1.0)
    # what `truncation` pulls towards (bench/sources.py): the checkpoint's latent_avg, or mean_latent(4096) as
    # StyleCLIP's official code does
    truncation_center: Literal["latent_avg", "mean_latent"] = "latent_avg"
    batch_size: int = Field(8, ge=1)


class LatentSources(_Strict):
    kind: Literal["latents"]
    path: str
    batch_size: int = Field(8, ge=1)


class ImageSources(_Strict):
    kind: Literal["images"]
    path: str
    inversion: Literal["encoder", "optimization"] = "encoder"
    batch_size: int = Field(8, ge=1)


Sources = Annotated[GeneratorSources | LatentSources | ImageSources, Field(discriminator="kind")]


class Edit(_Strict):
    """One edit: target text against a neutral text (a domain edit is the same shape: neutral = source domain).

    `target_images` (a folder of style images) makes the target image-guided; `expect` names the ground-truth
    attribute values a judge should find after the edit (synthetic world only).
    """

    name: str
    target: str
    neutral: str = "a face"
    target_images: str | None = None
    expect: dict[str, Any] = Field(default_factory=dict)


class MethodSpec(_Strict):
    name: str
    variant: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.variant or self.name


class MetricSpec(_Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class Suite(_Strict):
    name: str
    version: int | str = 1
    description: str = ""
    backbones: dict[str, BackboneRole] = Field(default_factory=lambda: {"set": BackboneSpec(kind="synthface")})
    judges: dict[str, BackboneRole] = Field(default_factory=dict)
    sources: Sources = Field(default_factory=GeneratorSources)
    edits: list[Edit] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    metrics: list[MetricSpec] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)

    @field_validator("backbones", "judges", mode="before")
    @classmethod
    def _set_name(cls, value: Any) -> Any:
        """A bare name (``backbones: synthface``) names a whole backbone set."""
        return {"set": value} if isinstance(value, str) else value

    @field_validator("edits")
    @classmethod
    def _unique_edit_names(cls, edits: list[Edit]) -> list[Edit]:
        _require_unique([e.name for e in edits], "edit name")
        return edits

    @field_validator("methods")
    @classmethod
    def _unique_variants(cls, methods: list[MethodSpec]) -> list[MethodSpec]:
        _require_unique([m.label for m in methods], "method variant")
        return methods

    def content_hash(self) -> str:
        """A hash of the validated suite (after includes), for run manifests and resume checks."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def backbone_specs(self) -> list[tuple[tuple, BackboneSpec]]:
        """Every backbone spec the suite names (losses and judges), with its path in the suite."""
        found = []
        for block in ("backbones", "judges"):
            for role, value in getattr(self, block).items():
                specs = value if isinstance(value, list) else [value]
                found += [((block, role) + ((i,) if isinstance(value, list) else ()), spec)
                          for i, spec in enumerate(specs)]
        return found


def _require_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} {name!r}")
        seen.add(name)


def _data_path(loc: tuple, data: Any) -> tuple:
    """pydantic's error location minus the parts that name union members or tags instead of data keys."""
    path, node = [], data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(part, str) and (part in ("generator", "latents", "images") or not part.islower()
                                        or "[" in part):
            continue  # a union tag or member name such as "BackboneSpec" / "list[BackboneSpec]"
        else:
            node = None  # a missing field: keep its name, nothing below it exists
        path.append(part)
    return tuple(path)


def _format_errors(exc: ValidationError, doc: SourcedDoc, path: Path) -> str:
    lines = []
    for error in exc.errors():
        loc = _data_path(error["loc"], doc.data)
        file, line = doc.locate(loc) or (str(path), 1)
        field = ".".join(str(p) for p in loc) or "(suite)"
        lines.append(f"{file}:{line}: {field}: {error['msg']}")
    return "invalid suite: " + "; ".join(dict.fromkeys(lines))


def load_suite(path: str | Path, check_names: bool = True) -> Suite:
    """Load, merge includes, validate; with `check_names`, also check every method/metric/backbone name."""
    path = Path(path)
    doc = load_with_includes(path)
    try:
        suite = Suite.model_validate(doc.data)
    except ValidationError as exc:
        raise BenchError(_format_errors(exc, doc, path)) from None
    if check_names:
        check_registered_names(suite, doc, path)
    return suite


def check_registered_names(suite: Suite, doc: SourcedDoc | None = None, path: Path | None = None) -> None:
    """Raise a BenchError (with file:line when known) for any name no registry knows."""
    from bench.errors import UnknownNameError
    from methods import METHODS
    from metrics import METRICS
    from zoo.backbones import BACKBONES

    def where(loc: tuple) -> str:
        found = doc.locate(loc) if doc is not None else None
        return f"{found[0]}:{found[1]}: " if found else ""

    for i, method in enumerate(suite.methods):
        if method.name not in METHODS:
            raise BenchError(where(("methods", i, "name")) + str(UnknownNameError("method", method.name,
                                                                                   METHODS.names())))
    for i, metric in enumerate(suite.metrics):
        if metric.name not in METRICS:
            raise BenchError(where(("metrics", i)) + str(UnknownNameError("metric", metric.name, METRICS.names())))
    for loc, spec in suite.backbone_specs():
        if spec.kind not in BACKBONES:
            raise BenchError(where(loc) + str(UnknownNameError("backbone", spec.kind, BACKBONES.names())))


def suite_dirs() -> list[Path]:
    """Where `bench ls suites` looks: ./suites, then the suites shipped beside the package."""
    shipped = Path(__file__).resolve().parents[1] / "suites"
    local = Path.cwd() / "suites"
    return [d for d in dict.fromkeys([local, shipped]) if d.is_dir()]

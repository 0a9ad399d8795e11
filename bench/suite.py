"""The suite schema: one typed config for every YAML prompt suite, validated with pydantic.

A suite names its networks (`backbones`: used by methods as losses; `judges`: used only for scoring), its sources,
its edits, the method variants to compare and the metrics to compute. Errors point at file, line and field.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from bench.errors import BenchError
from bench.yaml_source import load_with_includes


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or blank")
    return value


def _suite_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", value):
        raise ValueError(f"{value!r} is not a valid suite name (it names the run folder runs/<name>): use letters, "
                         "digits, '-', '_' and '.', not starting with '.'")
    return value


NonBlank = Annotated[str, AfterValidator(_non_blank)]
# a number where a YAML `true` or a quoted '0.5' is a mistake, not a value: no bool or string is converted (an
# integer still is, for a float: `truncation: 1`)
Number = Annotated[float, Field(strict=True)]



class BackboneSpec(_Strict):
    """One network: a registered backbone name, the loader's first argument, and keyword arguments.

    Written in YAML as a one-key mapping plus options, e.g. ``{stylegan2: ffhq.pt}`` or
    ``{clip: ViT-B-32, pretrained: openai, weight: 1.0}``, or as a bare name (``synthface``).
    `weight` is not passed to the loader: methods that sum losses over several networks use it.
    """

    kind: str
    arg: Any = None
    options: dict[str, Any] = Field(default_factory=dict)
    weight: Number = 1.0

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
    count: StrictInt = Field(16, ge=1)
    seed: StrictInt = 0
    truncation: Number = Field(0.7, ge=0.0, le=1.0)
    # what `truncation` pulls towards (bench/sources.py): the checkpoint's latent_avg, or mean_latent(4096) as
    # StyleCLIP's official code does
    truncation_center: Literal["latent_avg", "mean_latent"] = "latent_avg"
    batch_size: StrictInt = Field(8, ge=1)


class LatentSources(_Strict):
    kind: Literal["latents"]
    path: str
    batch_size: StrictInt = Field(8, ge=1)


class ImageSources(_Strict):
    kind: Literal["images"]
    path: str
    inversion: Literal["encoder", "optimization"] = "encoder"
    batch_size: StrictInt = Field(8, ge=1)


Sources = Annotated[GeneratorSources | LatentSources | ImageSources, Field(discriminator="kind")]


class Edit(_Strict):
    """One edit: target text against a neutral text (a domain edit is the same shape: neutral = source domain).

    `target_images` (a folder of style images) makes the target image-guided; `expect` names the ground-truth
    attribute values a judge should find after the edit (synthetic world only).
    """

    name: NonBlank
    target: NonBlank
    neutral: NonBlank = "a face"
    target_images: str | None = None
    expect: dict[str, Any] = Field(default_factory=dict)


class MethodSpec(_Strict):
    name: NonBlank
    variant: NonBlank | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        """A bare name (``methods: [source]``) is the method with its defaults, as in ``metrics:``."""
        return {"name": value} if isinstance(value, str) else value

    @property
    def label(self) -> str:
        return self.variant or self.name


class MetricSpec(_Strict):
    name: NonBlank
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class Suite(_Strict):
    name: Annotated[str, AfterValidator(_suite_name)]
    version: StrictInt | str = 1
    description: str = ""
    backbones: dict[str, BackboneRole] = Field(default_factory=lambda: {"set": BackboneSpec(kind="synthface")})
    judges: dict[str, BackboneRole] = Field(default_factory=dict)
    sources: Sources = Field(default_factory=GeneratorSources)
    edits: list[Edit] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    metrics: list[MetricSpec] = Field(default_factory=list)
    seeds: list[StrictInt] = Field(default_factory=lambda: [0], min_length=1)

    @field_validator("backbones", "judges", mode="before")
    @classmethod
    def _set_name(cls, value: Any) -> Any:
        """A bare name (``backbones: synthface``) names a whole backbone set."""
        return {"set": value} if isinstance(value, str) else value

    @field_validator("edits")
    @classmethod
    def _unique_edit_names(cls, edits: list[Edit]) -> list[Edit]:
        _require_unique([e.name for e in edits], "edit name", [("name",)] * len(edits), folders=True)
        return edits

    @field_validator("methods")
    @classmethod
    def _unique_variants(cls, methods: list[MethodSpec]) -> list[MethodSpec]:
        _require_unique([m.label for m in methods], "method variant",
                        [("variant",) if m.variant else ("name",) for m in methods], folders=True)
        return methods

    @field_validator("metrics")
    @classmethod
    def _unique_metrics(cls, metrics: list[MetricSpec]) -> list[MetricSpec]:
        _require_unique([m.name for m in metrics], "metric", hint="each metric is one column: list it once")
        return metrics

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        _require_unique(seeds, "seed")
        return seeds

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


def _require_unique(names: list, what: str, keys: list[tuple] | None = None, folders: bool = False,
                    hint: str = "") -> None:
    """A `duplicate` error at the later of two equal entries (`keys[i]`: where in entry i to point), naming where the
    first is; with `folders`, names that differ but write to one folder (bench.images.slug) are duplicates too."""
    from bench.images import slug

    keys = keys or [()] * len(names)
    for i, name in enumerate(names):
        first = next((j for j in range(i) if names[j] == name), None)
        if first is None and folders:
            first = next((j for j in range(i) if slug(names[j]) == slug(name)), None)
        if first is not None:
            message = (f"duplicate {what} {name!r}" if names[first] == name else
                       f"{what}s {names[first]!r} and {name!r} both write to the folder {slug(name)!r}: rename one")
            raise PydanticCustomError("duplicate", message + (f"; {hint}" if hint else ""),
                                      {"at": (i, *keys[i]), "first": (first, *keys[first])})


def load_suite(path: str | Path, check_names: bool = True) -> Suite:
    """Load, merge includes, validate; with `check_names`, also check every method/metric/backbone name."""
    path = Path(path)
    doc = load_with_includes(path)
    try:
        suite = Suite.model_validate(doc.data)
    except ValidationError as exc:
        from bench.suite_errors import format_errors

        raise BenchError(format_errors(exc, doc, path, Suite)) from None
    if check_names:
        from bench import suite_checks

        suite_checks.check_registered_names(suite, doc, path)
    return suite


def suite_dirs() -> list[Path]:
    """Where `bench ls suites` looks: ./suites, then the suites shipped beside the package."""
    shipped = Path(__file__).resolve().parents[1] / "suites"
    local = Path.cwd() / "suites"
    return [d for d in dict.fromkeys([local, shipped]) if d.is_dir()]

"""The suite schema: one typed config for every YAML prompt suite, validated with pydantic.

A suite names its networks (`backbones`: used by methods as losses; `judges`: used only for scoring), its sources,
its edits, the method variants to compare and the metrics to compute. Errors point at file, line and field.
"""

from __future__ import annotations

import hashlib
import json
import re
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from bench.errors import BenchError
from bench.yaml_source import SourcedDoc, load_with_includes


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

# The roles something reads: methods (methods/losses.py, methods/tedigan.py, methods/inversion.py, bench/sources.py)
# from `backbones:`, metrics (their `role` parameters' defaults) from `judges:`. A backbone set provides `judge_*`
# roles that become judges (bench/backbone_set.py). Another role is read only where a method or metric parameter
# of the suite names it (`role: my_clip`, nada's `clip_role`).
LOSS_ROLES = ("generator", "clip", "identity", "encoder", "perceptual")
JUDGE_ROLES = ("clip", "identity", "attributes")


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


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _members(tp: Any) -> list:
    """The members of a union type ([] for any other type)."""
    tp = _unwrap(tp)
    return [_unwrap(m) for m in get_args(tp)] if get_origin(tp) in (Union, types.UnionType) else []


def _tag(tp: Any) -> str | None:
    """The `kind` a tagged union's member is selected by (GeneratorSources: "generator")."""
    field = getattr(tp, "model_fields", {}).get("kind")
    return get_args(field.annotation)[0] if field is not None and get_origin(field.annotation) is Literal else None


def _schema_path(loc: tuple) -> tuple[tuple, Any, Any, list[int]]:
    """(pydantic's error location without the parts that name a union member, the type that holds its last part,
    the type at it, the indices in `loc` of the member names), walking the Suite's annotations: the types say which
    parts are data keys."""
    tp, owner, path, members = Suite, None, [], []
    for i, part in enumerate(loc):
        member = next((m for m in _members(tp) if part in (_tag(m), getattr(get_origin(m) or m, "__name__", None))
                       or (isinstance(part, str) and part.split("[")[0] == getattr(get_origin(m), "__name__", ""))),
                      None)
        if member is not None:
            tp = member
            members.append(i)
            continue
        path.append(part)
        owner, tp = tp, _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            tp = tp.model_fields[part].annotation if part in tp.model_fields else None
        elif get_origin(tp) in (list, dict):
            tp = get_args(tp)[-1]
        else:
            tp = None
    return tuple(path), _unwrap(owner), tp, members


def _relevant(errors: list[dict]) -> list[dict]:
    """The errors less a union member's "should be a list" where another member took the value (a mapping) and found
    a problem inside it: that member's problem is the one to read."""
    def splits(error: dict) -> list[tuple[tuple, Any, bool]]:  # per union passed: (where, member, value not its type)
        loc = error["loc"]
        return [(loc[:i], loc[i], len(loc) == i + 1 and error["type"].endswith("_type"))
                for i in _schema_path(loc)[3]]

    found = [splits(e) for e in errors]
    took = {(where, member) for points in found for where, member, mismatch in points if not mismatch}
    return [e for e, points in zip(errors, found)
            if not (points and points[-1][2] and any(w == points[-1][0] and m != points[-1][1] for w, m in took))]


def _message(error: dict, owner: Any, tp: Any) -> tuple[str, tuple]:
    """(a one-line message without pydantic's noise, more location below the error's: the entry it is about)."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        import difflib

        close = difflib.get_close_matches(str(error["loc"][-1]), list(owner.model_fields), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key; {hint}valid keys: {', '.join(owner.model_fields)}", ()
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        field = str(ctx.get("discriminator", "kind")).strip("'")
        valid = ", ".join(t for t in map(_tag, _members(tp)) if t)
        if kind == "union_tag_not_found":
            return f"missing {field}; valid {field}s: {valid}", ()
        return f"unknown {field} {ctx.get('tag')!r}; valid {field}s: {valid}", (field,)
    if kind == "missing":
        return "required, not given", ()
    if kind == "duplicate":
        return message, tuple(ctx["at"])
    return re.sub(r"a valid dictionary( or instance of \w+)?", "a mapping", message), ()


def _got(value: Any) -> str:
    """" (got VALUE)" for a scalar input, with a hint for a number written as text."""
    if value is None:
        return " (got no value)"
    if not isinstance(value, (str, int, float, bool)):
        return ""
    hint = ""
    if isinstance(value, str):
        try:
            float(value)
            hint = ": write numbers unquoted"
        except ValueError:
            pass
    return f" (got {value!r}{hint})"


def _format_errors(exc: ValidationError, doc: SourcedDoc, path: Path) -> str:
    """One line per field (the messages of a union's members joined), each with file:line and the valid choices."""
    found: dict[tuple, list[str]] = {}
    got: dict[tuple, str] = {}  # the value, once per field
    for error in _relevant(exc.errors()):
        loc, owner, tp, _ = _schema_path(error["loc"])
        message, below = _message(error, owner, tp)
        file, line = doc.locate(loc + below) or (str(path.resolve()), 1)
        if error["type"] == "duplicate":
            first = loc + tuple(error["ctx"]["first"])
            where = doc.locate(first)
            at = "" if where is None else f" at line {where[1]}" if where[0] == file else f" at {where[0]}:{where[1]}"
            message += f" (first: {'.'.join(map(str, first))}{at})"
        loc += below
        key = (file, line, ".".join(str(p) for p in loc) or "(suite)")
        if error["type"] not in ("missing", "extra_forbidden", "duplicate") and "union_tag" not in error["type"]:
            got[key] = "" if repr(error.get("input")) in message else _got(error.get("input"))
        messages = found.setdefault(key, [])
        if message not in messages:
            messages.append(message)
    lines = [f"{file}:{line}: {field}: " + "; or ".join([messages[0], *(m.removeprefix("Input should be ")
                                                                     for m in messages[1:])])
             + got.get((file, line, field), "")  # a union's members' messages joined: "should be A; or B (got x)"
             for (file, line, field), messages in found.items()]
    return "invalid suite: " + "; ".join(lines)


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
    """Raise one BenchError (each problem with file:line when known) for what `bench run` would reject, found
    without loading a network: a name no registry knows; a method variant's parameters (unknown names, a type
    other than its default's, a value its constructor refuses); options a backbone loader or a metric does not
    take; `expect` attributes and values the synthetic world's attribute judge does not know."""
    from bench.errors import UnknownNameError
    from methods import METHODS
    from metrics import METRICS
    from zoo.backbones import BACKBONES

    problems: list[str] = []

    def where(loc: tuple) -> str:
        found = doc.locate(loc) if doc is not None else None
        return f"{found[0]}:{found[1]}: " if found else ""

    for i, method in enumerate(suite.methods):
        if method.name not in METHODS:
            problems.append(where(("methods", i, "name")) + str(UnknownNameError("method", method.name,
                                                                                  METHODS.names())))
            continue
        problem = method_problem(method)
        if problem:
            key = problem_param(method, problem)
            loc = ("methods", i, "params", key) if key else ("methods", i)
            problems.append(where(loc) + f"methods[{i}] ({describe_variant(method)}): {problem}")
    for i, metric in enumerate(suite.metrics):
        if metric.name not in METRICS:
            problems.append(where(("metrics", i)) + str(UnknownNameError("metric", metric.name, METRICS.names())))
            continue
        problem = metric_problem(metric.name, metric.params)
        if problem:
            problems.append(where(("metrics", i, "params")) + f"metrics[{i}] {metric.name}: {problem}")
    for loc, spec in suite.backbone_specs():
        if spec.kind not in BACKBONES:
            problems.append(where(loc) + str(UnknownNameError("backbone", spec.kind, BACKBONES.names())))
            continue
        problem = backbone_problem(spec)
        if problem:
            problems.append(where(loc) + f"{'.'.join(map(str, loc))} ({spec.kind}): {problem}")
    found = expect_problems(suite) + role_problems(suite) + metric_conflicts(suite)
    problems += [where(loc) + text for loc, text in found]
    if problems:
        raise BenchError("; ".join(dict.fromkeys(problems)))


def describe_variant(method: MethodSpec) -> str:
    return f"variant {method.label!r}" + (f" of {method.name}" if method.label != method.name else "")


class _Probe:
    """A value no parameter takes: a method that refuses it checks that parameter's values itself."""

    def __repr__(self) -> str:
        return "<probe>"


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            tuple: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _same_kind(value: Any, default: Any) -> bool:
    """Whether `value` has the type of a parameter whose default is `default` (None: anything)."""
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def method_problem(spec: MethodSpec) -> str | None:
    """Why the method variant `spec` cannot be built with its parameters (None: it can), found without a network:
    its constructor's own checks (unknown names, refused values), then each parameter's type against its default's
    (an integer where the default is 300, a number where it is 0.1). A parameter whose default's type does not
    hold is still accepted when the method checks that parameter itself (styleclip_global's beta: a number or
    'auto'): its constructor refuses a value that no parameter takes."""
    from methods import METHODS

    cls = METHODS.get(spec.name)
    try:
        cls(**spec.params)
    except Exception as exc:  # noqa: BLE001 - a constructor's error is the user's to read, as one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        for prefix in (f"{cls.__name__}: ", f"{spec.name}: "):  # the variant is named by the caller
            message = message.removeprefix(prefix)
        return message if isinstance(exc, BenchError) else f"{type(exc).__name__}: {message}"
    defaults = cls.defaults()
    for name, value in spec.params.items():
        default = defaults.get(name)
        if _same_kind(value, default):
            continue
        try:
            cls(**{**spec.params, name: _Probe()})
        except Exception:  # noqa: BLE001 - the method checks this parameter's values itself, and took this one
            continue
        return (f"parameter {name}: {value!r} is {_type_name(value)}, expected {_type_name(default)} like its "
                f"default {default!r}")
    return None


def problem_param(spec: MethodSpec, problem: str) -> str | None:
    """The parameter a `method_problem` message is about, to point at its line (None: the whole entry)."""
    named = problem.split("; valid")[0]  # not the list of valid names that follows
    for name in spec.params:
        if f"parameter {name}:" in named or f"'{name}'" in named or named.startswith(f"{name} "):
            return name
    return None


def call_problem(fn: Any, args: tuple, options: dict[str, Any], fixed: tuple[str, ...] = (),
                 what: str = "option", first_is_value: bool = False) -> str | None:
    """Why `fn(*args, **options, **fixed)` would fail to bind (None: it binds), from `fn`'s signature only: unknown
    option names with the valid ones, a missing required argument. `fixed` names the keywords the harness passes
    itself (device, context); `first_is_value`: the first positional parameter is the one-key value of a backbone
    spec ({clip: ViT-B-32}, given or not), never an option."""
    import inspect

    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check
        return None
    params = list(signature.parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    taken = set(fixed) | ({positional[0].name} if first_is_value and positional else set())
    valid = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in taken]
    unknown = [k for k in options if k not in valid]
    if unknown:
        return (f"unknown {what}(s) {', '.join(map(repr, unknown))}; valid {what}s: "
                f"{', '.join(valid) if valid else '(none)'}")
    try:  # what is left: a missing required argument, a first argument the loader has no place for
        signature.bind(*args, **options, **{k: None for k in fixed if k in signature.parameters})
    except TypeError as exc:
        return str(exc)
    return None


def backbone_problem(spec: BackboneSpec) -> str | None:
    """Options (and the first argument) the backbone's loader does not take, from its signature: no weights load."""
    from zoo.backbones import BACKBONES

    try:
        loader = BACKBONES.get(spec.kind)
    except ImportError:  # an optional package missing: the load reports it with the loader's own advice
        return None
    args = () if spec.arg is None else (spec.arg,)
    problem = call_problem(loader, args, spec.options, fixed=("device",), first_is_value=True)
    if problem and "missing a required argument" in problem and spec.arg is None:
        return f"{problem}: write it as {{{spec.kind}: VALUE}}"
    return problem


def metric_problem(name: str, params: dict[str, Any]) -> str | None:
    """Parameters the metric `name` (or the metric that computes it) does not take, from its signature."""
    from metrics import METRICS
    from metrics.base import MetricOutput

    target = METRICS.get(name)
    if isinstance(target, MetricOutput):
        if target.produced_by == "runner":
            return f"unknown parameter(s) {', '.join(map(repr, params))}: the runner measures it and takes none" \
                if params else None
        producer = METRICS.get(target.produced_by)
        problem = call_problem(producer, (), params, fixed=("context",), what="parameter")
        return f"{problem} (of {target.produced_by}, which computes it)" if problem else None
    return call_problem(target, (), params, fixed=("context",), what="parameter")


def metric_conflicts(suite: Suite) -> list[tuple[tuple, str]]:
    """[(location, problem)] for listed metrics that one metric computes (clip_gain and clip_score: clip_score) and
    that give one of its parameters different values: it runs once, with one of them (bench.runner.build_metrics)."""
    from metrics import METRICS
    from metrics.base import MetricOutput

    found, first = [], {}
    for i, spec in enumerate(suite.metrics):
        if spec.name not in METRICS:
            continue
        target = METRICS.get(spec.name)
        producer = target.produced_by if isinstance(target, MetricOutput) else METRICS.canonical(spec.name)
        for key, value in spec.params.items():
            other = suite.metrics[j := first.setdefault((producer, key), i)]
            if other.params[key] != value:
                found.append((("metrics", i, "params", key),
                              f"metrics[{i}] {spec.name}: {key}={value!r} conflicts with {key}={other.params[key]!r} "
                              f"of metrics[{j}] {other.name}: {producer} computes both, once, with one value"))
    return found


def role_problems(suite: Suite) -> list[tuple[tuple, str]]:
    """[(location, problem)] for roles of `backbones:`/`judges:` that nothing reads (a misspelt `genrator` would be
    loaded and ignored): valid are the roles methods and metrics read (LOSS_ROLES, JUDGE_ROLES), `set`, a set's
    `judge_*` roles, and any role a `role`/`*_role` parameter of a method or metric in the suite names."""
    named = {value for spec in [*suite.methods, *suite.metrics] for key, value in spec.params.items()
             if (key == "role" or key.endswith("_role")) and isinstance(value, str)}
    custom = sorted(named - {*LOSS_ROLES, *JUDGE_ROLES})
    valid = {"backbones": ["set", *LOSS_ROLES, *(f"judge_{r}" for r in JUDGE_ROLES), *custom],
             "judges": ["set", *JUDGE_ROLES, *custom]}
    return [((block, role), f"{block}.{role}: unknown role; valid: {', '.join(valid[block])} (or a role that a "
             "method's or metric's role parameter names)")
            for block in valid for role in getattr(suite, block) if role not in valid[block]]


def expect_problems(suite: Suite) -> list[tuple[tuple, str]]:
    """[(location, problem)] for `expect` entries the synthetic world's attribute judge cannot read (attribute
    names and values from `zoo.synthface`'s tables, no network loaded). Checked only in suites that name the
    synthetic world (`synthface`) and no other attribute judge; elsewhere a judge's vocabulary is not known
    before it is loaded, so `expect` is checked when it is scored."""
    kinds = {spec.kind for _, spec in suite.backbone_specs()}
    other_judge = any(loc[1] == "attributes" and spec.kind != "synthface" for loc, spec in suite.backbone_specs())
    if "synthface" not in kinds or other_judge or not any(edit.expect for edit in suite.edits):
        return []
    from metrics.attributes import expected_classes
    from zoo.synthface import ATTRIBUTES

    heads = [*ATTRIBUTES, "domain"]
    found = []
    for i, edit in enumerate(suite.edits):
        for name, value in edit.expect.items():
            try:
                expected_classes({name: value}, heads, "expect")
            except BenchError as exc:
                problem = str(exc).removeprefix("expect: ")
                found.append((("edits", i, "expect", name), f"edits[{i}] {edit.name}: {problem}"))
    return found


def suite_dirs() -> list[Path]:
    """Where `bench ls suites` looks: ./suites, then the suites shipped beside the package."""
    shipped = Path(__file__).resolve().parents[1] / "suites"
    local = Path.cwd() / "suites"
    return [d for d in dict.fromkeys([local, shipped]) if d.is_dir()]

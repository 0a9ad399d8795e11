"""What `bench run` would reject in a schema-valid suite, found without loading a network: names no registry
knows, method parameters (names, types, values the constructor refuses), backbone and metric options, `expect`
values, roles nothing reads, metrics whose shared producer would get conflicting parameters."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.suite import BackboneSpec, ImageSources, LatentSources, MethodSpec, Suite
from bench.yaml_source import SourcedDoc


def check_registered_names(suite: Suite, doc: SourcedDoc | None = None, path: Path | None = None) -> None:
    """Raise one BenchError (each problem with file:line when known) for what `bench run` would reject, found
    without loading a network: a name no registry knows; a method variant's parameters (unknown names, a type
    other than its default's, a value its constructor refuses); options a backbone loader or a metric does not
    take; `expect` attributes and values the synthetic world's attribute judge does not know; input files and
    folders that are missing or hold no images (`input_problems`)."""
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
    found = expect_problems(suite) + role_problems(suite) + metric_conflicts(suite) + input_problems(suite)
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


# The roles methods read from `backbones:` (methods/losses.py, methods/tedigan.py, methods/inversion.py,
# bench/sources.py; written out because methods read them in code). The judge roles are read off the metrics' own
# `role` parameters (`judge_roles`). A backbone set provides `judge_*` roles that become judges
# (bench/backbone_set.py); any other role is read only where a method or metric parameter of the suite names it.
LOSS_ROLES = ("generator", "clip", "identity", "encoder", "perceptual")


def judge_roles() -> list[str]:
    """The default `role` / `*_role` of every registered metric class (attributes, clip, identity)."""
    from metrics import METRICS
    from metrics.base import MetricOutput

    roles = set()
    for name in METRICS.names():
        target = METRICS.get(name)
        if isinstance(target, MetricOutput):
            continue  # computed by another metric, whose signature is read under its own name
        for key, param in inspect.signature(target).parameters.items():
            if (key == "role" or key.endswith("_role")) and isinstance(param.default, str):
                roles.add(param.default)
    return sorted(roles)


def role_problems(suite: Suite) -> list[tuple[tuple, str]]:
    """[(location, problem)] for roles of `backbones:`/`judges:` that nothing reads (a misspelt `genrator` would be
    loaded and ignored): valid are the roles methods and metrics read (LOSS_ROLES, judge_roles()), `set`, a set's
    `judge_*` roles, and any role a `role`/`*_role` parameter of a method or metric in the suite names."""
    named = {value for spec in [*suite.methods, *suite.metrics] for key, value in spec.params.items()
             if (key == "role" or key.endswith("_role")) and isinstance(value, str)}
    judged = judge_roles()
    custom = sorted(named - {*LOSS_ROLES, *judged})
    valid = {"backbones": ["set", *LOSS_ROLES, *(f"judge_{r}" for r in judged), *custom],
             "judges": ["set", *judged, *custom]}
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


def input_problems(suite: Suite) -> list[tuple[tuple, str]]:
    """[(location, problem)] for the suite's inputs on disk that `bench run` would fail on only once it reached
    them: an image source folder or an edit's `target_images` folder that is missing or holds no images, a
    `synthface:<domain>` that names no domain, a latents file (sources, or a method's `latents` parameter) that does
    not exist. Paths are read as `bench run` reads them (relative to the working directory). A latents file's
    shape is checked against the generator when it is loaded."""
    from bench.sources import image_folder_problem

    found = []
    if isinstance(suite.sources, ImageSources):
        problem = image_folder_problem(suite.sources.path)
        if problem:
            found.append((("sources", "path"), f"sources.path: {problem}"))
    if isinstance(suite.sources, LatentSources) and not Path(suite.sources.path).expanduser().is_file():
        found.append((("sources", "path"), f"sources.path: latents file {suite.sources.path} not found"))
    for i, edit in enumerate(suite.edits):
        problem = edit.target_images and _style_images_problem(edit.target_images)
        if problem:
            found.append((("edits", i, "target_images"), f"edits[{i}] {edit.name}: target_images: {problem}"))
    for i, method in enumerate(suite.methods):
        latents = method.params.get("latents")
        if isinstance(latents, str) and not Path(latents).expanduser().is_file():
            found.append((("methods", i, "params", "latents"),
                          f"methods[{i}] ({describe_variant(method)}): latents file {latents} not found"))
    return found


def _style_images_problem(target_images: str) -> str | None:
    from bench.sources import image_folder_problem
    from methods.nada import SYNTHFACE_PREFIX
    from zoo.synthface import DOMAIN_NAMES

    if target_images.startswith(SYNTHFACE_PREFIX):
        domain = target_images[len(SYNTHFACE_PREFIX):]
        return None if domain in DOMAIN_NAMES else f"unknown domain {domain!r}; valid: {', '.join(DOMAIN_NAMES)}"
    return image_folder_problem(target_images)

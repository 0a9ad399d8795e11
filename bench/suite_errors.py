"""A suite's pydantic validation errors as one line per field: file:line (from the YAML source map), the field's
dotted path, a message without pydantic's noise (union members' messages joined, "Value error," dropped), the valid
keys or kinds, and the value given. The walk over the schema's annotations tells which parts of pydantic's error
location are data keys and which name a union member."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from bench.yaml_source import SourcedDoc


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


def _schema_path(loc: tuple, root: Any) -> tuple[tuple, Any, Any, list[int]]:
    """(pydantic's error location without the parts that name a union member, the type that holds its last part,
    the type at it, the indices in `loc` of the member names), walking `root`'s annotations: the types say which
    parts are data keys."""
    tp, owner, path, members = root, None, [], []
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


def _relevant(errors: list[dict], root: Any) -> list[dict]:
    """The errors less a union member's "should be a list" where another member took the value (a mapping) and found
    a problem inside it: that member's problem is the one to read."""
    def splits(error: dict) -> list[tuple[tuple, Any, bool]]:  # per union passed: (where, member, value not its type)
        loc = error["loc"]
        return [(loc[:i], loc[i], len(loc) == i + 1 and error["type"].endswith("_type"))
                for i in _schema_path(loc, root)[3]]

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


def format_errors(exc: ValidationError, doc: SourcedDoc, path: Path, root: Any) -> str:
    """One line per field (the messages of a union's members joined), each with file:line and the valid choices."""
    found: dict[tuple, list[str]] = {}
    got: dict[tuple, str] = {}  # the value, once per field
    for error in _relevant(exc.errors(), root):
        loc, owner, tp, _ = _schema_path(error["loc"], root)
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

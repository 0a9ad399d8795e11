"""YAML loading that remembers where every value came from, and `include:` merging.

pydantic reports a bad field as a path (``("methods", 2, "params", "steps")``); to point the user at the file
and line, each loaded document carries a map from such paths to (file, line). PyYAML's node tree has the marks;
no YAML library we depend on keeps them through to plain dicts, hence this small walker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.errors import BenchError

Location = tuple[str, int]  # (file, 1-based line)
PathKey = tuple[Any, ...]


@dataclass
class SourcedDoc:
    data: Any
    locations: dict[PathKey, Location] = field(default_factory=dict)

    def locate(self, path: PathKey) -> Location | None:
        """The location of `path`, or of its longest known prefix."""
        for end in range(len(path), -1, -1):
            if tuple(path[:end]) in self.locations:
                return self.locations[tuple(path[:end])]
        return None


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading `1e-3` and `1.5e3` (exponents without a sign
    or without a ".", as YAML 1.2 and JSON write them) as numbers, not as text."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def _construct(node: yaml.Node, loader: yaml.SafeLoader, filename: str, path: PathKey,
               locations: dict[PathKey, Location]) -> Any:
    locations[path] = (filename, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise BenchError(f"{filename}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
            out[key] = _construct(value_node, loader, filename, path + (key,), locations)
            locations[path + (key,)] = (filename, key_node.start_mark.line + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, loader, filename, path + (i,), locations) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def not_a_file(path: Path) -> str:
    """Why `path` cannot be read as a suite file: missing, or a folder (with the suite files it holds)."""
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        return (f"{path} is a directory; pass a .yaml file "
                f"({'found: ' + ', '.join(found) if found else 'it holds none'})")
    return f"suite file not found: {path}"


def load_yaml(path: str | Path) -> SourcedDoc:
    """Parse one YAML file (no includes) into plain data plus a location map."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(not_a_file(path))
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        utf16 = "; it looks like UTF-16: save it as UTF-8" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise BenchError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}){utf16}") \
            from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BenchError(f"{path}{line}: malformed YAML: {problem}") from None
    finally:
        loader.dispose()
    locations: dict[PathKey, Location] = {}
    data = {} if node is None else _construct(node, loader, str(path), (), locations)
    return SourcedDoc(data, locations)


def _merge(base: SourcedDoc, over: SourcedDoc, path: PathKey = ()) -> None:
    """Deep-merge `over` into `base` in place: mappings merge key by key, anything else is replaced."""

    def subtree(doc: SourcedDoc, prefix: PathKey) -> dict[PathKey, Location]:
        return {k: v for k, v in doc.locations.items() if k[:len(prefix)] == prefix}

    def get(data: Any, p: PathKey) -> Any:
        for part in p:
            data = data[part]
        return data

    base_value, over_value = get(base.data, path), get(over.data, path)
    if isinstance(base_value, dict) and isinstance(over_value, dict):
        for key in over_value:
            if key in base_value:
                _merge(base, over, path + (key,))
            else:
                base_value[key] = over_value[key]
                base.locations.update(subtree(over, path + (key,)))
        return
    parent = get(base.data, path[:-1])
    parent[path[-1]] = over_value
    for key in list(subtree(base, path)):
        del base.locations[key]
    base.locations.update(subtree(over, path))


def load_with_includes(path: str | Path, _seen: tuple[Path, ...] = ()) -> SourcedDoc:
    """Load a suite file, first merging the files named in its `include:` (relative to it), in order."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise BenchError(f"include cycle: {chain}")
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise BenchError(f"{path}:1: a suite must be a YAML mapping, got {type(doc.data).__name__}")
    includes = doc.data.pop("include", None) or []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list):
        where = doc.locate(("include",)) or (str(path), 1)
        raise BenchError(f"{where[0]}:{where[1]}: include must be a file name or a list of them, got "
                         f"{type(includes).__name__}")
    merged = SourcedDoc({}, {})
    for i, name in enumerate(includes):
        if not isinstance(name, str):
            where = doc.locate(("include", i)) or (str(path), 1)
            raise BenchError(f"{where[0]}:{where[1]}: include entries must be file names, got {name!r}")
        target = path.parent / name
        if not target.is_file():  # named where it is included: the including file and the line of the entry
            where = doc.locate(("include", i)) or (str(path), 1)
            raise BenchError(f"{where[0]}:{where[1]}: include {name!r}: {not_a_file(target.resolve())} "
                             f"(include names are relative to {path.parent})")
        _merge_root(merged, load_with_includes(target, (*_seen, path)))
    _merge_root(merged, doc)
    return merged


def _merge_root(base: SourcedDoc, over: SourcedDoc) -> None:
    for key in over.data:
        if key in base.data:
            _merge(base, over, (key,))
        else:
            base.data[key] = over.data[key]
            base.locations.update({k: v for k, v in over.locations.items() if k[:1] == (key,)})

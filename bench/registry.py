"""A registry of named components with lazy ``"package.module:attr"`` entries.

Heavy back-ends (open_clip, insightface, ray) are imported only when a name that needs them is looked up, so
``bench ls`` and ``bench validate`` stay fast. A name may have aliases; registering a taken name is an error
unless ``replace=True``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bench.errors import UnknownNameError


@dataclass(frozen=True)
class Entry:
    name: str
    target: str | Callable[..., Any] | type  # "module:attr" or the object itself
    summary: str = ""

    def load(self) -> Any:
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attr = self.target.partition(":")
        if not attr:
            raise ValueError(f"registry entry {self.name!r}: target {self.target!r} is not 'module:attr'")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj


class Registry:
    """Names → lazily imported objects, for one kind of component ("method", "metric", "backbone")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, target: str | Callable[..., Any] | type, summary: str = "",
                 aliases: tuple[str, ...] = (), replace: bool = False) -> None:
        for key in (name, *aliases):
            if not replace and (key in self._entries or key in self._aliases):
                raise ValueError(f"{self.kind} {key!r} is already registered")
        self._entries[name] = Entry(name, target, summary)
        for alias in aliases:
            self._aliases[alias] = name

    def decorator(self, name: str, summary: str = "", aliases: tuple[str, ...] = ()):
        """``@REGISTRY.decorator("name")`` registers the decorated object eagerly."""

        def wrap(obj):
            self.register(name, obj, summary or (obj.__doc__ or "").strip().split("\n")[0], aliases)
            return obj

        return wrap

    def canonical(self, name: str) -> str:
        name = self._aliases.get(name, name)
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, self.names())
        return name

    def entry(self, name: str) -> Entry:
        return self._entries[self.canonical(name)]

    def get(self, name: str) -> Any:
        return self.entry(name).load()

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._entries)

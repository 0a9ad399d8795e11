"""Progress of the long loops inside methods (mapper training, NADA iterations, relevance pairs, projection steps).

A method wraps its loop in `track(range(steps), "mapper training")`; without a reporter installed (tests, library
use, prepare workers) that is the bare iterable. `bench run` installs one with `reporting(hook)`, and the runner
names the (variant, edit) being worked on with `labelled(...)`, so the hook receives
``hook(f"{label}: {description}", done, total)`` after the first item and then at most every `every_s` seconds
and at the end. Written here because the loops live in methods, which must not depend on the CLI's rich display.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
Hook = Callable[[str, int, int], object]

_hook: Hook | None = None
_label = ""


@contextmanager
def reporting(hook: Hook | None) -> Iterator[None]:
    """Send every `track`ed loop's progress to `hook(description, done, total)` inside the block."""
    global _hook
    previous, _hook = _hook, hook
    try:
        yield
    finally:
        _hook = previous


@contextmanager
def labelled(label: str) -> Iterator[None]:
    """Prefix the descriptions of the loops run inside the block with `label` (e.g. "variant · edit")."""
    global _label
    previous, _label = _label, label
    try:
        yield
    finally:
        _label = previous


def track(iterable: Iterable[T], description: str, total: int | None = None, every_s: float = 0.5) -> Iterator[T]:
    """`iterable`, reporting its progress to the installed hook (if any)."""
    hook = _hook
    if hook is None:
        yield from iterable
        return
    if total is None:
        total = len(iterable)  # type: ignore[arg-type]
    name = f"{_label}: {description}" if _label else description
    last, done = 0.0, 0
    hook(name, 0, total)
    for done, item in enumerate(iterable, 1):
        yield item
        now = time.monotonic()
        if now - last >= every_s or done == total:
            hook(name, done, total)
            last = now

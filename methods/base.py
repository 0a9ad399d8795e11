"""The contract every editing method follows.

A method has two phases, timed separately like the StyleCLIP paper's table:

* ``prepare(backbones, edit)`` — training or preprocessing that depends on the edit but not on the sources
  (mapper training, global-direction relevance, NADA fine-tuning). The harness caches its result on disk.
* ``apply(backbones, sources, edit) -> EditResult`` — edits a batch of sources.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class SourceBatch:
    """A batch of sources: images in [-1, 1] and, when they come from a generator or an inversion, W+ latents."""

    images: torch.Tensor  # [N, 3, H, W]
    latents: torch.Tensor | None = None  # [N, n_latent, style_dim]
    # how the latents came from the images: "encoder" or "optimization" (`methods.inversion.invert` with `project`'s
    # defaults), so a method that would invert the images the same way reuses them; None: latents drawn or read
    inversion: str | None = None


@dataclass
class EditResult:
    edited_images: torch.Tensor  # [N, 3, H, W] in [-1, 1]
    edited_latents: torch.Tensor | None = None


def range_problem(params: dict[str, Any], positive: frozenset[str], non_negative: frozenset[str],
                  unit_interval: frozenset[str]) -> str | None:
    """The first parameter outside its declared range, as "steps must be > 0; got -5" (None: all in range)."""
    import math

    ranges = [(positive, "> 0", lambda v: v > 0), (non_negative, ">= 0", lambda v: v >= 0),
              (unit_interval, "in (0, 1]", lambda v: 0 < v <= 1)]
    for names, wanted, holds in ranges:
        for name in sorted(names & set(params)):
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value) or not holds(value):
                return f"{name} must be {wanted}; got {value!r}"
    return None


class EditMethod(ABC):
    """Base class: parameters come from the suite (`params:`); unknown parameters are rejected."""

    # True when `prepare` depends only on (backbones, edit, parameters, seed) and shares nothing between edits
    # (no cache of its own), so the runner may prepare several edits in parallel worker processes (`--workers`)
    independent_prepare: bool = False

    # The version of the state `prepare` makes: bump it when a change to `prepare` (a fix to a training loop, another
    # state layout) changes the state it makes, so that prepare caches (a run's own, a shared --prepare-cache) stop
    # serving states made by the old code (it enters the cache key, `bench.runner.Runner.prepare_key`)
    PREPARE_VERSION: int = 1

    # Parameters used only by apply; the prepare cache key and the preparation's random stream leave them out
    # (a sweep over them reuses one preparation)
    APPLY_ONLY_PARAMS: frozenset[str] = frozenset()

    # Parameters naming the method's own cache folder: keyed by name, not content (the folder is an output of the
    # preparation that grows, not an input of it)
    CACHE_LOCATION_PARAMS: frozenset[str] = frozenset()

    # Numeric parameters and the range each must lie in, checked on construction (so `bench validate` reports a
    # bad value at its line): > 0, >= 0, and in (0, 1]. A value that is not a number is left to the type check
    # (and to methods that take a number or a word, like styleclip_global's beta: 'auto')
    POSITIVE_PARAMS: frozenset[str] = frozenset()
    NON_NEGATIVE_PARAMS: frozenset[str] = frozenset()
    UNIT_INTERVAL_PARAMS: frozenset[str] = frozenset()

    def __init__(self, **params: Any):
        from bench.errors import BenchError

        unknown = set(params) - set(self.defaults())
        if unknown:
            raise BenchError(f"{type(self).__name__}: unknown parameter(s) {sorted(unknown)}; "
                             f"valid: {sorted(self.defaults())}")
        self.params = {**self.defaults(), **params}
        self.set_params = frozenset(params)  # the parameters the suite set (the rest are defaults)
        problem = range_problem(self.params, self.POSITIVE_PARAMS, self.NON_NEGATIVE_PARAMS,
                                self.UNIT_INTERVAL_PARAMS)
        if problem:
            raise BenchError(f"{type(self).__name__}: {problem}")

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The method's default parameters (the official implementation's, unless said otherwise)."""
        return {}

    def prepare(self, backbones: Any, edit: Any) -> None:
        """Edit-specific training or preprocessing; nothing by default."""

    def prepared_state(self) -> dict[str, Any] | None:
        """What `prepare` produced, for the harness's on-disk cache (tensors/plain values); None = nothing."""
        return None

    def load_prepared_state(self, state: dict[str, Any]) -> None:
        """Restore what `prepared_state` returned, instead of running `prepare` again."""

    @abstractmethod
    def apply(self, backbones: Any, sources: SourceBatch, edit: Any) -> EditResult:
        """Edit `sources` towards `edit`."""

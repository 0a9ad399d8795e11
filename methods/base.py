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


@dataclass
class EditResult:
    edited_images: torch.Tensor  # [N, 3, H, W] in [-1, 1]
    edited_latents: torch.Tensor | None = None


class EditMethod(ABC):
    """Base class: parameters come from the suite (`params:`); unknown parameters are rejected."""

    # True when `prepare` depends only on (backbones, edit, parameters, seed) and shares nothing between edits
    # (no cache of its own), so the runner may prepare several edits in parallel worker processes (`--workers`)
    independent_prepare: bool = False

    # Parameters used only by apply; the prepare cache key and the preparation's random stream leave them out
    # (a sweep over them reuses one preparation)
    APPLY_ONLY_PARAMS: frozenset[str] = frozenset()

    # Parameters naming the method's own cache folder: keyed by name, not content (the folder is an output of the
    # preparation that grows, not an input of it)
    CACHE_LOCATION_PARAMS: frozenset[str] = frozenset()

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.defaults())
        if unknown:
            from bench.errors import BenchError
            raise BenchError(f"{type(self).__name__}: unknown parameter(s) {sorted(unknown)}; "
                             f"valid: {sorted(self.defaults())}")
        self.params = {**self.defaults(), **params}
        self.set_params = frozenset(params)  # the parameters the suite set (the rest are defaults)

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

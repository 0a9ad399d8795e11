"""The contract every metric follows (the torchmetrics shape: update → compute → reset).

A metric is built once per run with the run's networks (`ScoringContext`: judges for scoring, the loss networks
only to flag a judge that is also a loss) and its suite parameters, then fed one `EditBatch` per cell:

* per-sample metrics (CLIP score, direction, identity, LPIPS, attribute judge) return one value per edited image
  from `compute()` — a float tensor `[N]` in the order of the updates;
* set metrics (FID/KID, diversity) return one scalar over everything they were fed since `reset()`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch


@dataclass
class EditBatch:
    """What a metric sees of one cell: sources and their edits, both `[N, 3, H, W]` in [-1, 1]."""

    source_images: torch.Tensor
    edited_images: torch.Tensor
    target_text: str
    neutral_text: str
    expect: dict[str, Any] = field(default_factory=dict)  # ground-truth target attributes (synthetic world)


@dataclass
class ScoringContext:
    """The networks a metric may use. `judges` score; `losses` are listed only so reuse can be flagged."""

    judges: dict[str, Any]
    losses: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"


@dataclass(frozen=True)
class MetricOutput:
    """A registered name that some producer computes: a second output of a metric (e.g. `clip_gain` from
    `clip_score`) or a cost the runner measures itself (`produced_by="runner"`)."""

    name: str
    higher_is_better: bool
    description: str
    produced_by: str  # the registered metric that computes it, or "runner"
    per_sample: bool = True
    unit: str = ""
    kind: str = "quality"  # "quality", "cost", or "info" (a count shown beside a metric: no direction, no best)


def concat(values: list[torch.Tensor]) -> torch.Tensor:
    """A per-sample metric's `compute()` of its updates' values: `[N]`, or an empty `[0]` before any update."""
    return torch.cat(values) if values else torch.zeros(0)


class Metric(ABC):
    name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    per_sample: ClassVar[bool] = True

    def __init__(self, context: ScoringContext, **params: Any):
        self.context = context
        self.params = params
        self.reset()

    @abstractmethod
    def reset(self) -> None:
        """Forget everything fed so far."""

    @abstractmethod
    def update(self, batch: EditBatch) -> None:
        """Accumulate one cell's batch."""

    @abstractmethod
    def compute(self) -> torch.Tensor | dict[str, torch.Tensor]:
        """`[N]` per-sample values (per_sample metrics) or a 0-d tensor (set metrics); a metric with several
        outputs returns {registered name: values}, its own name included."""

    def judge_is_loss_network(self) -> bool:
        """True when the network this metric scores with is also used as a loss in the run (allowed, but the
        report marks it: optimising against the judge rewards adversarial edits)."""
        return False

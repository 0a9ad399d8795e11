"""Shared plumbing of the metrics that score with a suite *judge*: looking a judge up by role (one-line BenchError
naming the roles the suite provides) and telling whether that judge is also one of the run's loss networks."""

from __future__ import annotations

from collections.abc import Callable

import torch

from metrics.base import Metric, ScoringContext


def judge_network(context: ScoringContext, role: str, metric: str):
    """The judge in `role`, or a BenchError naming the roles the suite provides."""
    from bench.errors import BenchError

    network = context.judges.get(role)
    if network is None:
        raise BenchError(f"metric {metric!r} needs a judge {role!r}; the suite's judges are "
                         f"{sorted(context.judges) or '(none)'}")
    return getattr(network, "network", network)  # a Weighted entry → its network


def _unwrap(member):
    """The network inside a loss entry: a Weighted entry's `.network`, an IdentityLoss's `.embedder`."""
    member = getattr(member, "network", member)
    return member, getattr(member, "embedder", None)


def is_loss_network(context: ScoringContext, network) -> bool:
    """True when `network` (or the network it wraps) is one of the run's loss networks."""
    inner = getattr(network, "network", network)
    for value in context.losses.values():
        members = value if isinstance(value, list) else [value]
        for member in members:
            if any(m is not None and (m is network or m is inner) for m in _unwrap(member)):
                return True
    return False


@torch.no_grad()
def in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """`fn` over `images` in chunks of `batch_size`, concatenated (no gradients)."""
    if len(images) == 0:
        raise ValueError("no images to score")
    return torch.cat([fn(chunk) for chunk in images.split(batch_size)])


class ClipJudgeMetric(Metric):
    """Base of the metrics that score with the judge CLIP (`role`, default "clip"): holds the network, embeds
    images in chunks with its standard preprocessing, and flags a judge that is also a loss network."""

    def __init__(self, context: ScoringContext, role: str = "clip", batch_size: int = 64):
        self.clip = judge_network(context, role, self.name)
        self.batch_size = batch_size
        super().__init__(context, role=role, batch_size=batch_size)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return in_chunks(self.clip.encode_images, images, self.batch_size)

    def judge_is_loss_network(self) -> bool:
        return is_loss_network(self.context, self.clip)

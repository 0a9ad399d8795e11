"""Shared plumbing of the metrics: looking a judge up by role (one-line BenchError naming the roles the suite
provides), telling whether that judge is also one of the run's loss networks, and scoring images in chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

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


def loss_networks(context: ScoringContext) -> Iterator:
    """Every network the run's losses hold, unwrapped (`_unwrap`)."""
    for value in context.losses.values():
        for member in value if isinstance(value, list) else [value]:
            yield from (m for m in _unwrap(member) if m is not None)


def is_loss_network(context: ScoringContext, network, same: Callable[[Any], bool] | None = None) -> bool:
    """True when `network` (or the network it wraps) is one of the run's loss networks; `same(loss_network)`
    replaces the identity test for a judge built apart from the losses (LPIPS: the same backbone)."""
    inner = getattr(network, "network", network)
    same = same or (lambda member: member is network or member is inner)
    return any(same(member) for member in loss_networks(context))


def _concat(outputs: list):
    first = outputs[0]
    if isinstance(first, dict):
        return {key: torch.cat([out[key] for out in outputs]) for key in first}
    if isinstance(first, (list, tuple)):
        return [torch.cat([out[i] for out in outputs]) for i in range(len(first))]
    return torch.cat(outputs)


@torch.no_grad()
def in_chunks(fn: Callable, images: torch.Tensor | tuple[torch.Tensor, ...], batch_size: int):
    """`fn` over `images` in chunks of `batch_size` (no gradients), the chunks' outputs concatenated. `images` is a
    tensor, or a tuple of equally long tensors whose chunks `fn` takes side by side (source, edit); `fn` returns a
    tensor, a list of tensors (one per layer) or a dict of tensors (one per head), concatenated element-wise."""
    parts = images if isinstance(images, tuple) else (images,)
    if len(parts[0]) == 0:
        raise ValueError("no images to score")
    return _concat([fn(*chunks) for chunks in zip(*(part.split(batch_size) for part in parts))])


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

"""Attribute-judge metrics of the synthetic world (role "attributes": `.predict(images) -> {name: [N] class}`
over `zoo.synthface.ATTRIBUTES` plus "domain"), per edited image, higher is better.

* `attr_target` — the share of the edit's expected values (`EditBatch.expect`, e.g. {"hair_color": "purple"} or
  {"domain": "zombie"}; names map to class indices with `zoo.synthface.value_index` / `domain_index`) that the
  judge reads on the edited image: 1 or 0 for a one-attribute edit. NaN when the edit declares no `expect`.
* `attr_preserved` — the share of the *non-target* heads (every judge head not named in `expect`, "domain"
  included) whose reading is the same on the source and on the edited image. When the edited image's expected
  domain is one where hair colour is not drawn (`COLOURLESS_DOMAINS`: pencil, marble), the hair-colour head is
  left out: the judge's reading there is meaningless.
"""

from __future__ import annotations

from typing import Any

import torch

from metrics.base import EditBatch, Metric, MetricOutput, ScoringContext, concat
from metrics.judges import in_chunks, is_loss_network, judge_network
from zoo.synthface.domains import COLOURLESS_DOMAINS


def expected_classes(expect: dict[str, Any], heads: list[str], metric: str) -> dict[str, int]:
    """{head: class index} of an edit's `expect`, or a BenchError naming the judge's heads / the valid values."""
    from bench.errors import BenchError
    from zoo.synthface import domain_index, value_index

    out = {}
    for name, value in expect.items():
        if name not in heads:
            raise BenchError(f"{metric}: expect names {name!r}, which the attribute judge does not read; its heads "
                             f"are {', '.join(sorted(heads))}")
        try:
            out[name] = domain_index(value) if name == "domain" else value_index(name, value)
        except (ValueError, KeyError) as exc:
            raise BenchError(f"{metric}: expect {name}={value!r}: {exc}") from None
    return out


class AttrTarget(Metric):
    """Share of the edit's expected attribute values the judge reads on the edited image (+ `attr_preserved`)."""

    name = "attr_target"
    higher_is_better = True

    def __init__(self, context: ScoringContext, role: str = "attributes", batch_size: int = 256):
        self.judge = judge_network(context, role, self.name)
        self.batch_size = batch_size
        super().__init__(context, role=role, batch_size=batch_size)

    def reset(self) -> None:
        self._target: list[torch.Tensor] = []
        self._preserved: list[torch.Tensor] = []

    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        device = next(iter(self.judge.parameters())).device if hasattr(self.judge, "parameters") else "cpu"
        heads = in_chunks(lambda x: self.judge.predict(x.to(device)), images, self.batch_size)
        return {name: classes.cpu() for name, classes in heads.items()}

    def update(self, batch: EditBatch) -> None:
        n = len(batch.edited_images)
        edited, source = self.predict(batch.edited_images), self.predict(batch.source_images)
        heads = list(edited)
        given = dict(batch.expect or {})
        expect = expected_classes(given, heads, self.name)
        if expect:
            hits = torch.stack([(edited[name] == cls).double() for name, cls in expect.items()])
            self._target.append(hits.mean(dim=0))
        else:
            self._target.append(torch.full((n,), float("nan"), dtype=torch.float64))
        kept = [h for h in heads if h not in expect]
        if "hair_color" in kept and str(given.get("domain", "")) in COLOURLESS_DOMAINS:
            kept.remove("hair_color")
        if kept:
            same = torch.stack([(edited[h] == source[h]).double() for h in kept])
            self._preserved.append(same.mean(dim=0))
        else:
            self._preserved.append(torch.full((n,), float("nan"), dtype=torch.float64))

    def compute(self) -> dict[str, torch.Tensor]:
        return {"attr_target": concat(self._target), "attr_preserved": concat(self._preserved)}

    def judge_is_loss_network(self) -> bool:
        return is_loss_network(self.context, self.judge)


ATTR_PRESERVED = MetricOutput("attr_preserved", True,
                              "share of non-target attributes the judge reads unchanged (source vs edit)",
                              "attr_target")

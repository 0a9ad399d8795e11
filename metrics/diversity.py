"""Diversity of a set of edited images (set metric: one value per (method variant, edit, seed) group).

* `diversity` — mean pairwise distance over all unordered pairs of the set's edited images, higher is better
  (mode collapse drives it to 0). Distance (`distance`):
  - `clip` (default): 1 − cosine of the judge CLIP's (role `role`, default "clip") L2-normalised image embeddings;
  - `lpips_synthface`: the LPIPS-style distance of `metrics.lpips.LpipsSynthface` on the attribute judge's trunk
    features (role `attributes_role`, default "attributes").
* `diversity_ratio` — diversity(edited) / diversity(sources) of the same group: 1 keeps the sources' spread,
  → 0 is StyleGAN-NADA's mode collapse (every source mapped to one image).
A set of fewer than two images has no pairs: NaN.
"""

from __future__ import annotations

import torch

from metrics.base import EditBatch, Metric, MetricOutput, ScoringContext
from metrics.judges import in_chunks, is_loss_network, judge_network

DISTANCES = ("clip", "lpips_synthface")


def mean_pairwise_cosine_distance(embeddings: torch.Tensor) -> float:
    """Mean of 1 − cos over the unordered pairs i < j (float64)."""
    n = len(embeddings)
    if n < 2:
        return float("nan")
    e = torch.nn.functional.normalize(embeddings.double(), dim=-1)
    cos = e @ e.T
    i, j = torch.triu_indices(n, n, offset=1)
    return float((1 - cos[i, j]).mean())


def mean_pairwise_feature_distance(features: list[torch.Tensor]) -> float:
    """Mean LPIPS-style distance over the unordered pairs i < j of unit-normalised feature lists."""
    from metrics.lpips import feature_distance

    n = len(features[0])
    if n < 2:
        return float("nan")
    total, count = 0.0, 0
    for i in range(n - 1):
        d = feature_distance([f[i:i + 1].double() for f in features], [f[i + 1:].double() for f in features])
        total += float(d.sum())
        count += len(d)
    return total / count


class Diversity(Metric):
    """Mean pairwise distance within the set of edited images, and its ratio to the sources' diversity."""

    name = "diversity"
    higher_is_better = True
    per_sample = False

    def __init__(self, context: ScoringContext, distance: str = "clip", role: str = "clip",
                 attributes_role: str = "attributes", batch_size: int = 64):
        from bench.errors import BenchError

        if distance not in DISTANCES:
            raise BenchError(f"diversity: unknown distance {distance!r}; valid: {', '.join(DISTANCES)}")
        self.distance, self.batch_size = distance, batch_size
        if distance == "clip":
            self.network = judge_network(context, role, self.name)
        else:
            from metrics.lpips import SynthFeatures

            self.network = judge_network(context, attributes_role, self.name)
            self.features = SynthFeatures(self.network)
        super().__init__(context, distance=distance, role=role, attributes_role=attributes_role,
                         batch_size=batch_size)

    def reset(self) -> None:
        self._edited: list[torch.Tensor] = []
        self._sources: list[torch.Tensor] = []

    def update(self, batch: EditBatch) -> None:
        self._edited.append(batch.edited_images.detach().cpu())
        self._sources.append(batch.source_images.detach().cpu())

    @torch.no_grad()
    def diversity(self, images: torch.Tensor) -> float:
        if len(images) < 2:
            return float("nan")
        if self.distance == "clip":
            device = getattr(self.network, "device", "cpu")
            emb = in_chunks(lambda x: self.network.encode_images(x.to(device)).float().cpu(), images, self.batch_size)
            return mean_pairwise_cosine_distance(emb)
        return mean_pairwise_feature_distance([f.cpu() for f in in_chunks(self.features, images, self.batch_size)])

    def compute(self) -> dict[str, torch.Tensor]:
        if not self._edited:
            nan = torch.tensor(float("nan"), dtype=torch.float64)
            return {"diversity": nan, "diversity_ratio": nan}
        edited = self.diversity(torch.cat(self._edited))
        sources = self.diversity(torch.cat(self._sources))
        ratio = edited / sources if sources > 0 else float("nan")
        return {"diversity": torch.tensor(edited, dtype=torch.float64),
                "diversity_ratio": torch.tensor(ratio, dtype=torch.float64)}

    def judge_is_loss_network(self) -> bool:
        return is_loss_network(self.context, self.network)


DIVERSITY_RATIO = MetricOutput("diversity_ratio", True,
                               "diversity of the edited set / diversity of its sources (mode collapse → 0)",
                               "diversity", per_sample=False)

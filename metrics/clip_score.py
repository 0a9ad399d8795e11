"""CLIP score: cosine between the edited image's and the target text's CLIP embeddings, on the suite's *judge*
CLIP (a CLIP the methods did not optimise against; optimising and scoring with one network rewards adversarial
edits).

Outputs (per edited image):
* `clip_score` — cos(E_I(edited), E_T(target)), in [-1, 1];
* `clip_score_x100` — torchmetrics' CLIPScore convention: 100 · max(cos, 0);
* `clip_gain` — cos(E_I(edited), E_T(target)) − cos(E_I(source), E_T(target)): how much the edit moved the image
  towards the text (0 for an unedited source).

Images get the judge's standard preprocessing (bicubic resize + centre crop, its mean/std); the text is encoded
as given (no templates), as torchmetrics does.
"""

from __future__ import annotations

import torch

from metrics.base import EditBatch, Metric, MetricOutput, ScoringContext
from metrics.judges import is_loss_network, judge_network  # noqa: F401 (re-exported)


class ClipScore(Metric):
    """Cosine between edited-image and target-text CLIP embeddings (judge CLIP)."""

    name = "clip_score"
    higher_is_better = True

    def __init__(self, context: ScoringContext, role: str = "clip", batch_size: int = 64):
        self.clip = judge_network(context, role, self.name)
        self.batch_size = batch_size
        super().__init__(context, role=role, batch_size=batch_size)

    def reset(self) -> None:
        self._edited: list[torch.Tensor] = []
        self._source: list[torch.Tensor] = []

    @torch.no_grad()
    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.clip.encode_images(chunk) for chunk in images.split(self.batch_size)])

    @torch.no_grad()
    def update(self, batch: EditBatch) -> None:
        text = self.clip.encode_text([batch.target_text])[0]
        self._edited.append(self._embed(batch.edited_images) @ text)
        self._source.append(self._embed(batch.source_images) @ text)

    def compute(self) -> dict[str, torch.Tensor]:
        edited, source = torch.cat(self._edited), torch.cat(self._source)
        return {"clip_score": edited, "clip_score_x100": 100 * edited.clamp(min=0), "clip_gain": edited - source}

    def judge_is_loss_network(self) -> bool:
        return is_loss_network(self.context, self.clip)


CLIP_SCORE_X100 = MetricOutput("clip_score_x100", True, "torchmetrics CLIPScore: 100·max(cos, 0)", "clip_score")
CLIP_GAIN = MetricOutput("clip_gain", True, "CLIP score of the edit minus that of its source", "clip_score")

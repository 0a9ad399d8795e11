"""CLIP score: cosine between the edited image's and the target text's CLIP embeddings, on the suite's *judge*
CLIP (a CLIP the methods did not optimise against; optimising and scoring with one network rewards adversarial
edits).

Outputs (per edited image):
* `clip_score` — cos(E_I(edited), E_T(target)), in [-1, 1];
* `clip_score_x100` — 100 · max(cos, 0): Hessel et al.'s CLIPScore w · max(cos, 0), clamped per image, on
  torchmetrics' scale w = 100 (Hessel et al. use 2.5). A report's mean over images, mean(100 · max(cos, 0)),
  equals torchmetrics' `CLIPScore.compute()`, max(mean(100 · cos), 0), which clamps the mean instead, only when
  every cosine is >= 0; a negative cosine counts as 0 here and pulls torchmetrics' mean down;
* `clip_gain` — cos(E_I(edited), E_T(target)) − cos(E_I(source), E_T(target)): how much the edit moved the image
  towards the text (0 for an unedited source).

Images get the judge's standard preprocessing (antialiased bicubic resize + centre crop, its mean/std: what CLIP's
own PIL transform makes of the image); the text is encoded as given (no templates), as torchmetrics does.
"""

from __future__ import annotations

import torch

from metrics.base import EditBatch, MetricOutput, concat
from metrics.judges import ClipJudgeMetric


class ClipScore(ClipJudgeMetric):
    """Cosine between edited-image and target-text CLIP embeddings (judge CLIP)."""

    name = "clip_score"
    higher_is_better = True

    def reset(self) -> None:
        self._edited: list[torch.Tensor] = []
        self._source: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, batch: EditBatch) -> None:
        text = self.clip.encode_text([batch.target_text])[0]
        self._edited.append(self.embed(batch.edited_images) @ text)
        self._source.append(self.embed(batch.source_images) @ text)

    def compute(self) -> dict[str, torch.Tensor]:
        edited, source = concat(self._edited), concat(self._source)
        return {"clip_score": edited, "clip_score_x100": 100 * edited.clamp(min=0), "clip_gain": edited - source}


CLIP_SCORE_X100 = MetricOutput("clip_score_x100", True, "100·max(cos, 0) per image (torchmetrics CLIPScore's scale)",
                               "clip_score")
CLIP_GAIN = MetricOutput("clip_gain", True, "CLIP score of the edit minus that of its source", "clip_score")

"""Directional CLIP similarity (StyleGAN-NADA, DiffusionCLIP): cosine between the image change and the text
change in the judge CLIP's space, cos(E_I(edited) − E_I(source), E_T(target) − E_T(neutral)).

The text direction is `text_direction(neutral, target, renormalize=True)` of the judge CLIP: each text's 79-template
embedding (the mean of its L2-normalised template prompts) is normalised again before the difference — StyleCLIP's
global-directions convention; StyleGAN-NADA differences the plain means (`renormalize=False`, see `zoo.clip`), which
can give a slightly different direction. Image embeddings are L2-normalised before the difference. An unedited
image has no direction: its value is undefined (stored as NULL, not 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metrics.base import EditBatch, concat
from metrics.judges import ClipJudgeMetric


class ClipDirection(ClipJudgeMetric):
    """Directional CLIP similarity between the image change and the text change (judge CLIP)."""

    name = "clip_direction"
    higher_is_better = True

    def reset(self) -> None:
        self._values: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, batch: EditBatch) -> None:
        text_direction = self.clip.text_direction(batch.neutral_text, batch.target_text, renormalize=True)
        image_change = self.embed(batch.edited_images) - self.embed(batch.source_images)
        values = F.cosine_similarity(image_change, text_direction.expand_as(image_change), dim=-1)
        unchanged = image_change.norm(dim=-1) < 1e-6
        self._values.append(values.masked_fill(unchanged, float("nan")))

    def compute(self) -> torch.Tensor:
        return concat(self._values)

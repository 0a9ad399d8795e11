"""The judge-CLIP metrics (clip_score, clip_score_x100, clip_gain, clip_direction) recomputed by hand on a tiny
random CLIP, against torchmetrics' CLIPScore and against open_clip's own PIL preprocessing."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metrics import METRICS
from metrics.base import EditBatch, ScoringContext
from conftest import TINY_CLIP_CFG

TARGET, NEUTRAL = "a face with purple hair", "a face"


@pytest.fixture(scope="module")
def clip():
    from zoo.clip import load_clip, register_model_config

    torch.manual_seed(1)
    return load_clip(register_model_config("clipedit-test-metrics-clip-tiny", TINY_CLIP_CFG))


@pytest.fixture(scope="module")
def context(clip):
    return ScoringContext(judges={"clip": clip})


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(7)
    source = torch.rand(8, 3, 64, 64, generator=g) * 2 - 1
    edited = (source + 0.4 * torch.randn(8, 3, 64, 64, generator=g)).clamp(-1, 1)
    return source, edited


def _embed(clip, images):
    """E_I by hand: the model on the judge's preprocessing, L2-normalised."""
    with torch.no_grad():
        return F.normalize(clip.model.encode_image(clip.preprocess(images)), dim=-1)


def _text(clip, texts):
    with torch.no_grad():
        return F.normalize(clip.model.encode_text(clip.tokenizer(texts)), dim=-1)


# ---------------------------------------------------------------------------------------------- clip_score
def test_clip_score_x100_against_torchmetrics_clip_score(context, clip, images):
    """torchmetrics' own CLIPScore (update + compute) run on our CLIP through the model/processor interface it
    expects. Per image, clip_score x 100 is its score; the mean of clip_score_x100 equals its compute() while every
    cosine is >= 0 (16.39 here). With a negative cosine (flat images against the text "x": -0.13 to -0.05)
    torchmetrics clamps the mean, max(mean(100 cos), 0), and we clamp each image: mean(100 max(cos, 0))."""
    from torchmetrics.functional.multimodal.clip_score import _clip_score_update
    from torchmetrics.multimodal.clip_score import CLIPScore

    class Processor:
        def __call__(self, images=None, text=None, return_tensors="pt", padding=True):
            if images is not None:
                return {"pixel_values": clip.preprocess(torch.stack(images))}
            tokens = clip.tokenizer(text)
            return {"input_ids": tokens, "attention_mask": torch.ones_like(tokens)}

    class Model(torch.nn.Module):
        config = None

        def get_image_features(self, pixel_values):
            return clip.model.encode_image(pixel_values)

        def get_text_features(self, input_ids, attention_mask):
            return clip.model.encode_text(input_ids)

    flat = torch.linspace(-1, 1, 4).view(4, 1, 1, 1).expand(4, 3, 64, 64)
    cells = [(images[1], TARGET), (flat, "x")]
    sources = [images[0], flat.flip(0)]  # sources unlike their edits: the score must be the edit's
    ours, theirs = METRICS.get("clip_score")(context), CLIPScore(lambda: (Model(), Processor()))
    means = []
    for cell, (edited, text) in enumerate(cells):
        ours.update(EditBatch(sources[cell], edited, text, NEUTRAL))
        with torch.no_grad():
            theirs.update(list(edited), [text] * len(edited))
            per_image, _ = _clip_score_update(list(edited), [text] * len(edited), Model(), Processor())
        out = ours.compute()
        torch.testing.assert_close(100 * out["clip_score"][-len(edited):], per_image, atol=1e-4, rtol=0)
        torch.testing.assert_close(out["clip_score_x100"], 100 * out["clip_score"].clamp(min=0))
        means.append((float(out["clip_score_x100"].mean()), float(theirs.compute()), out["clip_score"]))
    (ours_pos, theirs_pos, cos_pos), (ours_mixed, theirs_mixed, cos_mixed) = means
    assert cos_pos.min() > 0 and ours_pos == pytest.approx(theirs_pos, abs=1e-4)
    assert cos_mixed.min() < 0 and theirs_mixed == pytest.approx(max(100 * float(cos_mixed.mean()), 0), abs=1e-4)
    assert ours_mixed > theirs_mixed + 1, (ours_mixed, theirs_mixed)  # measured: 10.93 against 7.96


def test_clip_embedding_is_open_clips_own_preprocessing_of_a_larger_image(context, clip):
    """A 256 px image on a 32 px CLIP: the metric's embedding and score equal the model on open_clip's own eval
    transform of the PIL image (antialiased resize + centre crop + mean/std). Measured: 1.2e-3 per coordinate and
    2.2e-4 on the score; a shrink without antialiasing misses by 0.088 and 0.031, a wrong std (0.5) by 0.030 and
    0.016."""
    from open_clip import image_transform
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)  # fine texture
    transform = image_transform(clip.image_size, is_train=False, mean=clip.mean, std=clip.std)
    with torch.no_grad():
        expected = F.normalize(clip.model.encode_image(torch.stack([transform(Image.fromarray(p)) for p in pixels])),
                               dim=-1)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    metric = METRICS.get("clip_score")(context)
    torch.testing.assert_close(metric.embed(x), expected, atol=3e-3, rtol=0)
    metric.update(EditBatch(x.flip(0), x, TARGET, NEUTRAL))  # a source unlike the edit: the edit is scored
    torch.testing.assert_close(metric.compute()["clip_score"], expected @ _text(clip, [TARGET])[0], atol=1e-3, rtol=0)


def test_clip_gain_is_the_edits_score_minus_its_sources(context, clip, images):
    source, edited = images
    metric = METRICS.get("clip_score")(context)
    metric.update(EditBatch(source, edited, TARGET, NEUTRAL))
    text = _text(clip, [TARGET])[0]
    expected = _embed(clip, edited) @ text - _embed(clip, source) @ text
    assert expected.abs().min() > 1e-4  # 8e-4 or more here, far above the tolerance: 0 or a swap would fail
    torch.testing.assert_close(metric.compute()["clip_gain"], expected, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------ clip_direction
def test_clip_direction_by_hand(context, clip, images):
    """cos(E_I(edit) - E_I(src), dT): image embeddings L2-normalised before the difference; dT = the difference of
    the two texts' 79-template embeddings (mean of the normalised prompts, normalised again). An unedited image is
    NaN."""
    from zoo.clip import load_templates

    source, edited = images
    edited = torch.cat([edited[:-1], source[-1:]])  # the last one unedited
    metric = METRICS.get("clip_direction")(context)
    metric.update(EditBatch(source, edited, TARGET, NEUTRAL))
    got = metric.compute()

    templates = load_templates()
    assert len(templates) == 79
    neutral, target = (F.normalize(_text(clip, [t.format(text) for t in templates]).mean(0), dim=0)
                       for text in (NEUTRAL, TARGET))
    expected = F.cosine_similarity(_embed(clip, edited) - _embed(clip, source), (target - neutral)[None], dim=-1)
    torch.testing.assert_close(got[:-1], expected[:-1], atol=1e-5, rtol=0)
    assert torch.isnan(got[-1])
    with torch.no_grad():  # the same without normalising the image embeddings first: a value the check tells apart
        raw = clip.model.encode_image(clip.preprocess(edited)) - clip.model.encode_image(clip.preprocess(source))
    assert (F.cosine_similarity(raw, (target - neutral)[None], dim=-1) - expected)[:-1].abs().max() > 1e-3

"""The synthetic face world: renderer, parameter space, domains and captions (fast; speed is measured by
tools/render_sheet.py, never asserted here)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zoo.synthface import (ATTRIBUTE_SPECS, ATTRIBUTES, DOMAIN_NAMES, DOMAINS, IDENTITY_PARAMS, N_ID, FaceParams,
                           attribute_class, landmarks, render, render_with_masks, sample_identities, sample_params,
                           vary, with_attribute, with_domain)
from zoo.synthface.captions import (DOMAIN_FRAMES, DOMAIN_PROMPTS, EDIT_PROMPTS, caption, caption_vocabulary,
                                    captions, wrap_in_template, words)

TEMPLATES = Path(__file__).resolve().parents[1] / "zoo" / "data" / "imagenet_templates_79.txt"
N = 6


def neutral(n: int = N, seed: int = 3, **kw) -> FaceParams:
    """People with every optional attribute off, short hair, neutral expression."""
    fixed = dict(hat="none", eyewear="none", facial_hair="none", eyes_closed="open", lipstick="none", age="young",
                 smile=0.0, hair_style="short", hair_color="brown")
    fixed.update(kw)
    return sample_params(n, seed=seed, **fixed)


def changed(a: torch.Tensor, b: torch.Tensor, tol: float = 0.02) -> torch.Tensor:
    """[N,S,S] bool: pixels whose colour differs by more than tol (images in [-1, 1])."""
    return (a - b).abs().amax(1) > tol


def dilate(mask: torch.Tensor, px: int = 1) -> torch.Tensor:
    return F.max_pool2d(mask.float().unsqueeze(1), 2 * px + 1, 1, px).squeeze(1) > 0


def corners(img: torch.Tensor, k: int = 5) -> torch.Tensor:
    return torch.cat([img[..., :k, :k].flatten(1), img[..., :k, -k:].flatten(1)], 1)


def assert_edit_local(name: str, value, regions: tuple[str, ...], base: FaceParams | None = None,
                      min_changed: int = 6, spill: float = 0.01) -> None:
    """Editing `name` changes at least `min_changed` pixels per face, all (but `spill` of them) inside the union of
    the named region masks of the original and edited render (dilated by one pixel)."""
    base = base if base is not None else neutral()
    edited = with_attribute(base, name, value)
    a, ma = render_with_masks(base)
    b, mb = render_with_masks(edited)
    region = torch.zeros_like(ma["person"], dtype=torch.bool)
    for r in regions:
        region |= (ma[r] > 0.01) | (mb[r] > 0.01)
    region = dilate(region)
    ch = changed(a, b)
    per_face = ch.flatten(1).sum(1)
    assert (per_face >= min_changed).all(), f"{name}={value}: too few pixels change: {per_face.tolist()}"
    outside = (ch & ~region).flatten(1).sum(1).float() / ch.flatten(1).sum(1).float()
    assert (outside <= spill).all(), f"{name}={value}: changes leak outside {regions}: {outside.tolist()}"
    assert torch.equal(corners(a), corners(b)) or "background" in regions


# ---------------------------------------------------------------------------------------------- basics
def test_shape_range_dtype():
    p = sample_params(5, seed=0, domain=list(DOMAIN_NAMES))
    x = render(p)
    assert x.shape == (5, 3, 64, 64) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert render(p[:2], size=128).shape == (2, 3, 128, 128)
    assert render(sample_params(0, seed=0)).shape == (0, 3, 64, 64)


def test_render_is_deterministic_and_batch_independent():
    p = sample_params(40, seed=1, domain=list(DOMAIN_NAMES))
    a, b = render(p), render(p.clone())
    assert torch.equal(a, b)
    assert torch.equal(render(p[7:9]), a[7:9])  # same face, other batch company
    assert torch.equal(render(p, chunk=16), a)


def test_sampling_is_seeded():
    p, q = sample_params(8, seed=5), sample_params(8, seed=5)
    assert torch.equal(p.identity, q.identity) and all(torch.equal(p.attrs[k], q.attrs[k]) for k in ATTRIBUTES)
    r = sample_params(8, seed=6)
    assert not torch.equal(p.identity, r.identity)
    assert sample_identities(4, seed=2).shape == (4, N_ID)


def test_attribute_tables():
    assert len(IDENTITY_PARAMS) >= 6 and len(ATTRIBUTES) >= 8
    assert len(ATTRIBUTES["hair_color"]) >= 6 and {"purple", "blue"} <= set(ATTRIBUTES["hair_color"])
    assert "bald" in ATTRIBUTES["hair_style"]
    assert ATTRIBUTES["eyewear"] == ("none", "glasses", "sunglasses")
    assert ATTRIBUTE_SPECS["smile"].continuous
    p = sample_params(2000, seed=0)
    for name, values in ATTRIBUTES.items():  # every value is drawn
        counts = torch.bincount(attribute_class(p, name), minlength=len(values))
        assert (counts > 0).all(), (name, counts)
    s = with_attribute(p[:3], "smile", torch.tensor([-0.9, 0.1, 0.9]))
    assert attribute_class(s, "smile").tolist() == [0, 1, 2]
    assert torch.allclose(with_attribute(p[:1], "smile", "smiling").attrs["smile"], torch.tensor([0.8]))


def test_with_attribute_copies_and_changes_one_thing():
    p = sample_params(4, seed=2)
    q = with_attribute(p, "hair_color", "purple")
    assert (q.attrs["hair_color"] == ATTRIBUTES["hair_color"].index("purple")).all()
    assert torch.equal(q.identity, p.identity) and torch.equal(q.pose, p.pose)
    for k in ATTRIBUTES:
        if k != "hair_color":
            assert torch.equal(q.attrs[k], p.attrs[k])
    with pytest.raises(ValueError):
        with_attribute(p, "hair_color", "plaid")
    with pytest.raises(KeyError):
        with_attribute(p, "tattoo", 1)


def test_same_identity_pairs():
    p = sample_params(6, seed=4)
    q = vary(p, seed=9, domains=["photo", "comic"])
    assert torch.equal(q.identity, p.identity)
    reps = p[:2].repeat_interleave(3)
    assert torch.equal(reps.identity[0], reps.identity[2]) and not torch.equal(reps.identity[2], reps.identity[3])
    same = sample_params(5, seed=1, identity=p.identity[0])
    assert (same.identity == p.identity[0]).all()


# ---------------------------------------------------------------------------------------------- edits are local
def test_hair_color_changes_hair_only():
    for style in ("short", "long", "curly", "mohawk"):
        assert_edit_local("hair_color", "purple", ("hair",), neutral(hair_style=style, hair_color="black"))


def test_hair_color_changes_beard_too():
    assert_edit_local("hair_color", "blue", ("hair", "facial_hair"), neutral(facial_hair="beard"))


def test_hair_style_changes_hair_region():
    for style in ("bald", "long", "curly", "mohawk"):
        assert_edit_local("hair_style", style, ("hair",), min_changed=20)


def test_eyewear_changes_eye_region():
    for v in ("glasses", "sunglasses"):
        assert_edit_local("eyewear", v, ("eyes", "eyewear"), min_changed=20)


def test_eyes_closed_changes_eyes():
    assert_edit_local("eyes_closed", "closed", ("eyes",))


def test_smile_changes_mouth_and_brows():
    for v in (1.0, -1.0):
        assert_edit_local("smile", v, ("mouth", "eyes"))


def test_lipstick_changes_mouth():
    assert_edit_local("lipstick", "lipstick", ("mouth",))


def test_facial_hair_changes_lower_face():
    for v in ("beard", "moustache"):
        assert_edit_local("facial_hair", v, ("facial_hair", "mouth"), min_changed=10)


def test_hat_changes_top_of_head():
    for v in ("hat", "cap"):
        assert_edit_local("hat", v, ("hat", "hair"), min_changed=40)
    assert_edit_local("hat", "hat", ("hat", "hair"), neutral(hair_style="mohawk"), min_changed=40)


def test_age_changes_the_person_not_the_background():
    assert_edit_local("age", "old", ("person",), neutral(hair_color="purple"), min_changed=30)


def test_background_changes_corners_not_face():
    base = neutral(background="beige")
    a, m = render_with_masks(base)
    b = render(with_attribute(base, "background", "teal"))
    assert (corners(a) - corners(b)).abs().amin() > 0.2
    inner = m["face"] > 0.999
    assert not changed(a, b)[inner].any()


def test_identity_parameters_change_the_face():
    base = neutral(n=3, seed=11)
    ref, masks = render_with_masks(base)
    for i, name in enumerate(IDENTITY_PARAMS):
        lo, hi = base.clone(), base.clone()
        lo.identity[:, i] = 0.0
        hi.identity[:, i] = 1.0
        ch = changed(render(lo), render(hi), 0.05)
        n_changed = ch.flatten(1).sum(1)
        assert (n_changed >= 6).all(), f"{name} barely changes the face: {n_changed.tolist()}"
        assert not (ch[:, :4, :4].any() or ch[:, :4, -4:].any()), f"{name} changes the background corners"


def test_people_differ():
    x = render(neutral(n=16, seed=8, hair_color="brown", background="beige"))
    d = (x[:, None] - x[None]).abs().mean((2, 3, 4))
    off = d[~torch.eye(16, dtype=torch.bool)]
    assert off.min() > 0.01


def test_landmarks_hit_the_features():
    p = neutral(n=4, seed=2)
    _, m = render_with_masks(p)
    lm = landmarks(p)
    for k, region in (("left_eye", "eyes"), ("right_eye", "eyes"), ("mouth", "mouth")):
        xy = lm[k].round().long().clamp(0, 63)
        assert (m[region][torch.arange(4), xy[:, 1], xy[:, 0]] > 0.5).all(), k


# ---------------------------------------------------------------------------------------------- domains
def test_domains_differ_from_photo_and_are_deterministic():
    base = sample_params(6, seed=12)
    photo = render(base)
    for d in DOMAIN_NAMES[1:]:
        x = render(with_domain(base, d))
        assert torch.equal(x, render(with_domain(base, d)))
        assert x.min() >= -1 and x.max() <= 1
        assert (x - photo).abs().mean() > 0.05, d


def test_domains_keep_people_apart():
    """Different people stay different inside every domain (the identity survives the style)."""
    base = neutral(n=6, seed=13, hair_color="brown", background="beige")
    for d in DOMAIN_NAMES:
        x = render(with_domain(base, d))
        dist = (x[:, None] - x[None]).abs().mean((2, 3, 4))
        assert dist[~torch.eye(6, dtype=torch.bool)].min() > 0.005, d


def _template_words() -> set[str]:
    return set(words(TEMPLATES.read_text()))


def test_domain_words_do_not_collide_with_templates():
    tw = _template_words()
    assert {"photo", "sketch", "cartoon", "painting"} <= tw  # the file is the one we think
    for name, spec in DOMAINS.items():
        for w in spec.words:
            assert w not in tw, f"domain {name}: word {w!r} is a template word"
            assert not any(w in t or t in w for t in tw if len(t) > 3), f"domain {name}: {w!r} overlaps a template"
        content = set(words(spec.prompt)) - {"a", "an", "face", "portrait"}
        assert not content & tw, (name, content & tw)


def test_caption_content_words_avoid_templates():
    allowed = {"a", "an", "and", "in", "of", "black"}
    assert caption_vocabulary() & _template_words() <= allowed


# ---------------------------------------------------------------------------------------------- captions
@pytest.fixture(scope="module")
def caption_set():
    p = sample_params(3000, seed=21, domain=list(DOMAIN_NAMES))
    return p, captions(p, seed=0)


def test_captions_cover_every_prompt_word(caption_set):
    _, caps = caption_set
    seen = {w for c in caps for w in words(c)}
    needed = {w for e in EDIT_PROMPTS for t in (e.target, e.neutral) for w in words(t)}
    needed |= {w for _, tgt, src in DOMAIN_PROMPTS for t in (tgt, src) for w in words(t)}
    assert not needed - seen, f"prompt words never captioned: {sorted(needed - seen)}"
    assert seen <= caption_vocabulary()


def test_edit_prompts_cover_every_edit_target():
    targets = {(e.attribute, e.value) for e in EDIT_PROMPTS}
    for name, values in ATTRIBUTES.items():
        spec = ATTRIBUTE_SPECS[name]
        for v in values:
            if v == spec.neutral and name not in ("smile", "hair_style", "hair_color", "background", "age"):
                continue
            if v == "none" or v == "open":
                continue
            assert (name, v) in targets, (name, v)
    assert {d for d, _, _ in DOMAIN_PROMPTS} == set(DOMAIN_NAMES[1:])


def test_captions_tell_the_truth(caption_set):
    p, caps = caption_set
    labels = p.labels()
    cls = {k: [ATTRIBUTES[k][int(i)] for i in labels[k]] for k in ATTRIBUTES}
    dom = [DOMAIN_NAMES[int(d)] for d in p.domain]
    for i, c in enumerate(caps):
        ws = set(words(c))
        for d, spec in DOMAINS.items():
            if set(spec.words) & ws:
                assert dom[i] == d, (c, dom[i])
        if "sunglasses" in ws or "shades" in ws:
            assert cls["eyewear"][i] == "sunglasses", c
        if ws & {"glasses", "eyeglasses", "spectacles"}:
            assert cls["eyewear"][i] == "glasses", c
        if "bald" in ws:
            assert cls["hair_style"][i] == "bald", c
        if ws & {"purple", "violet"}:
            assert cls["hair_color"][i] == "purple", c
        if "beard" in ws or "bearded" in ws:
            assert cls["facial_hair"][i] == "beard", c
        if "lipstick" in ws:
            assert cls["lipstick"][i] == "lipstick", c
        if ws & {"smiling", "grinning", "smile"}:
            assert cls["smile"][i] == "smiling", c
        if ws & {"old", "elderly"}:
            assert cls["age"][i] == "old", c
        if "cap" in ws:
            assert cls["hat"][i] == "cap", c
        if "closed" in ws or "shut" in ws:
            assert cls["eyes_closed"][i] == "closed", c


def test_captions_are_seeded_and_varied(caption_set):
    p, caps = caption_set
    assert captions(p[:50], seed=0) == caps[:50]
    assert caption(p, 17, seed=0) == caps[17]
    assert captions(p[:50], seed=1) != caps[:50]
    assert len(set(caps)) > 0.95 * len(caps)
    frames = {f for fs in DOMAIN_FRAMES.values() for f in fs}
    assert len(frames) >= 20


def test_wrap_in_template():
    rng = random.Random(0)
    out = wrap_in_template("an old man with a beard", template="a photo of a {}.")
    assert out == "a photo of an old man with a beard."
    templates = {t.strip() for t in TEMPLATES.read_text().splitlines() if "{}" in t}
    assert len(templates) == 79
    for _ in range(20):
        w = wrap_in_template("a smiling person", rng)
        assert w.replace("smiling person", "{}") in templates
    assert wrap_in_template("a zombie face", template="a origami {}.") == "an origami zombie face."

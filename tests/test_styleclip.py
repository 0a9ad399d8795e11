"""Faithfulness tests of the StyleCLIP methods (optimisation, mapper, global directions) on tiny random networks."""

import functools
import math

import pytest
import torch
from torch import nn

from bench.backbone_set import BackboneSet
from bench.errors import BenchError
from bench.suite import Edit
from methods import METHODS
from methods.base import SourceBatch
from methods.losses import lr_schedule, prompt_features, styleclip_clip_loss
from methods.ranger import Lookahead, Ranger
from zoo.clip import ClipBackbone, area_resize
from zoo.stylegan2.generator import Generator

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@functools.lru_cache(maxsize=1)
def _tokenizer():
    import open_clip
    return open_clip.get_tokenizer("ViT-B-32")


def tiny_clip(seed=5):
    import open_clip
    torch.manual_seed(seed)
    return ClipBackbone(open_clip.model.CLIP(**TINY_CLIP), _tokenizer(), name="tiny")


def tiny_generator(size=32, seed=3):
    torch.manual_seed(seed)
    g = Generator(size, style_dim=16, n_mlp=2, channels=8).eval()
    g.set_latent_avg(g.mean_latent(256, torch.Generator().manual_seed(0)))
    return g.requires_grad_(False)


class TinyIdentity(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.Flatten())

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def world():
    g = tiny_generator()
    return BackboneSet({"generator": g, "clip": tiny_clip(), "identity": TinyIdentity().requires_grad_(False)})


def sources(g, n=3, seed=1):
    z = torch.randn(n, g.style_dim, generator=torch.Generator().manual_seed(seed)).to(g.input.input.dtype)
    with torch.no_grad():
        w = g.truncate(g.mapping(z), 0.7).unsqueeze(1).repeat(1, g.n_latent, 1)
        return SourceBatch(images=g(w).clamp(-1, 1), latents=w)


EDIT = Edit(name="smile", target="a smiling face", neutral="a face")


# ------------------------------------------------------------------------------------------------ shared pieces
def test_lr_schedule_matches_official_formula():
    assert lr_schedule(0.0, 0.1) == 0.0  # warm-up starts at zero
    assert lr_schedule(0.025, 0.1) == pytest.approx(0.05)  # half-way through the 5 % warm-up
    assert lr_schedule(0.05, 0.1) == pytest.approx(0.1)
    assert lr_schedule(0.5, 0.1) == pytest.approx(0.1)  # plateau
    assert lr_schedule(0.75, 0.1) == pytest.approx(0.1)  # ramp-down starts at t = 0.75
    assert lr_schedule(0.875, 0.1) == pytest.approx(0.05)  # (1 - t)/0.25 = 0.5 -> 0.5 - 0.5 cos(pi/2)
    assert lr_schedule(0.9, 0.1) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(math.pi * 0.4)))
    assert lr_schedule(1.0, 0.1) == pytest.approx(0.0)


def test_area_resize_equals_official_upsample_avgpool_1024():
    x = torch.rand(1, 3, 1024, 1024) * 2 - 1
    with torch.no_grad():
        literal = nn.AvgPool2d(32)(nn.Upsample(scale_factor=7)(x))
    ours = area_resize(x, 224)
    assert ours.shape == literal.shape == (1, 3, 224, 224)
    assert torch.allclose(ours, literal, atol=1e-5)


def test_clip_loss_is_one_minus_cosine_on_raw_area_resized_pixels():
    clip = tiny_clip()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    text = prompt_features(clip, "a smiling face")[0]
    literal = nn.AvgPool2d(14)(nn.Upsample(scale_factor=7)(x))  # 64 * 7 / 14 = 32: no mean/std normalisation
    feats = torch.nn.functional.normalize(clip.model.encode_image(literal), dim=-1)
    expected = 1 - 100 * (feats @ text) / 100
    assert torch.allclose(styleclip_clip_loss(clip, x, text), expected, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- optimisation
def test_l2_term_is_a_sum_over_all_values(world):
    from methods.styleclip_optimization import objective
    g, clip = world["generator"], world["clip"]
    w_s = sources(g, 2).latents
    w = w_s + 0.5
    text = [prompt_features(clip, "a face")[0]]
    img = g(w)
    with_l2 = objective([(clip, 1.0)], text, img, [w], [w_s], l2_lambda=0.008)
    without = objective([(clip, 1.0)], text, img, [w], [w_s], l2_lambda=0.0)
    assert torch.allclose(with_l2 - without, torch.full((2,), 0.008 * 0.25 * g.n_latent * g.style_dim), rtol=1e-5)


def test_batched_optimisation_equals_separate_runs():
    """Per-sample losses summed + element-wise Adam: one batch of (source, prompt) pairs gives exactly the latents of
    separate runs (float64, so that only the batching could make a difference)."""
    from methods.losses import identity_loss
    from methods.styleclip_optimization import optimize
    g, clip = tiny_generator().double(), tiny_clip().double()
    world = BackboneSet({"generator": g, "clip": clip, "identity": TinyIdentity().double().requires_grad_(False)})
    w_s = sources(g, 3).latents.double()
    texts = prompt_features(clip, ["a smiling face", "a face with blue hair", "a smiling face"]).double()
    kw = dict(steps=3, lr=0.1, l2_lambda=0.008, id_lambda=0.005, id_loss=identity_loss(world))
    batched, _ = optimize(g, [(clip, 1.0)], w_s, [texts], **kw)
    for i in range(3):
        single, _ = optimize(g, [(clip, 1.0)], w_s[i:i + 1], [texts[i:i + 1]], **kw)
        assert torch.allclose(batched[i:i + 1], single, atol=1e-9, rtol=0), (batched[i:i + 1] - single).abs().max()
    assert (batched - w_s).abs().max() > 1e-3  # it did move


def test_s_space_variant_freezes_torgb_styles(world):
    from methods.styleclip_optimization import optimize
    g, clip = world["generator"], world["clip"]
    w_s = sources(g, 2).latents
    _, styles = optimize(g, [(clip, 1.0)], w_s, [prompt_features(clip, "a smiling face")[0]], steps=4, space="s")
    styles0 = g.styles(w_s)
    for layer, s, s0 in zip(g.style_layers, styles, styles0):
        if layer.kind == "torgb":
            assert torch.equal(s, s0)
    assert any((s - s0).abs().max() > 1e-4 for layer, s, s0 in zip(g.style_layers, styles, styles0)
               if layer.kind == "conv")


def test_optimisation_method_lowers_clip_loss(world):
    g, clip = world["generator"], world["clip"]
    src = sources(g, 2)
    method = METHODS.get("styleclip_optimization")(steps=8, id_lambda=0.005)
    out = method.apply(world, src, EDIT)
    text = prompt_features(clip, EDIT.target)[0]
    before = styleclip_clip_loss(clip, g(src.latents), text)
    after = styleclip_clip_loss(clip, g(out.edited_latents), text)
    assert out.edited_images.shape == src.images.shape
    assert (after < before).all()


# ----------------------------------------------------------------------------------------------------------- mapper
def test_ranger_lookahead_syncs_every_k_steps():
    p = nn.Parameter(torch.zeros(3))
    q = nn.Parameter(torch.zeros(3))
    opt = Ranger([p], lr=0.1, k=3, alpha=0.5)
    plain = torch.optim.RAdam([q], lr=0.1, betas=(0.95, 0.999), eps=1e-5)
    assert isinstance(opt, Lookahead) and isinstance(opt.inner, torch.optim.RAdam)
    for step in range(3):
        for param, o in ((p, opt), (q, plain)):
            o.zero_grad()
            (param - torch.tensor([1.0, 2.0, 3.0])).pow(2).sum().backward()
            o.step()
        if step < 2:
            assert torch.equal(p, q)  # between syncs Ranger is plain RAdam
    # at step k: slow (the start, 0) moves half-way to the fast weights and the fast weights jump there
    assert torch.allclose(p, 0.5 * q)
    assert torch.allclose(opt.slow[0][0], 0.5 * q)


def test_mapper_residual_and_groups():
    from methods.styleclip_mapper import LevelsMapper, edit_latents
    g = tiny_generator(64)
    w = sources(g, 2).latents
    mapper = LevelsMapper(g.n_latent, g.style_dim, ("coarse", "medium"))
    assert mapper.split == {"coarse": [0, 1, 2, 3], "medium": [4, 5, 6, 7], "fine": [8, 9]}  # n_latent 10
    m = mapper(w)
    assert torch.equal(m[:, 8:], torch.zeros_like(m[:, 8:]))  # the disabled fine group outputs zeros
    assert m[:, :8].abs().max() > 0
    assert torch.allclose(edit_latents(mapper, w), w + 0.1 * m)
    sub = mapper.mappers["coarse"].net
    assert len(sub) == 5 and all(layer.lr_mul == 0.01 and layer.activation for layer in list(sub)[1:])
    # the official PixelNorm (default): over the group's rows per channel, so one w repeated over the rows, as
    # sampled latents are, reaches the linear layers as sign(w)
    assert mapper.pixel_norm == "official" and torch.equal(w[:, 0], w[:, 3])
    layers = torch.nn.Sequential(*list(sub)[1:])

    def linear(x):  # the four EqualLinear layers on every vector
        return layers(x.reshape(-1, x.shape[-1])).view(x.shape)
    normalised = w[:, :4] / (w[:, :4].pow(2) + 1e-8).sqrt()  # the mean over 4 equal rows is w² itself
    assert torch.allclose(m[:, :4], linear(normalised), atol=1e-5)
    away_from_zero = w[:, :4].abs() > 0.01
    assert torch.allclose(normalised[away_from_zero], torch.sign(w[:, :4])[away_from_zero], atol=1e-4)
    mixed = torch.randn(2, 4, g.style_dim)
    by_rows = mixed / mixed.pow(2).mean(dim=1, keepdim=True).add(1e-8).sqrt()
    assert torch.allclose(mapper.mappers["coarse"](mixed), linear(by_rows), atol=1e-5)
    # "vector": each W+ vector normalised over its D values and mapped on its own
    per_vector = LevelsMapper(g.n_latent, g.style_dim, ("coarse", "medium"), pixel_norm="vector")
    per_vector.load_state_dict(mapper.state_dict())
    one = per_vector.mappers["coarse"](mixed[:1, 2:3])
    assert torch.allclose(per_vector.mappers["coarse"](mixed)[:1, 2:3], one, atol=1e-6)
    by_vector = mixed / mixed.pow(2).mean(dim=2, keepdim=True).add(1e-8).sqrt()
    assert torch.allclose(per_vector.mappers["coarse"](mixed), linear(by_vector), atol=1e-5)
    with pytest.raises(BenchError, match="unknown pixel_norm 'rows'; valid: official, vector"):
        LevelsMapper(g.n_latent, g.style_dim, pixel_norm="rows")


def test_mapper_training_lowers_loss_keeps_disabled_group_and_round_trips(world, tmp_path):
    from methods.styleclip_mapper import LatentSampler, LevelsMapper, mapper_loss, train_mapper
    g, clip = world["generator"], world["clip"]
    torch.manual_seed(0)
    mapper = LevelsMapper(g.n_latent, g.style_dim, ("coarse",))
    medium0 = {k: v.clone() for k, v in mapper.mappers["medium"].state_dict().items()}
    text = [prompt_features(clip, "a smiling face")[0]]
    sampler = LatentSampler(g, 0.7, val_count=4, seed=1)
    fixed = sampler._sample(8)
    before, _ = mapper_loss(g, mapper, [(clip, 1.0)], text, fixed)
    mapper, record = train_mapper(g, [(clip, 1.0)], text, mapper, sampler, steps=10, lr=0.5, val_interval=5)
    after, _ = mapper_loss(g, mapper, [(clip, 1.0)], text, fixed)
    assert float(after) < float(before)
    assert record["best_val_loss"] <= record["val"][0][1]
    for k, v in mapper.mappers["medium"].state_dict().items():
        assert torch.equal(v, medium0[k])  # a disabled group's layers are never updated

    method = METHODS.get("styleclip_mapper")(steps=2, val_interval=2, val_count=2, groups=["coarse"])
    method.prepare(world, EDIT)
    path = tmp_path / "mapper.pt"
    torch.save(method.prepared_state(), path)
    restored = METHODS.get("styleclip_mapper")(steps=3, groups=["coarse"])
    restored.load_prepared_state(torch.load(path, weights_only=True))
    src = sources(g, 2)
    a, b = method.apply(world, src, EDIT), restored.apply(world, src, EDIT)
    assert torch.equal(a.edited_latents, b.edited_latents)
    assert torch.equal(a.edited_images, b.edited_images)


def _untrained_mapper_case(world):
    """(generator, CLIP, an untrained LevelsMapper seeded 0, two source latents, the glasses prompt's features)."""
    from methods.styleclip_mapper import LevelsMapper
    g, clip = world["generator"], world["clip"]
    torch.manual_seed(0)
    mapper = LevelsMapper(g.n_latent, g.style_dim)
    return g, clip, mapper, sources(g, 2).latents, [prompt_features(clip, "a face with glasses")[0]]


def test_mapper_loss_is_the_weighted_sum_the_suite_sets(world):
    """CLIP 1.0 / ID 0.1 / latent 0.8 by default; suites/faces.yaml lowers the latent weight to 0.2, which must change
    only that term's share: total = λ_CLIP·clip + λ_ID·id + λ_L2·mean((ŵ − w)²)."""
    from methods.losses import identity_loss
    from methods.styleclip_mapper import edit_latents, mapper_loss
    g, clip, mapper, w, text = _untrained_mapper_case(world)
    ident = identity_loss(world)
    paper, p = mapper_loss(g, mapper, [(clip, 1.0)], text, w, id_loss=ident)
    light, q = mapper_loss(g, mapper, [(clip, 1.0)], text, w, id_loss=ident, latent_l2_lambda=0.2)
    latent = float((edit_latents(mapper, w) - w).pow(2).mean())
    assert latent > 0 and p["latent_l2"] == pytest.approx(latent, rel=1e-5)
    assert float(paper) == pytest.approx(p["clip"] + 0.1 * p["id"] + 0.8 * latent, rel=1e-5)
    assert float(paper) - float(light) == pytest.approx(0.6 * latent, rel=1e-4)
    assert (q["clip"], q["id"]) == (p["clip"], p["id"])


def test_the_untrained_mapper_is_never_the_one_kept(world, monkeypatch):
    """The official coach's validation before the first step returns nothing: even when every later validation is
    worse (a loss made to rise with each validation here), the kept mapper is a trained one."""
    import methods.styleclip_mapper as sm
    g, clip = world["generator"], world["clip"]
    real, validations = sm.mapper_loss, []

    def rising(*args, **kwargs):
        loss, parts = real(*args, **kwargs)
        if not torch.is_grad_enabled():  # a validation: each one reads worse than the one before
            validations.append(len(validations) + 1.0)
            parts = {**parts, "total": validations[-1]}
        return loss, parts

    monkeypatch.setattr(sm, "mapper_loss", rising)
    torch.manual_seed(0)
    mapper = sm.LevelsMapper(g.n_latent, g.style_dim)
    initial = {k: v.clone() for k, v in mapper.state_dict().items()}
    text = [prompt_features(clip, "a smiling face")[0]]
    sampler = sm.LatentSampler(g, 0.7, val_count=4, seed=1)
    mapper, record = sm.train_mapper(g, [(clip, 1.0)], text, mapper, sampler, steps=4, lr=0.5, val_interval=2)
    assert record["val"] == [(0, 1.0), (2, 2.0), (4, 3.0)]
    assert record["best_step"] == 2 and record["best_val_loss"] == 2.0
    assert any(not torch.equal(v, initial[k]) for k, v in mapper.state_dict().items())


def test_the_norm_term_is_nadas_mining_term(world):
    """norm_lambda adds MSE(‖E_I(G(ŵ))‖, ‖E_I(G(w))‖) of the first CLIP's un-normalised embeddings (NADA's copy of
    the mapper trainer); the other terms are unchanged."""
    from methods.styleclip_mapper import edit_latents, embedding_norm, mapper_loss
    g, clip, mapper, w, text = _untrained_mapper_case(world)
    plain, p = mapper_loss(g, mapper, [(clip, 1.0)], text, w)
    mined, q = mapper_loss(g, mapper, [(clip, 1.0)], text, w, norm_lambda=1000.0)  # large: a visible share
    with torch.no_grad():
        by_hand = (embedding_norm(clip, g(edit_latents(mapper, w))) - embedding_norm(clip, g(w))).pow(2).mean()
        raw = clip.model.encode_image(clip.preprocess(g(w), resize="area", normalize=False))
    assert float(by_hand) > 0 and q["norm"] == pytest.approx(float(by_hand), rel=1e-3)
    assert torch.allclose(embedding_norm(clip, g(w)).detach(), raw.norm(dim=-1), rtol=1e-5)
    assert float(mined) - float(plain) == pytest.approx(1000.0 * q["norm"], rel=1e-4)
    assert (q["clip"], q["latent_l2"]) == (p["clip"], p["latent_l2"])


# ----------------------------------------------------------------------------------------------- global directions
def test_threshold_normalisation_on_hand_made_relevance():
    from methods.styleclip_global import auto_beta, style_delta, threshold_direction
    r = torch.tensor([0.05, -0.30, 0.20, 0.10, -0.14, 0.15])
    assert torch.allclose(threshold_direction(r, 0.15), torch.tensor([0, -1, 2 / 3, 0, 0, 0.5]))
    std = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert torch.allclose(style_delta(r, std, 0.15), torch.tensor([0, -2, 2.0, 0, 0, 3.0]))
    assert torch.equal(threshold_direction(r, 0.5), torch.zeros(6))  # nothing survives: no division by zero
    many = torch.cat([torch.full((21,), 0.2), torch.full((30,), 0.12), torch.full((5,), 0.28)])
    assert auto_beta(many) == 0.2  # 26 channels at >= 0.20, only 5 at 0.21
    assert auto_beta(torch.full((10,), 0.5)) == 0.10  # never more than 20 channels: the smallest beta


def test_relevance_is_vectorised_exactly_and_cached(world, tmp_path, monkeypatch):
    import torch.nn.functional as F

    import methods.styleclip_global as sg
    g, clip = world["generator"], world["clip"]
    mean, std = sg.style_statistics(g, samples=500, batch=128)
    mask = sg.channel_mask(g, max_resolution=8)
    blocks = torch.split(mask, [layer.channels for layer in g.style_layers])
    for layer, block in zip(g.style_layers, blocks):  # conv layers up to 8 px; never a ToRGB
        assert bool(block.all()) == (layer.kind == "conv" and layer.resolution <= 8) and (block.all() or ~block.any())
    assert [l.name for l, b in zip(g.style_layers, blocks) if b.all()] == ["conv1", "convs.0", "convs.1"]
    mask = sg.channel_mask(g, max_resolution=4)  # conv1 only: 8 channels keep the test fast
    fs3 = sg.channel_relevance(g, clip, mean, std, mask, images=3, batch_size=64)
    fs3_small = sg.channel_relevance(g, clip, mean, std, mask, images=3, batch_size=5)
    assert torch.allclose(fs3, fs3_small, atol=1e-5)
    assert torch.allclose(fs3[mask].norm(dim=1), torch.ones(int(mask.sum())), atol=1e-5)
    assert torch.equal(fs3[~mask], torch.zeros_like(fs3[~mask]))
    # naive reference for one channel: a loop over images, one pair at a time
    c = int(mask.nonzero()[3])
    base = sg.flat_styles(g, sg._sample_w_plus(g, 3, 0.7, torch.Generator().manual_seed(1)))
    acc = 0
    for i in range(3):
        lo, hi = base[i:i + 1].clone(), base[i:i + 1].clone()
        lo[0, c], hi[0, c] = mean[c] - 5 * std[c], mean[c] + 5 * std[c]
        e = [F.normalize(clip.encode_images(g.synthesis(sg.split_styles(g, s)).clamp(-1, 1)), dim=-1)
             for s in (lo, hi)]
        acc = acc + F.normalize(e[1] - e[0], dim=-1)
    assert torch.allclose(fs3[c], F.normalize(acc, dim=-1)[0], atol=1e-5)

    method = METHODS.get("styleclip_global")(stat_samples=300, relevance_images=2, max_resolution=4,
                                             cache_dir=str(tmp_path / "cache"))
    method.prepare(world, EDIT)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    monkeypatch.setattr(sg, "channel_relevance", lambda *a, **k: pytest.fail("cache not used"))
    again = METHODS.get("styleclip_global")(stat_samples=300, relevance_images=2, max_resolution=4,
                                            cache_dir=str(tmp_path / "cache"))
    again.prepare(world, EDIT)
    assert torch.equal(again.state["r"], method.state["r"])
    src = sources(g, 2)
    out = again.apply(world, src, EDIT)
    assert out.edited_images.shape == src.images.shape
    zero = METHODS.get("styleclip_global")(alpha=0.0, stat_samples=300, relevance_images=2, max_resolution=4,
                                           cache_dir=str(tmp_path / "cache"))
    zero.load_prepared_state(method.prepared_state())
    assert torch.allclose(zero.apply(world, src, EDIT).edited_images, src.images, atol=1e-5)


def test_registered_with_paper_defaults():
    assert METHODS.get("styleclip_optimization").defaults() == {
        "steps": 300, "lr": 0.1, "l2_lambda": 0.008, "id_lambda": 0.0, "space": "w+"}
    d = METHODS.get("styleclip_mapper").defaults()
    assert (d["steps"], d["val_interval"], d["batch_size"], d["lr"], d["clip_lambda"], d["id_lambda"],
            d["latent_l2_lambda"], d["truncation"], d["strength"]) == (50000, 2000, 2, 0.5, 1.0, 0.1, 0.8, 0.7, 0.1)
    d = METHODS.get("styleclip_global").defaults()
    assert (d["alpha"], d["beta"], d["relevance_images"], d["sigma"], d["max_resolution"]) == (4.1, 0.15, 100, 5.0,
                                                                                                128)


# ------------------------------------------------------------------------------------------------- harness wiring
def test_every_method_runs_through_the_harness(tmp_path, tiny_world):
    from bench.runner import RunOptions, Runner
    from bench.suite import load_suite
    cache = tmp_path / "cache"
    suite = f"""name: styleclip-wiring
backbones:
  generator: {{stylegan2: {tiny_world['generator']}}}
  clip: {{clip: "{tiny_world['clip']}"}}
judges:
  clip: {{clip: "{tiny_world['clip']}"}}
sources: {{kind: generator, count: 2, seed: 1, batch_size: 2}}
edits:
  - {{name: smile, target: a smiling face}}
methods:
  - {{name: styleclip_optimization, params: {{steps: 2}}}}
  - {{name: styleclip_optimization, variant: opt_s, params: {{steps: 2, space: s}}}}
  - {{name: styleclip_mapper, params: {{steps: 2, val_interval: 1, val_count: 2}}}}
  - {{name: styleclip_global, params: {{stat_samples: 64, relevance_images: 1, max_resolution: 4,
      cache_dir: "{cache}"}}}}
  - {{name: tedigan_optimization, params: {{steps: 2, projection_steps: 2}}}}
  - {{name: tedigan_text2latent, params: {{pairs: 8, steps: 2, hidden: 16, cache_dir: "{cache}"}}}}
metrics: [clip_score]
seeds: [0]
"""
    path = tmp_path / "suite.yaml"
    path.write_text(suite)
    store = Runner(load_suite(path), path, RunOptions(tmp_path / "run")).run()
    cells = store.cells()
    assert len(cells) == 6 * 2
    bad = cells[cells["status"] != "ok"]
    assert bad.empty, bad.to_dict("records")


def test_guidance_check_compares_source_ground_truth_and_optimisation():
    """tools/guidance_check.py on the committed world: 4 sources, the sunglasses edit, 3 optimisation steps."""
    import importlib.util
    from pathlib import Path

    from bench.sources import source_latents
    from bench.suite import load_suite
    from zoo.synthface.backbones import load_synthface
    from zoo.synthface.train_generator import FeatureW

    path = Path(__file__).resolve().parents[1] / "tools" / "guidance_check.py"
    spec = importlib.util.spec_from_file_location("guidance_check", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    suite = load_suite(Path(__file__).resolve().parents[1] / "suites" / "faces.yaml")
    edit = next(e for e in suite.edits if e.name == "sunglasses")
    bb = load_synthface()
    g = bb["generator"]
    w = source_latents(suite.sources, bb, limit=4)
    row = tool.check_edit(g, bb["clip"], bb["judge_attributes"], FeatureW.fit(g), w, edit, steps=3, l2_lambda=0.008)
    assert row["edit"] == "sunglasses" and row["source"]["l2"] == 0.0
    assert row["optimisation"]["l2"] > 0 and row["oracle"]["l2"] > row["optimisation"]["l2"]
    assert row["oracle"]["judge_target"] >= 0.75 > row["source"]["judge_target"]  # the ground truth draws them
    assert row["oracle"]["clip_loss"] < row["source"]["clip_loss"]  # CLIP does prefer the real edit to no edit
    assert -1.0 <= row["gradient_cosine"] <= 1.0
    both = tool.check_edit(g, bb["clip"], bb["judge_attributes"], FeatureW.fit(g), w, edit, steps=3, l2_lambda=0.008,
                           guides=[bb["clip"], bb["judge_clip"]])  # the optimisation follows the two CLIPs' sum
    assert both["source"] == row["source"] and both["oracle"] == row["oracle"]  # the table's CLIP is still `clip`
    assert both["optimisation"]["l2"] > 0 and both["optimisation"]["clip_loss"] != row["optimisation"]["clip_loss"]


def test_global_preprocessing_lives_on_the_cpu_on_fresh_and_cached_paths(world, tmp_path, monkeypatch):
    """The relevance is stored on the CPU and the text direction is taken there, whatever the generator's device:
    a cache hit for a generator on another device (here "meta", standing in for CUDA) must give the fresh path's
    CPU tensors, not tensors on the generator's device that the CPU text direction cannot multiply."""
    import methods.styleclip_global as sg
    g = world["generator"]
    params = dict(stat_samples=64, relevance_images=1, max_resolution=4, cache_dir=str(tmp_path))
    fresh = METHODS.get("styleclip_global")(**params)
    blob = fresh.preprocess(g, world["clip"])
    assert {t.device.type for t in blob.values()} == {"cpu"}
    fresh.prepare(world, EDIT)
    monkeypatch.setattr(type(g), "device", property(lambda self: torch.device("meta")))
    monkeypatch.setattr(sg, "channel_relevance", lambda *a, **k: pytest.fail("cache not used"))
    cached = METHODS.get("styleclip_global")(**params)
    assert {t.device.type for t in cached.preprocess(g, world["clip"]).values()} == {"cpu"}
    cached.prepare(world, EDIT)
    assert cached.state["r"].device.type == cached.state["std"].device.type == "cpu"
    assert torch.equal(cached.state["r"], fresh.state["r"])


def _count_state_dict_reads(monkeypatch, *modules):
    """{module name: calls}, counting each module's `state_dict()` (what `state_hash` reads the weights with)."""
    counts = {}
    for name, module in modules:
        counts[name] = 0

        def counted(*args, _name=name, _read=module.state_dict, **kwargs):
            counts[_name] += 1
            return _read(*args, **kwargs)

        monkeypatch.setattr(module, "state_dict", counted)
    return counts


def test_global_cache_key_hashes_the_networks_once_per_module(tmp_path, monkeypatch):
    """The cache key's generator and CLIP hashes are remembered per module object (`module_hash`): a second
    preparation, a cache hit, does not read their weights again; another generator gets another key."""
    import gc

    from zoo.checkpoints import module_hash, state_hash
    g, clip = tiny_generator(seed=11), tiny_clip(seed=12)  # new modules: nothing remembered for them yet
    counts = _count_state_dict_reads(monkeypatch, ("generator", g), ("clip", clip))
    params = dict(stat_samples=64, relevance_images=1, max_resolution=4, cache_dir=str(tmp_path))
    first = METHODS.get("styleclip_global")(**params).preprocess(g, clip)
    assert counts == {"generator": 1, "clip": 1}
    again = METHODS.get("styleclip_global")(**params).preprocess(g, clip)
    assert counts == {"generator": 1, "clip": 1}  # not re-read
    assert all(torch.equal(again[k], first[k]) for k in first)
    assert module_hash(g) == state_hash(g) and module_hash(clip) == state_hash(clip)
    other = tiny_generator(seed=13)
    METHODS.get("styleclip_global")(**params).preprocess(other, clip)
    assert len(list(tmp_path.glob("*.pt"))) == 2
    import zoo.checkpoints as checkpoints
    held = len(checkpoints._MODULE_HASHES)
    del other
    gc.collect()
    assert len(checkpoints._MODULE_HASHES) == held - 1  # a weak reference: a dropped module is forgotten


def test_apply_only_params_are_declared_and_leave_the_preparation_alone(world, tmp_path):
    """`APPLY_ONLY_PARAMS` names parameters the preparation ignores: a sweep over them may reuse one preparation.
    The mapper trains with the official 0.1 · M(w) whatever `strength` apply uses."""
    from methods.styleclip_mapper import TRAIN_STRENGTH
    for name in METHODS.names():
        cls = METHODS.get(name)
        assert cls.APPLY_ONLY_PARAMS <= set(cls.defaults()), name
        # a misspelt name in a declared range would go unchecked
        assert cls.POSITIVE_PARAMS | cls.NON_NEGATIVE_PARAMS | cls.UNIT_INTERVAL_PARAMS <= set(cls.defaults()), name
    assert METHODS.get("styleclip_mapper").APPLY_ONLY_PARAMS == {"strength"} and TRAIN_STRENGTH == 0.1
    assert METHODS.get("styleclip_global").APPLY_ONLY_PARAMS == {"alpha"}
    g = world["generator"]
    src = sources(g, 2)
    mapper_params = dict(steps=2, val_interval=2, val_count=2)
    prepared = []
    for strength in (0.1, 0.5):
        torch.manual_seed(0)
        method = METHODS.get("styleclip_mapper")(**mapper_params, strength=strength)
        method.prepare(world, EDIT)
        prepared.append(method)
    a, b = (m.prepared_state()["mapper"] for m in prepared)
    assert all(torch.equal(a[k], b[k]) for k in a)
    moved = [m.apply(world, src, EDIT).edited_latents - src.latents for m in prepared]
    assert moved[0].abs().max() > 0 and torch.allclose(moved[1], 5 * moved[0], atol=1e-6)
    states = []
    for alpha in (4.1, -2.0):
        method = METHODS.get("styleclip_global")(alpha=alpha, stat_samples=64, relevance_images=1,
                                                 max_resolution=4, cache_dir=str(tmp_path))
        method.prepare(world, EDIT)
        states.append(method.prepared_state())
    assert torch.equal(states[0]["r"], states[1]["r"]) and states[0]["beta"] == states[1]["beta"]


def test_identity_weight_without_identity_network_raises_when_set_and_is_recorded_off_by_default(world):
    """Both StyleCLIP methods refuse an id_lambda > 0 the suite set when the backbone set has no identity network;
    the mapper's default 0.1 (the paper's) then trains without the ID term and says so in its prepared state."""
    from bench.errors import BenchError
    no_identity = BackboneSet({"generator": world["generator"], "clip": world["clip"]})
    small = dict(steps=1, val_interval=1, val_count=2)
    with pytest.raises(BenchError, match=r"styleclip_mapper: id_lambda=0.1 needs an 'identity' backbone"):
        METHODS.get("styleclip_mapper")(**small, id_lambda=0.1).prepare(no_identity, EDIT)
    with pytest.raises(BenchError, match=r"styleclip_optimization: id_lambda=0.005 needs an 'identity' backbone"):
        METHODS.get("styleclip_optimization")(steps=1, id_lambda=0.005).apply(no_identity, sources(
            world["generator"], 1), EDIT)
    default = METHODS.get("styleclip_mapper")(**small)
    default.prepare(no_identity, EDIT)
    assert default.prepared_state()["id_loss"] == "off: the backbone set has no 'identity' network"
    restored = METHODS.get("styleclip_mapper")(**small)
    restored.load_prepared_state(default.prepared_state())
    assert restored.record["id_loss"] == default.record["id_loss"]
    with_identity = METHODS.get("styleclip_mapper")(**small)
    with_identity.prepare(world, EDIT)
    assert with_identity.prepared_state()["id_loss"] == "on: id_lambda 0.1"
    zero = METHODS.get("styleclip_mapper")(**small, id_lambda=0)
    zero.prepare(no_identity, EDIT)
    assert zero.prepared_state()["id_loss"] == "off: id_lambda 0"


def test_bad_parameters_fail_at_construction_naming_the_value_and_the_choices():
    from bench.errors import BenchError
    with pytest.raises(BenchError, match=r"styleclip_optimization: space 'S' unknown; valid: w\+, s"):
        METHODS.get("styleclip_optimization")(space="S")
    with pytest.raises(BenchError, match=r"styleclip_mapper: unknown mapper group\(s\) \['hair'\]; "
                                         r"valid: coarse, medium, fine"):
        METHODS.get("styleclip_mapper")(groups=["coarse", "hair"])
    with pytest.raises(BenchError, match=r"styleclip_mapper: groups must be a list of coarse, medium, fine; "
                                         r"got 'fine'"):
        METHODS.get("styleclip_mapper")(groups="fine")


def test_a_missing_generator_names_the_roles_the_suite_provides(world):
    from bench.errors import BenchError
    clip_only = BackboneSet({"clip": world["clip"]})
    for name in ("styleclip_mapper", "styleclip_global", "styleclip_optimization"):
        method = METHODS.get(name)()
        with pytest.raises(BenchError, match=r"needs a 'generator' backbone \(the suite provides \['clip'\]\)"):
            method.prepare(clip_only, EDIT) if name != "styleclip_optimization" else \
                method.apply(clip_only, sources(world["generator"], 1), EDIT)


def test_training_and_statistics_latents_follow_the_official_recipe(world):
    """z ~ N(0, I) from the method's own generator → mapping → truncation ψ around the average latent → the same w
    at every W+ index (`Generator.to_w_plus`), for the global statistics and the mapper's training latents."""
    import methods.styleclip_global as sg
    from methods.styleclip_mapper import LatentSampler
    g = world["generator"]
    z = torch.randn(4, g.style_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        w = g.get_latent_avg() + 0.7 * (g.mapping(z) - g.get_latent_avg())
        expected = w[:, None].repeat(1, g.n_latent, 1)
        assert torch.equal(sg._sample_w_plus(g, 4, 0.7, torch.Generator().manual_seed(7)), expected)
        sampler = LatentSampler(g, 0.7, val_count=2, seed=7, pool_size=4)  # the training pool is drawn first
        assert torch.equal(sampler.pool, expected)
        assert sampler.val.shape == (2, g.n_latent, g.style_dim) and not torch.equal(sampler.val, expected[:2])


def test_training_latents_are_visited_in_shuffled_epochs_and_the_last_short_batch_dropped(world):
    """The official coach's DataLoader(shuffle=True, drop_last=True): every latent once per epoch."""
    from methods.styleclip_mapper import LatentSampler
    g = world["generator"]
    sampler = LatentSampler(g, 0.7, val_count=2, seed=3, pool_size=7)
    rows = {tuple(row[0].tolist()): i for i, row in enumerate(sampler.pool)}
    epochs = [[rows[tuple(w[0].tolist())] for _ in range(3) for w in sampler.batch(2)] for _ in range(2)]
    assert all(sorted(epoch) == sorted(set(epoch)) and len(epoch) == 6 for epoch in epochs)  # 3 batches, no repeat
    assert epochs[0] != epochs[1]  # reshuffled; the 7th latent of each epoch was dropped
    with pytest.raises(BenchError, match="batch_size 8 exceeds the 7 training latents"):
        sampler.batch(8)


def test_a_mapper_latents_file_is_read_as_sources_are_and_z_is_truncated(world, tmp_path):
    from methods.styleclip_mapper import LatentSampler
    g = world["generator"]
    z = torch.randn(6, g.style_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        w = g.mapping(z)
        truncated = g.get_latent_avg() + 0.7 * (w - g.get_latent_avg())
    torch.save({"w": w}, tmp_path / "w.pt")
    torch.save(z, tmp_path / "z.pt")  # a plain [N, D] tensor is z (bench generate's convention)
    torch.save(w[:, None].repeat(1, g.n_latent, 1), tmp_path / "wplus.pt")
    as_w = LatentSampler(g, 0.7, str(tmp_path / "w.pt"), val_count=2)
    assert torch.equal(as_w.pool[:, 3], w[:4]) and torch.equal(as_w.val[:, 0], w[4:])  # W used as it is
    as_z = LatentSampler(g, 0.7, str(tmp_path / "z.pt"), val_count=2)
    assert torch.allclose(as_z.pool[:, 0], truncated[:4], atol=1e-6)  # z mapped with the mapper's truncation
    assert torch.equal(LatentSampler(g, 0.7, str(tmp_path / "wplus.pt"), val_count=2).pool[:, 5], w[:4])


def test_lookahead_shares_the_inner_param_groups_even_after_the_inner_reloads():
    """Lookahead's `param_groups` are the inner optimiser's (a learning rate set through Lookahead reaches RAdam),
    also after the inner optimiser's load_state_dict, which replaces its list."""
    p = nn.Parameter(torch.zeros(3))
    opt = Ranger([p], lr=0.1)
    (p - 1).pow(2).sum().backward()
    opt.step()
    opt.inner.load_state_dict(opt.inner.state_dict())
    assert opt.param_groups is opt.inner.param_groups
    opt.param_groups[0]["lr"] = 0.01
    assert opt.inner.param_groups[0]["lr"] == 0.01
    assert not hasattr(opt, "state_dict")  # no checkpointing of the optimiser: the mapper keeps only its weights


class _RecordingAdam(torch.optim.Adam):
    """Adam that records, at each step, the learning rate it steps with and the gradients it sees."""
    steps: list = []

    def step(self, closure=None):
        _RecordingAdam.steps.append((self.param_groups[0]["lr"],
                                     [p.grad.clone() for g in self.param_groups for p in g["params"]]))
        return super().step(closure)


def test_optimisation_steps_with_the_official_schedule_and_a_summed_l2_in_both_spaces(world, monkeypatch):
    """The loop applies lr_schedule(step / steps) before each step; the L2 term is Σ(v − v_source)² (W+ or S)."""
    import methods.styleclip_optimization as so
    g, clip = world["generator"], world["clip"]
    w = sources(g, 1).latents
    text = [prompt_features(clip, "a smiling face")[0]]
    monkeypatch.setattr(so.torch.optim, "Adam", _RecordingAdam)
    for space in ("w+", "s"):
        _RecordingAdam.steps = []
        so.optimize(g, [(clip, 1.0)], w, text, steps=4, lr=0.1, l2_lambda=0.5, space=space)
        assert [lr for lr, _ in _RecordingAdam.steps] == [lr_schedule(t / 4, 0.1) for t in range(4)]
        # the first step's gradient (at the source, where the L2 term's gradient is 0) is the CLIP term's alone
        with torch.no_grad():
            styles0 = g.styles(w)
        if space == "w+":
            variables = [w.clone().requires_grad_(True)]
            image = g(variables[0])
        else:
            variables = [s.clone().requires_grad_(True) for s, layer in zip(styles0, g.style_layers)
                         if layer.kind == "conv"]
            it = iter(variables)
            image = g.synthesis([next(it) if layer.kind == "conv" else s for layer, s in zip(g.style_layers, styles0)])
        styleclip_clip_loss(clip, image, text[0]).sum().backward()
        first = _RecordingAdam.steps[0][1]
        assert len(first) == len(variables)
        assert all(torch.allclose(a, v.grad, rtol=1e-4, atol=1e-7) for a, v in zip(first, variables))
    # away from the source the L2 term is λ · Σ(v − v_source)², a sum over every W+ entry, not a mean
    moved = w + 0.3
    loss = so.objective([(clip, 0.0)], text, g(moved), [moved.clone().requires_grad_(True)], [w], 0.5, 0.0, None, None)
    assert torch.allclose(loss, 0.5 * (moved - w).pow(2).flatten(1).sum(1), rtol=1e-5)


def test_global_apply_is_s_plus_alpha_thresholded_relevance_times_std(monkeypatch):
    """A hand-made relevance matrix and text direction: r = fs3·Δt, channels with |r| < β zeroed, r / max|r|, times
    the channel's std, s + α·Δs (the direction from neutral to target, not the reverse)."""
    from methods.styleclip_global import flat_styles, split_styles
    g, clip = tiny_generator(), tiny_clip()
    bb = BackboneSet({"generator": g, "clip": clip})
    src = sources(g, 2)
    T = flat_styles(g, src.latents).shape[1]
    D = clip.encode_text("x").shape[-1]
    fs3 = torch.zeros(T, D)
    fs3[0, 0], fs3[5, 1], fs3[9, 0] = 1.0, 1.0, -0.1
    std = torch.arange(1.0, T + 1)
    method = METHODS.get("styleclip_global")(alpha=2.0, beta=0.15)
    monkeypatch.setattr(method, "preprocess", lambda *_: {"fs3": fs3, "std": std})
    dt = torch.zeros(D)
    dt[0], dt[1] = 0.6, -0.8
    monkeypatch.setattr(clip, "text_direction", lambda a, b, **k: dt if (a, b) == (EDIT.neutral, EDIT.target)
                        else -dt)
    method.prepare(bb, EDIT)
    delta = torch.zeros(T)
    delta[0], delta[5] = 0.75 * 1.0, -1.0 * 6.0  # r = 0.6, -0.8 at 5, -0.06 at 9 (< β); / max|r| 0.8; × std
    with torch.no_grad():
        expected = g.synthesis(split_styles(g, flat_styles(g, src.latents) + 2.0 * delta)).clamp(-1, 1)
    assert torch.allclose(method.apply(bb, src, EDIT).edited_images, expected, atol=1e-6)


def test_style_statistics_are_the_population_mean_and_std_of_truncated_samples():
    from methods.styleclip_global import flat_styles, style_statistics
    g = tiny_generator()
    mean, std = style_statistics(g, samples=300, truncation=0.7, seed=4, batch=128)
    rng = torch.Generator().manual_seed(4)
    z = torch.cat([torch.randn(n, g.style_dim, generator=rng) for n in (128, 128, 44)])
    with torch.no_grad():
        s = flat_styles(g, g.to_w_plus(z, "z", 0.7)).double()
    assert torch.allclose(mean.double(), s.mean(0), atol=1e-5)
    assert torch.allclose(std.double(), s.std(0, unbiased=False), atol=1e-5)
    with torch.no_grad():
        untruncated = flat_styles(g, g.to_w_plus(z, "z", 1.0)).double()
    assert not torch.allclose(std.double(), untruncated.std(0, unbiased=False), atol=1e-3)


def test_mapper_loss_weights_the_clip_term(world):
    from methods.styleclip_mapper import mapper_loss
    g, clip, mapper, w, text = _untrained_mapper_case(world)
    base, p = mapper_loss(g, mapper, [(clip, 1.0)], text, w)
    double, _ = mapper_loss(g, mapper, [(clip, 1.0)], text, w, clip_lambda=2.0)
    assert p["clip"] > 0 and float(double.detach() - base.detach()) == pytest.approx(p["clip"], rel=1e-4)

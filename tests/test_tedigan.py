"""TediGAN-style baselines on tiny random networks."""

import pytest
import torch
from torch import nn

from bench.backbone_set import BackboneSet
from bench.suite import Edit
from methods import METHODS
from methods.base import SourceBatch
from methods.inversion import perceptual_fn
from test_styleclip import sources, tiny_clip, tiny_generator

EDIT = Edit(name="smile", target="a smiling face", neutral="a face")


class TinyEncoder(nn.Module):
    """images → W+ through a linear map of 8×8 pooled pixels around the average latent."""

    def __init__(self, g):
        super().__init__()
        self.n_latent, self.dim = g.n_latent, g.style_dim
        self.lin = nn.Linear(3 * 64, g.n_latent * g.style_dim)
        self.register_buffer("avg", g.get_latent_avg().clone())

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)
        return self.avg + 0.1 * self.lin(x).view(-1, self.n_latent, self.dim)


@pytest.fixture(scope="module")
def world():
    g = tiny_generator()
    return BackboneSet({"generator": g, "clip": tiny_clip(), "encoder": TinyEncoder(g)})


def test_tedigan_objective_terms_and_weights(world):
    from methods.losses import prompt_features, weighted_clip_loss
    from methods.tedigan import tedigan_optimize
    g, clip, enc = world["generator"], world["clip"], world["encoder"]
    src = sources(g, 2)
    text = [prompt_features(clip, EDIT.target)[0]]
    w0 = enc(src.images).detach()
    # zero steps: the inversion itself; more steps lower the weighted objective
    assert torch.equal(tedigan_optimize(g, [(clip, 1.0)], text, w0, src.images, encoder=enc, steps=0), w0)

    @torch.no_grad()
    def total(w):
        x = g(w)
        return float(((x - src.images).pow(2).flatten(1).mean(1) + 2 * (enc(x) - w).pow(2).flatten(1).mean(1)
                      + 2 * weighted_clip_loss([(clip, 1.0)], x, text)).sum())
    w = tedigan_optimize(g, [(clip, 1.0)], text, w0, src.images, encoder=enc, steps=8, lr=0.01)
    assert total(w) < total(w0)
    assert not any(p.requires_grad for p in g.parameters())


def test_tedigan_optimization_method_with_and_without_encoder(world):
    g = world["generator"]
    src = sources(g, 2)
    method = METHODS.get("tedigan_optimization")(steps=3)
    out = method.apply(world, src, EDIT)
    assert out.edited_images.shape == src.images.shape and out.edited_latents.shape == src.latents.shape
    with torch.no_grad():
        start = world["encoder"](src.images)
    assert not torch.allclose(out.edited_latents, start)  # the optimisation moved the inverted latents
    assert all(p.requires_grad for p in world["encoder"].parameters())  # restored after the run
    no_encoder = BackboneSet({"generator": g, "clip": world["clip"]})
    out = METHODS.get("tedigan_optimization")(steps=2, projection_steps=2, perceptual="pyramid").apply(
        no_encoder, SourceBatch(images=src.images), EDIT)
    assert out.edited_latents.shape == src.latents.shape


def test_lpips_rand_stand_in_is_the_perceptual_term(world, monkeypatch):
    import methods.tedigan as tedigan

    made, calls = [], []

    def spy(name, device):  # the real distance, counted
        made.append(name)
        dist = perceptual_fn(name, device)
        return lambda x, y: calls.append(1) or dist(x, y)

    monkeypatch.setattr(tedigan, "perceptual_fn", spy)
    g = world["generator"]
    src = sources(g, 1)
    out = METHODS.get("tedigan_optimization")(steps=1, perceptual="lpips_rand").apply(world, src, EDIT)
    assert torch.isfinite(out.edited_images).all()
    assert made == ["lpips_rand"] and calls  # the option chose the loss, and the loss was evaluated


def test_text2latent_trains_caches_and_edits(world, tmp_path):
    from methods.tedigan import TextToLatent, train_text2latent, training_pairs
    g, clip = world["generator"], world["clip"]
    embs, offsets, used = training_pairs(g, clip, 64, source="auto")
    assert used == "image"  # style_dim 16 cannot carry the synthetic world's parameters
    assert embs.shape == (64, 32) and offsets.shape == (64, g.n_latent, g.style_dim)
    model = TextToLatent(32, g.n_latent, g.style_dim, hidden=32)
    losses = train_text2latent(model, embs, offsets, steps=60, lr=1e-3, batch_size=32)
    assert sum(losses[-5:]) < sum(losses[:5])

    params = dict(pairs=32, steps=5, hidden=32, cache_dir=str(tmp_path))
    method = METHODS.get("tedigan_text2latent")(**params)
    method.prepare(world, EDIT)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    cached = METHODS.get("tedigan_text2latent")(**params)
    with pytest.MonkeyPatch.context() as patch:  # a second preparation reads the file instead of training
        patch.setattr("methods.tedigan.train_text2latent", lambda *a, **k: pytest.fail("the cache was not used"))
        cached.prepare(world, EDIT)
    for key, value in method.prepared_state()["model"].items():
        assert torch.equal(cached.prepared_state()["model"][key], value), key
    src = sources(g, 2)
    out = method.apply(world, src, EDIT)
    restored = METHODS.get("tedigan_text2latent")(**params)
    restored.load_prepared_state(method.prepared_state())
    assert torch.equal(restored.apply(world, src, EDIT).edited_latents, out.edited_latents)
    zero = METHODS.get("tedigan_text2latent")(**params, strength=0.0)
    zero.load_prepared_state(method.prepared_state())
    assert torch.equal(zero.apply(world, src, EDIT).edited_latents, src.latents)
    mix = METHODS.get("tedigan_text2latent")(**params, mode="mix", mix_from=4)
    mix.load_prepared_state(method.prepared_state())
    mixed = mix.apply(world, src, EDIT).edited_latents
    assert torch.equal(mixed[:, :4], src.latents[:, :4]) and torch.equal(mixed[0, 4:], mixed[1, 4:])


def test_text2latent_cache_key_hashes_the_networks_once_per_module(world, tmp_path, monkeypatch):
    """A second training call, a cache hit, does not read the generator's or CLIP's weights again (`module_hash`)."""
    from test_styleclip import _count_state_dict_reads
    g, clip = tiny_generator(seed=21), tiny_clip(seed=22)  # new modules: nothing remembered for them yet
    counts = _count_state_dict_reads(monkeypatch, ("generator", g), ("clip", clip))
    params = dict(pairs=8, steps=1, hidden=8, cache_dir=str(tmp_path))
    first = METHODS.get("tedigan_text2latent")(**params)._train(g, clip)
    assert counts == {"generator": 1, "clip": 1}
    monkeypatch.setattr("methods.tedigan.train_text2latent", lambda *a, **k: pytest.fail("the cache was not used"))
    again = METHODS.get("tedigan_text2latent")(**params)._train(g, clip)
    assert counts == {"generator": 1, "clip": 1}  # not re-read
    assert all(torch.equal(again["model"][k], v) for k, v in first["model"].items())


def test_synthface_captions_used_when_available():
    pytest.importorskip("zoo.synthface.latent_params")
    from methods.tedigan import _synthface_captioner
    captioner = _synthface_captioner(128)
    if captioner is None:
        pytest.skip("zoo.synthface captions not available")
    z = torch.randn(3, 128, generator=torch.Generator().manual_seed(0))
    texts = captioner(z, 0)
    assert len(texts) == 3 and all(isinstance(t, str) and t for t in texts)
    assert _synthface_captioner(16) is None


def test_text2latent_training_ignores_the_global_random_stream_and_follows_its_seed(world, tmp_path):
    """The trained MLP (and so its shared cache entry) depends on the `seed` parameter only: the runner reseeds the
    global stream per (seed, variant, edit), which must not change what a cache hit would return."""
    params = dict(pairs=16, steps=3, hidden=16)

    def weights(cache, **extra):
        method = METHODS.get("tedigan_text2latent")(**params, cache_dir=str(tmp_path / cache), **extra)
        method.prepare(world, EDIT)
        return method.prepared_state()["model"]

    torch.manual_seed(1)
    a = weights("a")
    torch.manual_seed(2)
    b = weights("b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(1)
    c = weights("a", seed=1)  # same cache folder: a different seed is a different entry, trained afresh
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert len(list((tmp_path / "a").glob("*.pt"))) == 2


def test_text2latent_apply_only_params_leave_the_training_alone(world, tmp_path):
    cls = METHODS.get("tedigan_text2latent")
    assert cls.APPLY_ONLY_PARAMS == {"mode", "strength", "mix_from"}
    params = dict(pairs=16, steps=3, hidden=16, cache_dir=str(tmp_path))
    base = cls(**params)
    base.prepare(world, EDIT)
    other = cls(**params, mode="mix", strength=0.3, mix_from=2)
    other.prepare(world, EDIT)
    assert len(list(tmp_path.glob("*.pt"))) == 1  # one training serves both
    a, b = base.prepared_state()["model"], other.prepared_state()["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_perceptual_role_distance_is_the_official_per_sample_mean(world):
    """idinvert/TediGAN: torch.mean((x_feat - x_rec_feat) ** 2), weighted 5e-5: a mean over the feature values."""
    from methods.tedigan import resolve_perceptual
    features = nn.Conv2d(3, 5, 3, stride=2)
    roles = BackboneSet({**world.roles, "perceptual": features})
    dist = resolve_perceptual("auto", roles, world["clip"], "cpu")
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        expected = torch.stack([torch.mean((features(x[i:i + 1]) - features(y[i:i + 1])) ** 2) for i in range(2)])
        assert torch.allclose(dist(x, y), expected, rtol=1e-6)


def test_bad_parameters_fail_at_construction_naming_the_value_and_the_choices():
    from bench.errors import BenchError
    with pytest.raises(BenchError, match=r"perceptual 'vgg' unknown; valid: auto, clip, pyramid, lpips, lpips_rand, "
                                         r"none"):
        METHODS.get("tedigan_optimization")(perceptual="vgg")
    with pytest.raises(BenchError, match=r"captions 'text' unknown; valid: auto, synthface, image"):
        METHODS.get("tedigan_text2latent")(captions="text")
    with pytest.raises(BenchError, match=r"mode 'add' unknown; valid: delta, mix"):
        METHODS.get("tedigan_text2latent")(mode="add")


def test_tedigan_defaults_are_the_official_ones():
    import inspect

    from methods.tedigan import TediganOptimization, tedigan_optimize
    official = {"steps": 200, "lr": 0.01, "pixel_lambda": 1.0, "perceptual_lambda": 5e-5, "encoder_lambda": 2.0,
                "clip_lambda": 2.0}
    assert {k: TediganOptimization.defaults()[k] for k in official} == official
    signature = inspect.signature(tedigan_optimize).parameters
    assert {k: signature[k].default for k in official} == official


@pytest.mark.parametrize("weights", [{}, {"pixel_lambda": 3.0, "perceptual_lambda": 7.0, "encoder_lambda": 0.5,
                                          "clip_lambda": 11.0}])
def test_tedigan_gradient_is_the_weighted_sum_of_its_four_terms(world, monkeypatch, weights):
    """The first step's gradient equals the hand-built objective's: pixel MSE, perceptual, encoder E(G(w)) vs w
    and CLIP, each per sample with its weight (official 1 / 5e-5 / 2 / 2, or others), summed over samples."""
    import methods.tedigan as td
    from methods.losses import prompt_features, weighted_clip_loss
    g, clip, enc = world["generator"], world["clip"], world["encoder"]
    src = sources(g, 2)
    text = [prompt_features(clip, EDIT.target)[0]]
    w0 = enc(src.images).detach() + 0.05  # off the inversion, so the encoder term's gradient is not ~0

    def perceptual(x, y):
        return (x - y).abs().flatten(1).mean(1) * 100.0
    grads = []

    class Recording(torch.optim.Adam):
        def step(self, closure=None):
            grads.append(self.param_groups[0]["params"][0].grad.clone())
            return super().step(closure)
    monkeypatch.setattr(td.torch.optim, "Adam", Recording)
    td.tedigan_optimize(g, [(clip, 1.0)], text, w0, src.images, encoder=enc, perceptual=perceptual, steps=1,
                        **weights)
    k = {"pixel_lambda": 1.0, "perceptual_lambda": 5e-5, "encoder_lambda": 2.0, "clip_lambda": 2.0, **weights}
    w = w0.clone().requires_grad_(True)
    x = g(w)
    loss = (k["pixel_lambda"] * (x - src.images).pow(2).flatten(1).mean(1)
            + k["perceptual_lambda"] * perceptual(x, src.images)
            + k["encoder_lambda"] * (enc(x) - w).pow(2).flatten(1).mean(1)
            + k["clip_lambda"] * weighted_clip_loss([(clip, 1.0)], x, text))
    loss.sum().backward()
    assert torch.allclose(grads[0], w.grad, rtol=1e-4, atol=1e-8)
    # and each term matters: dropping any one changes the gradient
    for term in k:
        if k[term]:
            grads.clear()
            td.tedigan_optimize(g, [(clip, 1.0)], text, w0, src.images, encoder=enc, perceptual=perceptual,
                                steps=1, **{**k, term: 0.0})
            assert not torch.allclose(grads[0], w.grad, rtol=1e-3, atol=1e-6), term


# ---------------------------------------------------------------------------------------- the starting inversion
def _photo_folder(tmp_path, g, n=2):
    from PIL import Image

    from bench.images import to_uint8
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, array in enumerate(to_uint8(sources(g, n, seed=7).images)):
        Image.fromarray(array).save(folder / f"{i}.png")
    return folder


def _starts(monkeypatch):
    """Record the W+ tedigan_optimize starts from (the inversion the method chose)."""
    import methods.tedigan as td
    starts = []
    real = td.tedigan_optimize

    def recording(generator, networks, texts, w_init, *args, **kwargs):
        starts.append(w_init.clone())
        return real(generator, networks, texts, w_init, *args, **kwargs)
    monkeypatch.setattr(td, "tedigan_optimize", recording)
    return starts


def _counted_projection(monkeypatch, steps=2):
    import methods.inversion as inversion
    calls = []
    real = inversion.project

    def short(generator, images, **kwargs):
        calls.append(kwargs.get("steps"))
        return real(generator, images, **{**kwargs, "steps": steps})
    monkeypatch.setattr(inversion, "project", short)
    return calls


def test_tedigan_reuses_the_suites_optimisation_inversion_instead_of_projecting_again(world, tmp_path, monkeypatch):
    """Image sources with `inversion: optimization` and no encoder: the batch's latents are the projection TediGAN
    would run (projection_steps 300), so it starts from them and projects nothing in apply."""
    from bench.sources import source_batches
    from bench.suite import ImageSources

    g = world["generator"]
    no_encoder = BackboneSet({"generator": g, "clip": world["clip"]})
    spec = ImageSources(kind="images", path=str(_photo_folder(tmp_path, g)), inversion="optimization", batch_size=2)
    calls = _counted_projection(monkeypatch)
    starts = _starts(monkeypatch)
    [batch] = source_batches(spec, no_encoder)
    assert calls == [None]  # the sources' projection, at project's default steps
    method = METHODS.get("tedigan_optimization")(steps=1, perceptual="pyramid")
    for _ in range(2):  # two (edit, seed) cells
        method.apply(no_encoder, batch, EDIT)
    assert calls == [None] and all(torch.equal(s, batch.latents) for s in starts)

    # other projection settings are another inversion: projected again, at the method's steps
    METHODS.get("tedigan_optimization")(steps=1, projection_steps=7, perceptual="pyramid").apply(no_encoder, batch,
                                                                                              EDIT)
    assert calls == [None, 7]
    # with an encoder, TediGAN's recipe starts from the encoder's inversion, not the suite's projection
    method.apply(world, batch, EDIT)
    with torch.no_grad():
        assert torch.equal(starts[-1], world["encoder"](batch.images))
    assert calls == [None, 7]


def test_tedigan_starts_from_the_same_inversion_as_invert(world, tmp_path, monkeypatch):
    """Generated sources carry their true latents, not an inversion: TediGAN inverts their images (the encoder's
    `invert`, as documented); image sources inverted by the encoder give the same latents without a second call."""
    from bench.sources import source_batches
    from bench.suite import ImageSources
    from methods.inversion import invert

    g = world["generator"]
    starts = _starts(monkeypatch)
    generated = sources(g, 2)
    METHODS.get("tedigan_optimization")(steps=1, perceptual="pyramid").apply(world, generated, EDIT)
    assert torch.equal(starts[0], invert(world, generated.images))
    assert not torch.equal(starts[0], generated.latents)

    spec = ImageSources(kind="images", path=str(_photo_folder(tmp_path, g)), inversion="encoder", batch_size=2)
    [batch] = source_batches(spec, world)
    encoder = world["encoder"]
    calls = []
    monkeypatch.setattr(encoder, "forward", lambda x, f=encoder.forward: calls.append(1) or f(x))
    METHODS.get("tedigan_optimization")(steps=1, perceptual="pyramid").apply(world, batch, EDIT)
    assert torch.equal(starts[1], batch.latents)
    assert torch.allclose(starts[1], invert(world, batch.images), atol=1e-6)
    calls.clear()
    METHODS.get("tedigan_optimization")(steps=1, perceptual="pyramid", encoder_lambda=0.0).apply(world, batch, EDIT)
    assert calls == []  # no inversion (and no encoder term) in apply

"""Quality metrics (identity, LPIPS, FID/KID, diversity, attribute judge) against their reference
implementations, on random networks in their real formats; batch-size independence; judge/loss flags; errors.
The judge-CLIP metrics (clip_score, clip_gain, clip_direction) are in test_metrics_clip.py."""

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bench.errors import BenchError
from metrics import METRICS
from metrics.base import EditBatch, MetricOutput, ScoringContext
from conftest import TINY_CLIP_CFG, TinyRecognizer

N = 32


# --------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    torch.manual_seed(4)
    path = tmp_path_factory.mktemp("onnx") / "recognizer.onnx"
    model = TinyRecognizer().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.randn(1, 3, 112, 112),), str(path), dynamo=False, input_names=["data"],
                          output_names=["embedding"], dynamic_axes={"data": {0: "N"}, "embedding": {0: "N"}})
    return path


@pytest.fixture(scope="module")
def recognizer(onnx_file):
    from zoo.identity import load_onnx_recognizer

    return load_onnx_recognizer(onnx_file)


@pytest.fixture(scope="module")
def clip():
    from zoo.clip import load_clip, register_model_config

    torch.manual_seed(1)
    return load_clip(register_model_config("clipedit-test-metrics-tiny", TINY_CLIP_CFG))


@pytest.fixture(scope="module")
def judge():
    """A random attribute judge in the real class (`AttributeJudge`), slim widths."""
    from zoo.synthface.train_attributes import AttributeJudge, head_sizes

    torch.manual_seed(2)
    net = AttributeJudge(head_sizes(), widths=(8, 12, 16, 16), depth=1, hidden=32)
    for module in net.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return net.eval().requires_grad_(False)


class PixelStatJudge(nn.Module):
    """An attribute judge whose classes follow pixel statistics (head i: the mean of every len(heads)-th value,
    binned). A random `AttributeJudge` reads one constant class per head on the test images, so every attr value
    would be 0 or 1 whatever the metric did; this one reads differently per image and between source and edit."""

    def __init__(self):
        super().__init__()
        from zoo.synthface.train_attributes import head_sizes

        self.sizes = head_sizes()
        self.anchor = nn.Parameter(torch.zeros(()), requires_grad=False)  # the metric finds the device here

    def predict(self, x):
        flat = x.flatten(1)
        return {name: (flat[:, i::len(self.sizes)].mean(1) * 400).floor().long() % n
                for i, (name, n) in enumerate(self.sizes.items())}


@pytest.fixture(scope="module")
def attr_context():
    return ScoringContext(judges={"attributes": PixelStatJudge()})


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(7)
    source = torch.rand(N, 3, 64, 64, generator=g) * 2 - 1
    edited = (source + 0.4 * torch.randn(N, 3, 64, 64, generator=g)).clamp(-1, 1)
    return source, edited


@pytest.fixture(scope="module")
def context(recognizer, clip, judge):
    return ScoringContext(judges={"identity": recognizer, "clip": clip, "attributes": judge})


def _batch(source, edited, expect=None):
    return EditBatch(source, edited, "a face with purple hair", "a face", dict(expect or {}))


def _per_sample(metric, source, edited, size, expect=None):
    """Feed per-sample metric in batches of `size` (one update per batch), as the runner feeds cells."""
    metric.reset()
    for s, e in zip(source.split(size), edited.split(size)):
        metric.update(_batch(s, e, expect))
    return metric.compute()


def _as_dict(metric, values):
    return values if isinstance(values, dict) else {metric.name: values}


# ------------------------------------------------------------------------------------------------- registry
def test_registered_names_and_directions():
    expected = {"identity": True, "lpips": False, "lpips_synthface": False, "fid": False, "kid": False,
                "diversity": True, "attr_target": True, "attr_preserved": True, "diversity_ratio": True,
                "fid_n": True, "kid_n": True}
    for name, higher in expected.items():
        target = METRICS.get(name)
        assert bool(target.higher_is_better) is higher, name
    for name in ("fid_n", "kid_n", "diversity_ratio", "attr_preserved"):
        assert isinstance(METRICS.get(name), MetricOutput)
    assert METRICS.get("fid_n").produced_by == "fid" and METRICS.get("kid_n").produced_by == "kid"
    assert not METRICS.get("fid").per_sample and not METRICS.get("diversity").per_sample
    assert METRICS.get("identity").per_sample and METRICS.get("attr_target").per_sample


# ------------------------------------------------------------------------------------------------- identity
def test_identity_equals_direct_onnxruntime(context, onnx_file, images):
    source, edited = images
    metric = METRICS.get("identity")(context, crop="none")
    got = _per_sample(metric, source, edited, N)
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])

    def direct(x):  # insightface's convention: RGB (pixel - 127.5) / 127.5 at 112 x 112
        x = torch.nn.functional.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False, antialias=True)
        blob = (((x + 1) / 2 * 255 - 127.5) / 127.5).numpy().astype(np.float32)
        out = sess.run(None, {"data": blob})[0].astype(np.float64)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    expected = (direct(source) * direct(edited)).sum(axis=1)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-5)
    same = _per_sample(metric, source, source, N)
    np.testing.assert_allclose(same.numpy(), 1.0, atol=1e-5)


def test_identity_of_a_plain_module_is_the_cosine_of_its_raw_embeddings(images):
    """A recognizer that is a plain module returning unnormalised embeddings (no `.embed`): the metric normalises
    them itself, so the value is the cosine, not the raw dot product."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 8)).eval()
    net[1].weight.data.mul_(5)  # embeddings of norm ~5
    source, edited = images
    metric = METRICS.get("identity")(ScoringContext(judges={"identity": net}), crop="none")
    got = _per_sample(metric, source, edited, 7)
    with torch.no_grad():
        raw_s, raw_e = net(source), net(edited)
    assert raw_s.norm(dim=1).min() > 1.2 and raw_e.norm(dim=1).min() > 1.2  # not unit vectors
    torch.testing.assert_close(got, F.cosine_similarity(raw_s, raw_e, dim=1).double(), atol=1e-5, rtol=0,
                               check_dtype=False)


def test_identity_stylegan_crop_and_bad_crop(context, images):
    from zoo.identity import stylegan_face_crop

    source, edited = images
    up_s, up_e = (torch.nn.functional.interpolate(x[:4], size=256) for x in (source, edited))
    metric = METRICS.get("identity")(context, crop="stylegan")
    got = _per_sample(metric, up_s, up_e, 4)
    rec = context.judges["identity"]
    expected = (rec.embed(stylegan_face_crop(up_s)) * rec.embed(stylegan_face_crop(up_e))).sum(-1)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    with pytest.raises(BenchError, match="unknown crop 'mtcnn'; valid: auto, none, stylegan"):
        METRICS.get("identity")(context, crop="mtcnn")


def test_identity_auto_crop_follows_the_runs_generator(context, images):
    """`auto`: the synthetic world's generator → `none`, another (an FFHQ StyleGAN2) → `stylegan`; no generator →
    an error naming the crops."""
    from bench.backbone_set import Weighted
    from zoo.stylegan2.checkpoint import random_generator
    from zoo.synthface.train_generator import load

    source = torch.nn.functional.interpolate(images[0][:4], size=256)
    edited = torch.ones_like(source)  # changed outside the StyleCLIP crop (rows 35:223, columns 32:220) only
    edited[:, :, 35:223, 32:220] = source[:, :, 35:223, 32:220]
    explicit = {crop: _per_sample(METRICS.get("identity")(context, crop=crop), source, edited, 4)
                for crop in ("none", "stylegan")}
    assert explicit["none"].max() < 0.99 and torch.allclose(explicit["stylegan"], torch.ones(4))
    for generator, crop in [(load(), "none"), (random_generator(32, n_mlp=1, channel_multiplier=1), "stylegan"),
                            (Weighted(load(), 1.0), "none")]:
        ctx = ScoringContext(judges=context.judges, losses={"generator": generator})
        metric = METRICS.get("identity")(ctx)
        assert metric.crop_name == crop
        torch.testing.assert_close(_per_sample(metric, source, edited, 4), explicit[crop], atol=0, rtol=0)
    with pytest.raises(BenchError, match="crop 'auto' reads the run's generator.*set crop: none .* or stylegan"):
        METRICS.get("identity")(context)


# ---------------------------------------------------------------------------------------------------- lpips
def test_lpips_equals_lpips_package(images):
    import lpips

    source, edited = images
    torch.manual_seed(11)
    reference = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    torch.manual_seed(11)
    metric = METRICS.get("lpips")(ScoringContext(judges={}), net="alex", pnet_rand=True, batch_size=5)
    for (k, a), (_, b) in zip(reference.state_dict().items(), metric.network.state_dict().items()):
        assert torch.equal(a, b), k
    got = _per_sample(metric, source[:12], edited[:12], 12)
    with torch.no_grad():
        expected = reference(source[:12], edited[:12]).reshape(-1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert metric.higher_is_better is False and metric.name == "lpips"
    with pytest.raises(BenchError, match="unknown net"):
        METRICS.get("lpips")(ScoringContext(judges={}), net="resnet")


def test_lpips_flags_an_lpips_loss_of_the_same_net():
    import lpips

    loss = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    ctx = ScoringContext(judges={}, losses={"lpips": loss})
    assert METRICS.get("lpips")(ctx, net="alex", pnet_rand=True).judge_is_loss_network()
    assert not METRICS.get("lpips")(ScoringContext(judges={}), net="alex", pnet_rand=True).judge_is_loss_network()


def test_lpips_synthface_is_unweighted_lpips_arithmetic_on_the_judge_trunk(context, judge, images):
    import lpips

    source, edited = images
    metric = METRICS.get("lpips_synthface")(context)
    got = _per_sample(metric, source, edited, N)
    # lpips.LPIPS(lpips=False)'s arithmetic with the judge trunk's layers as the feature network
    layers = [judge.trunk.stem, *judge.trunk.stages]
    expected = 0
    with torch.no_grad():
        xs, ys = source, edited
        for layer in layers:
            xs, ys = layer(xs), layer(ys)
            diff = (lpips.normalize_tensor(xs) - lpips.normalize_tensor(ys)) ** 2
            expected = expected + lpips.spatial_average(diff.sum(dim=1, keepdim=True)).reshape(-1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert (_per_sample(metric, source, source, N) == 0).all()
    assert "lpips_synthface" != METRICS.canonical("lpips")


def test_synth_features_take_the_judges_own_resize(judge, images):
    """Features of a 96 x 96 image are the trunk's on the judge's resize of it (`AttributeJudge.outputs`)."""
    import lpips
    import torch.nn.functional as F

    from metrics.lpips import SynthFeatures

    large = F.interpolate(images[1][:4], size=(96, 96), mode="bilinear", align_corners=False)
    got = SynthFeatures(judge)(large)
    with torch.no_grad():
        x = F.interpolate(large, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
        expected = []
        for layer in [judge.trunk.stem, *judge.trunk.stages]:
            x = layer(x)
            expected.append(lpips.normalize_tensor(x))
    assert len(got) == len(expected) == 1 + len(judge.trunk.stages)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_synth_features_run_the_trunk_alone_and_equal_the_judges_own_activations(judge, images):
    """Bit-identical to the trunk activations the judge computes in `outputs` (read here with forward hooks, as
    SynthFeatures once did), at the judge's size and resized; the heads are not run and no hook is left behind."""
    import lpips
    import torch.nn.functional as F

    from metrics.lpips import SynthFeatures

    layers = [judge.trunk.stem, *judge.trunk.stages]
    for x in (images[0][:3], F.interpolate(images[1][:3], size=(80, 80), mode="bilinear", align_corners=False)):
        expected: list[torch.Tensor] = []
        hooks = [layer.register_forward_hook(lambda _m, _i, out: expected.append(lpips.normalize_tensor(out)))
                 for layer in layers]
        try:
            with torch.no_grad():
                judge.outputs(x)
        finally:
            for hook in hooks:
                hook.remove()
        heads = []
        hook = judge.feature.register_forward_hook(lambda *_: heads.append(1))
        try:
            got = SynthFeatures(judge)(x)
        finally:
            hook.remove()
        assert heads == []  # the trunk alone
        assert len(got) == len(expected) == len(layers)
        assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert all(not layer._forward_hooks for layer in layers)


# -------------------------------------------------------------------------------------------------- FID/KID
def _features(n, d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift


def test_frechet_distance_equals_clean_fid_and_torchmetrics():
    from cleanfid.fid import frechet_distance as clean_frechet
    from torchmetrics.image.fid import _compute_fid

    from metrics.fid import feature_stats, frechet_distance

    a, b = _features(400, 24, 0), _features(300, 24, 1, shift=0.3)
    mu1, s1 = feature_stats(a)
    mu2, s2 = feature_stats(b)
    assert mu1.dtype == s1.dtype == np.float64
    ours = frechet_distance(mu1, s1, mu2, s2)
    clean = clean_frechet(mu1, s1, mu2, s2)
    tm = float(_compute_fid(torch.from_numpy(mu1), torch.from_numpy(s1), torch.from_numpy(mu2),
                            torch.from_numpy(s2)))
    assert ours == pytest.approx(clean, rel=1e-6)
    assert ours == pytest.approx(tm, rel=1e-6)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-9)


def test_torchmetrics_fid_module_on_the_same_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    from metrics.fid import feature_stats, frechet_distance

    class Passthrough(nn.Module):
        num_features = 24

        def forward(self, x):
            return x

    a, b = _features(200, 24, 2), _features(150, 24, 3, shift=0.2)
    fid = FrechetInceptionDistance(feature=Passthrough(), normalize=True).double()
    fid.update(torch.from_numpy(b), real=True)
    fid.update(torch.from_numpy(a), real=False)
    expected = float(fid.compute())
    assert frechet_distance(*feature_stats(a), *feature_stats(b)) == pytest.approx(expected, rel=1e-6)


def test_kernel_distance_equals_clean_fid():
    from cleanfid.fid import kernel_distance as clean_kernel

    from metrics.fid import kernel_distance

    a, b = _features(120, 16, 4), _features(90, 16, 5, shift=0.25)
    for subsets, size in ((10, 50), (3, 1000)):
        np.random.seed(3)
        expected = clean_kernel(a, b, num_subsets=subsets, max_subset_size=size)
        assert kernel_distance(a, b, subsets, size, seed=3) == pytest.approx(expected, rel=1e-6)


class _FakeExtractor:
    """A deterministic image → feature map (a fixed random projection of pooled pixels)."""

    def __init__(self):
        self.weight = torch.randn(3 * 8 * 8, 10, generator=torch.Generator().manual_seed(9)).double()
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        pooled = torch.nn.functional.adaptive_avg_pool2d(images.double(), 8).flatten(1)
        return (pooled @ self.weight).numpy()

    def fingerprint(self):
        return "fake-extractor-v1"


def _set_value(metric, source, edited, sizes):
    metric.reset()
    start = 0
    for size in sizes:
        metric.update(_batch(source[start:start + size], edited[start:start + size]))
        start += size
    return {k: float(v) for k, v in _as_dict(metric, metric.compute()).items()}


def test_fid_kid_metrics_against_references_and_cache(images, tmp_path):
    from cleanfid.fid import frechet_distance as clean_frechet
    from cleanfid.fid import kernel_distance as clean_kernel

    from metrics.fid import feature_stats

    source, edited = images
    extractor = _FakeExtractor()
    ctx = ScoringContext(judges={})
    fid = METRICS.get("fid")(ctx, feature_extractor=extractor, cache_dir=str(tmp_path))
    kid = METRICS.get("kid")(ctx, feature_extractor=extractor, cache_dir=str(tmp_path), num_subsets=5,
                             max_subset_size=20, seed=1)
    out = _set_value(fid, source, edited, [N])
    fe, fs = extractor(edited), extractor(source)
    assert out["fid"] == pytest.approx(clean_frechet(*feature_stats(fe), *feature_stats(fs)), rel=1e-6)
    assert out["fid_n"] == N
    np.random.seed(1)
    kout = _set_value(kid, source, edited, [N])
    assert kout["kid"] == pytest.approx(clean_kernel(fe, fs, num_subsets=5, max_subset_size=20), rel=1e-6)
    assert kout["kid_n"] == N
    # batch-size independence (the runner feeds a whole group once; any split gives the same value)
    for sizes in ([1] * N, [7, 7, 7, 7, 4], [32]):
        assert _set_value(fid, source, edited, sizes) == pytest.approx(out, rel=1e-9)
        assert _set_value(kid, source, edited, sizes) == pytest.approx(kout, rel=1e-9)
    # the reference features were cached on disk by content hash: no recomputation of the sources
    cached = list(tmp_path.glob("*.npy"))
    assert len(cached) == 1 and not list(tmp_path.glob("*.tmp"))
    calls = extractor.calls
    _set_value(fid, source, edited, [N])
    assert extractor.calls == calls + 1  # only the edited images
    # too few images: NaN, with the count
    small = _set_value(fid, source[:1], edited[:1], [1])
    assert np.isnan(small["fid"]) and small["fid_n"] == 1


def test_fid_folder_and_render_references(images, tmp_path):
    from PIL import Image

    from metrics.fid import feature_stats, frechet_distance, render_reference

    source, edited = images
    folder = tmp_path / "ref"
    folder.mkdir()
    pixels = ((source[:6] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, array in enumerate(pixels):
        Image.fromarray(array).save(folder / f"{i:03d}.png")
    extractor = _FakeExtractor()
    ctx = ScoringContext(judges={})
    fid = METRICS.get("fid")(ctx, feature_extractor=extractor, reference=str(folder), cache_dir=str(tmp_path / "c"))
    out = _set_value(fid, source, edited, [N])
    reference = extractor(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1)
    expected = frechet_distance(*feature_stats(extractor(edited)), *feature_stats(reference))
    assert out["fid"] == pytest.approx(expected, rel=1e-6)
    fid = METRICS.get("fid")(ctx, feature_extractor=extractor, reference="renders:zombie", n_reference=16,
                             cache_dir=str(tmp_path / "c"))
    out = _set_value(fid, source, edited, [N])
    renders = render_reference("zombie", 16, 0)
    assert renders.shape == (16, 3, 64, 64)
    expected = frechet_distance(*feature_stats(extractor(edited)), *feature_stats(extractor(renders)))
    assert out["fid"] == pytest.approx(expected, rel=1e-6)
    # `renders:{domain}`: the domain comes from the edit's expect
    fid = METRICS.get("fid")(ctx, feature_extractor=extractor, reference="renders:{domain}", n_reference=16,
                             cache_dir=str(tmp_path / "c"))
    fid.reset()
    fid.update(_batch(source, edited, {"domain": "zombie"}))
    assert float(fid.compute()["fid"]) == pytest.approx(expected, rel=1e-6)
    fid.reset()
    with pytest.raises(BenchError, match="expect.domain"):
        fid.update(_batch(source, edited, {"hair_color": "red"}))
    with pytest.raises(BenchError, match="unknown domain"):
        fid.update(_batch(source, edited, {"domain": "oil"}))
    with pytest.raises(BenchError, match="unknown domain"):
        METRICS.get("fid")(ctx, feature_extractor=extractor, reference="renders:oil")
    with pytest.raises(BenchError, match="reference"):
        METRICS.get("fid")(ctx, feature_extractor=extractor, reference=str(tmp_path / "missing"))


def test_fid_kid_refuse_references_and_subsets_too_small_to_measure(images, tmp_path):
    """A reference of fewer than 2 images (an empty folder, one image) and KID subsets that cannot hold an unbiased
    MMD are errors naming the value, not scipy's "infs or NaNs" or a silent NaN."""
    from PIL import Image

    source, edited = images
    ctx, extractor = ScoringContext(judges={}), _FakeExtractor()
    empty, single = tmp_path / "empty", tmp_path / "single"
    empty.mkdir(), single.mkdir()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(single / "only.png")
    for name in ("fid", "kid"):
        for folder, count in ((empty, 0), (single, 1)):
            metric = METRICS.get(name)(ctx, feature_extractor=extractor, reference=str(folder),
                                       cache_dir=str(tmp_path / "c"))
            with pytest.raises(BenchError, match=f"{name}: the reference .*{folder.name}.* holds {count} image"):
                _set_value(metric, source, edited, [N])
        with pytest.raises(BenchError, match="n_reference must be >= 2.*got 0"):
            METRICS.get(name)(ctx, feature_extractor=extractor, reference="renders:zombie", n_reference=0)
    for bad in ({"num_subsets": 0}, {"max_subset_size": 1}):
        with pytest.raises(BenchError, match=f"{next(iter(bad))}={next(iter(bad.values()))}"):
            METRICS.get("kid")(ctx, feature_extractor=extractor, **bad)


def test_fid_with_judge_clip_features(context, clip, images, tmp_path):
    from metrics.fid import feature_stats, frechet_distance

    source, edited = images
    fid = METRICS.get("fid")(context, cache_dir=str(tmp_path))
    out = _set_value(fid, source, edited, [N])
    with torch.no_grad():
        fe = clip.encode_images(edited, normalize_embeddings=False).double().numpy()
        fs = clip.encode_images(source, normalize_embeddings=False).double().numpy()
    assert out["fid"] == pytest.approx(frechet_distance(*feature_stats(fe), *feature_stats(fs)), rel=1e-5)
    assert _set_value(fid, source, edited, [5] * 6 + [2])["fid"] == pytest.approx(out["fid"], rel=1e-5)


def test_clip_reference_cache_key_covers_preprocessing(clip):
    """Same weights but another preprocessing mean/std (non-persistent buffers) or resize setting: a new key."""
    import copy

    from metrics.fid import ClipFeatures

    key = ClipFeatures(clip, 8).fingerprint()
    assert ClipFeatures(copy.deepcopy(clip), 8).fingerprint() == key
    other_std = copy.deepcopy(clip)
    other_std._std.fill_(0.5)
    assert other_std.state_dict().keys() == clip.state_dict().keys()  # not in the state dict
    assert ClipFeatures(other_std, 8).fingerprint() != key
    aliased = ClipFeatures(clip, 8)
    aliased.PREPROCESSING = {**ClipFeatures.PREPROCESSING, "antialias": False}
    assert aliased.fingerprint() != key


def test_inception_preprocessing_follows_clean_fid(images):
    from cleanfid.resize import build_resizer

    from metrics.fid import InceptionFeatures

    source, _ = images
    seen = []
    extractor = InceptionFeatures("cpu", 4, model=lambda x: seen.append(x) or x.mean(dim=(2, 3)))
    feats = extractor(source[:3])
    assert feats.shape == (3, 3) and seen[0].shape == (3, 3, 299, 299)
    uint8 = ((source[0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(seen[0][0].numpy(), build_resizer("clean")(uint8).transpose(2, 0, 1))


# ------------------------------------------------------------------------------------------------ diversity
def test_diversity_clip_and_ratio(context, clip, images):
    source, edited = images
    metric = METRICS.get("diversity")(context)
    out = _set_value(metric, source, edited, [N])
    with torch.no_grad():
        e = clip.encode_images(edited).double()
        s = clip.encode_images(source).double()

    def mean_pairwise(x):
        d = 1 - x @ x.T
        return float(d[~torch.eye(len(x), dtype=torch.bool)].mean())

    assert out["diversity"] == pytest.approx(mean_pairwise(e), rel=1e-5)
    assert out["diversity_ratio"] == pytest.approx(mean_pairwise(e) / mean_pairwise(s), rel=1e-5)
    collapsed = _set_value(metric, source, edited[:1].expand(N, -1, -1, -1), [N])
    assert collapsed["diversity"] == pytest.approx(0, abs=1e-6) and collapsed["diversity_ratio"] < 1e-5
    assert _set_value(metric, source, edited, [7, 7, 7, 7, 4]) == pytest.approx(out, rel=1e-5)


def test_diversity_lpips_synthface(context, images):
    source, edited = images
    metric = METRICS.get("diversity")(context, distance="lpips_synthface")
    lp = METRICS.get("lpips_synthface")(context)
    out = _set_value(metric, source[:8], edited[:8], [8])
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)]
    a = torch.stack([edited[i] for i, _ in pairs])
    b = torch.stack([edited[j] for _, j in pairs])
    expected = float(_per_sample(lp, a, b, len(pairs)).double().mean())
    assert out["diversity"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(BenchError, match="unknown distance"):
        METRICS.get("diversity")(context, distance="dino")


# ----------------------------------------------------------------------------------------------- attributes
def test_attr_target_and_preserved(attr_context, images):
    from zoo.synthface import DOMAIN_NAMES, value_index

    judge = attr_context.judges["attributes"]
    source, edited = images
    metric = METRICS.get("attr_target")(attr_context)
    out = _per_sample(metric, source, edited, N, expect={"eyes_closed": "closed", "domain": "zombie"})
    pe, ps = judge.predict(edited), judge.predict(source)
    hits = ((pe["eyes_closed"] == value_index("eyes_closed", "closed")).double()
            + (pe["domain"] == DOMAIN_NAMES.index("zombie")).double()) / 2
    # the readings discriminate: half hits (one head of two) and whole ones, kept shares that vary, and the
    # target read on the edit differs from the same read on the source
    assert {0.5, 1.0} <= set(hits.tolist()) and 0.0 in hits.tolist()
    assert (pe["eyes_closed"] != ps["eyes_closed"]).any() and (pe["hair_color"] != ps["hair_color"]).any()
    torch.testing.assert_close(out["attr_target"], hits)
    others = [h for h in pe if h not in ("eyes_closed", "domain")]
    kept = torch.stack([(pe[h] == ps[h]).double() for h in others]).mean(0)
    assert len(set(kept.tolist())) > 3
    torch.testing.assert_close(out["attr_preserved"], kept)
    # an unchanged image keeps everything; no expect → NaN target
    same = _per_sample(metric, source, source, N)
    assert torch.isnan(same["attr_target"]).all() and (same["attr_preserved"] == 1).all()
    # a colourless target domain leaves the hair-colour head out of the preserved share; a domain with colour
    # keeps it
    for domain, skipped in (("pencil", ("hair_color", "domain")), ("comic", ("domain",))):
        scored = _per_sample(metric, source, edited, N, expect={"domain": domain})
        others = [h for h in pe if h not in skipped]
        torch.testing.assert_close(scored["attr_preserved"],
                                   torch.stack([(pe[h] == ps[h]).double() for h in others]).mean(0))


def test_attr_target_without_expect(context, images):
    """An edit that declares no `expect` at all (None): no target share, the preserved share over every head."""
    source, edited = images
    metric = METRICS.get("attr_target")(context)
    metric.update(EditBatch(source[:4], edited[:4], "a face", "a face", None))
    out = metric.compute()
    assert torch.isnan(out["attr_target"]).all() and out["attr_preserved"].shape == (4,)


def test_attr_bad_expect_names_the_heads(context, images):
    source, edited = images
    metric = METRICS.get("attr_target")(context)
    with pytest.raises(BenchError, match="heads are .*hair_color"):
        _per_sample(metric, source[:2], edited[:2], 2, expect={"wings": "yes"})
    with pytest.raises(BenchError, match="no value 'plaid'"):
        _per_sample(metric, source[:2], edited[:2], 2, expect={"hair_color": "plaid"})


# ---------------------------------------------------------------------------------- shared contract checks
PER_SAMPLE = [("identity", {"crop": "none"}), ("lpips_synthface", {}), ("attr_target", {}),
              ("lpips", {"pnet_rand": True})]


@pytest.mark.parametrize("name,params", PER_SAMPLE)
def test_per_sample_batch_size_independence_and_determinism(context, attr_context, images, name, params):
    source, edited = images
    metric = METRICS.get(name)(attr_context if name == "attr_target" else context, **params)
    expect = {"hair_color": "purple"}
    runs = [_as_dict(metric, _per_sample(metric, source, edited, size, expect)) for size in (1, 7, 32)]
    runs.append(_as_dict(metric, _per_sample(metric, source, edited, 32, expect)))
    for other in runs[1:]:
        for key, values in runs[0].items():
            assert values.shape == (N,)
            torch.testing.assert_close(other[key].double(), values.double(), atol=1e-5, rtol=1e-5, equal_nan=True)


@pytest.mark.parametrize("name,params", [("clip_score", {}), ("clip_direction", {}), *PER_SAMPLE])
def test_per_sample_compute_before_any_update_is_empty(context, name, params):
    metric = METRICS.get(name)(context, **params)
    values = _as_dict(metric, metric.compute())
    assert values and all(v.shape == (0,) for v in values.values()), name


def test_in_chunks_concatenates_tensors_pairs_layers_and_heads():
    from metrics.judges import in_chunks

    x, y = torch.arange(10.0), torch.arange(10.0) * 2
    torch.testing.assert_close(in_chunks(lambda a: a + 1, x, 3), x + 1)
    torch.testing.assert_close(in_chunks(lambda a, b: b - a, (x, y), 4), x)
    layers = in_chunks(lambda a: [a, -a], x, 3)
    torch.testing.assert_close(layers[1], -x)
    heads = in_chunks(lambda a: {"h": a * 3}, x, 7)
    torch.testing.assert_close(heads["h"], x * 3)
    with pytest.raises(ValueError, match="no images"):
        in_chunks(lambda a: a, x[:0], 3)


@pytest.mark.parametrize("name,role", [("identity", "identity"), ("lpips_synthface", "attributes"),
                                       ("attr_target", "attributes"), ("fid", "clip"), ("kid", "clip"),
                                       ("diversity", "clip")])
def test_judge_that_is_a_loss_is_flagged(context, name, role):
    network, params = context.judges[role], {"crop": "none"} if name == "identity" else {}
    assert not METRICS.get(name)(context, **params).judge_is_loss_network()
    flagged = ScoringContext(judges=context.judges, losses={"some_loss": [network]})
    assert METRICS.get(name)(flagged, **params).judge_is_loss_network()


def test_identity_loss_wrapping_the_judge_is_flagged(judge):
    from zoo.identity import IdentityLoss

    embedder = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 8))
    ctx = ScoringContext(judges={"identity": embedder}, losses={"identity": IdentityLoss(embedder, crop=None)})
    assert METRICS.get("identity")(ctx, crop="none").judge_is_loss_network()


@pytest.mark.parametrize("name,role", [("identity", "identity"), ("lpips_synthface", "attributes"),
                                       ("attr_target", "attributes"), ("fid", "clip"), ("kid", "clip"),
                                       ("diversity", "clip")])
def test_missing_judge_role_is_a_one_line_error(name, role):
    ctx = ScoringContext(judges={"other": object(), "more": object()})
    with pytest.raises(BenchError) as info:
        METRICS.get(name)(ctx)
    message = str(info.value)
    assert "\n" not in message and repr(role) in message and "['more', 'other']" in message

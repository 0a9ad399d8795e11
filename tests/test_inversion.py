"""The one inversion (`methods.inversion.invert`): encoder, optimisation-based projection, or auto."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.backbone_set import BackboneSet
from bench.errors import BenchError
from methods.inversion import invert, project, pyramid_distance
from zoo.stylegan2.generator import Generator


def tiny_generator(size=16, seed=3):
    torch.manual_seed(seed)
    g = Generator(size, style_dim=16, n_mlp=2, channels=8).eval().requires_grad_(False)
    g.set_latent_avg(g.mean_latent(256, torch.Generator().manual_seed(0)))
    return g


def test_projection_reduces_reconstruction_error_and_leaves_generator_frozen():
    g = tiny_generator()
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        target = g(g.truncate(g.mapping(z), 0.7))
        start = g(g.get_latent_avg().view(1, 1, -1).expand(2, g.n_latent, -1))
    w = project(g, target, steps=15, lr=0.1)
    assert w.shape == (2, g.n_latent, 16)
    with torch.no_grad():
        after = (g(w) - target).pow(2).flatten(1).mean(1)
    before = (start - target).pow(2).flatten(1).mean(1)
    assert (after < 0.5 * before).all()
    assert not any(p.requires_grad for p in g.parameters())


def test_projection_is_per_sample_independent():
    g = tiny_generator().double()
    target = torch.rand(3, 3, 16, 16, dtype=torch.float64) * 2 - 1
    batched = project(g, target, steps=4)
    single = project(g, target[1:2], steps=4)
    assert torch.allclose(batched[1:2], single, atol=1e-9)


def test_pyramid_distance_is_zero_only_for_equal_images():
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(pyramid_distance(x, x), torch.zeros(2))
    assert (pyramid_distance(x, x + 0.1) > 0).all()


class FakeEncoder(nn.Module):
    def __init__(self, n_latent, dim):
        super().__init__()
        self.n_latent, self.dim = n_latent, dim

    def forward(self, images):
        return images.mean((1, 2, 3)).view(-1, 1, 1).expand(-1, self.n_latent, self.dim).clone()


def test_invert_prefers_the_encoder():
    g = tiny_generator()
    images = torch.rand(2, 3, 16, 16)
    enc = FakeEncoder(g.n_latent, 16)
    assert torch.equal(invert(BackboneSet({"generator": g, "encoder": enc}), images), enc(images))
    w = invert(BackboneSet({"generator": g}), images, steps=2)
    assert w.shape == (2, g.n_latent, 16)


def test_lpips_unavailable_says_where_the_vgg16_weights_come_from(monkeypatch):
    import lpips
    import pytest

    from bench.errors import BenchError
    from methods import inversion

    def offline(*args, **kwargs):
        raise OSError("no network")
    monkeypatch.setattr(lpips, "LPIPS", offline)
    monkeypatch.setattr(inversion, "_LPIPS_CACHE", {})
    with pytest.raises(BenchError, match=r"torchvision's ImageNet VGG16 weights \(vgg16-397923af.pth\).*"
                                         r"download.pytorch.org.*torch hub cache.*perceptual: pyramid"):
        inversion.lpips_distance(True, "cpu")


def test_pyramid_distance_averages_over_the_levels_it_summed():
    """Pooling stops below 8 px: a 16 px pair has 3 levels (16, 8, 4) and their mean is taken, not the sum / 4."""
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    levels = [(x, y), (F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)), (F.avg_pool2d(x, 4), F.avg_pool2d(y, 4))]
    expected = sum((a - b).pow(2).flatten(1).mean(1) for a, b in levels) / 3
    assert torch.allclose(pyramid_distance(x, y), expected, rtol=1e-6)
    big_x, big_y = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)  # 64, 32, 16, 8: all four levels
    expected = sum((F.avg_pool2d(big_x, 2 ** k) - F.avg_pool2d(big_y, 2 ** k)).pow(2).mean() for k in range(4)) / 4
    assert torch.allclose(pyramid_distance(big_x, big_y), expected.view(1), rtol=1e-6)


# ------------------------------------------------------------------------------------------- one inversion
def test_invert_projects_under_no_grad():
    """Callers under torch.no_grad (scoring, a method's no_grad block) still get a projection: it enables grad."""
    g = tiny_generator()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        w = invert(BackboneSet({"generator": g}), images, how="optimization", steps=2)
        direct = project(g, images, steps=2)
    assert w.shape == (2, g.n_latent, 16) and not w.requires_grad
    assert torch.equal(w, direct)


def test_the_inversion_paths_agree():
    """`invert` (auto / encoder / optimization), the sources' `invert_images` and a direct `project` give the same
    latents for the same choice."""
    from bench.sources import invert_images
    from bench.suite import ImageSources

    g = tiny_generator()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    enc = FakeEncoder(g.n_latent, 16)
    with_encoder, without = BackboneSet({"generator": g, "encoder": enc}), BackboneSet({"generator": g})
    spec = ImageSources(kind="images", path=".", inversion="encoder")
    assert torch.equal(invert(with_encoder, images), enc(images))
    assert torch.equal(invert(with_encoder, images, how="encoder"), enc(images))
    assert torch.equal(invert_images(spec, with_encoder, images), enc(images))
    projected = project(g, images, steps=3)
    optimisation = spec.model_copy(update={"inversion": "optimization"})
    assert torch.equal(invert(without, images, steps=3), projected)  # auto without an encoder
    assert torch.equal(invert(with_encoder, images, how="optimization", steps=3), projected)  # from w_avg
    import methods.inversion as inversion
    with pytest.MonkeyPatch.context() as patch:  # the sources' projection is `project` at its defaults
        patch.setattr(inversion, "project", lambda generator, x, **kw: project(generator, x, steps=3, **kw))
        assert torch.equal(invert_images(optimisation, without, images), projected)


def test_invert_names_a_missing_encoder_and_an_unknown_choice():
    g = tiny_generator()
    images = torch.rand(1, 3, 16, 16)
    with pytest.raises(BenchError, match=r"^inversion is 'encoder' but the backbones provide no 'encoder' "
                                         r"\(roles: \['generator'\]\); use inversion: optimization$"):
        invert(BackboneSet({"generator": g}), images, how="encoder")
    with pytest.raises(BenchError, match=r"^unknown inversion 'projection'; valid: auto, encoder, optimization$"):
        invert(BackboneSet({"generator": g}), images, how="projection")


# ------------------------------------------------------------------------------------------- perceptual term
class FlatGenerator(nn.Module):
    """A stand-in generator of any size: every pixel of channel c is the latent's mean over index c's row."""

    def __init__(self, size, n_latent=4, dim=8):
        super().__init__()
        self.size, self.n_latent, self.style_dim = size, n_latent, dim
        self.scale = nn.Parameter(torch.ones(1), requires_grad=False)
        self.device = torch.device("cpu")

    def get_latent_avg(self):
        return torch.zeros(self.style_dim)

    def forward(self, w):
        colour = (w[:, :3].mean(-1) * self.scale).view(-1, 3, 1, 1)
        return colour.expand(-1, 3, self.size, self.size)


@pytest.mark.parametrize("size, seen", [(512, 256), (256, 256), (64, 64)])
def test_the_perceptual_term_sees_images_pooled_to_256_above_256(size, seen):
    """rosinality's projector average-pools generated images above 256 px before LPIPS; the pixel term stays at full
    size. The target is pooled the same way."""
    from methods.inversion import perceptual_input

    shapes = []

    def stub(x, y):
        shapes.append((tuple(x.shape), tuple(y.shape)))
        return (x - y).pow(2).flatten(1).mean(1)
    target = torch.rand(1, 3, size, size) * 2 - 1
    project(FlatGenerator(size), target, steps=2, perceptual=stub)
    assert shapes == [((1, 3, seen, seen), (1, 3, seen, seen))] * 2
    if size > 256:  # rosinality's reshape-mean with factor size // 256 is an average pool
        f = size // 256
        expected = target.reshape(1, 3, size // f, f, size // f, f).mean([3, 5])
        assert torch.allclose(perceptual_input(target), expected, atol=1e-6)


def test_project_with_lpips_rand_uses_lpips_on_random_vgg(monkeypatch):
    """perceptual="lpips_rand": the lpips package's LPIPS-VGG with random backbone weights (offline), built by the
    metric's builder, evaluated in every step."""
    import metrics.lpips
    from methods import inversion

    built, calls = [], []
    real = metrics.lpips.build_lpips

    def spy(net, pnet_rand=False, device="cpu", **kwargs):
        built.append((net, pnet_rand))
        network = real(net, pnet_rand, device, **kwargs)
        forward = network.forward
        network.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
        return network
    monkeypatch.setattr(metrics.lpips, "build_lpips", spy)
    monkeypatch.setattr(inversion, "_LPIPS_CACHE", {})
    g = tiny_generator(size=32)
    target = torch.rand(2, 3, 32, 32) * 2 - 1
    w = project(g, target, steps=2, perceptual="lpips_rand")
    assert built == [("vgg", True)] and len(calls) == 2
    assert w.shape == (2, g.n_latent, 16) and torch.isfinite(w).all()
    assert not torch.equal(w, project(g, target, steps=2, perceptual="none"))  # the term moved the latents


def test_the_metric_and_the_projection_share_one_lpips_error(monkeypatch):
    import lpips

    from metrics.lpips import build_lpips

    def offline(*args, **kwargs):
        raise OSError("no network")
    monkeypatch.setattr(lpips, "LPIPS", offline)
    with pytest.raises(BenchError, match=r"^lpips: cannot build LPIPS-alex \(OSError: no network\); it needs "
                                         r"torchvision's ImageNet AlexNet weights \(alexnet-owt-7be5be79.pth\), "
                                         r"downloaded once from https://download.pytorch.org/models/"):
        build_lpips("alex")
    with pytest.raises(BenchError, match=r"^lpips: unknown net 'resnet'; valid: alex, vgg, squeeze$"):
        build_lpips("resnet")

"""Inversion shared by the methods: encoder when the backbone set has one, else optimisation-based projection."""

import torch
import torch.nn.functional as F
from torch import nn

from bench.backbone_set import BackboneSet
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

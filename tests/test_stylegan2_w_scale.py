"""Rescaling W (zoo.stylegan2.w_scale): the same images from z, W+ and S; W itself scaled; the refusals."""

from __future__ import annotations

import pytest
import torch

from zoo.stylegan2 import Generator
from zoo.stylegan2.w_scale import scale_w, standardise_w, w_coordinate_std


def _generator() -> Generator:
    torch.manual_seed(0)
    g = Generator(32, 16, 3, channels={4: 16, 8: 16, 16: 8, 32: 8})
    with torch.no_grad():  # trained-looking weights: non-zero biases everywhere
        for name, p in g.named_parameters():
            if name.endswith(".bias"):
                p.add_(0.3 * torch.randn_like(p))
    g.latent_avg = torch.randn(16)
    return g


@pytest.mark.parametrize("factor", [0.2, 3.0])
def test_scaled_generator_draws_the_same_images(factor):
    g = _generator()
    scaled = scale_w(g, factor)
    z = torch.randn(4, 16)
    w_plus = g.to_w_plus(torch.randn(4, 16), input_space="z")
    with torch.no_grad():
        torch.testing.assert_close(scaled.mapping(z), factor * g.mapping(z), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(scaled.latent_avg, factor * g.latent_avg)
        torch.testing.assert_close(scaled(z, input_space="z", truncation=0.7), g(z, input_space="z", truncation=0.7),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(scaled(factor * w_plus, input_space="w+"), g(w_plus, input_space="w+"),
                                   atol=1e-5, rtol=0)
        for mine, theirs in zip(scaled.styles(factor * w_plus), g.styles(w_plus)):
            torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    # the source is left as it was
    assert not torch.equal(scaled.style[-1].weight, g.style[-1].weight)


def test_standardised_w_has_unit_coordinate_std():
    g = scale_w(_generator(), 7.0)
    before = w_coordinate_std(g)
    out, factor = standardise_w(g)
    assert before > 2.0
    assert factor == pytest.approx(1.0 / before)
    assert w_coordinate_std(out) == pytest.approx(1.0, rel=1e-4)


def test_a_generator_without_latent_avg_keeps_none():
    g = _generator()
    g.set_latent_avg(None)
    assert scale_w(g, 2.0).latent_avg is None


@pytest.mark.parametrize("factor", [0.0, -1.0, float("nan")])
def test_non_positive_factors_are_refused(factor):
    with pytest.raises(ValueError, match="positive number"):
        scale_w(_generator(), factor)

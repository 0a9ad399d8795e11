"""Widening a generator (zoo.stylegan2.widen): same images, new channels that train, and the refusals."""

from __future__ import annotations

import pytest
import torch

from zoo.stylegan2 import Generator
from zoo.stylegan2.widen import widen_generator

NARROW = {4: 16, 8: 16, 16: 8, 32: 8}


def _narrow() -> Generator:
    torch.manual_seed(0)
    g = Generator(32, 16, 2, channels=NARROW)
    with torch.no_grad():  # trained-looking weights: no zero biases, non-trivial noise strengths
        for name, p in g.named_parameters():
            if name.endswith(("activate.bias", "noise.weight")) or name.endswith(".bias"):
                p.add_(0.3 * torch.randn_like(p))
    g.latent_avg = torch.randn(16)
    return g


def test_widened_generator_draws_the_same_images_in_w_plus_and_from_z():
    g = _narrow()
    wide = widen_generator(g, {16: 24, 32: 20})
    assert wide.channels == {4: 16, 8: 16, 16: 24, 32: 20}
    assert torch.equal(wide.latent_avg, g.latent_avg)
    w_plus = torch.randn(3, g.n_latent, 16)
    z = torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(wide(w_plus, input_space="w+"), g(w_plus, input_space="w+"), atol=1e-5, rtol=0)
        torch.testing.assert_close(wide(z, input_space="z", truncation=0.7), g(z, input_space="z", truncation=0.7),
                                   atol=1e-5, rtol=0)
    # the S space grows by exactly the new channels, with the old ones first and unchanged
    for old, new in zip(g.styles(w_plus), wide.styles(w_plus)):
        torch.testing.assert_close(new[:, :old.shape[1]], old)


def test_the_zeroed_weights_receive_gradients():
    wide = widen_generator(_narrow(), {32: 12})
    wide(torch.randn(2, wide.n_latent, 16), input_space="w+").square().mean().backward()
    grad = wide.to_rgbs[-1].conv.weight.grad  # ToRGB at 32 px reads 4 new channels through zero weights
    assert torch.equal(wide.to_rgbs[-1].conv.weight[:, :, 8:], torch.zeros_like(grad[:, :, 8:]))
    assert grad[:, :, 8:].abs().sum() > 0


def test_narrower_channels_are_refused_naming_the_resolution():
    with pytest.raises(ValueError, match=r"narrower than the source at 16 px \(4 < 8\)"):
        widen_generator(_narrow(), {16: 4, 32: 12})

"""StyleGAN2 generator speed on CPU (pytest-benchmark; not collected by the default test run).

    pytest tests/bench_stylegan2.py --benchmark-enable

64x64 generator, style_dim 128, 32 or 64 channels at every resolution, batch 16, W+ input, fixed noise:
forward (no grad) and forward + backward (gradients for the W+ latents and every weight, as in StyleGAN-NADA).
"""

from __future__ import annotations

import pytest
import torch

from zoo.stylegan2 import Generator

BATCH, SIZE, STYLE_DIM = 16, 64, 128


def _generator(channels: int, impl: str) -> Generator:
    torch.manual_seed(0)
    return Generator(SIZE, STYLE_DIM, n_mlp=8, channels=channels).set_modconv_impl(impl).eval()


@pytest.mark.parametrize("impl", ["batched", "grouped"])
@pytest.mark.parametrize("channels", [32, 64])
def test_forward(benchmark, channels, impl):
    generator = _generator(channels, impl)
    w_plus = torch.randn(BATCH, generator.n_latent, STYLE_DIM)

    def step():
        with torch.no_grad():
            return generator(w_plus)

    image = benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    assert image.shape == (BATCH, 3, SIZE, SIZE)


@pytest.mark.parametrize("impl", ["batched", "grouped"])
@pytest.mark.parametrize("channels", [32, 64])
def test_forward_backward(benchmark, channels, impl):
    generator = _generator(channels, impl)
    w_plus = torch.randn(BATCH, generator.n_latent, STYLE_DIM)

    def step():
        generator.zero_grad(set_to_none=True)
        latent = w_plus.clone().requires_grad_(True)
        generator(latent).square().mean().backward()
        return latent.grad

    grad = benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    assert grad.shape == w_plus.shape

"""The synthetic world's oracle edit (`methods/synthface_oracle.py`): exact in the parameter-linear W, refused on
a generator whose W is not linear in the renderer's parameters."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from bench.errors import BenchError
from methods.synthface_oracle import SynthfaceOracle, edit_latents
from zoo.synthface import sample_params
from zoo.synthface.params import HAIR_COLORS, with_attribute
from zoo.synthface.train_generator import CATEGORICAL, CATEGORICAL_SIZES, DEFAULTS, N_CONTINUOUS, FeatureW, build


def fitted_teacher(seed: int) -> FeatureW:
    """A teacher fitted by least squares, as `FeatureW.fit` fits a generator's mapping: the parameter features are
    linearly dependent (each categorical block sums to the constant), so each block's rows sum to the constant row
    and a latent's features read back only up to a constant per block. 128 dims, as the synthetic generator's W:
    more than the features, so they can be read back at all."""
    features = FeatureW.features(sample_params(4096, seed=seed)).double()
    target = features @ torch.randn(features.shape[1], 128, generator=torch.Generator().manual_seed(seed),
                                    dtype=torch.float64)
    return FeatureW(torch.linalg.lstsq(features, target).solution)


@pytest.mark.parametrize("name, value", [("hair_color", "purple"), ("eyewear", "sunglasses"), ("age", "old"),
                                         ("smile", "frowning"), ("smile", "smiling")])
def test_oracle_moves_w_exactly_to_the_edited_parameters(name, value):
    teacher = fitted_teacher(3)
    params = sample_params(12, seed=5, domain="photo")
    w = teacher.of_params(params)
    expected = teacher.of_params(with_attribute(params, name, value))
    edited = edit_latents(teacher, w, {name: value})
    assert torch.allclose(edited, expected, atol=1e-3), (edited - expected).abs().max()
    # W+ sources: every index moves the same way
    edited_plus = edit_latents(teacher, w.unsqueeze(1).repeat(1, 4, 1), {name: value})
    assert torch.allclose(edited_plus, expected.unsqueeze(1).expand(-1, 4, -1), atol=1e-3)


def test_oracle_keeps_a_value_the_source_already_has():
    teacher = fitted_teacher(4)
    params = with_attribute(sample_params(6, seed=6, domain="photo"), "hat", "cap")
    w = teacher.of_params(params)
    assert torch.allclose(edit_latents(teacher, w, {"hat": "cap"}), w, atol=1e-3)


def test_oracle_keeps_the_sum_of_a_block_read_off_the_span():
    teacher = fitted_teacher(6)
    w = teacher.of_params(sample_params(8, seed=7, domain="photo"))
    w = w + 2.0 * torch.randn(w.shape, generator=torch.Generator().manual_seed(1))  # an inversion's off-span part
    block = slice(N_CONTINUOUS, N_CONTINUOUS + CATEGORICAL_SIZES[0])  # hair colour
    before = (w @ teacher.decode)[:, block]
    after = (edit_latents(teacher, w, {"hair_color": "blue"}) @ teacher.decode)[:, block]
    assert (before.sum(1) - 1).abs().max() > 1e-2  # off the span, the block does not sum to 1
    assert torch.allclose(after.sum(1), before.sum(1), atol=1e-3)
    assert (after.argmax(1) == HAIR_COLORS.index("blue")).all()


def test_oracle_names_bad_expectations():
    teacher = fitted_teacher(5)
    w = teacher.of_params(sample_params(2, seed=1))
    with pytest.raises(BenchError, match="no `expect`"):
        edit_latents(teacher, w, {})
    with pytest.raises(BenchError, match="expect names 'domain'"):
        edit_latents(teacher, w, {"domain": "zombie"})
    with pytest.raises(BenchError, match="purple.*values: frowning, neutral, smiling|no value 'purple'"):
        edit_latents(teacher, w, {"smile": "purple"})


def test_oracle_refuses_a_generator_not_linear_in_the_parameters():
    torch.manual_seed(0)
    config = dict(DEFAULTS, style_dim=32, n_mlp=2, channels={"4": 8, "8": 8, "16": 8, "32": 8, "64": 8})
    g = build(config).model.eval()  # random mapping network: W is not linear in the renderer's parameters
    with pytest.raises(BenchError, match="only on the synthetic world's generator"):
        SynthfaceOracle().prepare({"generator": g}, SimpleNamespace(expect={"hair_color": "blue"}))

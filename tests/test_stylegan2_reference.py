"""Faithfulness to rosinality's reference implementation.

The golden file ``tests/data/stylegan2_rosinality_golden.pt`` holds outputs of rosinality's own ``model.py``
(see ``tests/data/make_rosinality_golden.py`` for how it was made) for a random checkpoint that is regenerated
here from its seed. With ``STYLEGAN2_PYTORCH_DIR`` pointing at a checkout of rosinality/stylegan2-pytorch, an
extra test compares against the reference live.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from zoo.checkpoints import state_hash
from zoo.stylegan2 import load_generator, random_rosinality_state_dict

DATA = Path(__file__).parent / "data"
GOLDEN_PATH = DATA / "stylegan2_rosinality_golden.pt"
ATOL = 1e-4


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def golden():
    return torch.load(GOLDEN_PATH, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def golden_state(golden):
    c = golden["config"]
    return random_rosinality_state_dict(c["size"], c["style_dim"], c["n_mlp"], c["channel_multiplier"],
                                        seed=c["seed"])


@pytest.fixture(scope="module")
def ours(golden, golden_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("golden") / "golden_g.pt"
    torch.save({"g_ema": golden_state, "latent_avg": golden["latent_avg"]}, path)
    return load_generator(path)


def test_random_checkpoint_is_reproducible(golden, golden_state):
    digest = state_hash(golden_state)  # float32: the same digest as the golden file's (made before state_hash)
    assert digest == golden["state_sha256"], (
        "random_rosinality_state_dict no longer reproduces the golden checkpoint (torch's RNG or the filling "
        f"rule changed; golden made with torch {golden['torch_version']}, now {torch.__version__}). Regenerate "
        "tests/data/stylegan2_rosinality_golden.pt with tests/data/make_rosinality_golden.py")


def test_architecture_inferred_from_state_dict(golden, ours):
    c = golden["config"]
    assert (ours.size, ours.style_dim, ours.n_mlp, ours.channel_multiplier) == (
        c["size"], c["style_dim"], c["n_mlp"], c["channel_multiplier"])
    assert ours.n_latent == golden["n_latent"]
    assert ours.channels == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256}
    assert torch.equal(ours.latent_avg, golden["latent_avg"])


def test_w_plus_images_match_reference(golden, ours):
    with torch.no_grad():
        images = ours(golden["w_plus"])
    assert _max_abs(images, golden["images_w_plus"]) <= ATOL


def test_z_truncation_images_match_reference(golden, ours):
    with torch.no_grad():
        w = ours.mapping(golden["z"])
        images = ours(golden["z"], input_space="z", truncation=golden["truncation"])
    assert _max_abs(w, golden["w_from_z"]) <= 1e-5
    assert _max_abs(images, golden["images_z"]) <= ATOL


def test_style_space_matches_reference(golden, ours):
    assert ours.style_names == golden["style_names"]
    with torch.no_grad():
        styles = ours.styles(golden["w_plus"])
        for name, mine, ref in zip(ours.style_names, styles, golden["styles"], strict=True):
            assert _max_abs(mine, ref) <= 1e-5, name
        # synthesising the reference's S vectors gives the reference image
        assert _max_abs(ours.synthesis(golden["styles"]), golden["images_w_plus"]) <= ATOL


def test_grouped_implementation_matches_reference(golden, ours):
    ours.set_modconv_impl("grouped")
    try:
        with torch.no_grad():
            images = ours(golden["w_plus"])
    finally:
        ours.set_modconv_impl("batched")
    assert _max_abs(images, golden["images_w_plus"]) <= ATOL


@pytest.mark.skipif(not os.environ.get("STYLEGAN2_PYTORCH_DIR"),
                    reason="set STYLEGAN2_PYTORCH_DIR to a rosinality/stylegan2-pytorch checkout")
def test_live_against_reference_checkout(golden, ours):
    spec = importlib.util.spec_from_file_location("make_rosinality_golden", DATA / "make_rosinality_golden.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    live = maker.make_golden(os.environ["STYLEGAN2_PYTORCH_DIR"])
    assert live["state_sha256"] == golden["state_sha256"]
    with torch.no_grad():
        assert _max_abs(ours(live["w_plus"]), live["images_w_plus"]) <= ATOL
        assert _max_abs(ours(live["z"], input_space="z", truncation=live["truncation"],
                             truncation_latent=live["latent_avg"]), live["images_z"]) <= ATOL
        for mine, ref in zip(ours.styles(live["w_plus"]), live["styles"], strict=True):
            assert _max_abs(mine, ref) <= 1e-5
    # the live reference also reproduces the stored golden outputs
    assert _max_abs(live["images_w_plus"], golden["images_w_plus"]) <= 1e-5

"""``bench generate`` (bench/commands/generate.py), called through its argparse interface."""

from __future__ import annotations

import argparse

import pytest
import torch
from PIL import Image

from bench.commands import generate
from bench.errors import BenchError
from zoo.stylegan2 import generator_from_state_dict, random_rosinality_state_dict, save_generator

STYLE_DIM, SIZE, N_LATENT = 16, 16, 6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    state = random_rosinality_state_dict(SIZE, STYLE_DIM, 2, seed=11, channels=8)
    generator = generator_from_state_dict(state, latent_avg=torch.full((STYLE_DIM,), 0.2))
    return save_generator(generator, tmp_path_factory.mktemp("ckpt") / "g.pt"), generator


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="bench generate")
    generate.add_arguments(parser)
    return generate.run(parser.parse_args(list(argv)))


def _latents(tmp_path, obj, name="latents.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def test_w_plus_latents_write_images_and_pngs(tmp_path, checkpoint):
    ckpt, generator = checkpoint
    w_plus = torch.randn(5, N_LATENT, STYLE_DIM) * 2
    out = tmp_path / "out"
    assert _run("--generator", str(ckpt), "--latents", _latents(tmp_path, w_plus), "--out", str(out),
                "--batch-size", "2") == 0
    images = torch.load(out / "images.pt", weights_only=True)
    assert images.dtype == torch.float32 and images.shape == (5, 3, SIZE, SIZE)
    assert images.min() >= -1 and images.max() <= 1
    with torch.no_grad():
        expected = generator(w_plus).clamp(-1, 1)
    torch.testing.assert_close(images, expected, atol=1e-5, rtol=0)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [f"{i:06d}.png" for i in range(5)]
    with Image.open(out / "000003.png") as png:
        assert png.size == (SIZE, SIZE) and png.mode == "RGB"


def test_z_latents_are_truncated(tmp_path, checkpoint):
    ckpt, generator = checkpoint
    z = torch.randn(3, STYLE_DIM)
    out = tmp_path / "z"
    _run("--generator", str(ckpt), "--latents", _latents(tmp_path, z), "--out", str(out), "--truncation", "0.5")
    images = torch.load(out / "images.pt", weights_only=True)
    with torch.no_grad():
        expected = generator(z, input_space="z", truncation=0.5).clamp(-1, 1)
        untruncated = generator(z, input_space="z").clamp(-1, 1)
    torch.testing.assert_close(images, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(images, untruncated, atol=1e-3)


def test_w_under_its_key_is_not_mapped(tmp_path, checkpoint):
    ckpt, generator = checkpoint
    w = torch.randn(2, STYLE_DIM)
    out = tmp_path / "w"
    _run("--generator", str(ckpt), "--latents", _latents(tmp_path, {"w": w}), "--out", str(out))
    with torch.no_grad():
        expected = generator(w).clamp(-1, 1)
    torch.testing.assert_close(torch.load(out / "images.pt", weights_only=True), expected, atol=1e-5, rtol=0)


def test_random_noise_option(tmp_path, checkpoint):
    ckpt, _ = checkpoint
    latents = _latents(tmp_path, torch.randn(2, N_LATENT, STYLE_DIM))
    results = []
    for name, extra in [("fixed", []), ("r1", ["--random-noise"]), ("r2", ["--random-noise"]),
                        ("r3", ["--random-noise", "--seed", "7"])]:
        _run("--generator", str(ckpt), "--latents", latents, "--out", str(tmp_path / name), *extra)
        results.append(torch.load(tmp_path / name / "images.pt", weights_only=True))
    fixed, r1, r2, r3 = results
    assert not torch.allclose(fixed, r1)
    assert torch.equal(r1, r2)  # seeded
    assert not torch.allclose(r1, r3)


@pytest.mark.parametrize("bad", [torch.zeros(2, N_LATENT + 1, STYLE_DIM), torch.zeros(3, STYLE_DIM + 1),
                                 torch.zeros(STYLE_DIM), torch.zeros(2, 1, N_LATENT, STYLE_DIM)])
def test_bad_latent_shape_is_a_bench_error(tmp_path, checkpoint, bad):
    ckpt, _ = checkpoint
    with pytest.raises(BenchError) as info:
        _run("--generator", str(ckpt), "--latents", _latents(tmp_path, bad), "--out", str(tmp_path / "o"))
    message = str(info.value)
    assert f"shape {list(bad.shape)}" in message
    assert f"W+ [N, {N_LATENT}, {STYLE_DIM}] or z [N, {STYLE_DIM}]" in message


def test_bad_latents_files(tmp_path, checkpoint):
    ckpt, _ = checkpoint
    with pytest.raises(BenchError, match="latents file not found"):
        _run("--generator", str(ckpt), "--latents", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o"))
    with pytest.raises(BenchError, match="exactly one of the keys"):
        _run("--generator", str(ckpt), "--latents", _latents(tmp_path, {"foo": torch.zeros(1)}),
             "--out", str(tmp_path / "o"))
    with pytest.raises(BenchError, match=r"shape \[2, 6, 16\].*accepts \[N, 16\]"):
        _run("--generator", str(ckpt), "--latents", _latents(tmp_path, {"z": torch.zeros(2, 6, 16)}),
             "--out", str(tmp_path / "o"))


def test_missing_generator_is_a_bench_error(tmp_path):
    with pytest.raises(BenchError, match="not found"):
        _run("--generator", str(tmp_path / "g.pt"), "--latents", _latents(tmp_path, torch.zeros(1, 16)),
             "--out", str(tmp_path / "o"))


def test_standalone_main_reports_errors(tmp_path, capsys):
    assert generate.main(["--generator", str(tmp_path / "g.pt"), "--latents", "x.pt", "--out", "o"]) == 2
    assert "not found" in capsys.readouterr().err


def test_generator_sources_truncate_around_the_chosen_centre(checkpoint):
    """Suite sources: the checkpoint's latent_avg by default; `mean_latent` is StyleCLIP's mean_latent(4096)."""
    from pydantic import ValidationError

    from bench.backbone_set import BackboneSet
    from bench.sources import source_latents
    from bench.suite import GeneratorSources
    from zoo.stylegan2.generator import MEAN_LATENT_SEED

    _, generator = checkpoint  # latent_avg 0.2 everywhere, far from the mapping's mean
    backbones = BackboneSet({"generator": generator})
    with torch.no_grad():
        w = generator.mapping(torch.randn(3, STYLE_DIM, generator=torch.Generator().manual_seed(5)))
        mean = generator.mapping(torch.randn(4096, STYLE_DIM, generator=torch.Generator().manual_seed(MEAN_LATENT_SEED)))
    mean = mean.mean(0)

    default = source_latents(GeneratorSources(count=3, seed=5, truncation=0.5), backbones)
    assert default.shape == (3, N_LATENT, STYLE_DIM)
    torch.testing.assert_close(default[:, 0], 0.2 + 0.5 * (w - 0.2))
    styleclip = source_latents(GeneratorSources(count=3, seed=5, truncation=0.5, truncation_center="mean_latent"),
                               backbones)
    torch.testing.assert_close(styleclip[:, 3], mean + 0.5 * (w - mean))
    assert (styleclip - default).abs().max() > 0.01
    untruncated = GeneratorSources(count=3, seed=5, truncation=1.0, truncation_center="mean_latent")
    torch.testing.assert_close(source_latents(untruncated, backbones)[:, 0], w)
    with pytest.raises(ValidationError, match="'latent_avg' or 'mean_latent'"):
        GeneratorSources(truncation_center="average")

"""StyleGAN2 generator: checkpoint format, latent spaces, style space, noise, save/load."""

from __future__ import annotations

import pytest
import torch

from bench.errors import CheckpointError
from zoo.checkpoints import first_keys, state_hash
from zoo.stylegan2 import (Generator, generator_from_state_dict, infer_config, latent_split, load_generator,
                           random_rosinality_state_dict, rosinality_channels, rosinality_shapes, save_generator)
from zoo.stylegan2.ops import (blur2d, blur_pad_after_upsample, make_blur_kernel, upfirdn2d_reference, upsample2d,
                               upsample_pad)

SMALL = dict(size=32, style_dim=32, n_mlp=2, channel_multiplier=2, channels=16)


@pytest.fixture(scope="module")
def small_state():
    return random_rosinality_state_dict(seed=3, **SMALL)


@pytest.fixture()
def small_gen(small_state):
    generator = generator_from_state_dict(small_state, latent_avg=torch.randn(32, generator=torch.Generator().
                                                                                    manual_seed(5)) * 0.3)
    return generator


def _ckpt(tmp_path, state, latent_avg=None, name="g.pt"):
    obj = {"g_ema": state}
    if latent_avg is not None:
        obj["latent_avg"] = latent_avg
    path = tmp_path / name
    torch.save(obj, path)
    return path


# ------------------------------------------------------------------------------------------------------- ops
@pytest.mark.parametrize("kernel", [make_blur_kernel(gain=4), torch.rand(4, 4)])
def test_fast_resampling_matches_literal_upfirdn(kernel):
    x = torch.randn(2, 5, 8, 8)
    up = upsample2d(x, kernel, upsample_pad(4))
    assert up.shape == (2, 5, 16, 16)
    torch.testing.assert_close(up, upfirdn2d_reference(x, kernel, up=2, pad=upsample_pad(4)), atol=1e-5, rtol=0)
    y = torch.randn(2, 5, 17, 17)
    pad = blur_pad_after_upsample(4)
    assert pad == (1, 1)
    torch.testing.assert_close(blur2d(y, kernel, pad), upfirdn2d_reference(y, kernel, pad=pad), atol=1e-5, rtol=0)
    torch.testing.assert_close(blur2d(y, kernel, (2, 1)), upfirdn2d_reference(y, kernel, pad=(2, 1)), atol=1e-5,
                               rtol=0)


# ------------------------------------------------------------------------------------------- key set / shapes
def test_rosinality_key_set_at_1024_reduced_width_loads_strictly(tmp_path):
    full = rosinality_shapes(1024, 512, 8, 2)
    # 8 mapping layers x 2, input, conv1 (5), to_rgb1 (4), 16 convs x 5 + 8 blur kernels, 8 to_rgbs x 5, 17 noises
    assert len(full) == 171
    state = random_rosinality_state_dict(1024, style_dim=16, n_mlp=8, channel_multiplier=2, seed=0, channels=4)
    assert set(state) == set(full)
    assert state["convs.15.conv.weight"].shape == (1, 4, 4, 3, 3)
    assert state["noises.noise_16"].shape == (1, 1, 1024, 1024)
    path = _ckpt(tmp_path, state, torch.zeros(16))
    generator = load_generator(path, channels=4)
    assert (generator.size, generator.n_latent, generator.num_layers) == (1024, 18, 17)
    assert len(generator.style_layers) == 26
    assert len(generator.state_dict()) == 171
    assert torch.equal(generator.state_dict()["convs.7.conv.weight"], state["convs.7.conv.weight"])
    # the same file without the override: the reduced widths are read from the shapes
    assert load_generator(path).channels == {2 ** i: 4 for i in range(2, 11)}
    # a wrong override is a strict-load error naming the mismatching keys
    with pytest.raises(CheckpointError, match="shape mismatch: conv1.activate.bias"):
        load_generator(path, channels=8)


def test_config_f_parameter_count_and_key_shapes_are_rosinalitys():
    """Literal facts of rosinality's Generator(1024, 512, 8, channel_multiplier=2) (stylegan2-ffhq-config-f.pt),
    not derived from this project's own tables."""
    with torch.device("meta"):
        generator = Generator(1024, 512, 8, channel_multiplier=2)
    assert sum(p.numel() for p in generator.parameters()) == 30_370_060
    # by hand: mapping 8 x (512 x 512 + 512); constant 512 x 4 x 4; StyledConv(i, o) = 9io + 512i + i + 1 + o;
    # ToRGB(i) = 3i + 512i + i + 3; channels 512 (4..32), 512, 256, 128, 64, 32 (64..1024)
    ch = [512, 512, 512, 512, 512, 256, 128, 64, 32]

    def conv(i, o):
        return 9 * i * o + 513 * i + 1 + o

    def rgb(i):
        return 516 * i + 3

    total = 8 * (512 * 512 + 512) + 512 * 16 + conv(512, 512) + rgb(512)
    total += sum(conv(ch[k], ch[k + 1]) + conv(ch[k + 1], ch[k + 1]) + rgb(ch[k + 1]) for k in range(8))
    assert total == 30_370_060
    # buffers: noise maps 4^2 + 2 x (8^2 + ... + 1024^2), 16 FIR kernels of 4 x 4
    assert sum(b.numel() for b in generator.buffers()) == 2_796_176 + 16 * 16 == 2_796_432
    shapes = {k: tuple(v.shape) for k, v in generator.state_dict().items()}
    assert len(shapes) == 171
    literal = {
        "style.1.weight": (512, 512), "style.8.bias": (512,), "input.input": (1, 512, 4, 4),
        "conv1.conv.weight": (1, 512, 512, 3, 3), "conv1.conv.modulation.weight": (512, 512),
        "conv1.noise.weight": (1,), "conv1.activate.bias": (512,), "to_rgb1.conv.weight": (1, 3, 512, 1, 1),
        "to_rgb1.bias": (1, 3, 1, 1), "convs.0.conv.blur.kernel": (4, 4), "convs.6.conv.weight": (1, 512, 512, 3, 3),
        "convs.8.conv.weight": (1, 256, 512, 3, 3), "convs.12.conv.weight": (1, 64, 128, 3, 3),
        "convs.15.conv.weight": (1, 32, 32, 3, 3), "convs.15.conv.modulation.weight": (32, 512),
        "to_rgbs.7.conv.weight": (1, 3, 32, 1, 1), "to_rgbs.7.upsample.kernel": (4, 4),
        "noises.noise_0": (1, 1, 4, 4), "noises.noise_1": (1, 1, 8, 8), "noises.noise_16": (1, 1, 1024, 1024),
    }
    assert {k: shapes[k] for k in literal} == literal
    assert "style.0.weight" not in shapes and "to_rgb1.upsample.kernel" not in shapes and "convs.16.conv.weight" \
        not in shapes and "noises.noise_17" not in shapes


def test_true_size_ffhq_config_f_key_set_loads_strictly():
    state = random_rosinality_state_dict(1024, style_dim=512, n_mlp=8, channel_multiplier=2, seed=0)
    assert len(state) == 171
    assert sum(v.numel() for k, v in state.items() if not k.endswith("kernel") and "noises." not in k) == 30_370_060
    config = infer_config(state)
    assert config["size"] == 1024 and config["style_dim"] == 512 and config["n_mlp"] == 8
    assert config["channel_multiplier"] == 2 and config["channels"] == rosinality_channels(2)
    generator = generator_from_state_dict(state)
    assert len(generator.state_dict()) == 171
    assert torch.equal(generator.to_rgbs[7].conv.weight, state["to_rgbs.7.conv.weight"])


@pytest.mark.parametrize("size,style_dim,n_mlp,cm", [(8, 16, 1, 2), (64, 32, 3, 1), (128, 24, 2, 2)])
def test_infer_config(size, style_dim, n_mlp, cm):
    shapes = rosinality_shapes(size, style_dim, n_mlp, cm)
    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    config = infer_config(meta)
    assert (config["size"], config["style_dim"], config["n_mlp"]) == (size, style_dim, n_mlp)
    assert config["channels"] == {r: c for r, c in rosinality_channels(cm).items() if r <= size}
    if size >= 64:
        assert config["channel_multiplier"] == cm


def test_random_state_dict_is_deterministic_and_images_are_not_saturated(small_state):
    again = random_rosinality_state_dict(seed=3, **SMALL)
    assert state_hash(again) == state_hash(small_state)
    assert state_hash(random_rosinality_state_dict(seed=4, **SMALL)) != state_hash(small_state)
    assert list(small_state) == sorted(small_state)
    torch.testing.assert_close(small_state["convs.0.conv.blur.kernel"], make_blur_kernel(gain=4))
    generator = generator_from_state_dict(small_state)
    with torch.no_grad():
        image = generator(torch.randn(4, generator.style_dim), input_space="z")
    assert image.shape == (4, 3, 32, 32)
    assert 0.05 < image.std() < 1.0
    assert (image.abs() > 1).float().mean() < 0.05


# ----------------------------------------------------------------------------------------------------- errors
def test_missing_file_names_the_public_weights(tmp_path):
    with pytest.raises(CheckpointError, match="not found.*rosinality/stylegan2-pytorch README.*convert_weight.py"):
        load_generator(tmp_path / "nope.pt")


def test_missing_and_unexpected_keys(tmp_path, small_state):
    state = dict(small_state)
    del state["convs.1.noise.weight"], state["to_rgbs.0.conv.modulation.bias"]
    state["convs.1.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_generator(_ckpt(tmp_path, state))
    message = str(info.value)
    assert "rosinality stylegan2-pytorch generator checkpoint" in message and "g_ema" in message
    assert "missing keys: convs.1.noise.weight, to_rgbs.0.conv.modulation.bias" in message
    assert "unexpected keys: convs.1.extra" in message
    assert "public weights: rosinality/stylegan2-pytorch README" in message


def test_wrong_shapes(tmp_path, small_state):
    state = dict(small_state)
    state["convs.2.activate.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointError, match=r"shape mismatch: convs.2.activate.bias \(7,\)"):
        load_generator(_ckpt(tmp_path, state))


def test_not_a_generator_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError, match="no 'g_ema' entry; top-level keys: model"):
        load_generator(path)
    torch.save({"g_ema": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError, match="missing keys: input.input"):
        load_generator(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_generator(path)


def test_bad_latent_shape_is_explained(small_gen):
    with pytest.raises(ValueError, match=r"shape \[2, 5, 32\].*W \[N, 32\] or W\+ \[N, 8, 32\]"):
        small_gen(torch.zeros(2, 5, 32))


# -------------------------------------------------------------------------------------------- latent spaces
def test_s_path_equals_w_plus_path(small_gen):
    w_plus = torch.randn(3, small_gen.n_latent, small_gen.style_dim)
    with torch.no_grad():
        direct = small_gen(w_plus)
        styles = small_gen.styles(w_plus)
        assert [s.shape[1] for s in styles] == [layer.channels for layer in small_gen.style_layers]
        assert torch.equal(small_gen.synthesis(styles), direct)
        assert torch.equal(small_gen.synthesis(small_gen.named_styles(w_plus)), direct)
        # editing one S coordinate block changes the image
        edited = [s.clone() for s in styles]
        edited[5] = edited[5] + 2.0
        assert not torch.allclose(small_gen.synthesis(edited), direct)


def test_w_equals_repeated_w_plus(small_gen):
    w = torch.randn(2, small_gen.style_dim)
    with torch.no_grad():
        a = small_gen(w)
        b = small_gen(w.unsqueeze(1).repeat(1, small_gen.n_latent, 1), input_space="w+")
    assert torch.equal(a, b)


def test_z_path_is_mapping_then_truncation(small_gen):
    z = torch.randn(2, small_gen.style_dim)
    with torch.no_grad():
        a = small_gen(z, input_space="z", truncation=0.6)
        b = small_gen(small_gen.truncate(small_gen.mapping(z), 0.6))
    assert torch.equal(a, b)


def test_truncation_identity_and_zero(small_gen):
    w = torch.randn(4, small_gen.style_dim)
    assert small_gen.truncate(w, 1.0) is w
    avg = small_gen.latent_avg
    assert torch.equal(small_gen.truncate(w, 0.0), avg.expand_as(w))
    w_plus = torch.randn(2, small_gen.n_latent, small_gen.style_dim)
    assert torch.equal(small_gen.truncate(w_plus, 0.0), avg.expand_as(w_plus))
    with torch.no_grad():
        images = small_gen(torch.randn(3, small_gen.style_dim), input_space="z", truncation=0.0)
        reference = small_gen(avg[None])
    torch.testing.assert_close(images, reference.expand_as(images), atol=1e-5, rtol=0)


def test_mean_latent_fallback_without_latent_avg(small_state):
    generator = generator_from_state_dict(small_state)
    assert generator.latent_avg is None
    avg = generator.get_latent_avg()
    assert avg.shape == (generator.style_dim,)
    assert torch.equal(generator_from_state_dict(small_state).get_latent_avg(), avg)  # fixed seed
    torch.testing.assert_close(generator.truncate(torch.randn(2, generator.style_dim), 0.0), avg.expand(2, -1))


def test_layer_groups_follow_rosinality_indexing(small_gen):
    groups = [[name for name, _ in group] for group in small_gen.layer_groups()]
    assert groups == [["conv1"], ["to_rgb1", "convs.0"], ["convs.1"], ["to_rgbs.0", "convs.2"], ["convs.3"],
                      ["to_rgbs.1", "convs.4"], ["convs.5"], ["to_rgbs.2"]]
    assert small_gen.layer_groups()[1][1][1] is small_gen.convs[0]
    resolutions = {r: [name for name, _ in g] for r, g in small_gen.resolution_groups().items()}
    assert resolutions == {4: ["conv1", "to_rgb1"], 8: ["convs.0", "convs.1", "to_rgbs.0"],
                           16: ["convs.2", "convs.3", "to_rgbs.1"], 32: ["convs.4", "convs.5", "to_rgbs.2"]}
    # the table is what the styles actually use: changing W+ index i changes exactly the styles of group i
    w_plus = torch.randn(1, small_gen.n_latent, small_gen.style_dim)
    with torch.no_grad():
        base = small_gen.named_styles(w_plus)
        for i, group in enumerate(groups):
            moved = w_plus.clone()
            moved[:, i] += 1.0
            changed = [n for n, s in small_gen.named_styles(moved).items() if not torch.equal(s, base[n])]
            assert sorted(changed) == sorted(group)
    assert latent_split(18) == {"coarse": [0, 1, 2, 3], "medium": [4, 5, 6, 7], "fine": list(range(8, 18))}


def test_grouped_implementation_matches_batched(small_gen):
    w_plus = torch.randn(3, small_gen.n_latent, small_gen.style_dim)
    with torch.no_grad():
        a = small_gen(w_plus)
        b = small_gen.set_modconv_impl("grouped")(w_plus)
        small_gen.set_modconv_impl("batched")
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_gradients_reach_latents_and_weights(small_gen):
    w_plus = torch.randn(2, small_gen.n_latent, small_gen.style_dim, requires_grad=True)
    small_gen(w_plus).square().mean().backward()
    assert w_plus.grad is not None and w_plus.grad.abs().sum() > 0
    assert small_gen.convs[3].conv.weight.grad.abs().sum() > 0
    assert small_gen.to_rgbs[2].bias.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------------ noise
def test_fixed_noise_is_deterministic_random_noise_is_not(small_gen):
    w = torch.randn(2, small_gen.style_dim)
    with torch.no_grad():
        a, b = small_gen(w), small_gen(w)
        c = small_gen(w, randomize_noise=True)
        d = small_gen(w, noise=small_gen.make_noise(2, torch.Generator().manual_seed(1)))
        e = small_gen(w, noise=small_gen.make_noise(2, torch.Generator().manual_seed(1)))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.equal(d, e) and not torch.allclose(a, d)
    assert [tuple(n.shape) for n in small_gen.fixed_noise()] == [(1, 1, 4, 4), (1, 1, 8, 8), (1, 1, 8, 8),
                                                                 (1, 1, 16, 16), (1, 1, 16, 16), (1, 1, 32, 32),
                                                                 (1, 1, 32, 32)]


# ------------------------------------------------------------------------------------------------- save/load
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_save_load_round_trip_is_bit_identical(tmp_path, small_gen, suffix):
    with torch.no_grad():  # an "adapted" generator
        small_gen.convs[2].conv.weight.add_(0.01)
        small_gen.to_rgbs[1].bias.mul_(3)
    path = save_generator(small_gen, tmp_path / f"adapted{suffix}")
    loaded = load_generator(path)
    before, after = small_gen.state_dict(), loaded.state_dict()
    assert list(before) == list(after)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(loaded.latent_avg, small_gen.latent_avg)
    w_plus = torch.randn(2, small_gen.n_latent, small_gen.style_dim)
    with torch.no_grad():
        assert torch.equal(loaded(w_plus), small_gen(w_plus))
    if suffix == ".pt":
        raw = torch.load(path, weights_only=True)
        assert set(raw) == {"g_ema", "latent_avg"}


def test_rosinality_training_checkpoint_with_extras_loads(tmp_path, small_state):
    import argparse

    path = tmp_path / "train.pt"
    torch.save({"g": small_state, "d": {"x": torch.zeros(1)}, "g_ema": small_state, "g_optim": {},
                "args": argparse.Namespace(size=32, channel_multiplier=2)}, path)
    generator = load_generator(path)
    assert generator.latent_avg is None and generator.size == 32


def test_generator_constructor_validates_size():
    with pytest.raises(ValueError, match="power of two"):
        Generator(48, 16, 1, channels=8)
    with pytest.raises(ValueError, match="no channel count"):
        Generator(2048, 16, 1)


class _PickledCode:  # a class torch.load(weights_only=True) refuses to unpickle
    pass


def test_unreadable_checkpoints_name_the_reason_and_the_public_weights(tmp_path):
    import warnings

    path = tmp_path / "code.pt"  # torch.save's zip root is the stem: "code/data.pkl" is no TorchScript "code/"
    torch.save({"g_ema": _PickledCode()}, path)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    message = str(info.value)
    assert f"Unsupported global: GLOBAL {__name__}._PickledCode" in message
    assert "public weights: rosinality/stylegan2-pytorch README" in message
    assert "weights_only" not in message and "Re-running" not in message  # never advise running the file's code
    path.write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match=r"cannot read.*Unsupported operand.*public weights: rosinality") as info:
        load_generator(path)
    assert "weights_only" not in str(info.value)
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match=r"cannot read.*public weights: rosinality"):
        load_generator(tmp_path / "bad.safetensors")
    with warnings.catch_warnings():  # torch.jit is deprecated, not gone; its archives are still around
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 2), torch.randn(1, 2)), tmp_path / "scripted.pt")
    with pytest.raises(CheckpointError, match=r"TorchScript archive.*public weights: rosinality") as info:
        load_generator(tmp_path / "scripted.pt")
    assert "weights_only" not in str(info.value)
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match=r"holds a list, expected a dict of tensors \(public weights: rosin"):
        load_generator(path)


def test_state_hash_covers_every_dtype_and_is_shared(small_state):
    """One hash for checkpoints (tests) and the methods' cache keys (bench.cachefile re-exports it)."""
    import bench.cachefile

    assert bench.cachefile.state_hash is state_hash
    generator = generator_from_state_dict(small_state)
    # a module's non-persistent buffers count: latent_avg is not in the state dict but moves every truncated sample
    assert state_hash(generator) == state_hash(generator.state_dict())  # no latent_avg in this checkpoint
    generator.latent_avg = torch.zeros(generator.style_dim)
    assert "latent_avg" not in generator.state_dict()
    before = state_hash(generator)
    assert before != state_hash(generator.state_dict())
    generator.latent_avg += 0.5
    assert state_hash(generator) != before
    linear = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))  # persistent buffers: no extra
    assert state_hash(linear) == state_hash(linear.state_dict())
    assert state_hash(generator, {"steps": 1}) != state_hash(generator, {"steps": 2}) != state_hash(generator)
    weights = {"w": torch.linspace(-1, 1, 6).view(2, 3)}
    as_bf16 = state_hash({"w": weights["w"].bfloat16()})  # .numpy() cannot take bfloat16: hashed as bytes
    assert as_bf16 != state_hash({"w": weights["w"].half()}) != state_hash(weights)
    assert as_bf16 == state_hash({"w": weights["w"].bfloat16().clone()})
    assert state_hash({"w": weights["w"].view(3, 2)}) != state_hash(weights)  # same bytes, other shape


def test_first_keys_is_the_one_key_list_format():
    assert first_keys([]) == "(none)"
    assert first_keys(["b", "a"]) == "a, b"
    assert first_keys([f"k{i}" for i in range(7)]) == "k0, k1, k2, k3, k4 (+2 more)"

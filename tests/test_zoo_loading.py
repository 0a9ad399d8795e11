"""Loading real checkpoint files: rosinality files without noise / FIR-kernel buffers, NVIDIA pickles, the one-line
error detail every loader uses."""

from __future__ import annotations

import pickle
import re

import pytest
import torch

from bench.errors import CheckpointError
from zoo.checkpoints import error_detail, load_torch_file, plain_pickle_kind
from zoo.stylegan2 import Generator, load_generator, random_rosinality_state_dict
from zoo.stylegan2.checkpoint import NOISE_SEED, describe

SMALL = dict(size=32, style_dim=16, n_mlp=2, channel_multiplier=2, channels=8)


def _save(tmp_path, state, name="g.pt"):
    path = tmp_path / name
    torch.save({"g_ema": state, "latent_avg": torch.zeros(SMALL["style_dim"])}, path)
    return path


def _without(state, *prefixes_or_suffixes):
    return {k: v for k, v in state.items()
            if not any(k.startswith(p) or k.endswith(p) for p in prefixes_or_suffixes)}


# --------------------------------------------------------------------------------- rosinality buffers a file lacks
def test_file_without_noise_and_kernel_buffers_loads_with_a_warning(tmp_path):
    state = random_rosinality_state_dict(seed=1, **SMALL)
    path = _save(tmp_path, _without(state, "noises.", ".blur.kernel", ".upsample.kernel"))
    with pytest.warns(UserWarning, match=r"7 of 7 noise maps absent.*seed 0x4e01.*noises\.noise_\*"):
        generator = load_generator(path)
    reference = Generator(32, 16, 2, channels=8)  # what the model builds itself
    loaded = generator.state_dict()
    for key, value in reference.state_dict().items():
        if key.endswith("kernel"):
            assert torch.equal(loaded[key], value), key
            assert torch.equal(loaded[key], state[key]), key  # the file's own kernels were these
        if key.startswith("noises."):
            assert loaded[key].shape == value.shape, key
    assert loaded["noises.noise_6"].shape == (1, 1, 32, 32)
    rng = torch.Generator().manual_seed(NOISE_SEED)
    assert torch.equal(loaded["noises.noise_0"], torch.randn(1, 1, 4, 4, generator=rng))
    assert "7 of 7 noise maps absent from the checkpoint, drawn from seed 0x4e01" in describe(generator)
    assert "6 FIR kernels absent from the checkpoint, rebuilt" in describe(generator)
    with torch.no_grad():
        image = generator(torch.zeros(1, 16))
    assert torch.isfinite(image).all()


def test_missing_noise_maps_do_not_depend_on_which_others_the_file_has(tmp_path):
    state = random_rosinality_state_dict(seed=1, **SMALL)
    with pytest.warns(UserWarning, match="7 of 7"):
        all_drawn = load_generator(_save(tmp_path, _without(state, "noises."), "a.pt"))
    with pytest.warns(UserWarning, match="1 of 7"):
        one_drawn = load_generator(_save(tmp_path, _without(state, "noises.noise_3"), "b.pt"))
    assert torch.equal(one_drawn.noises.noise_3, all_drawn.noises.noise_3)
    assert torch.equal(one_drawn.noises.noise_2, state["noises.noise_2"])


def test_file_missing_only_kernels_loads_silently_and_exactly(tmp_path, recwarn):
    state = random_rosinality_state_dict(seed=1, **SMALL)
    generator = load_generator(_save(tmp_path, _without(state, ".upsample.kernel")))
    assert not [w for w in recwarn if "noise" in str(w.message)]
    assert torch.equal(generator.to_rgbs[1].upsample.kernel, state["to_rgbs.1.upsample.kernel"])
    with torch.no_grad():
        expected = load_generator(_save(tmp_path, state, "full.pt"))(torch.zeros(1, 16))
        torch.testing.assert_close(generator(torch.zeros(1, 16)), expected, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:StyleGAN2 generator checkpoint")
@pytest.mark.parametrize("key", ["convs.1.noise.weight", "style.1.weight", "to_rgbs.0.bias"])
def test_a_file_missing_a_weight_is_still_refused(tmp_path, key):
    state = _without(random_rosinality_state_dict(seed=1, **SMALL), "noises.")
    del state[key]
    with pytest.raises(CheckpointError, match=rf"missing keys: {key.replace('.', '[.]')}"):
        load_generator(_save(tmp_path, state))


# ----------------------------------------------------------------------------------------------- NVIDIA pickles
def _nvidia_like_pickle(path, module: str) -> None:
    """A protocol-4 pickle (FRAME, the opcode 149 that torch's weights-only unpickler stops at) that builds an
    object of `module`.Network, as NVIDIA's .pkl networks do; written by hand since the module does not exist."""
    def text(s: str) -> bytes:
        return b"\x8c" + bytes([len(s)]) + s.encode()

    body = text(module) + text("Network") + b"\x93)\x81."  # STACK_GLOBAL, EMPTY_TUPLE, NEWOBJ, STOP
    path.write_bytes(b"\x80\x04\x95" + len(body).to_bytes(8, "little") + body)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("module,kind,route", [
    ("dnnlib.tflib.network", "NVIDIA TensorFlow StyleGAN pickle", r"convert_weight\.py --repo"),
    ("torch_utils.persistence", "stylegan2-ada-pytorch", r"not supported.*rosinality/stylegan2-pytorch issue #206"),
])
def test_nvidia_pickle_is_refused_with_its_conversion_route(tmp_path, module, kind, route):
    path = tmp_path / "ffhq.pkl"
    _nvidia_like_pickle(path, module)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    message = str(info.value)
    assert kind in message and "hold code" in message and "not loaded" in message
    assert "Unsupported operand" not in message
    assert re.search(route, message), message
    with pytest.raises(pickle.UnpicklingError, match="Unsupported operand 149"):  # what torch alone says
        torch.load(path, weights_only=True)


def test_plain_pickle_kind_tells_torch_files_apart(tmp_path):
    torch.save({"a": torch.zeros(2)}, tmp_path / "zip.pkl")
    torch.save({"a": torch.zeros(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    (tmp_path / "plain.pt").write_bytes(pickle.dumps({"a": [1, 2]}, protocol=4))
    assert plain_pickle_kind(tmp_path / "zip.pkl") is None
    assert plain_pickle_kind(tmp_path / "legacy.pt") is None
    assert plain_pickle_kind(tmp_path / "plain.pt") == "a Python pickle"
    assert load_torch_file(tmp_path / "zip.pkl", "x", "y")["a"].shape == (2,)
    assert load_torch_file(tmp_path / "legacy.pt", "x", "y")["a"].shape == (2,)
    with pytest.raises(CheckpointError, match="is a Python pickle, not a torch.save checkpoint.*state_dict"):
        load_torch_file(tmp_path / "plain.pt", "x", "y")


# ------------------------------------------------------------------------------------------------- error_detail
def test_error_detail_is_one_line():
    strict = RuntimeError("Error(s) in loading state_dict for CLIP:\n\tsize mismatch for a: x\n\tb\n\tc\n\td")
    assert error_detail(strict) == "RuntimeError: size mismatch for a: x; b; c"
    advice = Exception("Weights only load failed. This file can still be loaded. \x1b[1mdo those steps only if you "
                       "trust the source\x1b[0m.\nWeightsUnpickler error: Unsupported operand 149")
    assert error_detail(advice) == "Exception: Unsupported operand 149"
    assert error_detail(ValueError("bad graph\nmore")) == "ValueError: bad graph"
    assert error_detail(OSError()) == "OSError"
    assert error_detail(ValueError("x" * 400)).endswith("x...")

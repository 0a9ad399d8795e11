"""zoo.clip: open_clip loading (random weights in the real formats), preprocessing and template text embeddings."""

import json

import open_clip
import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms as T

from bench.errors import BenchError, CheckpointError, UnknownNameError
from zoo.clip import (ClipBackbone, area_resize, load_clip, load_templates, register_model_config,
                      register_model_config_dir)

TINY = "clipedit-test-tiny-vit"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny_name():
    return register_model_config(TINY, TINY_CFG)


@pytest.fixture(scope="module")
def tiny(tiny_name):
    torch.manual_seed(1)
    return load_clip(tiny_name)


def _same_state(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# ------------------------------------------------------------------------------------------------------- templates
def test_templates_are_the_79_imagenet_templates():
    templates = load_templates()
    assert len(templates) == 79
    assert all(t.count("{}") == 1 for t in templates)
    assert templates[0] == "a bad photo of a {}."


# ------------------------------------------------------------------------------------------------- custom configs
def test_register_custom_config_goes_through_open_clip(tiny_name, tiny):
    assert tiny_name in open_clip.list_models()
    assert open_clip.get_model_config(tiny_name) == TINY_CFG
    assert isinstance(tiny, ClipBackbone)
    assert tiny.image_size == 32 and tiny.embed_dim == 32
    assert tiny.mean == tuple(open_clip.OPENAI_DATASET_MEAN) and tiny.std == tuple(open_clip.OPENAI_DATASET_STD)
    direct = open_clip.create_model(tiny_name)  # the same open_clip path builds the same architecture
    assert direct.state_dict().keys() == tiny.model.state_dict().keys()
    # frozen and in eval mode, even after .train()
    assert not any(p.requires_grad for p in tiny.parameters())
    tiny.train()
    assert not tiny.model.training
    tiny.eval()


def test_register_rejects_builtin_names_and_bad_configs():
    with pytest.raises(BenchError, match="already an open_clip architecture"):
        register_model_config("ViT-B-32", TINY_CFG)
    with pytest.raises(BenchError, match="vision_cfg"):
        register_model_config("clipedit-test-broken", {"embed_dim": 8, "text_cfg": {}})


def test_register_config_dir(tmp_path):
    (tmp_path / "clipedit-test-dir-model.json").write_text(json.dumps(
        {**TINY_CFG, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))
    (tmp_path / "notes.json").write_text(json.dumps({"not": "a model config"}))
    assert register_model_config_dir(tmp_path) == ["clipedit-test-dir-model"]
    assert "clipedit-test-dir-model" in open_clip.list_models()
    assert open_clip.get_model_config("clipedit-test-dir-model") == TINY_CFG  # preprocess_cfg is not a model kwarg
    assert load_clip("clipedit-test-dir-model").mean == (0.5,) * 3
    with pytest.raises(BenchError, match="not found"):
        register_model_config_dir(tmp_path / "nope")


def test_register_config_dir_cannot_replace_a_builtin(tmp_path):
    builtin = open_clip.get_model_config("ViT-B-32")
    (tmp_path / "ViT-B-32.json").write_text(json.dumps(TINY_CFG))
    with pytest.raises(BenchError, match="'ViT-B-32' is already an open_clip architecture"):
        register_model_config_dir(tmp_path)
    assert open_clip.get_model_config("ViT-B-32") == builtin


def test_preprocess_override(tmp_path):
    name = register_model_config("clipedit-test-tiny-half", TINY_CFG, preprocess={"mean": (0.5,) * 3,
                                                                                  "std": (0.5,) * 3})
    net = load_clip(name)
    assert net.mean == (0.5,) * 3 and net.std == (0.5,) * 3
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.allclose(net.preprocess(x), x, atol=1e-6)  # ((x+1)/2 - 0.5) / 0.5 == x


# ------------------------------------------------------------------------------------------------------- loading
def test_tiny_file_roundtrip_is_strict(tiny_name, tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    loaded = load_clip(tiny_name, pretrained=path)
    _same_state(loaded.model, tiny.model)
    assert loaded.pretrained == str(path)

    state = tiny.model.state_dict()
    renamed = dict(state)
    renamed["visual.proj_renamed"] = renamed.pop("visual.proj")
    torch.save(renamed, tmp_path / "renamed.pt")
    with pytest.raises(CheckpointError, match=r"missing keys: visual\.proj.*unexpected keys: visual\.proj_renamed"):
        load_clip(tiny_name, pretrained=tmp_path / "renamed.pt")

    reshaped = dict(state)
    reshaped["text_projection"] = torch.zeros(32, 16)
    torch.save(reshaped, tmp_path / "reshaped.pt")
    with pytest.raises(CheckpointError, match="text_projection"):
        load_clip(tiny_name, pretrained=tmp_path / "reshaped.pt")

    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_clip(tiny_name, pretrained=tmp_path / "garbage.pt")


def test_local_dir(tiny, tmp_path):
    folder = tmp_path / "clip_dir"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": TINY_CFG, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}))
    with pytest.raises(CheckpointError, match="no weights"):
        load_clip("tiny", pretrained=f"local-dir:{folder}")
    torch.save(tiny.model.state_dict(), folder / "open_clip_pytorch_model.bin")
    loaded = load_clip("tiny", pretrained=f"local-dir:{folder}")
    _same_state(loaded.model, tiny.model)
    assert loaded.mean == (0.5, 0.5, 0.5) and loaded.std == (0.25, 0.25, 0.25)
    assert torch.allclose(loaded.encode_text(["a face"]), tiny.encode_text(["a face"]), atol=1e-6)
    same = load_clip(f"local-dir:{folder}")  # the schema may also be given as the model name
    _same_state(same.model, tiny.model)
    with pytest.raises(CheckpointError, match="open_clip_config.json"):
        load_clip("tiny", pretrained=f"local-dir:{tmp_path / 'missing'}")


def _local_dir(folder, cfg=TINY_CFG):
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    return folder


def test_local_dir_never_gives_random_weights(tiny, tmp_path, monkeypatch):
    folder = _local_dir(tmp_path / "pt_dir")
    torch.save(tiny.model.state_dict(), folder / "model.pt")  # open_clip's folder loader ignores *.pt
    with pytest.raises(CheckpointError, match=r"no weights file open_clip loads.*model\.pt.*open_clip_pytorch_model"):
        load_clip(f"local-dir:{folder}")
    # and should our look-up ever disagree with open_clip's, open_clip itself must refuse (require_pretrained)
    import zoo.clip

    monkeypatch.setattr(zoo.clip, "_weights_in_dir", lambda folder: [folder / "model.pt"])
    with pytest.raises(CheckpointError, match=r"could not create.*\(public weights: open_clip model folders"):
        load_clip(f"local-dir:{folder}")


def test_hf_hub_weights_that_cannot_be_fetched_raise(monkeypatch):
    import open_clip.factory

    def no_network(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(open_clip.factory, "_get_hf_config", lambda model_id, cache_dir=None: {"model_cfg": TINY_CFG})
    monkeypatch.setattr(open_clip.factory, "download_pretrained_from_hf", no_network)
    with pytest.raises(CheckpointError, match="could not load hf-hub:someone/tiny-clip"):  # not a random CLIP
        load_clip("hf-hub:someone/tiny-clip")


def test_local_dir_key_mismatch_names_the_keys(tiny, tmp_path):
    folder = _local_dir(tmp_path / "renamed_dir")
    state = dict(tiny.model.state_dict())
    state["visual.proj_renamed"] = state.pop("visual.proj")
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    with pytest.raises(CheckpointError) as info:
        load_clip(f"local-dir:{folder}")
    message = str(info.value)
    assert "visual.proj_renamed" in message and '"visual.proj"' in message
    assert "public weights: open_clip model folders" in message


def test_local_dir_model_refuses_a_pretrained_value(tiny, tmp_path):
    folder = _local_dir(tmp_path / "own_weights")
    torch.save(tiny.model.state_dict(), folder / "open_clip_pytorch_model.bin")
    with pytest.raises(BenchError, match=r"brings its own weights; leave pretrained unset.*'openai'"):
        load_clip(f"local-dir:{folder}", pretrained="openai")


def test_torchscript_file_is_explained(tiny_name, tmp_path):
    import warnings

    path = tmp_path / "ViT-B-32.pt"  # what OpenAI's clip.load caches: a TorchScript archive
    with warnings.catch_warnings():  # torch.jit is deprecated, not gone; these files are still around
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 2), torch.randn(1, 2)), path)
    with pytest.raises(CheckpointError) as info:
        load_clip(tiny_name, pretrained=path)
    message = str(info.value)
    assert "TorchScript archive" in message and "pretrained='openai'" in message
    assert "torch.jit.load(PATH, map_location='cpu').state_dict()" in message and "ViT-B-32-quickgelu" in message
    assert "weights_only" not in message


def test_unfetchable_openai_tag_names_the_quickgelu_architecture(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(open_clip, "download_pretrained", no_network)
    with pytest.raises(CheckpointError) as info:
        load_clip("ViT-B-32", pretrained="openai")
    assert "with model 'ViT-B-32-quickgelu' (the 'openai' weights were trained with QuickGELU)" in str(info.value)
    with pytest.raises(CheckpointError) as info:
        load_clip("ViT-B-32-quickgelu", pretrained="openai")
    assert "with model 'ViT-B-32-quickgelu' and" in str(info.value)
    with pytest.raises(CheckpointError) as info:  # LAION's weights use plain GELU
        load_clip("ViT-B-32", pretrained="laion2b_s34b_b79k")
    assert "with model 'ViT-B-32' and" in str(info.value)


def test_unknown_model_lists_choices():
    with pytest.raises(UnknownNameError, match="ViT-B-32") as info:
        load_clip("ViT-Q-99")
    assert "ViT-L-14" in info.value.valid


def test_unknown_tag_lists_choices(tiny_name):
    with pytest.raises(UnknownNameError, match="openai") as info:
        load_clip("ViT-B-32", pretrained="not_a_tag")
    assert "laion2b_s34b_b79k" in info.value.valid
    with pytest.raises(UnknownNameError, match="none registered"):
        load_clip(tiny_name, pretrained="openai")


def test_missing_file_names_the_source(tmp_path):
    with pytest.raises(CheckpointError, match=r"not found.*open_clip"):
        load_clip("ViT-B-32", pretrained=tmp_path / "nope" / "clip.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_clip("ViT-B-32", pretrained=tmp_path)


def test_offline_tag_fails_fast(tmp_path, monkeypatch):
    from huggingface_hub import constants

    import open_clip.pretrained

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # conftest sets the variable; make it certain
    # "fails fast": no download by URL is tried as a fallback once the hub refuses (that would retry for minutes)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_url",
                        lambda *a, **k: pytest.fail("a URL download was tried while offline"))
    with pytest.raises(CheckpointError, match=r"could not download.*HF_HUB_OFFLINE=1.*pretrained=/path"):
        load_clip("ViT-B-32", pretrained="openai", cache_dir=str(tmp_path))


# ------------------------------------------------------------------------------------------------- preprocessing
def test_area_resize_equals_upsample_then_avgpool():
    torch.manual_seed(0)
    for size, out, k in ((8, 7, 7), (64, 28, 7), (12, 8, 2)):
        x = torch.randn(2, 3, size, size, dtype=torch.float64)
        literal = F.avg_pool2d(F.interpolate(x, scale_factor=k, mode="nearest"), size * k // out)
        assert torch.allclose(area_resize(x, out), literal, atol=1e-12)


def test_area_preprocess_reproduces_styleclip(tiny):
    # StyleCLIP: AvgPool2d(S * 7 // 224)(Upsample(scale_factor=7)(img)) on raw [-1, 1] output; here 224 -> 32
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    literal = F.avg_pool2d(F.interpolate(x, scale_factor=7, mode="nearest"), 128 * 7 // 32)
    assert torch.allclose(tiny.preprocess(x, resize="area", normalize=False), literal, atol=1e-5)
    mean = torch.tensor(tiny.mean).view(1, 3, 1, 1)
    std = torch.tensor(tiny.std).view(1, 3, 1, 1)
    assert torch.allclose(tiny.preprocess(x, resize="area"), ((literal + 1) / 2 - mean) / std, atol=1e-5)
    with pytest.raises(ValueError, match="square"):
        tiny.preprocess(torch.zeros(1, 3, 64, 48), resize="area")


def test_bicubic_preprocess_matches_nada_torchvision_pipeline(tiny):
    x = torch.rand(2, 3, 48, 64) * 2 - 1
    nada = T.Compose([T.Normalize(mean=[-1.0] * 3, std=[2.0] * 3),
                      T.Resize(32, interpolation=T.InterpolationMode.BICUBIC, antialias=False),
                      T.CenterCrop(32),
                      T.Normalize(tiny.mean, tiny.std)])
    out = tiny.preprocess(x, antialias=False)  # methods.nada.NADA_ANTIALIAS
    assert out.shape == (2, 3, 32, 32)
    assert torch.allclose(out, nada(x), atol=1e-5)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_preprocess_follows_the_configs_interpolation(interpolation):
    """open_clip's preprocess config may ask for bilinear resizing; the tensor path follows it."""
    import numpy as np
    from open_clip import image_transform
    from PIL import Image

    name = register_model_config(f"clipedit-test-tiny-{interpolation}", TINY_CFG,
                                 preprocess={"interpolation": interpolation})
    net = load_clip(name)
    assert net.interpolation == interpolation
    assert net.hash_settings() == ({} if interpolation == "bicubic" else {"interpolation": "bilinear"})
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1
    mode = getattr(T.InterpolationMode, interpolation.upper())
    literal = T.Compose([T.Resize(32, interpolation=mode, antialias=True), T.CenterCrop(32),
                         T.Normalize(net.mean, net.std)])((x + 1) / 2)
    torch.testing.assert_close(net.preprocess(x), literal, atol=1e-5, rtol=0)
    reference = image_transform(32, is_train=False, mean=net.mean, std=net.std, interpolation=interpolation)
    assert (net.preprocess(x)[0] - reference(Image.fromarray(pixels))).abs().mean() < 0.02


def test_preprocess_resize_modes_and_refusals():
    squash = load_clip(register_model_config("clipedit-test-tiny-squash", TINY_CFG,
                                             preprocess={"resize_mode": "squash"}))
    x = torch.rand(1, 3, 48, 64) * 2 - 1
    literal = T.Resize((32, 32), interpolation=T.InterpolationMode.BICUBIC, antialias=True)((x + 1) / 2)
    torch.testing.assert_close(squash.preprocess(x), T.Normalize(squash.mean, squash.std)(literal), atol=1e-5,
                               rtol=0)
    longest = load_clip(register_model_config("clipedit-test-tiny-longest", TINY_CFG,
                                              preprocess={"resize_mode": "longest"}))
    square = torch.rand(1, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(longest.preprocess(square), squash.preprocess(square), atol=0, rtol=0)
    with pytest.raises(ValueError, match="'longest'.*square images to a square input only; got 48x64"):
        longest.preprocess(x)
    with pytest.raises(CheckpointError, match="preprocess interpolation 'nearest' is not implemented here; "
                                              "valid: bicubic, bilinear, random"):
        load_clip(register_model_config("clipedit-test-tiny-nearest", TINY_CFG,
                                        preprocess={"interpolation": "nearest"}))


def test_default_preprocess_is_open_clips_own_transform_of_the_image(tiny):
    """Judges see what CLIP's PIL preprocessing makes of the image: an antialiased shrink (here 256 -> 32 px)."""
    import numpy as np
    from open_clip import image_transform
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)  # fine texture, where aliasing shows
    reference = image_transform(32, is_train=False, mean=tiny.mean, std=tiny.std)(Image.fromarray(pixels))
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1
    error = (tiny.preprocess(x)[0] - reference).abs().mean()
    aliased = (tiny.preprocess(x, antialias=False)[0] - reference).abs().mean()
    assert error < 0.02 < 0.2 < aliased, (float(error), float(aliased))


@pytest.mark.parametrize("resize", ["bicubic", "area"])
def test_gradients_reach_the_input(tiny, resize):
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    emb = tiny.encode_images(x, resize=resize)
    assert emb.shape == (2, 32)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    (emb @ tiny.encode_text(["a photo of a face"]).T).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.parameters())


# ------------------------------------------------------------------------------------------------------------ text
def test_encode_text_is_normalised_and_batch_independent(tiny):
    texts = [f"a photo of face number {i}" for i in range(11)]
    big = tiny.encode_text(texts)
    small = tiny.encode_text(texts, batch_size=3)
    assert big.shape == (11, 32) and not big.requires_grad
    assert torch.allclose(big.norm(dim=-1), torch.ones(11), atol=1e-5)
    assert torch.allclose(big, small, atol=1e-6)


def test_template_embedding_is_normalise_average_renormalise(tiny):
    templates = load_templates()
    assert len(templates) == 79
    texts = ["face", "smiling face"]
    got = tiny.template_embedding(texts)
    assert got.shape == (2, 32)
    with torch.no_grad():
        for row, text in zip(got, texts):
            tokens = open_clip.get_tokenizer(TINY)([t.format(text) for t in templates])
            each = F.normalize(tiny.model.encode_text(tokens), dim=-1)
            mean = each.mean(dim=0)
            assert torch.allclose(row, mean / mean.norm(), atol=1e-5)
    assert ("face", tuple(templates)) in tiny._text_cache
    assert torch.equal(tiny.template_embedding(["smiling face"])[0], got[1])  # served from the cache
    plain = tiny.template_embedding(texts, renormalize=False)
    assert torch.allclose(F.normalize(plain, dim=-1), got, atol=1e-6)
    custom = tiny.template_embedding(["face"], templates=["{}", "a photo of a {}."])
    assert not torch.allclose(custom, got[:1])


def test_text_direction(tiny):
    d = tiny.text_direction("face", "smiling face")
    emb = tiny.template_embedding(["face", "smiling face"])
    assert d.shape == (32,)
    assert torch.allclose(d, F.normalize(emb[1] - emb[0], dim=0), atol=1e-6)
    with pytest.raises(BenchError, match="zero"):
        tiny.text_direction("face", "face")


# -------------------------------------------------------------------------------------------- real architecture
@pytest.fixture(scope="module")
def vit_b32_file(tmp_path_factory):
    torch.manual_seed(2)
    net = open_clip.create_model("ViT-B-32", pretrained=None)
    path = tmp_path_factory.mktemp("vitb32") / "vit_b32_random.pt"
    torch.save(net.state_dict(), path)
    return net, path


def test_vit_b32_state_dict_loads_strictly(vit_b32_file):
    net, path = vit_b32_file
    with pytest.warns(UserWarning, match="ViT-B-32-quickgelu"):  # a file does not say GELU or QuickGELU
        clip = load_clip("ViT-B/32", pretrained=path)
    _same_state(clip.model, net)
    assert clip.image_size == 224 and clip.embed_dim == 512
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        emb = clip.encode_images(x)
        ref = F.normalize(net.eval().encode_image(clip.preprocess(x)), dim=-1)
    assert torch.allclose(emb, ref, atol=1e-5)


def test_file_into_a_gelu_architecture_with_quickgelu_tags_warns(vit_b32_file, recwarn):
    """OpenAI's weights need QuickGELU: loaded from a file into "ViT-B-32" (GELU) they embed wrongly and silently."""
    from zoo.checkpoints import module_hash

    _, path = vit_b32_file
    with pytest.warns(UserWarning) as caught:
        gelu = load_clip("ViT-B-32", pretrained=path)
    message = str(caught[0].message)
    assert f"CLIP weights {path} are loaded into 'ViT-B-32', which uses GELU" in message
    assert "openai" in message and "use the architecture 'ViT-B-32-quickgelu' or quick_gelu: true" in message
    assert gelu.activation == "gelu" and gelu.hash_settings() == {}
    recwarn.clear()
    quick = load_clip("ViT-B-32", pretrained=path, quick_gelu=True)
    named = load_clip("ViT-B-32-quickgelu", pretrained=path)
    stated = load_clip("ViT-B-32", pretrained=path, quick_gelu=False)
    assert not [w for w in recwarn if "QuickGELU" in str(w.message)]
    assert quick.activation == named.activation == "quick_gelu" and stated.activation == "gelu"
    assert type(quick.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    assert "activation=quick_gelu" in repr(quick)
    # the same weights with another activation are another network for the methods' caches and the FID fingerprint
    assert module_hash(quick) == module_hash(named) != module_hash(gelu)
    x = torch.rand(1, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        assert not torch.allclose(quick.encode_images(x), gelu.encode_images(x), atol=1e-4)
    with pytest.raises(BenchError, match="quick_gelu: false contradicts.*QuickGELU one"):
        load_clip("ViT-B-32-quickgelu", pretrained=path, quick_gelu=False)


def test_quick_gelu_is_refused_for_folders_that_name_their_own(tiny, tmp_path):
    folder = _local_dir(tmp_path / "own")
    torch.save(tiny.model.state_dict(), folder / "open_clip_pytorch_model.bin")
    with pytest.raises(BenchError, match="quick_gelu applies to open_clip architecture names"):
        load_clip(f"local-dir:{folder}", quick_gelu=True)


@pytest.mark.slow
def test_openai_tag_builds_quickgelu(vit_b32_file, monkeypatch):
    """A tag trained with QuickGELU gets it even on the plain architecture name (open_clip 3.x only warns)."""
    _, path = vit_b32_file
    monkeypatch.setattr(open_clip, "download_pretrained", lambda cfg, **kw: str(path))
    monkeypatch.setattr(open_clip.factory, "download_pretrained", lambda cfg, **kw: str(path))
    clip = load_clip("ViT-B-32", pretrained="openai")
    assert type(clip.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


def test_backbone_keeps_its_normalisation_on_the_networks_device(tiny_name):
    # the loaders build the network on the asked-for device; the backbone's device (and the tokens it sends to the
    # network) follow it. The speed-1024 suite on an H100 failed every text encoding before this.
    net = open_clip.create_model(tiny_name).to("meta")
    backbone = ClipBackbone(net, open_clip.get_tokenizer(tiny_name))
    assert backbone.device.type == "meta" and backbone._std.device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_text_and_images_encode_on_cuda(tiny_name):
    clip = load_clip(tiny_name, device="cuda")
    text = clip.encode_text(["a smiling face"])
    images = clip.encode_images(torch.rand(2, 3, 64, 64, device="cuda") * 2 - 1)
    assert text.device.type == images.device.type == "cuda"

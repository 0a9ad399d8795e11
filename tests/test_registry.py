import sys

import pytest

from bench.errors import UnknownNameError
from bench.registry import Registry


def test_lazy_entry_imports_only_on_lookup():
    registry = Registry("thing")
    registry.register("dumps", "json:dumps", "serialise", aliases=("to-json",))
    sys.modules.pop("colorsys", None)
    registry.register("hls", "colorsys:rgb_to_hls")
    assert "colorsys" not in sys.modules  # registering imports nothing
    assert registry.get("hls")(1.0, 0.0, 0.0) == (0.0, 0.5, 1.0)
    assert registry.get("to-json")([1]) == "[1]"
    assert registry.canonical("to-json") == "dumps"
    assert registry.names() == ["dumps", "hls"]


def test_unknown_name_lists_valid_choices():
    registry = Registry("metric")
    registry.register("lpips", "json:dumps")
    registry.register("fid", "json:dumps")
    with pytest.raises(UnknownNameError) as info:
        registry.get("fdi")
    assert str(info.value) == "unknown metric 'fdi'; valid metrics: fid, lpips"


def test_collision_is_an_error_unless_replaced():
    registry = Registry("method")
    registry.register("a", "json:dumps", aliases=("b",))
    with pytest.raises(ValueError, match="already registered"):
        registry.register("b", "json:loads")
    registry.register("a", "json:loads", replace=True)
    assert registry.get("a") is __import__("json").loads


def test_decorator_registers_object_with_docstring_summary():
    registry = Registry("method")

    @registry.decorator("mine")
    class Mine:
        """My method. More text."""

    assert registry.get("mine") is Mine
    assert registry.entry("mine").summary == "My method. More text."


def test_shipped_registries_resolve_every_entry():
    from methods import METHODS
    from metrics import METRICS
    from zoo.backbones import BACKBONES

    for registry in (METHODS, BACKBONES, METRICS):
        for entry in registry:
            assert entry.load() is not None
    assert {"stylegan2", "clip", "arcface_irse50", "insightface_onnx", "synthface"} <= set(BACKBONES.names())


def test_synthface_set_loads_from_another_weights_folder(tmp_path):
    """`backbones: {set: {synthface: DIR}}`: the world's networks from DIR (here only a generator)."""
    import shutil

    from bench.errors import CheckpointError
    from bench.suite import BackboneSpec
    from zoo.synthface.backbones import WEIGHTS_DIR, load_synthface

    for name in ("generator.safetensors", "generator.json"):
        shutil.copy(WEIGHTS_DIR / name, tmp_path / name)
    spec = BackboneSpec.model_validate({"synthface": str(tmp_path)})
    assert spec.kind == "synthface" and spec.arg == str(tmp_path)
    loaded = load_synthface(spec.arg)
    assert set(loaded.roles) == {"generator"}  # only what the folder holds
    assert loaded.hashes["generator"] == load_synthface().hashes["generator"]
    with pytest.raises(CheckpointError, match="weights folder not found"):
        load_synthface(tmp_path / "missing")


def test_a_role_overriding_the_set_replaces_its_hash(monkeypatch):
    """`backbones: {set: synthface, clip: [A, B]}`: the manifest (and the prepare cache key) records A and B, not
    the set's CLIP that they replace."""
    import bench.backbone_set as backbone_set
    from bench.suite import BackboneSpec

    def fake_load(spec, device):
        if spec.kind == "synthface":
            return backbone_set.BackboneSet({"generator": "G", "clip": "set CLIP"},
                                            {"generator": "sha256:g", "clip": "sha256:set-clip"})
        return f"{spec.arg} network"

    monkeypatch.setattr(backbone_set, "load_spec", fake_load)
    spec = BackboneSpec.model_validate
    listed = backbone_set.load_block({"set": spec("synthface"),
                                      "clip": [spec({"clip": "ViT-B-32"}), spec({"clip": "ViT-B-16"})]},
                                     "cpu", "backbones")
    assert [w.network for w in listed["clip"]] == ["ViT-B-32 network", "ViT-B-16 network"]
    assert sorted(listed.hashes) == ["backbones.clip.0", "backbones.clip.1", "backbones.generator", "backbones.set"]
    single = backbone_set.load_block({"set": spec("synthface"), "clip": spec({"clip": "ViT-B-32"})}, "cpu", "judges")
    assert single.hashes["judges.clip"] == backbone_set.spec_hash(spec({"clip": "ViT-B-32"}))

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
    from zoo.backbones import BACKBONES

    for registry in (METHODS,):
        for entry in registry:
            assert entry.load() is not None
    assert {"stylegan2", "clip", "arcface_irse50", "insightface_onnx", "synthface"} <= set(BACKBONES.names())

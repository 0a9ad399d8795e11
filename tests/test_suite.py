from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.suite import BackboneSpec, load_suite

SUITES = sorted((Path(__file__).resolve().parents[1] / "suites").glob("*.yaml"))


@pytest.mark.parametrize("path", SUITES, ids=[p.name for p in SUITES])
def test_shipped_suites_validate(path):
    suite = load_suite(path)
    assert suite.edits and suite.methods
    assert len(suite.content_hash()) == 16


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = """name: t
edits:
  - {name: smile, target: a smiling face}
methods:
  - {name: source}
"""


def test_bad_field_points_at_file_and_line(tmp_path):
    path = write(tmp_path, "s.yaml", BASE + "sources: {kind: generator, count: 0}\n")
    with pytest.raises(BenchError) as info:
        load_suite(path)
    assert f"{path}:6: sources.count" in str(info.value)
    assert "greater than or equal to 1" in str(info.value)


def test_unknown_field_is_rejected_with_its_line(tmp_path):
    path = write(tmp_path, "s.yaml", BASE + "metircs: [clip_score]\n")
    with pytest.raises(BenchError, match=r"s.yaml:6: metircs: Extra inputs are not permitted"):
        load_suite(path)


def test_malformed_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "s.yaml", "name: t\nedits: [\n  {name: a\n")
    with pytest.raises(BenchError, match=r"s.yaml:\d+: malformed YAML"):
        load_suite(path)


def test_unknown_method_names_line_and_choices(tmp_path):
    path = write(tmp_path, "s.yaml", BASE.replace("name: source", "name: styleclip_optimisation"))
    with pytest.raises(BenchError) as info:
        load_suite(path)
    message = str(info.value)
    assert f"{path}:5: unknown method 'styleclip_optimisation'; valid methods:" in message
    assert "source" in message


def test_unknown_backbone_lists_choices(tmp_path):
    path = write(tmp_path, "s.yaml", BASE + "backbones: {generator: {stylegan3: g.pt}}\n")
    with pytest.raises(BenchError, match=r"s.yaml:6: unknown backbone .stylegan3.; valid backbones: arcface_irse50, clip"):
        load_suite(path)


def test_include_merges_and_locates_errors_in_the_included_file(tmp_path):
    write(tmp_path, "common.yaml", "sources: {kind: generator, count: 8, truncation: 2.0}\nseeds: [1, 2]\n")
    path = write(tmp_path, "s.yaml", "include: [common.yaml]\n" + BASE)
    with pytest.raises(BenchError) as info:
        load_suite(path)
    assert f"{tmp_path / 'common.yaml'}:1: sources.truncation" in str(info.value)

    write(tmp_path, "common.yaml", "sources: {kind: generator, count: 8}\nseeds: [1, 2]\n")
    path = write(tmp_path, "s.yaml", "include: common.yaml\n" + BASE + "sources: {count: 3}\n")
    suite = load_suite(path)
    assert suite.sources.count == 3  # the including file wins, key by key
    assert suite.seeds == [1, 2]


def test_include_cycle_is_reported(tmp_path):
    write(tmp_path, "a.yaml", "include: [b.yaml]\n")
    write(tmp_path, "b.yaml", "include: [a.yaml]\n")
    with pytest.raises(BenchError, match="include cycle"):
        load_suite(tmp_path / "a.yaml")


def test_duplicate_variants_and_keys_are_rejected(tmp_path):
    path = write(tmp_path, "s.yaml", BASE + "  - {name: source}\n")
    with pytest.raises(BenchError, match="duplicate method variant 'source'"):
        load_suite(path)
    path = write(tmp_path, "s.yaml", BASE + "name: u\n")
    with pytest.raises(BenchError, match=r"s.yaml:6: duplicate key 'name'"):
        load_suite(path)


def test_backbone_spec_forms():
    spec = BackboneSpec.model_validate({"clip": "ViT-B-32", "pretrained": "openai", "weight": 0.5})
    assert (spec.kind, spec.arg, spec.options, spec.weight) == ("clip", "ViT-B-32", {"pretrained": "openai"}, 0.5)
    assert BackboneSpec.model_validate("synthface").kind == "synthface"


def test_content_hash_tracks_content(tmp_path):
    a = load_suite(write(tmp_path, "a.yaml", BASE))
    b = load_suite(write(tmp_path, "b.yaml", "# comment only differs\n" + BASE))
    c = load_suite(write(tmp_path, "c.yaml", BASE + "seeds: [3]\n"))
    assert a.content_hash() == b.content_hash() != c.content_hash()


def test_judge_roles_of_a_set_become_judges_and_never_losses(tmp_path, monkeypatch):
    import bench.backbone_set as backbone_set

    clip, judge = object(), object()
    fake = backbone_set.BackboneSet({"clip": clip, "judge_clip": judge},
                                    {"clip": "sha256:a", "judge_clip": "sha256:b"})
    monkeypatch.setattr(backbone_set, "load_spec", lambda spec, device: fake)
    suite = load_suite(write(tmp_path, "s.yaml", BASE + "backbones: synthface\n"), check_names=False)
    losses, judges = backbone_set.load_backbones(suite)
    assert losses.roles == {"clip": clip} and judges.roles == {"clip": judge}
    assert "backbones.judge_clip" not in losses.hashes and judges.hashes["judges.clip"] == "sha256:b"


def test_backbone_hash_follows_every_weights_file_or_folder_the_spec_names(tmp_path):
    import hashlib

    from bench.backbone_set import spec_hash

    weights = tmp_path / "clip.pt"
    weights.write_bytes(b"weights v1")
    by_option = BackboneSpec.model_validate({"clip": "ViT-B-32", "pretrained": str(weights)})
    by_arg = BackboneSpec.model_validate({"stylegan2": str(weights)})
    folder = tmp_path / "clip_dir"
    folder.mkdir()
    (folder / "open_clip_pytorch_model.bin").write_bytes(b"folder v1")
    by_folder = BackboneSpec.model_validate({"clip": f"local-dir:{folder}"})
    tag = BackboneSpec.model_validate({"clip": "ViT-B-32", "pretrained": "openai"})
    before = [spec_hash(s) for s in (by_option, by_arg, by_folder, tag)]
    assert before[1] == "sha256:" + hashlib.sha256(b"weights v1").hexdigest()  # a bare weights file: its hash
    weights.write_bytes(b"weights v2")  # new weights at the same path
    (folder / "open_clip_pytorch_model.bin").write_bytes(b"folder v2")
    after = [spec_hash(s) for s in (by_option, by_arg, by_folder, tag)]
    assert [a != b for a, b in zip(after, before)] == [True, True, True, False]  # a tag names no file
    weights.write_bytes(b"weights v1")
    assert spec_hash(by_option) == before[0]  # the content, not the file's age
    # the same file with other loader options is another network
    assert spec_hash(BackboneSpec.model_validate({"stylegan2": str(weights), "size": 256})) != before[1]

import re
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.suite import BackboneSpec, Suite, load_suite

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
    with pytest.raises(BenchError, match=r"s.yaml:6: metircs: unknown key; did you mean 'metrics'\? valid keys: "
                                         r"name, version, description, backbones, judges, sources, edits, methods, "):
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


SYNTH = """name: t
backbones: synthface
edits:
  - {name: smile, target: a smiling face, expect: {smile: smiling}}
methods:
  - {name: source}
metrics: [attr_target]
"""


@pytest.mark.parametrize("old, new, line, expected", [
    ("  - {name: source}\n", "  - {name: source}\n  - name: styleclip_optimization\n    variant: opt_fast\n"
     "    params: {steps: 10,\n      stepz: 10}\n", 10,
     r"methods\[1\] \(variant 'opt_fast' of styleclip_optimization\): unknown parameter\(s\) \['stepz'\]; "
     r"valid: \['id_lambda', 'l2_lambda', 'lr', 'space', 'steps'\]"),
    ("  - {name: source}\n", "  - {name: styleclip_optimization, params: {steps: ten}}\n", 6,
     r"methods\[0\] \(variant 'styleclip_optimization'\): parameter steps: 'ten' is a string, expected an "
     r"integer like its default 300"),
    ("  - {name: source}\n", "  - {name: styleclip_optimization, params: {lr: true}}\n", 6,
     "parameter lr: True is a boolean, expected a number like its default 0.1"),
    ("  - {name: source}\n", "  - {name: styleclip_global, params: {beta: autoo}}\n", 6,
     r"methods\[0\] \(variant 'styleclip_global'\): beta must be a number or 'auto', got 'autoo'"),
    ("  - {name: source}\n", "  - {name: source, params: {foo: 1}}\n", 6,
     r"methods\[0\] \(variant 'source'\): unknown parameter\(s\) \['foo'\]"),
    ("expect: {smile: smiling}", "expect: {smyle: smiling}", 4,
     "edits\\[0\\] smile: expect names 'smyle', which the attribute judge does not read; its heads are age, "),
    ("expect: {smile: smiling}", "expect: {smile: grinning}", 4,
     "expect smile='grinning': attribute 'smile' has no value 'grinning'; values: frowning, neutral, smiling"),
    ("expect: {smile: smiling}", "expect: {domain: zombi}", 4, "unknown domain 'zombi'; known: photo, "),
    ("backbones: synthface", "backbones: {set: {synthface: null, weight_dir: x}}", 2,
     r"backbones.set \(synthface\): unknown option\(s\) 'weight_dir'; valid options: weights_dir"),
    ("backbones: synthface", "backbones: synthface\njudges: {clip: {clip: null}}", 3,
     r"judges.clip \(clip\): missing a required argument: 'model': write it as \{clip: VALUE\}"),
    ("metrics: [attr_target]", "metrics: [attr_target, {name: clip_score, params: {foo: 1}}]", 7,
     r"metrics\[1\] clip_score: unknown parameter\(s\) 'foo'; valid parameters: role, batch_size"),
    ("metrics: [attr_target]", "metrics: [{name: latency_apply_ms, params: {x: 1}}]", 7,
     r"metrics\[0\] latency_apply_ms: unknown parameter\(s\) 'x': the runner measures it and takes none"),
])
def test_validate_rejects_what_a_run_would(tmp_path, old, new, line, expected):
    """Method parameters (names, types, values the method refuses), backbone and metric options and the world's
    `expect` vocabulary: checked at load time without a network, each error at its file:line, naming the variant."""
    path = write(tmp_path, "s.yaml", SYNTH.replace(old, new))
    with pytest.raises(BenchError) as info:
        load_suite(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert re.search(expected, message), message
    assert "StyleClipOptimization" not in message and "\n" not in message


def test_every_problem_of_a_suite_is_reported_and_what_a_method_checks_itself_is_not_one(tmp_path, monkeypatch):
    # a string where the default is a number, for a parameter the method checks itself (beta: a number or
    # 'auto'); an integer where the default is a float; a path where the default is None (read, like bench run
    # reads it, from the working directory, and there: input_problems)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "l.pt").write_bytes(b"")
    methods = ("  - {name: styleclip_global, params: {beta: auto, alpha: 3}}\n"
               "  - {name: styleclip_mapper, params: {latents: l.pt, groups: [coarse]}}\n")
    suite = load_suite(write(tmp_path, "s.yaml", SYNTH.replace("  - {name: source}\n", methods)))
    assert [m.params for m in suite.methods] == [{"beta": "auto", "alpha": 3},
                                                 {"latents": "l.pt", "groups": ["coarse"]}]
    path = write(tmp_path, "s.yaml", SYNTH.replace("  - {name: source}\n", "  - {name: source, params: {a: 1}}\n"
                                                   "  - {name: styleclip_optimisation}\n"))
    with pytest.raises(BenchError) as info:
        load_suite(path)
    assert f"{path}:6: methods[0]" in str(info.value) and f"{path}:7: unknown method" in str(info.value)


def test_a_runner_refuses_bad_metric_parameters_without_a_traceback():
    from bench.runner import build_metrics
    from metrics.base import ScoringContext

    suite = Suite.model_validate({"name": "t", "edits": [{"name": "e", "target": "x"}], "methods": [{"name": "source"}],
                                  "metrics": [{"name": "clip_score", "params": {"foo": 1}}]})
    with pytest.raises(BenchError, match="metric clip_score: unknown parameter\\(s\\) 'foo'; valid parameters: "
                                         "role, batch_size"):
        build_metrics(suite, ScoringContext(judges={}))


def test_a_missing_include_is_named_where_it_is_included(tmp_path):
    write(tmp_path, "blocks.yaml", "include:\n  - blocks/common.yaml\n  - blocks/nope.yaml\n")
    (tmp_path / "blocks").mkdir()
    write(tmp_path / "blocks", "common.yaml", "seeds: [1]\n")
    path = write(tmp_path, "s.yaml", "include: blocks.yaml\n" + BASE)
    with pytest.raises(BenchError) as info:
        load_suite(path)
    assert str(info.value) == (f"{tmp_path / 'blocks.yaml'}:3: include 'blocks/nope.yaml': suite file not found: "
                               f"{tmp_path / 'blocks' / 'nope.yaml'} (include names are relative to {tmp_path})")
    path = write(tmp_path, "t.yaml", "include: gone.yaml\n" + BASE)
    with pytest.raises(BenchError, match=r"t.yaml:1: include 'gone.yaml': suite file not found: "):
        load_suite(path)

"""Bad suite input: each gives one line naming the value, where it is (file:line) and the valid choices."""

import re

import pytest

from bench.errors import BenchError
from bench.suite import load_suite

BASE = """name: t
backbones: synthface
edits:
  - {name: smile, target: a smiling face}
methods:
  - {name: source}
"""


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error(path) -> str:
    with pytest.raises(BenchError) as info:
        load_suite(path)
    message = str(info.value)
    assert "\n" not in message and "Value error" not in message and "instance of" not in message, message
    return message


def test_a_file_that_is_not_utf8_is_named_with_the_offending_byte(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"name: t\xff\n")
    assert error(path) == f"{path}: not UTF-8 text (byte 0xff at offset 7)"
    path.write_text(BASE, encoding="utf-16")
    assert error(path).startswith(f"{path}: not UTF-8 text (byte 0xff at offset 0); it looks like UTF-16")


def test_a_folder_is_not_a_suite_and_says_which_suites_it_holds(tmp_path):
    write(tmp_path, BASE, "a.yaml")
    write(tmp_path, BASE, "b.yml")
    assert error(tmp_path) == f"{tmp_path} is a directory; pass a .yaml file (found: a.yaml, b.yml)"
    path = write(tmp_path, "include: [.]\n" + BASE)
    assert re.match(rf"{path}:1: include '\.': {tmp_path} is a directory; pass a \.yaml file \(found: ",
                    error(path))
    path = write(tmp_path, "include: {a: b}\n" + BASE)
    assert error(path) == f"{path}:1: include must be a file name or a list of them, got dict"


def test_a_source_folder_file_that_is_no_image_is_named(tmp_path):
    from PIL import Image

    from bench.sources import load_images

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_text("not an image")
    assert load_images([tmp_path / "a.png"], 4).shape == (1, 3, 4, 4)
    with pytest.raises(BenchError, match=rf"^source image {tmp_path / 'b.png'}: not a readable image"):
        load_images([tmp_path / "a.png", tmp_path / "b.png"], 4)


@pytest.mark.parametrize("block, line, expected", [
    ("backbones: {set: synthface, genrator: {stylegan2_random: 32}}", 2,
     "backbones.genrator: unknown role; valid: set, generator, clip, identity, encoder, perceptual, "
     "judge_attributes, judge_clip, judge_identity "),
    ("backbones: synthface\njudges: {atributes: synthface}", 3,
     "judges.atributes: unknown role; valid: set, attributes, clip, identity (or a role that a method's or "),
])
def test_a_misspelt_role_is_rejected(tmp_path, block, line, expected):
    path = write(tmp_path, BASE.replace("backbones: synthface", block))
    assert error(path).startswith(f"{path}:{line}: {expected}")


def test_the_judge_roles_are_the_metrics_own_role_defaults():
    """Read off the registered metrics' signatures (attr_target's role="attributes", clip_score's "clip", ...), so a
    metric with a new default role is valid in `judges:` without a list to update."""
    from bench.suite_checks import judge_roles
    assert judge_roles() == ["attributes", "clip", "identity"]


def test_a_role_that_a_metric_parameter_names_is_valid(tmp_path):
    text = BASE + "judges: {set: synthface, judge2: synthface}\nmetrics: [{name: clip_score, params: {role: judge2}}]\n"
    assert set(load_suite(write(tmp_path, text)).judges) == {"set", "judge2"}


@pytest.mark.parametrize("extra, line, expected", [
    ("metrics:\n  - {name: diversity}\n  - {name: diversity, params: {distance: attributes}}\n", 9,
     "metrics.1: duplicate metric 'diversity'; each metric is one column: list it once (first: metrics.0 at line 8)"),
    ("metrics:\n  - {name: clip_score, params: {batch_size: 8}}\n  - {name: clip_gain, params: {batch_size: 16}}\n", 9,
     "metrics[1] clip_gain: batch_size=16 conflicts with batch_size=8 of metrics[0] clip_score"),
    ("seeds: [0, 1,\n  0]\n", 8, "seeds.2: duplicate seed 0 (first: seeds.0 at line 7)"),
    ("  - {name: source, variant: base}\n  - {name: styleclip_optimization,\n     variant: base}\n", 9,
     "methods.2.variant: duplicate method variant 'base' (first: methods.1.variant at line 7)"),
])
def test_duplicates_are_rejected_at_the_duplicate(tmp_path, extra, line, expected):
    path = write(tmp_path, BASE + extra)
    assert f"{path}:{line}: {expected}" in error(path), error(path)


def test_names_that_share_a_folder_are_rejected(tmp_path):
    from bench.images import slug

    edits = '  - {name: "hair blue", target: blue hair}\n  - {name: "hair/blue", target: blue hair}\n'
    path = write(tmp_path, BASE.replace("  - {name: smile, target: a smiling face}\n", edits))
    assert error(path) == (f"invalid suite: {path}:5: edits.1.name: edit names 'hair blue' and 'hair/blue' both "
                           "write to the folder 'hair_blue': rename one (first: edits.0.name at line 4)")
    path = write(tmp_path, BASE + "  - {name: source, variant: 'a b'}\n  - {name: source, variant: a_b}\n")
    assert "methods.2.variant: method variants 'a b' and 'a_b' both write to the folder 'a_b'" in error(path)
    assert slug("..") == slug(".") == "_"  # never the parent folder


@pytest.mark.parametrize("old, new, field", [
    ("target: a smiling face", "target: ''", "edits.0.target"),
    ("target: a smiling face", "target: a smiling face, neutral: '  '", "edits.0.neutral"),
    ("name: smile", "name: ' '", "edits.0.name"),
    ("{name: source}", "{name: source, variant: ''}", "methods.0.variant"),
])
def test_blank_texts_are_rejected(tmp_path, old, new, field):
    path = write(tmp_path, BASE.replace(old, new))
    assert f"{field}: must not be empty or blank" in error(path)


@pytest.mark.parametrize("method, expected", [
    ("{name: styleclip_optimization, params: {steps: -5}}", "steps must be > 0; got -5"),
    ("{name: styleclip_optimization, params: {steps: 0}}", "steps must be > 0; got 0"),
    ("{name: styleclip_optimization, params: {lr: -0.1}}", "lr must be > 0; got -0.1"),
    ("{name: styleclip_optimization, params: {l2_lambda: .nan}}", "l2_lambda must be >= 0; got nan"),
    ("{name: styleclip_global, params: {truncation: 0}}", "truncation must be in (0, 1]; got 0"),
    ("{name: tedigan_optimization, params: {clip_lambda: -1.0}}", "clip_lambda must be >= 0; got -1.0"),
    ("{name: tedigan_text2latent, params: {pairs: 0}}", "pairs must be > 0; got 0"),
    ("{name: synthface_oracle, params: {check_samples: -1}}", "check_samples must be > 0; got -1"),
])
def test_method_parameters_out_of_range_are_named_at_their_line(tmp_path, method, expected):
    path = write(tmp_path, BASE.replace("{name: source}", method))
    assert error(path).startswith(f"{path}:6: methods[0] (variant "), error(path)
    assert error(path).endswith(expected)


def test_the_range_check_leaves_words_and_valid_values_alone():
    from methods import METHODS

    assert METHODS.get("styleclip_global")(beta="auto", alpha=-4.1).params["alpha"] == -4.1
    with pytest.raises(BenchError, match=r"^StyleClipOptimization: steps must be > 0; got -5$"):
        METHODS.get("styleclip_optimization")(steps=-5)


@pytest.mark.parametrize("name", ["../../escape", "a/b", ".", "..", ".hidden", ""])
def test_a_suite_name_is_a_folder_name(tmp_path, name):
    path = write(tmp_path, BASE.replace("name: t", f"name: '{name}'"))
    assert error(path) == (f"invalid suite: {path}:1: name: {name!r} is not a valid suite name (it names the run "
                           "folder runs/<name>): use letters, digits, '-', '_' and '.', not starting with '.'")


@pytest.mark.parametrize("extra, expected", [
    ("sources: {kind: generator, batchsize: 4}\n",
     ":7: sources.batchsize: unknown key; did you mean 'batch_size'? valid keys: kind, count, seed, truncation, "),
    ("sources: {count: 4}\n", ":7: sources: missing kind; valid kinds: generator, latents, images"),
    ("sources: {kind: generater}\n", ":7: sources.kind: unknown kind 'generater'; valid kinds: generator, latents, "),
    ("version: 1.5\n", ":7: version: Input should be a valid integer; or a valid string (got 1.5)"),
    ("judges: {clip: [{clip: ViT-B-32, weight: heavy}]}\n",
     ":7: judges.clip.0.weight: Input should be a valid number (got 'heavy')"),
    ("sources: {kind: generator, count: true}\n", ":7: sources.count: Input should be a valid integer (got True)"),
    ("sources: {kind: generator, truncation: '0.5'}\n",
     ":7: sources.truncation: Input should be a valid number (got '0.5': write numbers unquoted)"),
    ("seeds: [true]\n", ":7: seeds.0: Input should be a valid integer (got True)"),
    ("judges: {clip: {}}\n", ":7: judges.clip: empty backbone spec; write e.g. {stylegan2: path/to/ffhq.pt}"),
])
def test_schema_errors_say_what_is_valid(tmp_path, extra, expected):
    path = write(tmp_path, BASE + extra)
    assert error(path).startswith(f"invalid suite: {path}{expected}"), error(path)


def test_a_bare_method_name_an_integer_truncation_and_an_exponent_are_taken(tmp_path):
    text = BASE.replace("  - {name: source}\n", "  - source\n  - {name: styleclip_optimization, params: {lr: 1e-3}}\n")
    suite = load_suite(write(tmp_path, text + "sources: {kind: generator, truncation: 1}\n"))
    assert [m.name for m in suite.methods] == ["source", "styleclip_optimization"]
    assert suite.methods[1].params["lr"] == 0.001 and suite.sources.truncation == 1.0


def test_missing_or_empty_input_folders_and_files_are_found_before_anything_runs(tmp_path):
    from PIL import Image

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8)).save(photos / "a.png")
    body = """name: t
backbones: synthface
sources: {kind: images, path: %s}
edits:
  - {name: zombie, target: a zombie, target_images: %s}
  - {name: pencil, target: a sketch, target_images: 'synthface:pencl'}
methods:
  - {name: styleclip_mapper, params: {latents: %s}}
"""
    path = write(tmp_path, body % (tmp_path / "empty", tmp_path / "missing", tmp_path / "w.pt"))
    problems = re.split(rf"; (?={re.escape(str(path))}:)", error(path))
    assert problems[:2] == [
        f"{path}:3: sources.path: folder {tmp_path / 'empty'} holds no images (.png, .jpg, .jpeg, .webp)",
        f"{path}:5: edits[0] zombie: target_images: folder {tmp_path / 'missing'} does not exist"]
    assert problems[2].startswith(f"{path}:6: edits[1] pencil: target_images: unknown domain 'pencl'; valid: photo, ")
    assert problems[3:] == [f"{path}:8: methods[0] (variant 'styleclip_mapper'): latents file {tmp_path / 'w.pt'} "
                            "not found"]
    torch = pytest.importorskip("torch")
    torch.save(torch.zeros(2, 128), tmp_path / "w.pt")
    fixed = body % (photos, photos, tmp_path / "w.pt")
    assert load_suite(write(tmp_path, fixed.replace("synthface:pencl", "synthface:pencil"))).sources.path == str(photos)
    latents = write(tmp_path, BASE + f"sources: {{kind: latents, path: {tmp_path / 'none.pt'}}}\n")
    assert error(latents) == f"{latents}:7: sources.path: latents file {tmp_path / 'none.pt'} not found"
    a_file = write(tmp_path, BASE + f"sources: {{kind: images, path: {photos / 'a.png'}}}\n")
    assert error(a_file) == f"{a_file}:7: sources.path: {photos / 'a.png'} is a file, not a folder of images"

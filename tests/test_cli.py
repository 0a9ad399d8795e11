import subprocess
import sys

import pytest

from bench.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("ls", "validate", "generate"):
        assert command in result.stdout


@pytest.mark.parametrize("kind, expected", [("backbones", "stylegan2"), ("methods", "source"),
                                            ("suites", "smoke.yaml")])
def test_ls(kind, expected, capsys):
    assert main(["ls", kind]) == 0
    assert expected in capsys.readouterr().out


def test_unknown_name_is_one_line_exit_2_no_traceback():
    result = run_cli("ls", "methodz")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "bench ls: error: unknown kind 'methodz'; valid kinds: backbones, methods, metrics, suites")
    assert "Traceback" not in result.stderr


def test_validate_bad_suite_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nedits: []\nmethods: [{name: source}]\n")
    result = run_cli("validate", str(bad))
    assert result.returncode == 2
    assert "bad.yaml:2: edits: List should have at least 1 item" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_validate_checks_every_file_and_exits_2_at_the_end(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("name: g\nedits: [{name: e, target: x}]\nmethods: [{name: source}]\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nedits: []\nmethods: [{name: source}]\n")
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: y\nedits: [{name: e, target: x}]\nmethods: [{name: sourze}]\n")
    result = run_cli("validate", str(bad), str(good), str(typo), str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("bench validate: error: ")]
    assert len(errors) == 3
    assert "bad.yaml:2: edits" in errors[0] and "typo.yaml:3: unknown method 'sourze'" in errors[1]
    assert "missing.yaml" in errors[2]
    assert "3 of 4 suite file(s) invalid" in result.stderr
    assert f"ok {good}" in result.stdout.replace("\n", "")


SMOKE = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "suites" / "smoke.yaml")


def _no_cuda():
    import torch
    return not torch.cuda.is_available()


@pytest.mark.parametrize("args, expected", [
    (["report", SMOKE], "smoke.yaml is a file, not a run directory"),
    (["run", SMOKE, "--out", "{tmp}/o", "--device", "gpu"], "--device 'gpu' is not a device; valid: cpu, cuda, cuda:N"),
    (["generate", "--generator", "{tmp}/g.pt", "--latents", "{tmp}/z.pt", "--out", "{tmp}/o", "--truncation", "1.5"],
     "--truncation must be in [0, 1] (1 = none, 0 = every image the average), got 1.5"),
    pytest.param(["generate", "--generator", "{tmp}/g.pt", "--latents", "{tmp}/z.pt", "--out", "{tmp}/o",
                  "--device", "cuda"], "--device cuda: CUDA is not available on this machine; use --device cpu",
                 marks=pytest.mark.skipif("not _no_cuda()", reason="this machine has CUDA")),
    (["zoo", "eval", "synthface", "--only", "nope"],
     "unknown network 'nope'; valid networks: attributes, clip, encoder, generator, identity, judge_clip"),
    (["run", "--methods", "source"], "the suite file is missing: bench run SUITE.yaml"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, expected):
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "o").exists()


def test_report_of_a_directory_without_a_run_creates_nothing(tmp_path):
    result = run_cli("report", str(tmp_path / "nope"))
    assert result.returncode == 2 and "is not a run directory (no manifest.json)" in result.stderr
    assert not (tmp_path / "nope").exists()  # no empty report/ folder left behind


@pytest.mark.parametrize("argv, methods", [
    (["--methods", "source", SMOKE], ["source"]),  # the suite after --methods: argparse gave it to --methods
    (["--methods", "source", "styleclip_optimization", SMOKE], ["source", "styleclip_optimization"]),
    ([SMOKE, "--methods", "source", "styleclip_optimization"], ["source", "styleclip_optimization"]),
    ([SMOKE, "--methods", "source,styleclip_optimization"], ["source", "styleclip_optimization"]),
    (["--methods", "source", "--methods", "nada", SMOKE], ["source", "nada"]),
    ([SMOKE], None),
])
def test_run_takes_methods_before_or_after_the_suite(argv, methods):
    from bench.cli import build_parser
    from bench.commands.run import methods_and_suite

    args = build_parser(only="run").parse_args(["run", *argv])
    assert methods_and_suite(args.methods, args.suite) == (methods, SMOKE)


def test_user_text_is_not_rich_markup(tmp_path, monkeypatch, capsys):
    """Paths and suite descriptions with "[...]" are printed as they are: no text lost, no MarkupError."""
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "x.yaml").write_text("name: x\ndescription: \"a [/i] closing tag and [bold]wip[/bold]\"\n"
                                   "edits: [{name: e, target: t}]\nmethods: [{name: source}]\n")
    wip = tmp_path / "[wip].yaml"
    wip.write_text((suites / "x.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["ls", "suites"]) == 0
    out = capsys.readouterr().out
    assert "a [/i] closing tag and [bold]wip[/bold]" in out
    assert main(["validate", str(wip)]) == 0
    assert f"ok {wip}: suite 'x'" in capsys.readouterr().out.replace("\n", "")


def test_ls_suites_shows_paths_that_work_from_the_current_directory(tmp_path, monkeypatch):
    from pathlib import Path

    from bench.commands.ls import shown_path

    shipped = Path(SMOKE)
    monkeypatch.chdir(tmp_path)  # outside the repository: the shipped suites by their absolute path
    assert shown_path(shipped) == str(shipped.resolve()) and Path(shown_path(shipped)).is_file()
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "x.yaml").write_text("")
    assert shown_path(tmp_path / "suites" / "x.yaml") == "suites/x.yaml"  # below the cwd: relative to it
    monkeypatch.chdir(shipped.parents[1])
    assert shown_path(shipped) == "suites/smoke.yaml"


def test_help_says_what_report_prints_and_what_zoo_device_is():
    from bench.cli import build_parser

    def help_of(name):
        parser = build_parser(only=name)
        return " ".join(parser._subparsers._group_actions[0].choices[name].format_help().split())

    report = help_of("report")
    assert "usage: bench report [-h] [--format {md,latex,html,json}] RUN_DIR" in report
    assert "RUN_DIR/report/" in report and "for html the path of the self-contained page" in report
    assert "--device DEVICE where the networks run for the gates" in help_of("zoo")

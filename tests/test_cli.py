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

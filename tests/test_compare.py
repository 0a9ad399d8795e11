"""`bench compare` rules without a run: CIs scaled with the machine factor, a missing CI falling back to the
metric's tolerance, the ci rule on the report's intervals over (edit, seed) cells, scale-aware quality defaults, and
tolerances validated before anything is compared."""

import re

import pytest

from bench.commands.compare import regressions
from bench.errors import BenchError

NAN = float("nan")


def _report(metric, mean, ci=(NAN, NAN), calibration=None, tolerances=None):
    report = {"suite": "s", "calibration_ms": calibration,
              "rows": [{"method": "m", "variant": "v", "metric": metric, "mean": mean, "ci95": list(ci), "n": 8}]}
    if tolerances is not None:
        report["tolerances"] = tolerances
    return report


CI_LATENCY = {"metrics": {"latency_apply_ms": {"mode": "ci"}}}


def test_ci_mode_scales_the_interval_with_the_machine():
    base = _report("latency_apply_ms", 50.0, (45.0, 55.0), calibration=10.0, tolerances=CI_LATENCY)
    # twice the time and twice the spread on a machine twice as slow: the same code
    assert regressions(_report("latency_apply_ms", 100.0, (90.0, 110.0), calibration=20.0), base) == []
    found = regressions(_report("latency_apply_ms", 100.0, (90.0, 110.0), calibration=10.0), base)
    assert len(found) == 1 and "do not overlap" in found[0]
    found = regressions(_report("latency_apply_ms", 140.0, (130.0, 150.0), calibration=20.0), base)
    assert len(found) == 1 and "[65, 75] vs [45, 55]" in found[0]  # the run's CI per unit of machine speed


def test_ci_mode_without_an_interval_uses_the_metrics_tolerance():
    base = _report("clip_score", 0.50, tolerances={"quality": {"mode": "ci"}})  # n = 1: no CI
    assert regressions(_report("clip_score", 0.49), base) == []  # within the default abs 0.02
    found = regressions(_report("clip_score", 0.47), base)
    assert len(found) == 1 and "worse by 0.03 (tolerance 0.02)" in found[0]
    assert "no 95% CI over cells (n < 2 or one cell), so its abs tolerance applies instead of ci" in found[0]
    # the baseline's own rule for the metric's kind comes before the default
    base = _report("clip_score", 0.50, tolerances={"quality": {"mode": "abs", "value": 0.05},
                                                   "metrics": {"clip_score": {"mode": "ci"}}})
    assert regressions(_report("clip_score", 0.47, (0.46, 0.48)), base) == []


def test_ci_mode_does_not_use_a_single_cells_interval_over_its_images():
    """One cell: an interval over its images, conditional on its one preparation; ci falls back to the metric's rule."""
    base = _report("clip_score", 0.50, (0.49, 0.51), tolerances={"quality": {"mode": "ci"}})
    one_cell = {**_report("clip_score", 0.47, (0.46, 0.475)), "rows": [
        {**_report("clip_score", 0.47, (0.46, 0.475))["rows"][0], "n_cells": 1}]}
    found = regressions(one_cell, base)
    assert len(found) == 1 and "worse by 0.03 (tolerance 0.02); no 95% CI over cells" in found[0]
    one_cell["rows"][0]["mean"] = 0.485  # CIs apart, but within abs 0.02: not a regression for a single cell
    assert regressions(one_cell, base) == []
    two_cells = {**one_cell, "rows": [{**one_cell["rows"][0], "n_cells": 2}]}
    assert len(regressions(two_cells, base)) == 1  # over cells, non-overlapping intervals are a regression


def test_ci_mode_without_an_interval_keeps_the_metrics_noise_floor():
    # a latency with its own default (ratio 2 above a 20 ms floor) falls back to that, not to the bare cost ratio
    base = _report("latency_apply_ms", 0.01, tolerances=CI_LATENCY)  # n = 1: no CI
    assert regressions(_report("latency_apply_ms", 0.03), base) == []  # x3, but 0.02 ms is under the floor
    found = regressions(_report("latency_apply_ms", 60.0), base)
    assert len(found) == 1 and "floor 20" in found[0]


def _summarized(cell_means, tolerances=None):
    """A report of one per-image metric from 2 edits × 2 seeds, 8 images per cell around its mean."""
    import pandas as pd

    from reports.aggregate import summarize

    records = pd.DataFrame([{"method": "m", "variant": "v", "edit": edit, "batch": i // 4, "seed": seed, "sample": i,
                             "metric": "identity", "value": mean + 0.02 * (i - 3.5)}
                            for (edit, seed), mean in zip([("a", 0), ("a", 1), ("b", 0), ("b", 1)], cell_means)
                            for i in range(8)])
    report = {"suite": "s", "rows": summarize(records)}
    if tolerances is not None:
        report["tolerances"] = tolerances
    return report


def test_ci_mode_compares_the_intervals_over_cells_not_images():
    # the run's cells are all 0.07 lower: over the 32 images the intervals ([0.569, 0.631] and [0.499, 0.561])
    # would not overlap, but the images of a cell share its preparation, and over the cells' means (spread 0.1)
    # they are [0.470, 0.730] and [0.400, 0.660]
    base = _summarized([0.5, 0.6, 0.6, 0.7], tolerances={"quality": {"mode": "ci"}})
    assert base["rows"][0]["n_cells"] == 4 and base["rows"][0]["n"] == 32
    assert regressions(_summarized([0.43, 0.53, 0.53, 0.63]), base) == []
    found = regressions(_summarized([0.2, 0.25, 0.25, 0.3]), base)  # outside the cells' interval: still one
    assert len(found) == 1 and "do not overlap" in found[0]


@pytest.mark.parametrize("metric,base,fine,worse", [
    ("clip_score", 0.30, 0.29, 0.27),
    ("clip_score_x100", 30.0, 28.5, 27.5),  # 100·cos: 2.0, the same 0.02 of cosine
    ("fid", 80.0, 84.0, 86.0),
    ("kid", 2.0, 2.15, 2.25),
])
def test_default_quality_tolerances_follow_the_metrics_scale(metric, base, fine, worse):
    baseline = _report(metric, base)
    assert regressions(_report(metric, fine), baseline) == []
    assert len(regressions(_report(metric, worse), baseline)) == 1


@pytest.mark.parametrize("tolerances,expected", [
    ({"quality": {"mode": "abs"}},
     [r"tolerances\.quality", r'\{"mode": "abs"\}', "mode 'abs' needs a number `value`", "one of abs, ratio, ci"]),
    ({"metrics": {"fid": {"mode": "relative", "value": 1.0}}},
     [r"tolerances\.metrics\.fid", '"relative"', "'abs', 'ratio' or 'ci'", "value.*required unless the mode is ci"]),
    ({"cost": {"mode": "ratio", "value": 2.0, "flor": 5.0}}, [r"tolerances\.cost", "flor", "Extra inputs"]),
    ({"metrics": {"fid": 5.0}}, [r"tolerances\.metrics\.fid: 5\.0 is not a valid rule"]),
    ({"metrics": {"clip_scor": {"mode": "abs", "value": 0.1}}},
     ["unknown metric 'clip_scor'; registered metrics: .*clip_score, clip_score_x100"]),
    ({"qualty": {"mode": "abs", "value": 0.1}}, ["unknown key\\(s\\) 'qualty'; valid keys: quality, cost, metrics"]),
    ({"metrics": {"latency_apply_ms": {"mode": "ratio", "value": 2.0, "floor": -1.0}}}, ["floor -1.0 is negative"]),
])
def test_bad_tolerances_are_one_line_errors(tolerances, expected):
    baseline = _report("clip_score", 0.3, tolerances=tolerances)
    with pytest.raises(BenchError) as info:
        regressions(_report("clip_score", 0.3), baseline)
    message = str(info.value)
    assert "\n" not in message
    for pattern in expected:
        assert re.search(pattern, message), (pattern, message)


def _run_dir(tmp_path, name="run", limit=None, suite_hash="abc", error=None):
    """A run directory as `bench run` leaves it: a manifest and one cell of clip_score values (no network)."""
    from bench.cachefile import write_json_atomic
    from bench.store import CellKey, RunStore

    run_dir = tmp_path / name
    store = RunStore(run_dir)
    write_json_atomic(store.manifest_path, {"suite": "s", "suite_hash": suite_hash, "limit": limit, "device": "cpu",
                                            "git_commit": "c", "calibration_ms": 10.0, "variants": [["m", "v"]]})
    store.record_cell(CellKey("m", "v", "e", 0, 0), [(0, "clip_score", 0.30), (1, "clip_score", 0.32)])
    if error:
        store.record_cell(CellKey("m", "v", "e", 1, 0), [], error=error)
    store.close()
    return run_dir


def _bench(capsys, *args):
    from bench.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_compare_refuses_a_run_of_other_suite_content_or_limit(tmp_path, capsys):
    import json

    baseline = tmp_path / "baseline.json"
    assert _bench(capsys, "compare", _run_dir(tmp_path, limit=4), "--write-baseline", baseline)[0] == 0
    assert json.loads(baseline.read_text())["limit"] == 4
    assert _bench(capsys, "compare", _run_dir(tmp_path, "same", limit=4), "--baseline", baseline)[0] == 0
    code, _, err = _bench(capsys, "compare", _run_dir(tmp_path, "limited", limit=2), "--baseline", baseline)
    assert code == 2 and "recorded with --limit 4, the run with --limit 2" in err
    code, _, err = _bench(capsys, "compare", _run_dir(tmp_path, "all", limit=None), "--baseline", baseline)
    assert code == 2 and "--limit 4, the run with --limit none (every source)" in err
    code, _, err = _bench(capsys, "compare", _run_dir(tmp_path, "edited", limit=4, suite_hash="def"),
                          "--baseline", baseline)
    assert code == 2 and "content hash 'abc', the run's is 'def'" in err
    assert all("Traceback" not in e and len(e.strip().splitlines()) == 1 for e in (err,))
    # a baseline written before reports carried the limit: compared, with a note that the limit is unchecked
    old = json.loads(baseline.read_text())
    del old["limit"]
    baseline.write_text(json.dumps(old))
    code, out, err = _bench(capsys, "compare", _run_dir(tmp_path, "any", limit=2), "--baseline", baseline)
    assert code == 0 and "no regressions" in out and "note: the baseline records no source limit" in err


def test_compare_counts_failed_cells_as_regressions(tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    _bench(capsys, "compare", _run_dir(tmp_path), "--write-baseline", baseline)
    code, out, err = _bench(capsys, "compare", _run_dir(tmp_path, "failed", error="RuntimeError: oom"),
                            "--baseline", baseline)
    assert code == 1 and "no regressions" not in out
    assert "1 regression(s)" in err and "failed cell v|e|b1|s0: RuntimeError: oom" in err


@pytest.mark.parametrize("text, expected", [
    ("{bad", r"baseline .*baseline.json:1: not valid JSON \(Expecting property name"),
    ('{"suite": "s"}', r'expected a JSON object with a "rows" list .*found keys suite'),
    ("[1, 2]", "found a JSON list"),
    ('{"suite": "s", "rows": [{"method": "m", "variant": "v"}]}', r"rows\[0\] lacks metric, mean"),
    ('{"suite": "s", "rows": [{"method": "m", "variant": "v", "metric": "x", "mean": "high"}]}',
     r"rows\[0\] has mean 'high', not a number or null"),
    ('{"suite": "s", "rows": [{"method": "m", "variant": "v", "metric": "clip_score", "mean": 0.3, "ci95": [0.1]}]}',
     r"rows\[0\] \(v · clip_score\) has ci95 \[0.1\]; expected \[low, high\], two numbers or nulls"),
    ('{"suite": "s", "rows": [{"method": "m", "variant": "v", "metric": "clip_score", "mean": 0.3, "ci95": "wide"}]}',
     r'has ci95 "wide"; expected \[low, high\]'),
    ('{"suite": "s", "rows": [{"method": "m", "variant": "v", "metric": "clip_score", "mean": 0.3, "n_cells": "2"}]}',
     r'has n_cells "2"; expected a count of cells'),
    ('{"suite": "s", "calibration_ms": "fast", "rows": []}',
     r"calibration_ms is 'fast'; expected a positive number of milliseconds"),
    ('{"suite": "s", "calibration_ms": 0, "rows": []}', r"calibration_ms is 0; expected a positive number"),
])
def test_a_malformed_baseline_is_a_one_line_error_exit_2(tmp_path, capsys, text, expected):
    baseline = tmp_path / "baseline.json"
    baseline.write_text(text)
    code, _, err = _bench(capsys, "compare", _run_dir(tmp_path), "--baseline", baseline)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert re.search(expected, err), err


def test_write_baseline_refuses_a_run_with_failed_cells_and_writes_atomically(tmp_path, capsys, monkeypatch):
    import json
    import os

    baseline = tmp_path / "baselines" / "baseline.json"
    code, out, _ = _bench(capsys, "compare", _run_dir(tmp_path), "--write-baseline", baseline)
    assert code == 0 and "wrote baseline" in out
    good = baseline.read_text()
    assert json.loads(good)["tolerances"] and "NaN" not in good
    # a run with a failed cell: exit 2, one line naming how many failed and the first; the old baseline is kept
    failed = _run_dir(tmp_path, "failed", error="RuntimeError: CUDA out of memory\nsecond line")
    code, out, err = _bench(capsys, "compare", failed, "--write-baseline", baseline)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "1 cell(s) of the run" in err and "(first: v|e|b1|s0: RuntimeError: CUDA out of memory)" in err
    assert "--resume" in err and "wrote" not in out
    assert baseline.read_text() == good
    # written through a temp file and a rename: a write that fails half-way leaves the old baseline, no temp file
    import bench.cachefile

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(bench.cachefile.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        _bench(capsys, "compare", _run_dir(tmp_path, "other"), "--write-baseline", baseline)
    assert baseline.read_text() == good and os.listdir(baseline.parent) == ["baseline.json"]


def test_an_internal_error_is_exit_3_with_its_traceback_not_1(tmp_path, capsys, monkeypatch):
    """A bug in the harness must not read as a regression (exit 1) in CI: exit 3, traceback kept."""
    import bench.commands.compare as compare

    baseline = tmp_path / "baseline.json"
    _bench(capsys, "compare", _run_dir(tmp_path), "--write-baseline", baseline)

    def broken(run, base):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(compare, "regressions", broken)
    code, _, err = _bench(capsys, "compare", _run_dir(tmp_path, "other"), "--baseline", baseline)
    assert code == 3 and "Traceback" in err and "ZeroDivisionError: a bug" in err
    assert "bench compare: internal error (a bug in the harness" in err


def test_compare_help_names_the_exit_codes_and_where_tolerances_live():
    from bench.cli import build_parser

    parser = build_parser(only="compare")
    text = parser._subparsers._group_actions[0].choices["compare"].format_help()
    text = " ".join(text.split())
    assert "Tolerances live in the baseline file" in text
    assert "2 bad input" in text and "3 internal error" in text
    assert "3 internal error" in " ".join(parser.format_help().split())

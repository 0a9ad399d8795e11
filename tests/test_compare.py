"""`bench compare` rules without a run: CIs scaled with the machine factor, a missing CI falling back to the
metric's tolerance, scale-aware quality defaults, and tolerances validated before anything is compared."""

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
    assert "no 95% CI (n < 2), so its abs tolerance applies instead of ci" in found[0]
    # the baseline's own rule for the metric's kind comes before the default
    base = _report("clip_score", 0.50, tolerances={"quality": {"mode": "abs", "value": 0.05},
                                                   "metrics": {"clip_score": {"mode": "ci"}}})
    assert regressions(_report("clip_score", 0.47, (0.46, 0.48)), base) == []


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

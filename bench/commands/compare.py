"""`bench compare DIR --baseline FILE`: the CI gate. Exit 1 with a readable list of regressions, 0 otherwise.

A baseline is a report JSON plus tolerances (`--write-baseline FILE` makes one from a run; edit it by hand):

    "tolerances": {"quality": {"mode": "abs", "value": 0.02},      # worse by more than 0.02 → regression
                   "cost": {"mode": "ratio", "value": 2.0},        # slower/larger by more than ×2 → regression
                   "metrics": {"fid": {"mode": "abs", "value": 5.0}, "identity": {"mode": "ci"},
                               "latency_apply_ms": {"mode": "ratio", "value": 2.0, "floor": 20.0}}}

Modes: `abs` (absolute delta in the worse direction), `ratio` (run / baseline for lower-is-better metrics,
baseline / run for higher-is-better; an optional `floor` ignores changes smaller than it in the metric's unit, so
a 0.01 ms pass-through that takes 0.03 ms on a busy runner is not a ×3 regression), `ci` (regression when the 95%
CIs do not overlap and the run is worse). A (variant, metric) in the baseline that the run lacks is a regression
too. The default floors below are the noise of CPU timers and of CPU peak-RSS deltas on a shared 2-core runner.

Latencies are compared per unit of machine speed: where both the run and the baseline carry `calibration_ms` (the
time of a fixed workload on the run's device and threads, `bench.calibration`), the run's latencies are divided by
run / baseline calibration first, so a CI runner twice as slow as the baseline's machine is not a regression and
code that slows down on one machine still is. Without it on both sides latencies are compared as measured.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from bench.errors import BenchError

DEFAULT_TOLERANCES = {
    "quality": {"mode": "abs", "value": 0.02},
    "cost": {"mode": "ratio", "value": 2.0},
    "metrics": {"latency_apply_ms": {"mode": "ratio", "value": 2.0, "floor": 20.0},
                "latency_prepare_s": {"mode": "ratio", "value": 2.0, "floor": 1.0},
                "peak_mem_mb": {"mode": "ratio", "value": 2.0, "floor": 100.0},
                "prepare_peak_mem_mb": {"mode": "ratio", "value": 2.0, "floor": 100.0}},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="run directory (e.g. runs/smoke)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--baseline", type=Path, help="baseline JSON to compare against")
    group.add_argument("--write-baseline", type=Path, metavar="FILE", help="write this run as a baseline")


TIME_UNITS = ("ms", "s")  # costs in these registered units are scaled by the machine factor; memory is not


def _key(row: dict) -> tuple[str, str, str]:
    return row["method"], row["variant"], row["metric"]


def machine_factor(run: dict, baseline: dict) -> float | None:
    """How many times slower the run's machine is than the baseline's on the reference workload (None: unknown)."""
    mine, theirs = run.get("calibration_ms"), baseline.get("calibration_ms")
    if not mine or not theirs:
        return None
    return float(mine) / float(theirs)


def regressions(run: dict, baseline: dict) -> list[str]:
    from reports.aggregate import metric_info

    given = baseline.get("tolerances", {})
    tolerances = {**DEFAULT_TOLERANCES, **given,
                  "metrics": {**DEFAULT_TOLERANCES["metrics"], **given.get("metrics", {})}}
    current = {_key(r): r for r in run["rows"]}
    factor = machine_factor(run, baseline)
    found = []
    for base in baseline["rows"]:
        method, variant, metric = _key(base)
        info = metric_info(metric)
        rule = tolerances["metrics"].get(metric) or tolerances[info.kind]
        label = f"{variant} · {metric}"
        if base["mean"] is None or math.isnan(base["mean"]):
            continue  # undefined in the baseline (e.g. the direction of an unedited source): nothing to hold
        row = current.get(_key(base))
        if row is None or row["mean"] is None or math.isnan(row["mean"]):
            found.append(f"{label}: missing from the run (baseline {base['mean']:.4g})")
            continue
        higher = True if info.kind == "quality" and info.higher_is_better is None else info.higher_is_better
        measured = row["mean"]
        scaled = bool(factor) and info.kind == "cost" and info.unit in TIME_UNITS
        if scaled:
            row = {**row, "mean": measured / factor}
        delta = row["mean"] - base["mean"]
        worse = -delta if higher else delta  # > 0: the run is worse
        mode, value = rule["mode"], rule.get("value")
        if mode == "abs":
            bad = worse > value
            detail = f"worse by {worse:.4g} (tolerance {value})"
        elif mode == "ratio":
            num, den = (base["mean"], row["mean"]) if higher else (row["mean"], base["mean"])
            ratio = num / den if den else math.inf
            bad = ratio > value and worse > rule.get("floor", 0.0)
            detail = f"×{ratio:.3g} (tolerance ×{value}" + (f", floor {rule['floor']})" if "floor" in rule else ")")
        elif mode == "ci":
            overlap = row["ci95"][0] <= base["ci95"][1] and base["ci95"][0] <= row["ci95"][1]
            bad = not overlap and worse > 0
            detail = f"95% CIs {row['ci95']} vs {base['ci95']} do not overlap"
        else:
            raise BenchError(f"baseline tolerance mode {mode!r} for {metric}; valid modes: abs, ratio, ci")
        if bad:
            as_measured = (f" (measured {measured:.4g} on a machine ×{factor:.3g} as slow)"
                           if scaled and factor != 1.0 else "")
            found.append(f"{label}: {row['mean']:.4g}{as_measured} vs baseline {base['mean']:.4g}, {detail}")
    return found


def run(args: argparse.Namespace) -> int:
    from reports.build import report_json

    report = report_json(args.run_dir)
    if args.write_baseline:
        args.write_baseline.parent.mkdir(parents=True, exist_ok=True)
        args.write_baseline.write_text(json.dumps({**report, "tolerances": DEFAULT_TOLERANCES}, indent=2) + "\n")
        print(f"wrote baseline {args.write_baseline} ({len(report['rows'])} rows)")
        return 0
    if not args.baseline.is_file():
        raise BenchError(f"baseline not found: {args.baseline}; create one with --write-baseline")
    baseline = json.loads(args.baseline.read_text())
    if baseline.get("suite") != report["suite"]:
        raise BenchError(f"baseline {args.baseline} is for suite {baseline.get('suite')!r}, the run is "
                         f"{report['suite']!r}")
    found = regressions(report, baseline)
    if found:
        print(f"{len(found)} regression(s) against {args.baseline}:", file=sys.stderr)
        for line in found:
            print(f"  - {line}", file=sys.stderr)
        return 1
    factor = machine_factor(report, baseline)
    speed = (f"; latencies scaled by this machine's speed, ×{factor:.3g} the baseline machine's time on the reference "
             "workload" if factor else "; latencies as measured (no calibration_ms on both sides)")
    print(f"no regressions against {args.baseline} ({len(baseline['rows'])} rows checked{speed})")
    return 0

"""`bench compare DIR --baseline FILE`: the CI gate. Exit 1 with a readable list of regressions, 0 otherwise, 2 for
bad input (a malformed baseline, a run of another suite, suite content or --limit than the baseline's), 3 for an
internal error (a bug in the harness, with its traceback; `bench.cli`), so CI never reads a bug as a regression.

A baseline is a report JSON plus tolerances (`--write-baseline FILE` makes one from a run; edit it by hand):

    "tolerances": {"quality": {"mode": "abs", "value": 0.02},      # worse by more than 0.02 → regression
                   "cost": {"mode": "ratio", "value": 2.0},        # slower/larger by more than ×2 → regression
                   "metrics": {"fid": {"mode": "abs", "value": 5.0}, "identity": {"mode": "ci"},
                               "latency_apply_ms": {"mode": "ratio", "value": 2.0, "floor": 20.0}}}

Modes: `abs` (absolute delta in the worse direction), `ratio` (run / baseline for lower-is-better metrics,
baseline / run for higher-is-better; an optional `floor` ignores changes smaller than it in the metric's unit, so
a 0.01 ms pass-through that takes 0.03 ms on a busy runner is not a ×3 regression), `ci` (regression when the 95%
CIs do not overlap and the run is worse; where either side has no CI over cells — n < 2, or a single cell — the
metric's next rule that is not `ci` applies instead: its kind's rule, else the default, and the message says so).
The CIs are the report's (`reports.aggregate`): a per-image metric's is over its (edit, seed) cells' means, not its
images, since the images of a cell share one preparation. A row of a single cell has its images' interval,
conditional on that one preparation, which cannot allow for a preparation that comes out otherwise, so `ci` does
not use it. `value` is required except in `ci` mode. A rule under "metrics" beats its kind's
rule; the per-metric defaults below apply unless the baseline names that metric. A (variant, metric) in the
baseline that the run lacks is a regression too, and so is each failed cell of the run (`failed_cells` in its
report: its values are missing from the means). The default floors
below are the noise of CPU timers on a shared 2-core runner and of CPU heap peaks (sampled every 5 ms,
`metrics.cost`; two smoke runs differed by up to 3.3 MiB per variant). Tolerances are validated
before anything is compared: a malformed rule or an unregistered metric name is a one-line error.

Latencies are compared per unit of machine speed: where both the run and the baseline carry `calibration_ms` (the
time of a fixed workload on the run's device and threads, `bench.calibration`), the run's latencies (mean and
CI) are divided by run / baseline calibration first, so a CI runner twice as slow as the baseline's machine is not a
regression and code that slows down on one machine still is. Without it on both sides latencies are compared as measured.
A resumed run's report has already brought the cells of its earlier sessions to its latest session's speed
(`reports.aggregate.at_latest_speed`), the speed its `calibration_ms` describes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, FiniteFloat, ValidationError, model_validator

from bench.errors import BenchError

# Quality tolerances in each metric's own scale. 0.02 is set for metrics on a cosine or share scale (clip_score,
# clip_gain, clip_direction, identity in [-1, 1]; attr_* in [0, 1]). clip_score_x100 is 100·max(cos, 0), so the
# same 0.02 of cosine is 2.0 there. FID and KID have no fixed range: they scale with the feature extractor and the
# set size. The defaults are for the default features (the judge CLIP's embeddings): in docs/results/domains*.json
# the variants' means read FID 61.6-494 and KID 1.84-59.9, their per-edit means down to FID 40.8 and KID 1.62, so
# FID 5.0 and KID 0.2 are about a tenth of the smallest values there. A suite with `features: inception`
# (KID there is typically orders of magnitude smaller) should set its own in its baseline.
DEFAULT_TOLERANCES = {
    "quality": {"mode": "abs", "value": 0.02},
    "cost": {"mode": "ratio", "value": 2.0},
    "metrics": {"clip_score_x100": {"mode": "abs", "value": 2.0},
                "fid": {"mode": "abs", "value": 5.0},
                "kid": {"mode": "abs", "value": 0.2},
                "latency_apply_ms": {"mode": "ratio", "value": 2.0, "floor": 20.0},
                "latency_prepare_s": {"mode": "ratio", "value": 2.0, "floor": 1.0},
                "peak_mem_mb": {"mode": "ratio", "value": 2.0, "floor": 32.0},
                "prepare_peak_mem_mb": {"mode": "ratio", "value": 2.0, "floor": 32.0}},
}


HELP_EPILOG = ("Tolerances live in the baseline file, under \"tolerances\" (quality, cost and per-metric rules; "
               "--write-baseline writes the defaults there, edit them by hand). Exit codes: 0 no regression; 1 "
               "regressions (listed on stderr), failed cells included; 2 bad input (a malformed baseline or "
               "tolerance, a run of another suite, suite content or --limit); 3 internal error (a bug in the "
               "harness; its traceback is printed).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = HELP_EPILOG
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run directory (e.g. runs/smoke)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--baseline", type=Path, metavar="FILE",
                       help="baseline JSON to compare against (a report plus its tolerances)")
    group.add_argument("--write-baseline", type=Path, metavar="FILE",
                       help="write this run as a baseline, with the default tolerances")


MODES = ("abs", "ratio", "ci")
KINDS = ("quality", "cost")
RULE_FORM = (f"a rule is {{\"mode\": one of {', '.join(MODES)}, \"value\": a number (required unless the mode is "
             "ci), \"floor\": an optional number >= 0 (ratio mode)}")


class Tolerance(BaseModel):
    """One tolerance rule of a baseline."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["abs", "ratio", "ci"]
    value: FiniteFloat | None = None
    floor: FiniteFloat = 0.0

    @model_validator(mode="after")
    def _complete(self) -> "Tolerance":
        if self.value is None and self.mode != "ci":
            raise ValueError(f"mode {self.mode!r} needs a number `value`")
        if self.floor < 0:
            raise ValueError(f"floor {self.floor} is negative")
        return self


def _rule(key: str, entry) -> Tolerance:
    try:
        return Tolerance.model_validate(entry)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'rule'}: {e['msg']}" for e in exc.errors())
        raise BenchError(f"baseline tolerances.{key}: {json.dumps(entry)} is not a valid rule ({problems}); "
                         f"{RULE_FORM}") from None


def tolerances(baseline: dict) -> tuple[dict[str, Tolerance], dict[str, Tolerance]]:
    """The baseline's tolerances over the defaults, each rule validated: ({kind: rule}, {metric: rule})."""
    from metrics import METRICS

    given = baseline.get("tolerances", {})
    if not isinstance(given, dict):
        raise BenchError(f"baseline tolerances: {json.dumps(given)} is not a mapping of quality, cost, metrics")
    unknown = sorted(set(given) - {*KINDS, "metrics"})
    if unknown:
        raise BenchError(f"baseline tolerances: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: "
                         f"{', '.join(KINDS)}, metrics")
    given_metrics = given.get("metrics", {})
    if not isinstance(given_metrics, dict):
        raise BenchError(f"baseline tolerances.metrics: {json.dumps(given_metrics)} is not a mapping of metric "
                         f"name to rule; {RULE_FORM}")
    for name in given_metrics:
        if name not in METRICS:
            raise BenchError(f"baseline tolerances.metrics: unknown metric {name!r}; registered metrics: "
                             f"{', '.join(METRICS.names())}")
    kinds = {kind: _rule(kind, given.get(kind, DEFAULT_TOLERANCES[kind])) for kind in KINDS}
    merged = {**DEFAULT_TOLERANCES["metrics"], **given_metrics}
    return kinds, {name: _rule(f"metrics.{name}", entry) for name, entry in merged.items()}


def _key(row: dict) -> tuple[str, str, str]:
    return row["method"], row["variant"], row["metric"]


def machine_factor(run: dict, baseline: dict) -> float | None:
    """How many times slower the run's machine is than the baseline's on the reference workload (None: unknown)."""
    mine, theirs = run.get("calibration_ms"), baseline.get("calibration_ms")
    if not mine or not theirs:
        return None
    return float(mine) / float(theirs)


def _has_ci(row: dict) -> bool:
    """A 95% CI over at least two cells (a single cell's interval over its images is conditional on its one
    preparation; reports before `n_cells` are taken as they are)."""
    ci = row.get("ci95") or [None, None]
    return all(bound is not None and not math.isnan(bound) for bound in ci) and row.get("n_cells", 2) >= 2


def _check(rule: Tolerance, fallbacks: list[Tolerance], row: dict, base: dict, higher: bool) -> tuple[bool, str]:
    """(regression?, detail) of `row` against `base` under `rule`; a ci rule without CIs uses the next of
    `fallbacks` that is not ci."""
    delta = row["mean"] - base["mean"]
    worse = -delta if higher else delta  # > 0: the run is worse
    if rule.mode == "abs":
        return worse > rule.value, f"worse by {worse:.4g} (tolerance {rule.value:g})"
    if rule.mode == "ratio":
        num, den = (base["mean"], row["mean"]) if higher else (row["mean"], base["mean"])
        ratio = num / den if den else math.inf
        floor = f", floor {rule.floor:g})" if rule.floor else ")"
        return ratio > rule.value and worse > rule.floor, f"×{ratio:.3g} (tolerance ×{rule.value:g}{floor}"
    if not (_has_ci(row) and _has_ci(base)):
        fallback = next(r for r in fallbacks if r.mode != "ci")
        bad, detail = _check(fallback, [], row, base, higher)
        return bad, (f"{detail}; no 95% CI over cells (n < 2 or one cell), so its {fallback.mode} tolerance "
                     "applies instead of ci")
    overlap = row["ci95"][0] <= base["ci95"][1] and base["ci95"][0] <= row["ci95"][1]
    ci = lambda bounds: "[" + ", ".join(f"{b:.4g}" for b in bounds) + "]"  # noqa: E731
    return not overlap and worse > 0, f"95% CIs {ci(row['ci95'])} vs {ci(base['ci95'])} do not overlap"


def regressions(run: dict, baseline: dict) -> list[str]:
    from reports.aggregate import TIME_UNITS, metric_info

    kinds, per_metric = tolerances(baseline)
    # a ci rule without CIs (n < 2) falls back to the metric's default first, so its noise floor still applies
    # (a latency of 0.01 -> 0.03 ms is timer noise under the default floor, a regression under a bare ratio)
    metric_defaults = {name: Tolerance.model_validate(entry)
                       for name, entry in DEFAULT_TOLERANCES["metrics"].items()}
    kind_defaults = {kind: Tolerance.model_validate(DEFAULT_TOLERANCES[kind]) for kind in KINDS}
    current = {_key(r): r for r in run["rows"]}
    factor = machine_factor(run, baseline)
    # a failed cell's values are missing from the run's means (which may still look fine): each is a regression
    found = [f"failed cell {f['cell']}: {f['error']}" for f in run.get("failed_cells") or []]
    for base in baseline["rows"]:
        method, variant, metric = _key(base)
        info = metric_info(metric)
        rule = per_metric.get(metric) or kinds[info.kind]
        fallbacks = [r for r in (metric_defaults.get(metric), kinds[info.kind], kind_defaults[info.kind]) if r]
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
        if scaled:  # the CI too: a run twice as slow and twice as spread on a machine twice as slow is no change
            ci = [None if b is None else b / factor for b in row.get("ci95") or [None, None]]
            row = {**row, "mean": measured / factor, "ci95": ci}
        bad, detail = _check(rule, fallbacks, row, base, higher)
        if bad:
            as_measured = (f" (measured {measured:.4g} on a machine ×{factor:.3g} as slow)"
                           if scaled and factor != 1.0 else "")
            found.append(f"{label}: {row['mean']:.4g}{as_measured} vs baseline {base['mean']:.4g}, {detail}")
    return found


ROW_KEYS = ("method", "variant", "metric", "mean")


def read_baseline(path: Path) -> dict:
    """A baseline file, checked for what `regressions` reads: a BenchError naming the file (and line) otherwise."""
    if not path.is_file():
        raise BenchError(f"baseline not found: {path}; create one with --write-baseline")
    try:
        baseline = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BenchError(f"baseline {path}:{exc.lineno}: not valid JSON ({exc.msg}); a baseline is the report JSON "
                         "that `bench compare RUN --write-baseline FILE` writes") from None
    except UnicodeDecodeError as exc:
        raise BenchError(f"baseline {path}: not a text file ({exc.reason})") from None
    if not isinstance(baseline, dict) or not isinstance(baseline.get("rows"), list):
        found = (f"a JSON {type(baseline).__name__}" if not isinstance(baseline, dict) else
                 f"keys {', '.join(sorted(map(str, baseline)))}" if baseline else "an empty object")
        raise BenchError(f"baseline {path}: expected a JSON object with a \"rows\" list (written by `bench compare "
                         f"RUN --write-baseline FILE`), found {found}")
    for i, row in enumerate(baseline["rows"]):
        missing = [k for k in ROW_KEYS if not isinstance(row, dict) or k not in row]
        mean = row.get("mean") if isinstance(row, dict) else None
        if missing or not (mean is None or _is_number(mean)):
            problem = f"lacks {', '.join(missing)}" if missing else f"has mean {mean!r}, not a number or null"
            raise BenchError(f"baseline {path}: rows[{i}] {problem}; each row has {', '.join(ROW_KEYS)} (a number "
                             "or null) and ci95")
        problem = _row_problem(row)
        if problem:
            raise BenchError(f"baseline {path}: rows[{i}] ({row['variant']} · {row['metric']}) {problem}")
    calibration = baseline.get("calibration_ms")
    if not (calibration is None or (_is_number(calibration) and calibration > 0)):
        raise BenchError(f"baseline {path}: calibration_ms is {calibration!r}; expected a positive number of "
                         "milliseconds (the reference workload's time) or null")
    return baseline


def _is_number(value) -> bool:
    """A JSON number (bool is an int in Python, not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _row_problem(row: dict) -> str:
    """What is wrong with a baseline row's ci95 or n_cells (what `_has_ci` and `_check` read); "" when nothing."""
    ci = row.get("ci95")
    if ci is not None and not (isinstance(ci, list) and len(ci) == 2
                               and all(b is None or _is_number(b) for b in ci)):
        return f"has ci95 {json.dumps(ci)}; expected [low, high], two numbers or nulls (null: no interval)"
    cells = row.get("n_cells")
    if cells is not None and not (_is_number(cells) and cells >= 0):
        return f"has n_cells {json.dumps(cells)}; expected a count of cells (a number >= 0) or no n_cells"
    return ""


def same_work(report: dict, baseline: dict, path: Path) -> list[str]:
    """A BenchError when the run is not the baseline's work (another suite name or content, another --limit);
    notes for what the baseline cannot tell (a baseline written before reports carried the limit)."""
    def shown(value) -> str:
        return "none (every source)" if value is None else repr(value)

    notes = []
    if baseline.get("suite") != report["suite"]:
        raise BenchError(f"baseline {path} is for suite {baseline.get('suite')!r}, the run is {report['suite']!r}")
    if "suite_hash" not in baseline:
        notes.append("the baseline records no suite_hash: the suite's content is not checked")
    elif baseline["suite_hash"] != report.get("suite_hash"):
        raise BenchError(f"baseline {path} was recorded from suite {report['suite']!r} with content hash "
                         f"{baseline['suite_hash']!r}, the run's is {report.get('suite_hash')!r}: the suite's content "
                         "(edits, methods, parameters, sources, metrics, seeds) differs, so its numbers are not "
                         "comparable; compare a run of the baseline's suite, or re-record the baseline with "
                         "--write-baseline")
    if "limit" not in baseline or "limit" not in report:
        notes.append(f"the {'baseline' if 'limit' not in baseline else 'run'} records no source limit (written "
                     "before reports carried it): --limit is not checked")
    elif baseline["limit"] != report["limit"]:
        raise BenchError(f"baseline {path} was recorded with --limit {shown(baseline['limit'])}, the run with --limit "
                         f"{shown(report['limit'])}: other sources, so its numbers are not comparable; run with the "
                         "baseline's --limit, or re-record the baseline with --write-baseline")
    return notes


def write_baseline(report: dict, run_dir: Path, path: Path, dumps) -> None:
    """The run's report plus the default tolerances at `path`, written atomically (an interrupted write leaves the
    old baseline, not half a file for CI to fail on). A run with failed cells is refused: their values are missing
    from its means, and the gate would hold every later run to that incomplete record."""
    from bench.cachefile import write_text_atomic

    failed = report.get("failed_cells") or []
    if failed:
        first = (str(failed[0].get("error") or "").splitlines() or [""])[0][:200]
        raise BenchError(f"not writing baseline {path}: {len(failed)} cell(s) of the run {run_dir} failed (first: "
                         f"{failed[0].get('cell')}: {first}); a baseline records a complete run: run the failed "
                         "cells again with bench run --resume, then write it")
    write_text_atomic(path, dumps({**report, "tolerances": DEFAULT_TOLERANCES}))


def run(args: argparse.Namespace) -> int:
    """Exit 0: no regression; 1: regressions (listed on stderr); 2: bad input (a one-line error); an unexpected
    exception is exit 3 (`bench.cli`)."""
    from reports.build import dumps, report_json

    report = report_json(args.run_dir)
    if args.write_baseline:
        write_baseline(report, args.run_dir, args.write_baseline, dumps)
        print(f"wrote baseline {args.write_baseline} ({len(report['rows'])} rows)")
        return 0
    baseline = read_baseline(args.baseline)
    notes = same_work(report, baseline, args.baseline)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
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

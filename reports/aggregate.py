"""Store records → summary rows: mean and 95% bootstrap CI per (method variant, metric).

Per-sample metrics pool every (edit, seed, source) value of a variant; set metrics and cell-level costs
(sample −1) pool their (edit, seed) values. The CI is scipy's percentile bootstrap with a fixed seed, so the same
records always give the same report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

N_RESAMPLES = 2000
CI_SEED = 0


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool | None  # None: unknown (not registered) — no arrow, no "best"
    kind: str  # "quality" or "cost"
    unit: str = ""  # the registered unit ("ms", "s", "MiB", …); "" when unknown


def metric_info(name: str) -> MetricInfo:
    from metrics import METRICS

    if name not in METRICS:
        return MetricInfo(name, None, "quality")
    target = METRICS.get(name)
    kind = getattr(target, "kind", "quality")
    if kind == "info":
        return MetricInfo(name, None, "quality")
    return MetricInfo(name, bool(target.higher_is_better), kind, getattr(target, "unit", ""))


def bootstrap_ci(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    if len(values) == 1 or np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), np.mean, n_resamples=N_RESAMPLES, confidence_level=0.95,
                             method="percentile", random_state=np.random.default_rng(CI_SEED), vectorized=True)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def summarize(records: pd.DataFrame, by: tuple[str, ...] = ("method", "variant")) -> list[dict]:
    """One row per (`by`…, metric): {"method", "variant", "metric", "mean", "ci95": [lo, hi], "n"}."""
    rows = []
    if records.empty:
        return rows
    keys = [*by, "metric"]
    for group_key, group in records.groupby(keys, sort=True):
        values = group["value"].dropna().to_numpy(dtype=np.float64)
        low, high = bootstrap_ci(values)
        row = dict(zip(keys, group_key))
        row.update({"mean": float(values.mean()) if len(values) else float("nan"), "ci95": [low, high],
                    "n": int(len(values))})
        rows.append(row)
    return rows

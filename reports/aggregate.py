"""Store records → summary rows: mean and 95% confidence interval per (method variant, metric).

Per-sample metrics pool every (edit, seed, source) value of a variant; set metrics pool their (edit, seed) values.
Costs are measured by the runner once per phase of a cell (one stopwatch around a cell's apply call, one around a
preparation), so each cell counts once: a cost a cell stores on several rows (a batch's apply time per image, as
`latency_apply_ms` was written on every image row) is reduced to the mean of that cell's rows before pooling.

The CI is Student's t interval on the mean, mean ± t(0.975, n − 1) · s / √n (`scipy.stats.t.interval` with the
standard error `scipy.stats.sem`): a percentile bootstrap of the mean is far too narrow at the small n a benchmark
has (at n = 2 it is [min, max]). With n < 2 there is no interval (NaN bounds); constant values give zero width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CELL = ("method", "variant", "edit", "batch", "seed")  # the columns that name a cell of the store


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


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """95% Student-t interval of the mean of `values`; NaN bounds for fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float("nan"), float("nan")
    mean = float(values.mean())
    if np.ptp(values) == 0:  # scipy needs a scale > 0; constant values have no spread
        return mean, mean
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return float(low), float(high)


def one_per_cell(records: pd.DataFrame) -> pd.DataFrame:
    """`records` with each cost metric reduced to one row per cell (the mean of the cell's rows): a cost is one
    measurement of a cell's phase, however many image rows it was written on. Quality rows are unchanged; records
    without the cell columns (hand-made frames) are returned as they are."""
    if records.empty or not set(CELL) <= set(records.columns):
        return records
    kinds = {name: metric_info(name).kind for name in records["metric"].unique()}
    cost = records["metric"].map(kinds) == "cost"
    if not cost.any():
        return records
    reduced = records[cost].groupby([*CELL, "metric"], sort=False, dropna=False)["value"].mean().reset_index()
    reduced["sample"] = -1  # the store's sample index of a cell-level value
    return pd.concat([records[~cost], reduced.reindex(columns=records.columns)], ignore_index=True)


def summarize(records: pd.DataFrame, by: tuple[str, ...] = ("method", "variant")) -> list[dict]:
    """One row per (`by`…, metric): {"method", "variant", "metric", "mean", "ci95": [lo, hi], "n"}."""
    rows = []
    if records.empty:
        return rows
    records = one_per_cell(records)
    keys = [*by, "metric"]
    for group_key, group in records.groupby(keys, sort=True):
        values = group["value"].dropna().to_numpy(dtype=np.float64)
        low, high = t_interval(values)
        row = dict(zip(keys, group_key))
        row.update({"mean": float(values.mean()) if len(values) else float("nan"), "ci95": [low, high],
                    "n": int(len(values))})
        rows.append(row)
    return rows

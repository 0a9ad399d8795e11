"""Store records → summary rows: mean and 95% confidence interval per (method variant, metric).

Per-sample metrics pool every (edit, seed, source) value of a variant; set metrics pool their (edit, seed) values.
Costs are measured by the runner once per phase of a cell (one stopwatch around a cell's apply call, one around a
preparation), so each cell counts once: a cost a cell stores on several rows (a batch's apply time per image, as
`latency_apply_ms` was written on every image row) is reduced to the mean of that cell's rows before pooling.

`latency_apply_ms` is a cost per edited image, and batches differ in size (the last batch of a source set is often
smaller): its mean weights each cell's per-image time by the cell's image count, i.e. it is total apply time over
total edited images (cells of 8 images at 10 ms/image and 2 at 40 ms/image: 16 ms, not the 25 of a plain mean of
cells). A cell's image count is the number of distinct per-sample rows (sample ≥ 0) the records hold for that cell,
of any metric; a cell with none (a store without per-sample metrics) weighs 1. Its CI stays the t interval of the
unweighted per-cell values (cells are the measurements; centred on the weighted mean) — with equal batches both
means agree.

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
PER_IMAGE_COSTS = frozenset({"latency_apply_ms"})  # costs per edited image: pooled weighted by a cell's image count
WEIGHT = "weight"  # the column `one_per_cell` adds: the weight of a row in its metric's mean
TIME_UNITS = ("ms", "s")  # costs in these registered units scale with machine speed (calibration_ms); memory does not


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


def at_latest_speed(records: pd.DataFrame, cells: pd.DataFrame, manifest: dict) -> tuple[pd.DataFrame, int]:
    """(records, k): the time costs (units in TIME_UNITS) of cells finished in an earlier session of a resumed run,
    multiplied by latest calibration / that session's, so every latency of one report is at the speed of the
    latest session's machine, the speed its `calibration_ms` (what `bench compare` scales by) describes; k is the
    number of cells rescaled. A cell's session is the last one started before the cell finished
    (`manifest["sessions"]`, `started_at_unix`); a session without a calibration or a start time leaves its cells
    as measured."""
    latest = manifest.get("calibration_ms")
    sessions = [s for s in manifest.get("sessions") or [] if s.get("started_at_unix") is not None]
    if not latest or len(sessions) < 2 or records.empty:
        return records, 0
    starts = np.array([s["started_at_unix"] for s in sessions])
    factors = np.array([latest / s["calibration_ms"] if s.get("calibration_ms") else 1.0 for s in sessions])
    session = np.searchsorted(starts, cells["finished_at"].to_numpy(), side="right") - 1
    # a cell finished before the first recorded start belongs to a session without a start time (an older
    # manifest's): its speed is unknown, so it stays as measured
    per_cell = np.where(session >= 0, factors[np.clip(session, 0, None)], 1.0)
    factor = pd.Series(per_cell, index=pd.MultiIndex.from_frame(cells[list(CELL)]))
    timed_metrics = {m for m in records["metric"].unique()
                     if metric_info(m).kind == "cost" and metric_info(m).unit in TIME_UNITS}
    timed = records["metric"].isin(timed_metrics).to_numpy()
    cell_factor = factor.reindex(pd.MultiIndex.from_frame(records[list(CELL)])).fillna(1.0).to_numpy()
    scale = np.where(timed, cell_factor, 1.0)
    rescaled = len(records.loc[scale != 1.0, list(CELL)].drop_duplicates())
    return records.assign(value=records["value"] * scale), rescaled


def t_interval(values: np.ndarray, center: float | None = None) -> tuple[float, float]:
    """95% Student-t interval of the mean of `values` (centred on `center` where given, e.g. a weighted mean, with
    the spread of `values`); NaN bounds for fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float("nan"), float("nan")
    mean = float(values.mean()) if center is None else float(center)
    if np.ptp(values) == 0:  # scipy needs a scale > 0; constant values have no spread
        return mean, mean
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return float(low), float(high)


def one_per_cell(records: pd.DataFrame) -> pd.DataFrame:
    """`records` with each cost metric reduced to one row per cell (the mean of the cell's rows): a cost is one
    measurement of a cell's phase, however many image rows it was written on. Adds the column `weight`: a per-image
    cost's (PER_IMAGE_COSTS) row weighs the cell's image count (distinct samples ≥ 0 of the cell in `records`, 1
    where there are none), every other row 1. Quality rows are unchanged; records without the cell columns
    (hand-made frames) only get the weight 1. Reduced records (with `weight`) are returned as they are."""
    if WEIGHT in records.columns:
        return records
    records = records.assign(**{WEIGHT: 1.0})
    if records.empty or not set(CELL) <= set(records.columns):
        return records
    kinds = {name: metric_info(name).kind for name in records["metric"].unique()}
    cost = records["metric"].map(kinds) == "cost"
    if not cost.any():
        return records
    reduced = records[cost].groupby([*CELL, "metric"], sort=False, dropna=False)["value"].mean().reset_index()
    reduced["sample"] = -1  # the store's sample index of a cell-level value
    reduced[WEIGHT] = 1.0
    per_image = reduced["metric"].isin(PER_IMAGE_COSTS)
    if per_image.any():
        samples = records[records["sample"] >= 0]
        images = samples.groupby(list(CELL), sort=False, dropna=False)["sample"].nunique().rename("images")
        counts = reduced.loc[per_image, list(CELL)].merge(images.reset_index(), on=list(CELL), how="left")["images"]
        reduced.loc[per_image, WEIGHT] = counts.fillna(1.0).to_numpy(dtype=np.float64)
    return pd.concat([records[~cost], reduced.reindex(columns=records.columns)], ignore_index=True)


def weighted_mean(group: pd.DataFrame) -> float:
    """The mean of a group's `value` weighted by its `weight` (1 where the column is absent); NaN values left out."""
    group = group.dropna(subset=["value"])
    if group.empty:
        return float("nan")
    weights = group[WEIGHT].to_numpy(dtype=np.float64) if WEIGHT in group.columns else np.ones(len(group))
    return float(np.average(group["value"].to_numpy(dtype=np.float64), weights=weights))


def summarize(records: pd.DataFrame, by: tuple[str, ...] = ("method", "variant")) -> list[dict]:
    """One row per (`by`…, metric): {"method", "variant", "metric", "mean", "ci95": [lo, hi], "n"}; `mean` is
    weighted by `weight` (see the module docstring), the CI is the t interval of the values around it.
    `records` may already be reduced by `one_per_cell` (it is not reduced twice)."""
    rows = []
    if records.empty:
        return rows
    records = one_per_cell(records)
    keys = [*by, "metric"]
    for group_key, group in records.groupby(keys, sort=True):
        group = group.dropna(subset=["value"])
        values = group["value"].to_numpy(dtype=np.float64)
        mean = weighted_mean(group)
        low, high = t_interval(values, center=mean)
        row = dict(zip(keys, group_key))
        row.update({"mean": mean, "ci95": [low, high], "n": int(len(values))})
        rows.append(row)
    return rows

"""Store records → summary rows: mean and 95% confidence interval per (method variant, metric).

The images of one (variant, edit, seed) group — the runner's batch cells of one preparation; the tables call it an
(edit, seed) cell — share that preparation (a trained mapper, an adapted NADA generator, a relevance matrix, all
drawn from that seed), so they are not independent samples, and a t interval over a variant's pooled images
(n = its image count) is too narrow. Simulated with 2 edits × 3 seeds × 16 images each (noise σ per image), that
interval covered the mean 95% of the time without a per-group effect, 67% with one of SD 0.5σ and 48% at 1σ; the
interval over the 6 groups' means kept 95% in each case. So a per-sample metric's mean is the pooled per-image
mean, and its CI the t interval of the groups' means (n = the number of groups) centred on it. A row of one group
(a per-edit table of a one-seed suite, a one-edit one-seed suite) has only its images' spread: its interval is over
them, conditional on that one preparation. Every group scores the same sources, so the interval is for the suite's
sources: it holds the spread between preparations and edits, not between source sets (with a source effect of SD
0.5σ the same simulation covered the mean over all sources 83% of the time with either interval). Set metrics
(FID/KID, diversity) are one value per group already; their CI is over those values.

Costs are measured by the runner once per phase of a cell (one stopwatch around a batch cell's apply call, one
around a preparation), so each cell counts once: a cost a cell stores on several rows (a batch's apply time per
image, as `latency_apply_ms` was written on every image row) is reduced to the mean of that cell's rows before
pooling; the CI is over those per-cell values.

`latency_apply_ms` is a cost per edited image, and batches differ in size (the last batch of a source set is often
smaller): its mean weights each cell's per-image time by the cell's image count, i.e. it is total apply time over
total edited images (cells of 8 images at 10 ms/image and 2 at 40 ms/image: 16 ms, not the 25 of a plain mean of
cells). A cell's image count is the number of distinct per-sample rows (sample ≥ 0) the records hold for that cell,
of any metric; a cell with none (a store without per-sample metrics) weighs 1. Its CI stays the t interval of the
unweighted per-cell values (cells are the measurements; centred on the weighted mean) — with equal batches both
means agree. The per-sample rule above is the same one: per-image weighted mean, unweighted cells' interval.

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
GROUP = ("method", "variant", "edit", "seed")  # the batch cells of one preparation: one value of a CI
PER_IMAGE_COSTS = frozenset({"latency_apply_ms"})  # costs per edited image: pooled weighted by a cell's image count
WEIGHT = "weight"  # the column `one_per_cell` adds: the weight of a row in its metric's mean
TIME_UNITS = ("ms", "s")  # costs in these registered units scale with machine speed (calibration_ms); memory does not


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool | None  # None: unknown (not registered) — no arrow, no "best"
    kind: str  # "quality" or "cost"
    unit: str = ""  # the registered unit ("ms", "s", "MiB", …); "" when unknown
    per_sample: bool = True  # False: a set metric, one value per (variant, edit, seed) (FID/KID, diversity)


def metric_info(name: str) -> MetricInfo:
    from metrics import METRICS

    if name not in METRICS:
        return MetricInfo(name, None, "quality")
    target = METRICS.get(name)
    kind = getattr(target, "kind", "quality")
    if kind == "info":
        return MetricInfo(name, None, "quality", per_sample=bool(getattr(target, "per_sample", True)))
    return MetricInfo(name, bool(target.higher_is_better), kind, getattr(target, "unit", ""),
                      bool(getattr(target, "per_sample", True)))


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


def cell_values(group: pd.DataFrame) -> np.ndarray:
    """The values a row's CI is over: per-image values (sample ≥ 0) reduced to the mean of each (variant, edit,
    seed) group, whose images share one preparation; set metrics (one per group) and the costs `one_per_cell`
    reduced (one per batch cell or group) as they are. Records without the cell columns (hand-made frames): each
    value."""
    if not {*GROUP, "sample"} <= set(group.columns):
        return group["value"].to_numpy(dtype=np.float64)
    images = (group["sample"] >= 0).to_numpy()
    means = group[images].groupby(list(GROUP), sort=False, dropna=False)["value"].mean()
    return np.concatenate([means.to_numpy(dtype=np.float64), group.loc[~images, "value"].to_numpy(dtype=np.float64)])


def summarize(records: pd.DataFrame, by: tuple[str, ...] = ("method", "variant")) -> list[dict]:
    """One row per (`by`…, metric): {"method", "variant", "metric", "mean", "ci95": [lo, hi], "n", "n_cells"};
    `mean` is weighted by `weight` (per image; see the module docstring), the CI is the t interval of the cells'
    values (`cell_values`) around it, or of the values themselves where there is one cell. `n` counts the values
    the mean rests on (images for a per-sample metric, cells for a cost or a set metric), `n_cells` the cells the
    CI is over (a per-sample metric's (edit, seed) groups).
    `records` may already be reduced by `one_per_cell` (it is not reduced twice)."""
    rows = []
    if records.empty:
        return rows
    records = one_per_cell(records)
    keys = [*by, "metric"]
    for group_key, group in records.groupby(keys, sort=True):
        group = group.dropna(subset=["value"])
        values = group["value"].to_numpy(dtype=np.float64)
        cells = cell_values(group)
        mean = weighted_mean(group)
        # one cell: its images are the only spread there is (an interval conditional on its one preparation)
        low, high = t_interval(cells if len(cells) >= 2 else values, center=mean)
        row = dict(zip(keys, group_key))
        row.update({"mean": mean, "ci95": [low, high], "n": int(len(values)), "n_cells": int(len(cells))})
        rows.append(row)
    return rows

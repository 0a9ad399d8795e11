"""Plots (matplotlib, seaborn's style): the edit-strength / preservation trade-off per method variant, and cost bars
(preparation vs inference), both with their 95% CIs. One colour per method, the same in every plot and panel
(`method_palette`, methods in the suite's order), a legend of the methods, and the variants in the suite's order.
A plot whose metrics the run did not compute is skipped.

The trade-off plot's axes span the points with a margin; an interval is clipped to its metric's natural range
(`NATURAL_RANGE`: a cosine cannot leave [-1, 1], a share [0, 1]) and shows how far it reaches within the axes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from reports.tables import _arrow  # noqa: E402

EDIT_STRENGTH = ("clip_gain", "clip_direction", "clip_score")  # first one present is the y axis
PRESERVATION = ("identity", "attr_preserved", "lpips")
COSTS = (("latency_prepare_s", "preparation (s per edit)"), ("latency_apply_ms", "inference (ms per image)"))
# The range a metric's value cannot leave (None: unbounded on that side); metrics not named here have none.
NATURAL_RANGE = {"identity": (-1.0, 1.0), "clip_score": (-1.0, 1.0), "clip_direction": (-1.0, 1.0),
                 "clip_gain": (-2.0, 2.0), "attr_preserved": (0.0, 1.0), "attr_target": (0.0, 1.0),
                 "lpips": (0.0, None), "lpips_synthface": (0.0, None)}
MARGIN = 0.08  # of the span of the points, on each side of the trade-off plot's axes


def _frame(report: dict) -> pd.DataFrame:
    frame = pd.DataFrame(report["rows"])
    if frame.empty:
        return frame
    # NaN bounds (n < 2, no interval) give NaN error bars, which matplotlib leaves undrawn: the point alone
    frame["low"] = frame["ci95"].map(lambda ci: float("nan") if ci[0] is None else ci[0])
    frame["high"] = frame["ci95"].map(lambda ci: float("nan") if ci[1] is None else ci[1])
    return frame


def variant_order(frame: pd.DataFrame, order: Sequence[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """The (method, variant) pairs of `frame`, in `order` (the suite's) first, then any others sorted."""
    present = set(zip(frame["method"], frame["variant"])) if not frame.empty else set()
    ordered = [tuple(v) for v in order or [] if tuple(v) in present]
    return ordered + sorted(present - set(ordered))


def method_palette(variants: Sequence[tuple[str, str]]) -> dict[str, tuple]:
    """One colour per method, in the order the methods first appear (tab10, then tab20's other shades)."""
    methods = list(dict.fromkeys(method for method, _ in variants))
    colours = sns.color_palette("tab10") + sns.color_palette("tab20")[1::2]
    return {method: colours[i % len(colours)] for i, method in enumerate(methods)}


def _legend(ax, palette: dict[str, tuple], marker: str = "o", **options) -> None:
    handles = [Line2D([], [], color=colour, marker=marker, linestyle="", label=method)
               for method, colour in palette.items()]
    ax.legend(handles=handles, title="method", fontsize=7, title_fontsize=7, **options)


def _clip(metric: str, low: float, high: float) -> tuple[float, float]:
    lo, hi = NATURAL_RANGE.get(metric, (None, None))
    if lo is not None:
        low, high = max(low, lo), max(high, lo)
    if hi is not None:
        low, high = min(low, hi), min(high, hi)
    return low, high


def _errors(metric: str, mean: float, low: float, high: float) -> list[list[float]]:
    """matplotlib's [[below], [above]] for an interval clipped to the metric's natural range (NaN: no bar)."""
    if pd.isna(low) or pd.isna(high):
        return [[float("nan")], [float("nan")]]
    low, high = _clip(metric, low, high)
    return [[max(mean - low, 0.0)], [max(high - mean, 0.0)]]


def _limits(metric: str, values: Sequence[float]) -> tuple[float, float]:
    """The points' span with a margin, kept within the metric's natural range (plus the margin)."""
    low, high = min(values), max(values)
    pad = (high - low) * MARGIN or max(abs(high) * 0.1, 0.05)
    lo, hi = NATURAL_RANGE.get(metric, (None, None))
    return (max(low - pad, lo - pad) if lo is not None else low - pad,
            min(high + pad, hi + pad) if hi is not None else high + pad)


def _place_labels(ax, points: list[tuple[float, float, str]]) -> None:
    """Each variant's name beside its point, moved to another side where it would cover a placed one."""
    ax.figure.canvas.draw()  # the transforms of the final limits
    frame = ax.get_window_extent()
    scale = ax.figure.dpi / 72  # offsets are in points, boxes in pixels
    placed = []
    offsets = [(4, 3), (4, -10), (-4, 3), (-4, -10), (4, 12), (4, -19), (-4, 12), (-4, -19)]

    def free(box) -> bool:
        inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1
        return inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                                  for b in placed)

    for x, y, text in points:
        px, py = ax.transData.transform((x, y))
        width, height = 4.2 * len(text) * scale, 8.0 * scale  # fontsize 7: about 4.2 points a character
        boxes = []
        for dx, dy in offsets:
            left = px + (dx * scale) - (width if dx < 0 else 0)
            boxes.append(((dx, dy), (left, py + dy * scale, left + width, py + dy * scale + height)))
        (dx, dy), box = next((b for b in boxes if free(b[1])), boxes[0])
        placed.append(box)
        ax.annotate(text, (x, y), fontsize=7, xytext=(dx, dy), textcoords="offset points",
                    ha="right" if dx < 0 else "left")


def tradeoff_figure(frame: pd.DataFrame, order: Sequence[tuple[str, str]] | None = None):
    """The trade-off figure, or None when the run lacks an edit-strength or a preservation metric."""
    metrics = set(frame["metric"]) if not frame.empty else set()
    y = next((m for m in EDIT_STRENGTH if m in metrics), None)
    x = next((m for m in PRESERVATION if m in metrics), None)
    if x is None or y is None:
        return None
    variants = variant_order(frame, order)
    palette = method_palette(variants)
    wide = frame[frame["metric"].isin([x, y])].pivot_table(index=["method", "variant"], columns="metric",
                                                           values=["mean", "low", "high"], dropna=False)
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    points = []
    for method, variant in variants:
        if (method, variant) not in wide.index:
            continue
        row = wide.loc[(method, variant)]
        mx, my = row[("mean", x)], row[("mean", y)]
        if pd.isna(mx) or pd.isna(my):
            continue  # undefined (e.g. the direction of an unedited source): no point to place
        ax.errorbar(mx, my, xerr=_errors(x, mx, row[("low", x)], row[("high", x)]),
                    yerr=_errors(y, my, row[("low", y)], row[("high", y)]), fmt="o", color=palette[method],
                    capsize=3, label=variant)
        points.append((mx, my, variant))
    if points:
        ax.set_xlim(*_limits(x, [p[0] for p in points]))
        ax.set_ylim(*_limits(y, [p[1] for p in points]))
    ax.set_xlabel(f"{x}{_arrow(x)} (preservation)")
    ax.set_ylabel(f"{y}{_arrow(y)} (edit strength)")
    ax.set_title("edit strength vs preservation (mean, 95% CI)")
    _legend(ax, {m: c for m, c in palette.items() if any(m == v[0] for v in variants)}, loc="best")
    sns.despine(fig)
    fig.tight_layout()
    _place_labels(ax, points)
    return fig


def cost_figure(frame: pd.DataFrame, order: Sequence[tuple[str, str]] | None = None):
    """Preparation and inference time per variant (bars: means, whiskers: 95% CIs), or None without costs."""
    costs = frame[frame["metric"].isin([m for m, _ in COSTS])] if not frame.empty else frame
    if costs.empty:
        return None
    variants = variant_order(costs, order)
    palette = method_palette(variant_order(frame, order))
    rows = {(r.method, r.variant, r.metric): r for r in costs.itertuples()}
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 0.4 * len(variants) + 2.2), sharey=True)
    positions = range(len(variants))
    for ax, (metric, label) in zip(axes, COSTS):
        for i, (method, variant) in enumerate(variants):
            row = rows.get((method, variant, metric))
            if row is None or pd.isna(row.mean):
                continue
            low = 0.0 if pd.isna(row.low) else max(row.low, 0.0)  # a time is not negative
            error = ([[row.mean - low], [row.high - row.mean]] if not (pd.isna(row.low) or pd.isna(row.high))
                     else None)
            ax.barh(i, row.mean, xerr=error, color=palette[method], capsize=3, error_kw={"elinewidth": 1})
        ax.set_xlabel(f"{label}{_arrow(metric)}")
        ax.set_xlim(left=0)
    axes[0].set_yticks(list(positions), [variant for _, variant in variants])
    axes[0].invert_yaxis()  # the suite's first variant on top
    _legend(axes[1], {m: palette[m] for m in dict.fromkeys(m for m, _ in variants)}, marker="s",
            loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the bars, never over them
    fig.suptitle("cost per variant (mean, 95% CI)")
    sns.despine(fig)
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> Path | None:
    if fig is None:
        return None
    fig.savefig(path, dpi=120, bbox_inches="tight")  # a legend beside the axes stays in the file
    plt.close(fig)
    return path


def tradeoff_plot(frame: pd.DataFrame, out: Path, order: Sequence[tuple[str, str]] | None = None) -> Path | None:
    return _save(tradeoff_figure(frame, order), Path(out) / "tradeoff.png")


def cost_plot(frame: pd.DataFrame, out: Path, order: Sequence[tuple[str, str]] | None = None) -> Path | None:
    return _save(cost_figure(frame, order), Path(out) / "cost.png")


def write_plots(run_dir: Path, out: Path, report: dict,
                order: Sequence[tuple[str, str]] | None = None) -> list[Path]:
    """The plots of a report; `order`: the suite's (method, variant) order."""
    frame = _frame(report)
    return [p for p in (tradeoff_plot(frame, out, order), cost_plot(frame, out, order)) if p is not None]

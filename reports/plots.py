"""Plots (seaborn): the edit-strength / identity trade-off per method variant, and cost bars (preparation vs
inference). A plot whose metrics the run did not compute is skipped."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

EDIT_STRENGTH = ("clip_gain", "clip_direction", "clip_score")  # first one present is the y axis
PRESERVATION = ("identity", "attr_preserved", "lpips")


def _frame(report: dict) -> pd.DataFrame:
    frame = pd.DataFrame(report["rows"])
    if frame.empty:
        return frame
    # NaN bounds (n < 2, no interval) give NaN error bars, which matplotlib leaves undrawn: the point alone
    frame["low"] = frame["ci95"].map(lambda ci: float("nan") if ci[0] is None else ci[0])
    frame["high"] = frame["ci95"].map(lambda ci: float("nan") if ci[1] is None else ci[1])
    return frame


def tradeoff_plot(frame: pd.DataFrame, out: Path) -> Path | None:
    metrics = set(frame["metric"]) if not frame.empty else set()
    y = next((m for m in EDIT_STRENGTH if m in metrics), None)
    x = next((m for m in PRESERVATION if m in metrics), None)
    if x is None or y is None:
        return None
    wide = frame[frame["metric"].isin([x, y])].pivot_table(index=["method", "variant"], columns="metric",
                                                           values=["mean", "low", "high"], dropna=False)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    palette = dict(zip(sorted(frame["method"].unique()), sns.color_palette("tab10")))
    for (method, variant), row in wide.iterrows():
        if pd.isna(row[("mean", x)]) or pd.isna(row[("mean", y)]):
            continue  # undefined (e.g. the direction of an unedited source): no point to place
        ax.errorbar(row[("mean", x)], row[("mean", y)],
                    xerr=[[row[("mean", x)] - row[("low", x)]], [row[("high", x)] - row[("mean", x)]]],
                    yerr=[[row[("mean", y)] - row[("low", y)]], [row[("high", y)] - row[("mean", y)]]],
                    fmt="o", color=palette[method], capsize=3)
        ax.annotate(variant, (row[("mean", x)], row[("mean", y)]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel(f"{x} (preservation)")
    ax.set_ylabel(f"{y} (edit strength)")
    ax.set_title("edit strength vs preservation (mean, 95% CI)")
    sns.despine(fig)
    path = out / "tradeoff.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def cost_plot(frame: pd.DataFrame, out: Path) -> Path | None:
    costs = frame[frame["metric"].isin(["latency_prepare_s", "latency_apply_ms"])] if not frame.empty else frame
    if costs.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.4 * costs["variant"].nunique() + 1.8), sharey=True)
    for ax, metric, label in zip(axes, ["latency_prepare_s", "latency_apply_ms"],
                                 ["preparation (s per edit)", "inference (ms per image)"]):
        part = costs[costs["metric"] == metric]
        if not part.empty:
            sns.barplot(data=part, y="variant", x="mean", hue="method", dodge=False, ax=ax, legend=False)
        ax.set_xlabel(label)
        ax.set_ylabel("")
    sns.despine(fig)
    fig.tight_layout()
    path = out / "cost.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_plots(run_dir: Path, out: Path, report: dict) -> list[Path]:
    frame = _frame(report)
    return [p for p in (tradeoff_plot(frame, out), cost_plot(frame, out)) if p is not None]

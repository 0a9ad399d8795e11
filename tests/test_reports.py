"""Reports without a run: the CI of the mean (over the (edit, seed) cells for per-image metrics), costs counted once
per cell, tables (bold, escaping, notes and what the ± is over in both formats), the FID/KID note, pipes in names
through Markdown and HTML, plots with NaN intervals."""

import json
import math

import pandas as pd
import pytest

from bench.errors import BenchError
from reports.aggregate import summarize, t_interval
from reports.build import by_edit, set_sizes, tables
from reports.html import markdown_to_html
from reports.tables import _latex_escape, latex_table, markdown_table, render

NAN = float("nan")
T_975_3 = 3.182446305284263  # Student t, 97.5% quantile, 3 degrees of freedom (printed tables: 3.182)
T_975_1 = 12.706204736174698  # 1 degree of freedom (printed tables: 12.706)
T_975_2 = 4.302652729749462  # 2 degrees of freedom (printed tables: 4.303)


def _row(method, variant, metric, mean, ci=(NAN, NAN), n=8):
    return {"method": method, "variant": variant, "metric": metric, "mean": mean, "ci95": list(ci), "n": n}


def _report(rows, notes=None, **extra):
    return {"suite": "s", "suite_hash": "h", "device": "cpu", "rows": rows, "notes": notes or {}, **extra}


# ------------------------------------------------------------------------------------------------ aggregate
def test_t_interval_by_hand():
    # [1, 2, 3, 4]: mean 2.5, sample sd sqrt(5/3), standard error sqrt(5/3)/2, half-width t(0.975, 3) · that
    half = T_975_3 * math.sqrt(5 / 3) / 2
    assert t_interval([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5 - half, 2.5 + half), rel=1e-9)
    assert half == pytest.approx(2.05426, rel=1e-5)
    # two values: the mean ± 12.7 standard errors, far wider than [min, max] (the old percentile bootstrap's)
    assert t_interval([0.0, 1.0]) == pytest.approx((0.5 - T_975_1 * 0.5, 0.5 + T_975_1 * 0.5), rel=1e-9)
    low, high = t_interval([0.7])
    assert math.isnan(low) and math.isnan(high)  # one value: no interval
    assert all(math.isnan(b) for b in t_interval([]))
    low, high = t_interval([0.1, 0.1, 0.1])
    assert low == high == pytest.approx(0.1)  # no spread: zero width


def _cells(metric, per_cell, per_image=True):
    """Store-shaped records: one cell per value of `per_cell` (edit e, batch b, seed 0); the value on each of 4
    image rows (`per_image`, as the runner wrote latency_apply_ms) or once at sample -1."""
    rows = []
    for cell, value in enumerate(per_cell):
        samples = range(4 * cell, 4 * cell + 4) if per_image else [-1]
        rows += [{"method": "m", "variant": "v", "edit": f"e{cell % 2}", "batch": cell // 2, "seed": 0,
                  "sample": s, "metric": metric, "value": value} for s in samples]
    return rows


def test_a_cell_cost_counts_once():
    quality = [{**r, "value": r["sample"] / 10} for r in _cells("clip_score", [0, 0, 0])]
    records = pd.DataFrame(_cells("latency_apply_ms", [10.0, 14.0, 12.0]) + quality)
    rows = {r["metric"]: r for r in summarize(records)}
    latency = rows["latency_apply_ms"]
    assert latency["n"] == 3 and latency["mean"] == pytest.approx(12.0)  # cells, not 12 image rows
    assert latency["ci95"] == pytest.approx(list(t_interval([10.0, 14.0, 12.0])))
    assert rows["clip_score"]["n"] == 12  # quality stays per image
    assert rows["clip_score"]["n_cells"] == 2  # its CI is over (edit, seed) cells: e0's two batches are one
    once = pd.DataFrame(_cells("latency_apply_ms", [10.0, 14.0, 12.0], per_image=False))
    assert summarize(once)[0] == latency  # the same as a store that holds the value once per cell
    edits = {r["edit"]: r for r in by_edit(records) if r["metric"] == "latency_apply_ms"}
    assert edits["e0"]["n"] == 2 and edits["e1"]["n"] == 1


def _batch_cell(batch, images, ms_per_image, seed=0):
    """A store-shaped cell as the runner writes it: latency_apply_ms once (sample -1), clip_score per image."""
    first = 8 * batch
    cell = {"method": "m", "variant": "v", "edit": "e", "batch": batch, "seed": seed}
    return ([{**cell, "sample": -1, "metric": "latency_apply_ms", "value": ms_per_image},
             {**cell, "sample": -1, "metric": "peak_mem_mb", "value": 100.0 * (batch + 1)}]
            + [{**cell, "sample": first + i, "metric": "clip_score", "value": 0.5} for i in range(images)])


def test_apply_latency_is_per_image_when_batches_differ_in_size():
    # 8 images at 10 ms/image and a last batch of 2 at 40 ms/image: 160 ms over 10 images, not (10 + 40) / 2
    records = pd.DataFrame(_batch_cell(0, 8, 10.0) + _batch_cell(1, 2, 40.0))
    rows = {r["metric"]: r for r in summarize(records)}
    latency = rows["latency_apply_ms"]
    assert latency["mean"] == pytest.approx(16.0) and latency["n"] == 2
    low, high = latency["ci95"]  # the per-cell values' spread, centred on the weighted mean
    half = T_975_1 * 15.0  # sd of [10, 40] is 15·√2, standard error 15
    assert (low, high) == pytest.approx((16.0 - half, 16.0 + half), rel=1e-9)
    assert rows["peak_mem_mb"]["mean"] == pytest.approx(150.0)  # a per-cell cost is not weighted
    assert rows["clip_score"]["n"] == 10
    edits = [r for r in by_edit(records) if r["metric"] == "latency_apply_ms"]
    assert len(edits) == 1 and edits[0]["mean"] == pytest.approx(16.0)
    # per-seed ranges weigh the same way: seed 1 is all 20 ms/image
    two_seeds = pd.DataFrame(_batch_cell(0, 8, 10.0) + _batch_cell(1, 2, 40.0)
                             + _batch_cell(0, 8, 20.0, seed=1) + _batch_cell(1, 2, 20.0, seed=1))
    edit = next(r for r in by_edit(two_seeds) if r["metric"] == "latency_apply_ms")
    assert edit["mean"] == pytest.approx(18.0) and edit["seed_range"] == pytest.approx([16.0, 20.0])
    # a store without per-sample rows weighs every cell 1
    bare = pd.DataFrame([r for r in _batch_cell(0, 8, 10.0) + _batch_cell(1, 2, 40.0) if r["sample"] < 0])
    assert {r["metric"]: r for r in summarize(bare)}["latency_apply_ms"]["mean"] == pytest.approx(25.0)
    # a store with cell costs but no per-image cost (e.g. preparation times only): every cell weighs 1
    prepare_only = pd.DataFrame([{**r, "metric": "latency_prepare_s"} for r in _batch_cell(0, 8, 1.0)
                                 + _batch_cell(1, 2, 3.0) if r["metric"] == "latency_apply_ms"])
    row = summarize(prepare_only)[0]
    assert row["mean"] == pytest.approx(2.0) and row["n"] == 2 and not math.isnan(row["ci95"][0])


def _images(values, metric="clip_score", batch_size=4):
    """Store-shaped per-image records: {(edit, seed): [one value per source]}, in batches of `batch_size` sources
    (sample = the source's index, the same sources in every cell, as the runner writes them)."""
    return pd.DataFrame([{"method": "m", "variant": "v", "edit": edit, "batch": i // batch_size, "seed": seed,
                          "sample": i, "metric": metric, "value": value}
                         for (edit, seed), cell in values.items() for i, value in enumerate(cell)])


SPREAD = [-0.3, -0.1, 0.1, 0.3]  # the images around their cell's mean (mean 0)


def test_a_per_image_metrics_ci_is_over_its_cells_means():
    # 2 edits × 2 seeds × 4 images whose cell means are 1, 2, 3, 4: the images of a cell share its preparation, so
    # the interval is the t interval of the 4 cells' means (as test_t_interval_by_hand: 2.5 ± 3.182 · √(5/3) / 2),
    # not the one of the 16 images (± 2.131 · 1.178 / 4 = ± 0.627, where the cells' spread says ± 2.054)
    means = {("a", 0): 1.0, ("a", 1): 2.0, ("b", 0): 3.0, ("b", 1): 4.0}
    records = _images({cell: [mean + d for d in SPREAD] for cell, mean in means.items()}, batch_size=3)
    row = summarize(records)[0]
    half = T_975_3 * math.sqrt(5 / 3) / 2
    assert row["mean"] == pytest.approx(2.5) and row["ci95"] == pytest.approx([2.5 - half, 2.5 + half], rel=1e-9)
    assert row["n"] == 16 and row["n_cells"] == 4  # two batches (3 + 1 sources) of one (edit, seed): one cell
    pooled = t_interval(records["value"].to_numpy())
    assert pooled[1] - pooled[0] < (2 * half) / 3  # the old interval over the images: a third as wide
    # cells of unequal size: the mean stays per image (3 images at 1, one at 3: 1.5), the spread is the cells'
    # (sd of [1, 3] is √2, standard error 1), as latency_apply_ms weighs its batches
    row = summarize(_images({("a", 0): [1.0, 1.0, 1.0, float("nan")], ("a", 1): [NAN, NAN, NAN, 3.0]}))[0]
    assert row["mean"] == pytest.approx(1.5) and row["n"] == 4 and row["n_cells"] == 2
    assert row["ci95"] == pytest.approx([1.5 - T_975_1, 1.5 + T_975_1], rel=1e-9)


def test_one_cell_has_the_interval_of_its_images():
    # one edit, one seed: no spread between preparations to see; the interval is over the images (conditional on
    # the one preparation): [1, 2, 3, 4] in two batches, 2.5 ± 2.054
    records = _images({("a", 0): [1.0, 2.0, 3.0, 4.0]}, batch_size=2)
    row = summarize(records)[0]
    assert row["ci95"] == pytest.approx(list(t_interval([1.0, 2.0, 3.0, 4.0])), rel=1e-9)
    assert row["n"] == 4 and row["n_cells"] == 1
    one = summarize(_images({("a", 0): [0.7]}))[0]  # one image: no interval at all
    assert one["n"] == one["n_cells"] == 1 and all(math.isnan(b) for b in one["ci95"])


def test_by_edit_rows_are_over_the_seeds_or_one_seeds_images():
    means = {("a", 0): 1.0, ("a", 1): 2.0, ("a", 2): 3.0, ("b", 0): 5.0, ("b", 1): 5.0, ("b", 2): 5.0}
    records = _images({cell: [mean + d for d in SPREAD] for cell, mean in means.items()})
    rows = {r["edit"]: r for r in by_edit(records)}
    half = T_975_2 * 1.0 / math.sqrt(3)  # t(0.975, 2) · sd([1, 2, 3]) / √3: the 3 seeds' means of edit a
    assert rows["a"]["ci95"] == pytest.approx([2.0 - half, 2.0 + half], rel=1e-9)
    assert rows["a"]["n"] == 12 and rows["a"]["n_cells"] == 3 and rows["a"]["seed_range"] == pytest.approx([1, 3])
    assert rows["b"]["ci95"] == pytest.approx([5.0, 5.0])  # equal seeds' means: no width, though images differ
    one_seed = {r["edit"]: r for r in by_edit(records[records["seed"] == 1])}
    assert one_seed["a"]["ci95"] == pytest.approx(list(t_interval([2.0 + d for d in SPREAD])), rel=1e-9)
    assert one_seed["a"]["n_cells"] == 1 and "seed_range" not in one_seed["a"]


def test_set_metrics_are_one_value_per_cell():
    values = {("a", 0): 80.0, ("a", 1): 90.0, ("b", 0): 70.0, ("b", 1): 80.0}  # one FID per (edit, seed) set cell
    records = pd.DataFrame([{"method": "m", "variant": "v", "edit": e, "batch": -1, "seed": s, "sample": -1,
                             "metric": "fid", "value": v} for (e, s), v in values.items()])
    row = summarize(records)[0]
    assert row["n"] == row["n_cells"] == 4 and row["ci95"] == pytest.approx(list(t_interval([80, 90, 70, 80])))


def test_report_json_and_every_table_say_what_the_interval_is_over(tmp_path):
    from bench.store import CellKey, RunStore
    from reports.build import dumps, report_json

    store = RunStore(tmp_path)
    store.open_run({"suite": "s", "suite_hash": "h", "device": "cpu", "git_commit": "c"}, resume=False,
                   match_keys=["suite_hash"])
    for edit, seed, mean in (("a", 0, 0.2), ("a", 1, 0.4), ("b", 0, 0.3), ("b", 1, 0.5)):
        for batch in (0, 1):
            store.record_cell(CellKey("m", "v", edit, batch, seed),
                              [(2 * batch + i, "clip_score", mean + (0.01 if i else -0.01)) for i in (0, 1)]
                              + [(-1, "latency_apply_ms", 10.0 + batch)])
    store.close()
    report = json.loads(dumps(report_json(tmp_path)))
    row = next(r for r in report["rows"] if r["metric"] == "clip_score")
    assert row["n"] == 16 and row["n_cells"] == 4  # 4 (edit, seed) cells of 4 images, each in 2 batches
    assert row["ci95"] == pytest.approx(list(t_interval([0.2, 0.4, 0.3, 0.5], center=0.35)))
    latency = next(r for r in report["rows"] if r["metric"] == "latency_apply_ms")
    assert latency["n"] == latency["n_cells"] == 8  # a cost's cells are its measurements, one per batch
    edit = next(r for r in report["by_edit"] if r["metric"] == "clip_score" and r["edit"] == "a")
    assert edit["n"] == 8 and edit["n_cells"] == 2 and edit["seed_range"] == pytest.approx([0.2, 0.4])
    manifest = {"variants": [["m", "v"]], "edits": ["a", "b"]}
    md = tables(report, manifest, "md")
    quality = md[md.index("## Quality"):md.index("## Cost")]
    assert "_± half-width of the 95% Student-t CI: per-image metrics over the (edit, seed) cells' means" in quality
    assert "a row of one cell: over its images, conditional on that preparation_" in quality
    assert "_± half-width of the 95% Student-t CI: costs over the cells' measurements_" in md
    by = md[md.index("## By edit: clip_score"):]
    assert "over the seeds' means (one (edit, seed) cell each), centred on the pooled per-image mean" in by
    latex = tables(report, manifest, "latex")
    assert r"\footnotesize $\pm$ half-width of the 95\% Student-t CI: per-image metrics over the (edit, seed)" in latex
    assert "<i>± half-width of the 95% Student-t CI: per-image metrics over the (edit, seed) cells" \
        in markdown_to_html(md)
    one_seed = {**report, "by_edit": [{k: v for k, v in r.items() if k != "seed_range"} for r in report["by_edit"]]}
    assert "over the edit's images: one (edit, seed) cell, so conditional on its one preparation" \
        in tables(one_seed, manifest, "md")


# ---------------------------------------------------------------------------------------------------- tables
def test_a_single_value_shows_no_interval():
    rows = [_row("m", "v", "clip_score", 0.5, n=1), _row("m", "w", "clip_score", 0.25, (0.2, 0.3), n=2)]
    variants = [("m", "v"), ("m", "w")]
    md = markdown_table(rows, variants, ["clip_score"])
    assert "| m | v | **0.500 (n=1)** |" in md and "| m | w | 0.250 ± 0.050 |" in md
    assert r"0.500 (n=1)" in latex_table(rows, variants, ["clip_score"])


def test_latex_escape_in_one_pass():
    assert _latex_escape("a\\b") == r"a\textbackslash{}b"
    assert _latex_escape("x^2~y") == r"x\textasciicircum{}2\textasciitilde{}y"
    assert _latex_escape("50% & $5 #1 {a_b}") == r"50\% \& \$5 \#1 \{a\_b\}"


def test_best_in_bold_leaves_out_the_source_and_the_oracle():
    rows = [_row("source", "source", "identity", 1.0), _row("synthface_oracle", "synthface_oracle", "identity", 0.95),
            _row("nada", "nada", "identity", 0.6), _row("styleclip_global", "g", "identity", 0.8)]
    variants = [(r["method"], r["variant"]) for r in rows]
    md = markdown_table(rows, variants, ["identity"])
    assert "| styleclip_global | g | **0.800** |" in md
    assert "| source | source | 1.000 |" in md and "| synthface_oracle | synthface_oracle | 0.950 |" in md
    alone = markdown_table(rows[:3], variants[:3], ["identity"])
    assert "**" not in alone  # one contender: nothing to rank


def test_notes_reach_the_latex_tables():
    rows = [_row("m", "v", "clip_score", 0.5, (0.4, 0.6)), _row("m", "v", "fid", 80.0, (70.0, 90.0), n=2),
            _row("m", "v", "fid_n", 16.0, (16.0, 16.0), n=2), _row("m", "v", "latency_prepare_s", 1.0, (0.5, 1.5)),
            _row("m", "w", "clip_score", 0.3, (0.2, 0.4))]
    report = _report(rows, notes={"clip_score": "the judge scoring this metric is also a loss network in this run"},
                     set_sizes={"fid_n": [16]})
    manifest = {"variants": [["m", "v"], ["m", "w"]], "prepare_cache": "/c", "prepare_workers": 2,
                "prepare_worker_threads": 1}
    latex = tables(report, manifest, "latex")
    md = tables(report, manifest, "md")
    for note in (r"\textit{clip\_score}: the judge scoring this metric is also a loss network in this run",
                 r"\textit{fid}: computed per (edit, seed) set of 16 edited images (fid\_n)",
                 r"\textit{latency\_prepare\_s}: prepared states shared by runs in /c"):
        assert note in latex
    assert latex.count(r"\textit{clip\_score}:") == 2  # the main table and the ablation of m
    assert "_clip_score: the judge scoring this metric is also a loss network in this run_" in md
    assert "ran up to 2 at a time" in md and "ran up to 2 at a time" in latex


def test_fid_and_kid_notes_give_the_set_sizes_and_bias_only_to_fid():
    records = pd.DataFrame([{"method": "m", "variant": "v", "edit": e, "batch": -1, "seed": 0, "sample": -1,
                             "metric": metric, "value": size}
                            for e, size in (("a", 7.0), ("b", 8.0)) for metric in ("fid_n", "kid_n")])
    sizes = set_sizes(records)
    assert sizes == {"fid_n": [7, 8], "kid_n": [7, 8]}
    rows = [_row("m", "v", "fid", 80.0, (70.0, 90.0), n=2), _row("m", "v", "kid", 2.0, (1.0, 3.0), n=2),
            _row("m", "v", "fid_n", 7.5, (1.1, 13.9), n=2), _row("m", "v", "kid_n", 7.5, (1.1, 13.9), n=2)]
    md = tables(_report(rows, set_sizes=sizes), {"variants": [["m", "v"]]}, "md")
    fid = next(line for line in md.splitlines() if line.startswith("_fid:"))
    kid = next(line for line in md.splitlines() if line.startswith("_kid:"))
    assert "sets of 7 and 8 edited images (fid_n)" in fid and "biased upwards" in fid
    assert "sets of 7 and 8 edited images (kid_n)" in kid and "biased" not in kid.replace("unbiased", "")
    assert "high variance" in kid
    # a report without per-set sizes whose sets differ: no made-up size
    old = tables(_report(rows), {"variants": [["m", "v"]]}, "md")
    assert "set of 7 " not in old and "its size in the fid_n column" in old


def test_a_pipe_in_a_name_stays_in_its_cell():
    rows = [_row("m", "a|b", "clip_score", 0.5, (0.4, 0.6)), _row("m", "c", "clip_score", 0.2, (0.1, 0.3))]
    md = markdown_table(rows, [("m", "a|b"), ("m", "c")], ["clip_score"])
    assert r"| m | a\|b | **0.500 ± 0.100** |" in md
    html = markdown_to_html(md)
    assert "<td>a|b</td><td><b>0.500 ± 0.100</b></td></tr>" in html
    assert html.count("<td>") == 2 * 3  # two rows of three cells, as the header


def test_render_names_the_valid_formats():
    with pytest.raises(BenchError, match="table format 'html'; valid formats: md, latex"):
        render("html", [], [], [], heading="h", caption="c")


# ----------------------------------------------------------------------------------------------------- plots
def test_plots_draw_points_without_an_interval(tmp_path):
    from reports.plots import _frame, cost_plot, tradeoff_plot

    rows = [_row("m", v, metric, 0.5, n=1) for v in ("a", "b")
            for metric in ("clip_score", "identity", "latency_apply_ms")]
    frame = _frame({"rows": rows})
    assert tradeoff_plot(frame, tmp_path).exists() and cost_plot(frame, tmp_path).exists()


def test_ties_are_bold_in_every_tied_row_and_nowhere_when_all_are_equal():
    variants = [("m", "a"), ("m", "b"), ("m", "c")]
    tied = [_row("m", "a", "identity", 0.8001), _row("m", "b", "identity", 0.8004), _row("m", "c", "identity", 0.6)]
    md = markdown_table(tied, variants, ["identity"])
    assert "| m | a | **0.800** |" in md and "| m | b | **0.800** |" in md  # equal at the shown precision
    assert "| m | c | 0.600 |" in md
    latex = latex_table(tied, variants, ["identity"])
    assert latex.count(r"\textbf{0.800}") == 2
    equal = [_row("m", v, "identity", 0.5) for _, v in variants]
    assert "**" not in markdown_table(equal, variants, ["identity"])  # nothing is better than anything
    assert r"\textbf" not in latex_table(equal, variants, ["identity"])
    lower = [_row("m", "a", "lpips", 0.2), _row("m", "b", "lpips", 0.2), _row("m", "c", "lpips", 0.3)]
    assert markdown_table(lower, variants, ["lpips"]).count("**0.200**") == 2


def test_report_json_is_strict_json_with_null_for_undefined_values_and_readers_take_it():
    import json

    from bench.commands.compare import regressions
    from reports.build import dumps

    report = _report([_row("source", "source", "clip_direction", NAN, n=0), _row("m", "v", "identity", 0.5, n=1),
                      _row("m", "w", "identity", 0.4, (0.3, 0.5))], calibration_ms=float("inf"))
    text = dumps(report)
    assert "NaN" not in text and "Infinity" not in text

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    loaded = json.loads(text, parse_constant=refuse)  # what a strict reader (jq, JavaScript) accepts
    assert loaded["rows"][0]["mean"] is None and loaded["rows"][1]["ci95"] == [None, None]
    assert loaded["calibration_ms"] is None
    # the readers: bench compare (a baseline with nulls against a run with NaN) and the tables
    assert regressions(report, loaded) == []
    worse = _report([_row("m", "v", "identity", 0.4, n=1), _row("m", "w", "identity", NAN, n=0)])
    found = regressions(worse, loaded)
    assert len(found) == 2  # v worse by 0.1; w missing from the run
    assert any(f.startswith("v · identity") and "worse by 0.1" in f for f in found)
    assert any(f.startswith("w · identity: missing") for f in found)
    md = tables(loaded, {"variants": [["source", "source"], ["m", "v"], ["m", "w"]]}, "md")
    assert "| m | v | – | **0.500 (n=1)** |" in md and "| source | source | – | – |" in md


def test_a_resumed_runs_earlier_latencies_are_brought_to_the_latest_sessions_speed(tmp_path, monkeypatch):
    """Session 1 ran on a machine twice as fast (calibration 10 ms) as session 2 (20 ms): its cell's 4 ms/image is
    8 ms/image at session 2's speed, the speed the report's calibration_ms describes and `bench compare` scales by."""
    import bench.store as store_module
    from bench.store import CellKey, RunStore
    from reports.build import report_json

    clock = iter([100.0, 110.0, 200.0, 210.0])
    monkeypatch.setattr(store_module.time, "time", lambda: next(clock))
    manifest = {"suite": "s", "suite_hash": "h", "device": "cpu", "git_commit": "c"}
    store = RunStore(tmp_path)
    keys = dict(match_keys=["suite_hash"], session_keys=["calibration_ms"])
    store.open_run({**manifest, "calibration_ms": 10.0}, resume=False, **keys)  # t = 100
    rows = lambda ms: [(i, m, v) for i in (0, 1) for m, v in (("latency_apply_ms", ms), ("identity", 0.9))]  # noqa
    store.record_cell(CellKey("m", "v", "e1", 0, 0), rows(4.0))  # t = 110: session 1
    store.open_run({**manifest, "calibration_ms": 20.0}, resume=True, **keys)  # t = 200
    store.record_cell(CellKey("m", "v", "e2", 0, 0), rows(8.0))  # t = 210: session 2
    report = report_json(tmp_path)
    mean = {r["metric"]: r["mean"] for r in report["rows"]}
    assert mean["latency_apply_ms"] == pytest.approx(8.0) and mean["identity"] == pytest.approx(0.9)
    assert report["latency_cells_rescaled"] == 1 and report["calibration_ms"] == 20.0
    by = {(r["edit"], r["metric"]): r["mean"] for r in report["by_edit"]}
    assert by[("e1", "latency_apply_ms")] == pytest.approx(8.0) and by[("e1", "identity")] == pytest.approx(0.9)
    assert "1 cell(s) timed in an earlier session of this resumed run" in tables(report, {}, "md")
    # a session that recorded no calibration leaves its cells as measured
    store.close()
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["sessions"][0]["calibration_ms"] = None
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    report = report_json(tmp_path)
    assert {r["metric"]: r["mean"] for r in report["rows"]}["latency_apply_ms"] == pytest.approx(6.0)
    assert report["latency_cells_rescaled"] == 0 and "earlier session" not in tables(report, {}, "md")
    # nor does a session an older manifest recorded without a start time (its cells precede the first known start)
    data["sessions"][0] = {"calibration_ms": 10.0, "started_at": None}
    data["sessions"].insert(1, {"calibration_ms": 40.0, "started_at_unix": 150.0})
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    report = report_json(tmp_path)
    assert {r["metric"]: r["mean"] for r in report["rows"]}["latency_apply_ms"] == pytest.approx(6.0)


def test_a_manifest_without_worker_threads_still_reports(tmp_path):
    """Runs written before `prepare_worker_threads` was recorded: the note leaves the thread count out."""
    rows = [_row("m", "v", "latency_prepare_s", 1.0, (0.5, 1.5)), _row("m", "w", "latency_prepare_s", 2.0, (1.0, 3.0))]
    manifest = {"variants": [["m", "v"], ["m", "w"]], "prepare_workers": 2}
    for fmt in ("md", "latex"):
        text = tables(_report(rows), manifest, fmt)
        assert "ran up to 2 at a time in separate processes" in text and "thread(s)" not in text
    with_threads = tables(_report(rows), {**manifest, "prepare_worker_threads": 1}, "md")
    assert "ran up to 2 at a time in processes of 1 thread(s)" in with_threads


def _plot_frame():
    from reports.plots import _frame

    order = [("zeta", "z1"), ("alpha", "a1"), ("zeta", "z2")]
    rows = [_row(m, v, metric, value, (value - 0.5, value + 0.5), n=4)
            for i, (m, v) in enumerate(order)
            for metric, value in (("identity", 0.9 - i / 10), ("clip_gain", 0.01 * i),
                                  ("latency_prepare_s", 1.0 + i), ("latency_apply_ms", 10.0 + i))]
    return _frame({"rows": rows}), order


def test_plots_keep_one_colour_per_method_and_the_suites_order(tmp_path):
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    from reports.plots import cost_figure, method_palette, tradeoff_figure

    frame, order = _plot_frame()
    palette = method_palette(order)
    assert list(palette) == ["zeta", "alpha"]
    cost = cost_figure(frame, order)
    prepare, apply = cost.axes[:2]
    assert [t.get_text() for t in prepare.get_yticklabels()] == ["z1", "a1", "z2"]  # suite order, not sorted
    for ax in (prepare, apply):  # the same method, the same colour, in both panels
        colours = [mcolors.to_rgb(p.get_facecolor()) for p in ax.patches]
        assert colours == [tuple(palette[m]) for m, _ in order]
    assert cost._suptitle.get_text() == "cost per variant (mean, 95% CI)"
    assert "↓" in prepare.get_xlabel() and "↓" in apply.get_xlabel()
    from matplotlib.container import ErrorbarContainer

    assert sum(isinstance(c, ErrorbarContainer) for c in prepare.containers) == 3  # each bar with its CI
    legend = apply.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["zeta", "alpha"]
    trade = tradeoff_figure(frame, order)
    ax = trade.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["zeta", "alpha"]  # one handle per method
    points = [c for c in ax.containers]
    assert [mcolors.to_rgb(c.lines[0].get_color()) for c in points] == [tuple(palette[m]) for m, _ in order]
    assert ax.get_xlabel() == "identity ↑ (preservation)" and ax.get_ylabel() == "clip_gain ↑ (edit strength)"
    low, high = ax.get_xlim()  # the points (0.7-0.9) with a margin, not the intervals (0.2-1.4)
    assert 0.6 < low < 0.7 and 0.9 < high < 1.0
    plt.close("all")


def test_error_bars_stay_in_the_metrics_natural_range():
    from reports.plots import _errors, _limits

    assert _errors("identity", 0.95, 0.5, 1.4) == [[pytest.approx(0.45)], [pytest.approx(0.05)]]
    assert _errors("attr_target", 0.1, -0.8, 1.0) == [[pytest.approx(0.1)], [pytest.approx(0.9)]]
    assert _errors("clip_gain", 0.0, -0.3, 0.3) == [[pytest.approx(0.3)], [pytest.approx(0.3)]]
    assert math.isnan(_errors("identity", 0.5, NAN, NAN)[0][0])
    low, high = _limits("attr_target", [0.0, 1.0])
    assert low == pytest.approx(-0.08) and high == pytest.approx(1.08)

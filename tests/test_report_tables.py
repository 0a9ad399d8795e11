"""Tables without a run: variants with failed cells marked and not ranked, LaTeX that pdflatex takes (escapes,
non-ASCII characters, minus signs, width, packages), the key in the first caption, and a run without finished
cells."""

import json
import shutil
import subprocess

import pytest

from reports.build import failed_groups, tables
from reports.tables import FailedEdits, _latex_escape, latex_table, markdown_table

NAN = float("nan")


def _row(method, variant, metric, mean, ci=(NAN, NAN), n=8, edit=None):
    row = {"method": method, "variant": variant, "metric": metric, "mean": mean, "ci95": list(ci), "n": n}
    return row if edit is None else {**row, "edit": edit}


def _report(rows, by_edit=(), failed=()):
    return {"suite": "s", "suite_hash": "h", "device": "cpu", "rows": rows, "by_edit": list(by_edit), "notes": {},
            "failed_cells": [{"cell": f"{v}|{e}|b0|s0", "error": "RuntimeError: x", "method": m, "variant": v,
                              "edit": e} for m, v, e in failed]}


VARIANTS = [("m", "a"), ("m", "b"), ("m", "c")]
MANIFEST = {"variants": [list(v) for v in VARIANTS], "edits": ["hair", "smile"]}


# ------------------------------------------------------------------------------------------- failed cells
def test_a_variant_with_failed_cells_is_marked_and_never_bold():
    rows = [_row("m", "a", "identity", 0.9), _row("m", "b", "identity", 0.8), _row("m", "c", "identity", 0.6)]
    failed = {("m", "a"): FailedEdits(("smile",), 2)}
    md = markdown_table(rows, VARIANTS, ["identity"], failed=failed)
    assert "| m | a † | 0.900 |" in md  # the highest mean, but over one of its two edits: not bold
    assert "| m | b | **0.800** |" in md
    assert "_† a: cells of 1 of 2 edit(s) failed (smile); its values leave out those cells and it is not ranked" in md
    latex = latex_table(rows, VARIANTS, ["identity"], failed=failed)
    assert r"m & a \dag{} & 0.900 \\" in latex and r"\textbf{0.800}" in latex
    assert r"\dag{} a: cells of 1 of 2 edit(s) failed (smile)" in latex
    # without the failure the same row is the best
    assert "| m | a | **0.900** |" in markdown_table(rows, VARIANTS, ["identity"])


def test_per_edit_tables_leave_only_the_failed_edits_column_unranked():
    by_edit = [_row("m", v, "identity", value, edit=e) for v, e, value in
               (("a", "hair", 0.9), ("a", "smile", 0.95), ("b", "hair", 0.5), ("b", "smile", 0.7),
                ("c", "hair", 0.4), ("c", "smile", 0.6))]
    report = _report([_row("m", v, "identity", 0.5) for _, v in VARIANTS], by_edit, failed=[("m", "a", "smile")])
    md = tables(report, MANIFEST, "md")
    section = md[md.index("## By edit: identity"):]
    assert "| m | a † | **0.900** | 0.950 † |" in section  # hair finished: ranked; smile failed: marked, not bold
    assert "| m | b | 0.500 | **0.700** |" in section
    assert "_† a: cells of 1 of 2 edit(s) failed (smile); those edits' columns leave out the failed cells" in section
    quality = md[md.index("## Quality"):md.index("## By edit")]
    assert "| m | a † |" in quality and "its values leave out those cells and it is not ranked" in quality


def test_failed_groups_come_from_the_reports_failed_cells(tmp_path):
    from bench.store import CellKey, RunStore
    from reports.build import report_json

    store = RunStore(tmp_path)
    store.open_run({"suite": "s", "suite_hash": "h", "device": "cpu", "git_commit": "c",
                    "edits": ["hair", "smile"]}, resume=False, match_keys=["suite_hash"])
    for variant in ("a", "b"):
        for edit in ("hair", "smile"):
            error = "RuntimeError: oom" if (variant, edit) == ("a", "smile") else None
            rows = [] if error else [(0, "identity", 0.9 if variant == "a" else 0.8), (1, "identity", 0.7)]
            store.record_cell(CellKey("m", variant, edit, 0, 0), rows, error=error)
    store.close()
    report = report_json(tmp_path)
    assert report["failed_cells"] == [{"cell": "a|smile|b0|s0", "error": "RuntimeError: oom", "method": "m",
                                       "variant": "a", "edit": "smile"}]
    manifest = {"variants": [["m", "a"], ["m", "b"]], "edits": ["hair", "smile"]}
    assert failed_groups(report, manifest) == {("m", "a"): FailedEdits(("smile",), 2)}
    md = tables(report, manifest, "md")
    assert "| m | a † | 0.800 ± 1.271 |" in md  # a's one finished cell, over its images
    assert "| m | b | 0.750 |" in md  # not bold: with a unranked, one ranked variant is left (nothing to rank)
    # a report.json written before failed cells carried their variant: nothing to mark, nothing breaks
    old = {**report, "failed_cells": [{"cell": "a|smile|b0|s0", "error": "x"}]}
    assert failed_groups(old, manifest) == {}


# ----------------------------------------------------------------------------------------------------- LaTeX
def test_latex_escapes_pipes_and_angle_brackets_and_maps_unicode():
    assert _latex_escape("a|b<c>d") == r"a\textbar{}b\textless{}c\textgreater{}d"
    assert _latex_escape("λ_ID β₁ 0.1–0.2 x→y 2×3 ±1 ↑/↓ …") == (
        r"$\lambda$\_ID $\beta$$_{1}$ 0.1--0.2 x$\rightarrow$y 2$\times$3 $\pm$1 $\uparrow$/$\downarrow$ \ldots{}")
    assert _latex_escape("café") == "café"  # Latin-1 letters: LaTeX reads UTF-8 and sets them
    assert _latex_escape("½ 漢 ﬁ") == "[U+00BD] [U+6F22] fi"  # never dropped in silence
    assert _latex_escape("a\\b") == r"a\textbackslash{}b"  # one pass: a replacement is not escaped again


def test_latex_cells_set_negative_numbers_in_math_mode():
    rows = [_row("m", "a", "clip_gain", -0.108, (-0.2, -0.016)), _row("m", "b", "clip_gain", 1.1e-05, n=1)]
    latex = latex_table(rows, VARIANTS[:2], ["clip_gain"])
    assert r"$-$0.108 $\pm$ 0.092" in latex
    assert "1.1e-05 (n=1)" in latex  # an exponent's minus is no sign
    assert " -0" not in latex and "–" not in latex


def test_latex_output_is_ascii_with_its_packages_and_width_and_the_key_once():
    rows = [_row("m", v, metric, 0.5 + i / 10, (0.4, 0.6 + i / 10)) for i, v in enumerate("abc")
            for metric in ("identity", "clip_score", "lpips", "latency_apply_ms")]
    text = tables(_report(rows), MANIFEST, "latex")
    assert text.isascii()
    assert text.startswith("% Tables of suite s") and r"\usepackage{booktabs,graphicx}" in text.split("\n\n")[0]
    assert text.count(r"\begin{tabular}") == text.count(r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}")
    assert text.count(r"\end{tabular}}") == text.count(r"\begin{tabular}") == 3  # quality, cost, ablation
    captions = [line for line in text.splitlines() if line.startswith(r"\caption")]
    assert r"$\pm$ is the half-width of the 95\% CI" in captions[0]
    assert r"$\uparrow$/$\downarrow$: higher/lower is better; bold: the best ranked value" in captions[0]
    assert all("half-width" not in c for c in captions[1:])
    md = tables(_report(rows), MANIFEST, "md")
    assert "± is the half-width" not in md  # Markdown says it in its header


PDFLATEX = shutil.which("pdflatex")


@pytest.mark.skipif(PDFLATEX is None, reason="needs pdflatex (texlive-latex-base, texlive-latex-recommended)")
def test_pdflatex_sets_the_tables_with_hostile_names(tmp_path):
    variants = [("m", "x|y<z>_β₁"), ("m", "λ→ID×2 – ±"), ("source", "source")]
    rows = [_row(m, v, metric, -0.25 + i / 7, (-0.5, 0.5)) for i, (m, v) in enumerate(variants)
            for metric in ("identity", "clip_score", "clip_gain", "clip_direction", "lpips", "attr_target",
                           "attr_preserved", "diversity", "latency_apply_ms", "latency_prepare_s", "peak_mem_mb")]
    report = {**_report(rows, failed=[("m", "x|y<z>_β₁", "smile")]),
              "notes": {"identity": "cos(ArcFace) ≥ 0.5 → same person; λ_ID ↑"}}
    manifest = {"variants": [list(v) for v in variants], "edits": ["hair", "smile"]}
    (tmp_path / "report.tex").write_text(tables(report, manifest, "latex"))
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\\usepackage{booktabs,graphicx}\\begin{document}"
                                      "\\input{report.tex}\\end{document}\n")
    result = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "Overfull \\hbox" not in result.stdout  # 13 columns shrunk to the line


# ------------------------------------------------------------------------------------------- no finished cell
def test_a_run_without_finished_cells_says_so(tmp_path, capsys):
    from bench.cachefile import write_json_atomic
    from bench.cli import main
    from bench.store import CellKey, RunStore

    assert "No finished cells yet: the run has recorded no cell" in tables(_report([]), MANIFEST, "md")
    failed = _report([], failed=[("m", "a", "hair")])
    assert "**No finished cells yet: all 1 recorded cell(s) failed" in tables(failed, MANIFEST, "md")
    assert r"\paragraph{No finished cells yet: all 1 recorded cell(s) failed" in tables(failed, MANIFEST, "latex")

    store = RunStore(tmp_path / "run")
    write_json_atomic(store.manifest_path, {"suite": "s", "suite_hash": "h", "device": "cpu", "git_commit": "c",
                                            "variants": [["m", "a"]], "edits": ["hair"]})
    store.record_cell(CellKey("m", "a", "hair", 0, 0), [], error="RuntimeError: oom")
    store.close()
    assert main(["report", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    assert "No finished cells yet: all 1 recorded cell(s) failed" in out
    assert err.startswith("bench report: No finished cells yet: all 1 recorded cell(s) failed")
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    assert report["rows"] == [] and len(report["failed_cells"]) == 1

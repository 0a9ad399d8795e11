import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.errors import BenchError
from bench.images import to_uint8
from bench.runner import RunOptions, Runner
from bench.suite import load_suite
from methods import METHODS
from methods.base import EditMethod, EditResult
from bench.store import RunStore
from shift_method import Shift
from reports.build import report_json, write_reports

SUITE = """name: {name}
backbones:
  generator: {{stylegan2: {generator}}}{losses}
judges:
  clip: {{clip: "{clip}"}}
sources: {{kind: generator, count: 6, seed: 1, batch_size: 4}}
edits:
  - {{name: smile, target: a smiling face}}
  - {{name: old, target: an old person, neutral: a person}}
methods:
{methods}
metrics: [clip_score, clip_direction, latency_apply_ms]
seeds: [0]
"""


def write_suite(tmp_path, world, methods="  - {name: source}", name="t", clip_loss=False):
    """A suite on the tiny world; `clip_loss` adds its CLIP as a loss network (methods that train need one)."""
    path = tmp_path / f"{name}.yaml"
    losses = f'\n  clip: {{clip: "{world["clip"]}"}}' if clip_loss else ""
    path.write_text(SUITE.format(name=name, methods=methods, losses=losses, **world))
    return path


class Brighten(EditMethod):
    """Test method: adds a constant to the pixels."""

    @classmethod
    def defaults(cls):
        return {"amount": 0.5, "fail_on": ""}

    def apply(self, backbones, sources, edit):
        if edit.name == self.params["fail_on"]:
            return EditResult(edited_images=sources.images * float("nan"))
        return EditResult(edited_images=(sources.images + self.params["amount"]).clamp(-1, 1))


@pytest.fixture
def brighten():
    METHODS.register("test_brighten", Brighten, replace=True)
    yield "test_brighten"
    METHODS._entries.pop("test_brighten", None)


def run(path, out, **options):
    return Runner(load_suite(path), path, RunOptions(out, **options)).run()


class CountingBrighten(Brighten):
    """Brighten that counts its applies and adds noise from the global RNG (so a warm-up that shifted the cells'
    random streams would change their images)."""

    calls: list[str] = []

    def apply(self, backbones, sources, edit):
        CountingBrighten.calls.append(edit.name)
        noise = 0.01 * torch.randn(sources.images.shape)
        return EditResult(edited_images=(sources.images + self.params["amount"] + noise).clamp(-1, 1))


def test_a_gpu_run_warms_each_variant_up_once_untimed_and_keeps_its_results(tmp_path, tiny_world):
    """On CUDA (`warm_up_apply`, forced here on the CPU) each variant's first group applies once more before its
    timed cells, and only once per variant: the images and scores equal a run without it (every cell seeds its
    own draws), and a CPU run neither warms up nor says so."""
    METHODS.register("test_counting", CountingBrighten, replace=True)
    try:
        path = write_suite(tmp_path, tiny_world, """  - {name: test_counting, variant: a}
  - {name: test_counting, variant: b, params: {amount: 0.2}}""")
        runs = {}
        for warm in (False, True):
            CountingBrighten.calls = []
            runner = Runner(load_suite(path), path, RunOptions(tmp_path / f"run-{warm}"))
            assert runner.warm_up_apply is False and runner.store.read_manifest()["apply_warmup"] is False
            runner.warm_up_apply = warm
            runner.run()
            runs[warm] = CountingBrighten.calls
        timed = 2 * 2 * 2  # variants × edits × source batches
        assert len(runs[False]) == timed and len(runs[True]) == timed + 2  # one warm-up per variant, first edit
        assert runs[True] == (["smile"] * 3 + ["old"] * 2) * 2  # per variant: warm-up + 2 batches, then 2 batches
        for name in ("a", "b"):
            for edit in ("smile", "old"):
                first, second = (sorted((tmp_path / f"run-{w}" / "images" / name / edit / "seed0").iterdir())
                                 for w in (False, True))
                assert [f.name for f in first] == [f.name for f in second] and first
                for a, b in zip(first, second):
                    assert a.read_bytes() == b.read_bytes()
    finally:
        METHODS._entries.pop("test_counting", None)


def test_runs_every_cell_and_scores_every_sample(tmp_path, tiny_world, brighten):
    path = write_suite(tmp_path, tiny_world, "  - {name: source}\n  - {name: test_brighten, variant: bright}")
    runner = Runner(load_suite(path), path, RunOptions(tmp_path / "run"))
    store = runner.run()
    cells = store.cells()
    assert len(cells) == 2 * 2 * (2 + 1)  # variants × edits × (2 source batches + the set cell)
    assert (cells["status"] == "ok").all()
    records = store.records()
    per_sample = records[records["sample"] >= 0]
    counts = per_sample.groupby(["variant", "edit", "metric"]).size()
    assert (counts == 6).all()
    wide = per_sample.pivot_table(index=["variant", "edit", "sample"], columns="metric", values="value")
    source = wide.loc["source"]
    assert (source["clip_gain"].abs() < 1e-6).all()  # an unedited source gains nothing
    assert "clip_direction" not in source or source["clip_direction"].isna().all()  # and has no direction
    bright = wide.loc["bright"]
    assert torch.allclose(torch.tensor(bright["clip_score_x100"].values),
                          100 * torch.tensor(bright["clip_score"].values).clamp(min=0), atol=1e-4)
    assert bright["clip_direction"].notna().all()
    folder = tmp_path / "run" / "images" / "bright" / "smile" / "seed0"
    assert sorted(p.name for p in folder.glob("*.png")) == [f"{i:06d}.png" for i in range(6)]
    # each PNG is its source's edit, quantised: the first image of the first batch, the last of the second
    sources = torch.cat([b.images for b in runner.sources])
    expected = to_uint8((sources + 0.5).clamp(-1, 1))
    for i in (0, 5):
        assert np.array_equal(np.asarray(Image.open(folder / f"{i:06d}.png")), expected[i])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "run" / "images" / "_source" / "000005.png")),
                          to_uint8(sources)[5])
    # the apply latency is one timing per batch: one value (ms per image) per apply cell, beside its peak memory
    costs = records[records["metric"].isin(["latency_apply_ms", "peak_mem_mb"])]
    assert (costs["sample"] == -1).all() and (costs["batch"] >= 0).all()
    assert (costs.groupby(["variant", "metric"]).size() == 2 * 2).all()  # 2 edits × 2 batches each
    assert (costs["value"] >= 0).all() and costs["value"].notna().all()


def test_failing_cell_is_recorded_and_the_run_goes_on(tmp_path, tiny_world, brighten):
    path = write_suite(tmp_path, tiny_world, "  - {name: test_brighten, params: {fail_on: old}}")
    store = run(path, tmp_path / "run")
    cells = store.cells().set_index("cell_id")
    failed = cells[cells["status"] == "error"]
    assert set(failed["edit"]) == {"old"} and len(failed) == 3  # both source batches of the edit, its set cell
    assert failed.query("batch >= 0")["error"].str.contains("non-finite").all()
    assert failed.query("batch == -1")["error"].str.startswith("skipped: 2 of 2 batch cell(s)").all()
    assert (cells[cells["edit"] == "smile"]["status"] == "ok").all()
    report = report_json(tmp_path / "run")
    assert len(report["failed_cells"]) == 3


class Flaky(EditMethod):
    """Test method: fails on the edit `old` while `Flaky.failing`."""
    failing = True

    def apply(self, backbones, sources, edit):
        if Flaky.failing and edit.name == "old":
            raise RuntimeError("out of memory (test)")
        return EditResult(edited_images=(sources.images + 0.5).clamp(-1, 1))


@pytest.fixture
def flaky():
    METHODS.register("test_flaky", Flaky, replace=True)
    Flaky.failing = True
    yield "test_flaky"
    METHODS._entries.pop("test_flaky", None)


def test_failed_cells_fail_the_run_show_in_every_report_and_are_retried_on_resume(tmp_path, tiny_world, flaky,
                                                                                   capsys):
    from bench.cli import main

    path = write_suite(tmp_path, tiny_world, "  - {name: test_flaky}")
    path.write_text(path.read_text().replace("latency_apply_ms]", "latency_apply_ms, diversity]"))  # a set metric
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out)]) == 1  # cells failed: not a complete result
    stderr = capsys.readouterr().err
    assert "3 of 6 cell(s) failed" in stderr and "--resume" in stderr and "report.md" in stderr
    assert "first: test_flaky|old|b0|s0: RuntimeError" in stderr  # a real error, not the set cell's "skipped"
    cells = RunStore(out).cells().set_index("cell_id")
    # the set cell of a group whose batches all failed holds no set metric or cost: an error that says why
    assert cells.loc["test_flaky|old|b-1|s0", "status"] == "error"
    assert cells.loc["test_flaky|old|b-1|s0", "error"].startswith("skipped: 2 of 2 batch cell(s) of this group failed")
    assert RunStore(out).records().query("edit == 'old'").empty
    markdown = (out / "report" / "report.md").read_text()
    assert "## Failed cells (3)" in markdown
    assert "- test_flaky|old|b0|s0: RuntimeError: out of memory (test)" in markdown
    latex = (out / "report" / "report.tex").read_text()
    assert r"\paragraph{Failed cells (3).}" in latex and r"\item test\_flaky\textbar{}old\textbar{}b0\textbar{}s0: RuntimeError" in latex
    html = (out / "report" / "index.html").read_text()
    assert html.count("Failed cells (3)") == 1  # the page's own list, not the Markdown's again
    # bench compare: each failed cell is a regression, even against a baseline written from this very run
    from bench.commands.compare import regressions
    report = report_json(out)
    found = regressions(report, report)
    assert len(found) == 3 and all(f.startswith("failed cell test_flaky|old|") for f in found)

    Flaky.failing = False  # the cause is gone: --resume runs the failed cells again and replaces their rows
    store = run(path, out, resume=True)
    cells = store.cells()
    assert len(cells) == 6 and cells["cell_id"].is_unique and (cells["status"] == "ok").all()
    records = store.records()
    assert not records.duplicated(["variant", "edit", "batch", "seed", "sample", "metric"]).any()
    assert (records.query("metric == 'clip_score'").groupby("edit").size() == 6).all()
    assert records.query("edit == 'old' and metric == 'diversity'")["value"].notna().all()
    assert report_json(out)["failed_cells"] == []
    assert "Failed cells" not in write_reports(out)["markdown_text"]


def test_image_folder_sources_are_the_photos_with_their_inversions(tmp_path, monkeypatch):
    """`sources: {kind: images}`: the batches hold the photos themselves (what pixel losses, metrics, the source
    baseline and the saved PNGs see) and their encoder inversions, inverted one suite batch at a time."""
    import bench.sources
    import methods.inversion
    from bench.sources import source_batches
    from zoo.synthface import render, sample_params

    folder = tmp_path / "photos"
    folder.mkdir()
    photos = to_uint8(render(sample_params(3, seed=11)))  # faces of the world's renderer: 64 px, no generator's
    for i, array in enumerate(photos):
        Image.fromarray(array).save(folder / f"face{i}.png")
    path = tmp_path / "photos.yaml"
    path.write_text(f"""name: photos
backbones: synthface
sources: {{kind: images, path: "{folder}", batch_size: 2}}
edits:
  - {{name: smile, target: a smiling face, neutral: a face}}
methods:
  - {{name: source}}
metrics: [identity]
""")
    progress = []
    runner = Runner(load_suite(path), path, RunOptions(tmp_path / "run"), on_sources=lambda *p: progress.append(p))
    assert progress == [(2, 3), (3, 3)]  # inverted batch by batch
    assert [len(b.images) for b in runner.sources] == [2, 1] and [len(b.latents) for b in runner.sources] == [2, 1]
    images = torch.cat([b.images for b in runner.sources])
    assert np.array_equal(to_uint8(images), photos)  # the photos, not their reconstruction
    encoder, generator = runner.losses["encoder"], runner.losses["generator"]
    with torch.no_grad():
        for batch in runner.sources:
            assert torch.allclose(batch.latents, encoder(batch.images), atol=1e-5)
        assert (generator(runner.sources[0].latents) - runner.sources[0].images).abs().max() > 0.1  # not the same
    store = runner.run()
    assert (store.cells()["status"] == "ok").all()
    for i in range(3):  # the saved sources and the source baseline's output are the photos, pixel for pixel
        for saved in (runner.images_dir / "_source", runner.images_dir / "source" / "smile" / "seed0"):
            assert np.array_equal(np.asarray(Image.open(saved / f"{i:06d}.png")), photos[i])
    identity = store.records().query("metric == 'identity'")["value"]
    assert len(identity) == 3 and np.allclose(identity, 1.0, atol=1e-4)

    # each batch's inversion is kept in the run's cache: a resumed run edits the same latents without inverting
    cache = tmp_path / "run" / "cache" / "sources"
    assert len(list(cache.glob("*.pt"))) == 2
    spec = runner.suite.sources

    def no_inversion(*args):
        raise AssertionError("inverted again")

    monkeypatch.setattr(bench.sources, "invert_images", no_inversion)
    again = source_batches(spec, runner.losses, "cpu", cache_dir=cache)
    assert all(torch.equal(a.latents, b.latents) for a, b in zip(again, runner.sources))
    monkeypatch.undo()

    # the folder's content is part of the resume check: a photo replaced between sessions is another run
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["sources_content"]
    Image.fromarray(photos[0]).save(folder / "face2.png")
    with pytest.raises(BenchError, match="sources_content"):
        Runner(load_suite(path), path, RunOptions(tmp_path / "run", resume=True))
    Image.fromarray(photos[2]).save(folder / "face2.png")

    # projection (inversion: optimization) optimises with gradients on, one batch at a time
    shapes = []
    project = methods.inversion.project

    def short_projection(generator, chunk, **kwargs):
        shapes.append(tuple(chunk.shape))
        return project(generator, chunk, steps=2, **kwargs)

    monkeypatch.setattr(methods.inversion, "project", short_projection)
    spec = spec.model_copy(update={"inversion": "optimization"})
    projected = source_batches(spec, runner.losses, "cpu", limit=3)
    assert shapes == [(2, 3, 64, 64), (1, 3, 64, 64)]
    assert [b.latents.shape for b in projected] == [(2, 10, 128), (1, 10, 128)]
    assert torch.equal(torch.cat([b.images for b in projected]), images)
    assert not any(b.latents.requires_grad for b in projected)


def test_output_directory_rules(tmp_path, tiny_world):
    path = write_suite(tmp_path, tiny_world)
    run(path, tmp_path / "run")
    with pytest.raises(BenchError, match="pass --resume"):
        run(path, tmp_path / "run")
    other = write_suite(tmp_path, tiny_world, name="other")
    with pytest.raises(BenchError, match="differs in suite, suite_hash"):
        run(other, tmp_path / "run", resume=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)  # latencies of one run come from one setting: resume on the same threads
    try:
        with pytest.raises(BenchError, match=f"torch_threads: stored {threads}, now {threads + 1}.*--threads"):
            run(path, tmp_path / "run", resume=True)
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(BenchError, match="--methods nope: not in the suite; valid: source"):
        run(path, tmp_path / "run2", methods=["nope"])


def test_reports(tmp_path, tiny_world, brighten):
    path = write_suite(tmp_path, tiny_world, "  - {name: source}\n  - {name: test_brighten, variant: bright}\n"
                                             "  - {name: test_brighten, variant: brighter, params: {amount: 0.9}}")
    run(path, tmp_path / "run")
    paths = write_reports(tmp_path / "run")
    text = paths["json"].read_text()
    assert "NaN" not in text  # the source's clip_direction is undefined: null, as strict JSON has it
    report = json.loads(text)
    assert report["suite"] == "t" and report["limit"] is None
    assert next(r for r in report["rows"] if r["variant"] == "source" and r["metric"] == "clip_direction")["mean"] \
        is None
    row = next(r for r in report["rows"] if r["variant"] == "bright" and r["metric"] == "clip_score")
    # 2 edits x 1 seed: the 6 sources (batches of 4 + 2) of an edit share one preparation, one cell
    assert set(row) == {"method", "variant", "metric", "mean", "ci95", "n", "n_cells"} and row["n"] == 12
    assert row["n_cells"] == 2
    assert row["ci95"][0] <= row["mean"] <= row["ci95"][1]
    markdown = paths["md"].read_text()
    assert "clip_score ↑" in markdown and "latency_apply_ms ↓" in markdown
    assert "## Ablation: test_brighten" in markdown  # two variants of one family get their own table
    latex = paths["latex"].read_text()
    assert r"\toprule" in latex and r"\bottomrule" in latex and r"$\pm$" in latex
    html = paths["html"].read_text()
    assert html.count("<table>") >= 2 and "data:image/png;base64," in html
    # the grid: a column per variant after the sources' own, a row per source, labels above and row labels left
    from reports.grids import SCALE
    grid = np.asarray(Image.open(tmp_path / "run" / "report" / "grid_smile.png").convert("RGB"))
    tile = 32 * SCALE
    top, left = grid.shape[0] - 6 * tile, grid.shape[1] - (1 + 3) * tile  # 6 sources; source column + 3 variants
    assert 0 < top < 3 * tile and 0 < left < tile and grid.shape[2] == 3
    bright = np.asarray(Image.open(tmp_path / "run" / "images" / "bright" / "smile" / "seed0" / "000002.png"))
    cell = grid[top + 2 * tile:top + 3 * tile, left + 2 * tile:left + 3 * tile]  # row 2, the bright column
    assert np.array_equal(cell, bright.repeat(SCALE, axis=0).repeat(SCALE, axis=1))
    assert cell.std() > 1 and not np.array_equal(cell, grid[top:top + tile, left + 2 * tile:left + 3 * tile])


def _compare(*args):
    return subprocess.run([sys.executable, "-m", "bench.cli", "compare", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_compare_passes_on_itself_and_catches_a_regression(tmp_path, tiny_world, brighten):
    path = write_suite(tmp_path, tiny_world, "  - {name: test_brighten, variant: bright}")
    run(path, tmp_path / "run")
    baseline = tmp_path / "baseline.json"
    assert _compare(tmp_path / "run", "--write-baseline", baseline).returncode == 0
    same = _compare(tmp_path / "run", "--baseline", baseline)
    assert same.returncode == 0, same.stderr
    data = json.loads(baseline.read_text())
    assert data["calibration_ms"] > 0  # the machine's speed on the reference workload, from the run's manifest
    for row in data["rows"]:
        if row["metric"] == "clip_score":
            row["mean"] += 0.05  # the baseline was better than this run by more than the 0.02 tolerance
    baseline.write_text(json.dumps(data))
    worse = _compare(tmp_path / "run", "--baseline", baseline)
    assert worse.returncode == 1
    assert "bright · clip_score" in worse.stderr and "worse by 0.05" in worse.stderr


def _quality_rows(run_dir):
    from reports.aggregate import metric_info
    return sorted((r["variant"], r["metric"], round(r["mean"], 10) if not math.isnan(r["mean"]) else None, r["n"])
                  for r in report_json(run_dir)["rows"] if metric_info(r["metric"]).kind == "quality")


def _cells_done(run_dir):
    """Cells in a run's store, read without creating anything (0 before the run made its tables)."""
    import sqlite3

    if not (run_dir / "results.sqlite").exists():
        return 0
    db = sqlite3.connect(run_dir / "results.sqlite", timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        db.close()


@pytest.mark.parametrize("kills", [1, pytest.param(2, marks=pytest.mark.slow)])  # 2: a resumed run killed too
def test_sigkill_and_resume_gives_the_uninterrupted_report(tmp_path, tiny_world, kills):
    import time

    from bench.store import RunStore

    path = write_suite(tmp_path, tiny_world)  # 12 sources in batches of 1: 2 edits × (12 + 1) = 26 cells
    path.write_text(path.read_text().replace("count: 6, seed: 1, batch_size: 4", "count: 12, seed: 1, batch_size: 1"))
    reference = tmp_path / "reference"
    run(path, reference)
    total = len(RunStore(reference).cells())
    assert total == 26
    interrupted = tmp_path / "interrupted"
    command = [sys.executable, "-m", "bench.cli", "run", str(path), "--out", str(interrupted),
               "--threads", str(torch.get_num_threads())]  # a resume must run on the same threads
    for attempt in range(kills):  # kill it as soon as it finished a cell (resuming after the first kill)
        before = _cells_done(interrupted)
        process = subprocess.Popen(command + (["--resume"] if attempt else []), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline and _cells_done(interrupted) == before:
            time.sleep(0.01)
        process.kill()
        returncode = process.wait()
        assert returncode == -9, f"the run ended (exit {returncode}) before it was killed"
        done = _cells_done(interrupted)
        assert before < done < total, (before, done, total)  # killed mid-run, with new cells and cells left
    store = run(path, interrupted, resume=True)
    cells = store.cells()
    assert len(cells) == total and cells["cell_id"].is_unique and (cells["status"] == "ok").all()
    assert _quality_rows(interrupted) == _quality_rows(reference)
    assert len(json.loads((interrupted / "manifest.json").read_text())["sessions"]) == kills + 1


class LearnedShift(Shift):
    """Test method: `prepare` learns a shift (counted), `apply` adds it."""
    prepared = 0

    @classmethod
    def defaults(cls):
        return {"amount": 0.25}

    def prepare(self, backbones, edit):
        LearnedShift.prepared += 1
        self.shift = torch.tensor(self.params["amount"] + torch.rand(()).item() * 1e-3)


def test_shared_prepare_cache_prepares_once_across_runs(tmp_path, tiny_world):
    METHODS.register("test_learned_shift", LearnedShift, replace=True)
    try:
        path = write_suite(tmp_path, tiny_world, methods="  - {name: test_learned_shift}")
        shared = tmp_path / "shared"
        LearnedShift.prepared = 0
        run(path, tmp_path / "first", prepare_cache=shared)
        assert LearnedShift.prepared == 2  # one per edit
        assert len(list(shared.glob("*.pt"))) == 2 and not (tmp_path / "first" / "cache").exists()
        run(path, tmp_path / "second", prepare_cache=shared)
        assert LearnedShift.prepared == 2  # both edits restored from the shared folder
        assert _quality_rows(tmp_path / "second") == _quality_rows(tmp_path / "first")
        prepare_s = [sorted((r["edit"], r["mean"]) for r in report_json(d)["by_edit"]
                            if r["metric"] == "latency_prepare_s") for d in (tmp_path / "first", tmp_path / "second")]
        assert prepare_s[0] == prepare_s[1] and prepare_s[0]  # the time measured when the state was made
        assert str(shared) in write_reports(tmp_path / "second")["markdown_text"]
        # the key follows what a state depends on: another device, seed, edit or parameter is another state
        runner = Runner(load_suite(path), path, RunOptions(tmp_path / "third", prepare_cache=shared))
        spec, (smile, old) = runner.variants[0], runner.suite.edits
        method = METHODS.get(spec.name)(**spec.params)
        key = runner.prepare_key(method, spec, smile, 0)
        assert (shared / f"{key}.pt").exists()
        other = {runner.prepare_key(method, spec, old, 0), runner.prepare_key(method, spec, smile, 1),
                 runner.prepare_key(METHODS.get(spec.name)(amount=0.3), spec, smile, 0)}
        runner.options.device = "cuda:0"
        other.add(runner.prepare_key(method, spec, smile, 0))
        assert key not in other and len(other) == 4
        # a damaged state in the shared folder (a cut-off write, a foreign file) is prepared again, not fatal
        (shared / f"{key}.pt").write_bytes((shared / f"{key}.pt").read_bytes()[:100])
        run(path, tmp_path / "fourth", prepare_cache=shared)
        assert LearnedShift.prepared == 3  # the damaged edit only
        assert _quality_rows(tmp_path / "fourth") == _quality_rows(tmp_path / "first")  # the same seeded state
        assert torch.load(shared / f"{key}.pt", weights_only=True)["state"]["shift"].item() > 0
    finally:
        METHODS._entries.pop("test_learned_shift", None)


class ShiftWithGain(LearnedShift):
    """Test method: `gain` is read by `apply` only; `table` names a file `prepare` would read."""
    APPLY_ONLY_PARAMS = frozenset({"gain"})

    @classmethod
    def defaults(cls):
        return {"amount": 0.25, "gain": 1.0, "table": None}

    def apply(self, backbones, sources, edit):
        return EditResult(edited_images=(sources.images + self.params["gain"] * self.shift).clamp(-1, 1))


def test_variants_that_differ_only_in_apply_only_params_share_one_preparation(tmp_path, tiny_world):
    METHODS.register("test_shift_gain", ShiftWithGain, replace=True)
    try:
        path = write_suite(tmp_path, tiny_world, methods="""  - {name: test_shift_gain, variant: g1}
  - {name: test_shift_gain, variant: g2, params: {gain: 2.0}}
  - {name: test_shift_gain, variant: a3, params: {amount: 0.3}}""")
        LearnedShift.prepared = 0
        runner = Runner(load_suite(path), path, RunOptions(tmp_path / "run"))
        g1, g2, a3 = runner.variants
        smile = runner.suite.edits[0]
        keys = [runner.prepare_key(METHODS.get(v.name)(**v.params), v, smile, 0) for v in (g1, g2, a3)]
        assert keys[0] == keys[1] != keys[2]  # the label and an apply-only parameter do not enter the key
        # a default set by hand is another key (a method may act on whether a parameter was set: the mapper's
        # id_lambda), whatever order the variants come in
        explicit = METHODS.get(g1.name)(amount=0.25)
        assert explicit.params == METHODS.get(g1.name)().params
        assert runner.prepare_key(explicit, g1, smile, 0) != keys[0]
        store = runner.run()
        assert LearnedShift.prepared == 2 * 2  # (g1 = g2, a3) × 2 edits, not 3 × 2
        assert len(list((tmp_path / "run" / "cache" / "prepare").glob("*.pt"))) == 4
        records = store.records()
        mean = records[records["metric"] == "clip_score"].groupby("variant")["value"].mean()
        assert mean["g1"] != mean["g2"]  # the shared state, applied with another gain
        # the preparation's random stream does not depend on the label either: g1's state is a fresh g2's
        alone = write_suite(tmp_path, tiny_world, name="alone",
                            methods="  - {name: test_shift_gain, variant: only_g2, params: {gain: 2.0}}")
        run(alone, tmp_path / "alone")
        assert _quality_rows(tmp_path / "alone") == [("only_g2", *row[1:]) for row in _quality_rows(tmp_path / "run")
                                                     if row[0] == "g2"]
    finally:
        METHODS._entries.pop("test_shift_gain", None)


class IndependentShiftWithGain(ShiftWithGain):
    independent_prepare = True


def test_workers_prepare_a_shared_state_once_and_skip_a_made_one(tmp_path, tiny_world, monkeypatch):
    import bench.runner

    METHODS.register("test_shift_gain_indep", IndependentShiftWithGain, replace=True)
    try:
        path = write_suite(tmp_path, tiny_world, methods="""  - {name: test_shift_gain_indep, variant: g1}
  - {name: test_shift_gain_indep, variant: g2, params: {gain: 2.0}}
  - {name: test_shift_gain_indep, variant: g3, params: {gain: 3.0}}""")
        runner = Runner(load_suite(path), path, RunOptions(tmp_path / "run", workers=2))
        calls = []
        monkeypatch.setattr(bench.runner, "prepare_in_workers", lambda jobs, *a, **k: calls.append(jobs))
        groups = [(spec, edit, 0) for spec in runner.variants for edit in runner.suite.edits]
        runner._prepare_in_workers(groups, None)
        assert len(calls) == 1 and len(calls[0]) == 2  # one job per shared state (2 edits), not 3 gains × 2 edits
        assert len({job.cached for job in calls[0]}) == 2
        # a made state is skipped (a damaged one is remade by the serial loop: test_shared_prepare_cache_...)
        made, missing = (job.cached for job in calls[0])
        made.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state": {"shift": torch.tensor(0.1)}, "seconds": 1.0, "peak_mem_mb": 0.0}, made)
        calls.clear()
        runner._prepare_in_workers(groups + [(runner.variants[0], runner.suite.edits[1], 1)], None)
        assert len(calls) == 1 and {job.cached for job in calls[0]} == {missing, runner._cached_state(
            METHODS.get(runner.variants[0].name)(**runner.variants[0].params), runner.variants[0],
            runner.suite.edits[1], 1)}
    finally:
        METHODS._entries.pop("test_shift_gain_indep", None)


def test_a_worker_loads_the_loss_networks_only_without_hashing_and_exits_cleanly_on_sigterm(tmp_path, tiny_world, monkeypatch):
    import signal

    import bench.backbone_set
    import bench.prepare

    path = write_suite(tmp_path, tiny_world, clip_loss=True)
    loaded = []
    load_spec = bench.backbone_set.load_spec
    monkeypatch.setattr(bench.backbone_set, "load_spec", lambda spec, device: loaded.append(spec) or load_spec(
        spec, device))

    def no_hash(spec):
        raise AssertionError(f"hashed {spec}")

    monkeypatch.setattr(bench.backbone_set, "spec_hash", no_hash)
    suite = load_suite(path)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    try:
        bench.prepare._start_worker(suite, "cpu", 1)
        installed = signal.getsignal(signal.SIGTERM)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        torch.set_num_threads(threads)
    # SIGTERM (the driver ending a worker) raises SystemExit, so atomic_save's cleanup removes its temp file
    with pytest.raises(SystemExit):
        installed(signal.SIGTERM, None)
    backbones = bench.prepare._WORKER.pop("backbones")
    assert set(backbones.roles) == {"generator", "clip"} and backbones.hashes == {}
    assert len(loaded) == 2  # the judges: block is not loaded
    with pytest.raises(AssertionError, match="hashed"):  # the driver's load still hashes
        bench.backbone_set.load_backbones(suite)


def test_the_suite_is_checked_once_on_every_path_to_a_runner(tmp_path, tiny_world, monkeypatch, capsys):
    import bench.runner
    import bench.suite_checks
    from bench.cli import main
    from bench.suite import Suite

    checks = []
    check = bench.suite_checks.check_registered_names

    def counted(suite, *args, **kwargs):
        checks.append(suite.name)
        return check(suite, *args, **kwargs)

    monkeypatch.setattr(bench.suite_checks, "check_registered_names", counted)  # load_suite's
    monkeypatch.setattr(bench.runner, "check_registered_names", counted)  # the Runner's
    path = write_suite(tmp_path, tiny_world)
    assert main(["run", str(path), "--out", str(tmp_path / "cli")]) == 0
    assert checks == ["t"]  # load_suite's check, not repeated by the Runner
    capsys.readouterr()
    # a suite built in code is checked by the Runner itself
    raw = Suite.model_validate({**load_suite(path, check_names=False).model_dump(),
                                "metrics": [{"name": "clip_score", "params": {"foo": 1}}]})
    with pytest.raises(BenchError, match="foo"):
        Runner(raw, path, RunOptions(tmp_path / "raw"))
    assert checks == ["t", "t"]


class ShiftWithOwnCache(ShiftWithGain):
    CACHE_LOCATION_PARAMS = frozenset({"table"})  # here: the method's own cache folder


def test_a_methods_own_cache_folder_enters_the_prepare_key_by_name(tmp_path, tiny_world):
    from methods.styleclip_global import StyleClipGlobal
    from methods.tedigan import TediganText2Latent

    assert StyleClipGlobal.CACHE_LOCATION_PARAMS == TediganText2Latent.CACHE_LOCATION_PARAMS == {"cache_dir"}
    METHODS.register("test_shift_gain", ShiftWithGain, replace=True)
    METHODS.register("test_own_cache", ShiftWithOwnCache, replace=True)
    try:
        folder = tmp_path / "folder"
        folder.mkdir()
        (folder / "a").write_text("1")
        path = write_suite(tmp_path, tiny_world, methods="  - {name: test_shift_gain}\n  - {name: test_own_cache}")
        keys = []
        for content in ("1", "2"):
            (folder / "a").write_text(content)
            runner = Runner(load_suite(path), path, RunOptions(tmp_path / f"run{content}"))
            keys.append([runner.prepare_key(METHODS.get(v.name)(table=str(folder)), v, runner.suite.edits[0], 0)
                         for v in runner.variants])
        assert keys[0][0] != keys[1][0]  # an input folder: by content
        assert keys[0][1] == keys[1][1]  # the method's own cache folder: by name
    finally:
        METHODS._entries.pop("test_shift_gain", None)
        METHODS._entries.pop("test_own_cache", None)


def test_prepare_key_follows_the_content_of_files_named_in_params_and_edits(tmp_path, tiny_world):
    from bench.suite import Edit

    METHODS.register("test_shift_gain", ShiftWithGain, replace=True)
    try:
        table = tmp_path / "table.pt"
        style = tmp_path / "style"
        style.mkdir()
        path = write_suite(tmp_path, tiny_world, methods=f"  - {{name: test_shift_gain, params: {{table: '{table}'}}}}")

        def key():  # a new run each time: one run reads each named file once
            runner = Runner(load_suite(path), path, RunOptions(tmp_path / "run"))
            runner.store.close()
            spec = runner.variants[0]
            edit = Edit(name="zombie", target="a zombie", target_images=str(style))
            return runner.prepare_key(METHODS.get(spec.name)(**spec.params), spec, edit, 0)

        table.write_bytes(b"latents v1")
        (style / "a.png").write_bytes(b"style v1")
        first = key()
        table.write_bytes(b"latents v2")  # new latents at the same path
        second = key()
        (style / "a.png").write_bytes(b"style v2")  # new style images in the same folder
        third = key()
        assert len({first, second, third}) == 3
        table.write_bytes(b"latents v1")
        (style / "a.png").write_bytes(b"style v1")
        assert key() == first
    finally:
        METHODS._entries.pop("test_shift_gain", None)


@pytest.mark.parametrize("case, expected", [
    ("unknown_method", "unknown method 'styleclip_nope'"),
    ("missing_checkpoint", "StyleGAN2 generator checkpoint not found"),
    ("malformed", "malformed YAML"),
    ("bad_workers", "--workers must be >= 1, got 0"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, tiny_world, case, expected):
    if case == "unknown_method":
        path = write_suite(tmp_path, tiny_world, "  - {name: styleclip_nope}")
    elif case == "missing_checkpoint":
        path = write_suite(tmp_path, {**tiny_world, "generator": str(tmp_path / "missing.pt")})
    elif case == "bad_workers":
        path = write_suite(tmp_path, tiny_world)
    else:
        path = tmp_path / "bad.yaml"
        path.write_text("name: [unclosed\n")
    extra = ["--workers", "0"] if case == "bad_workers" else []
    result = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(path), "--out", str(tmp_path / "o"),
                             *extra], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("bench run: error")]) == 1


def test_compare_cost_ratio_ignores_changes_below_the_floor():
    from bench.commands.compare import regressions

    def report(apply_ms, prepare_s):
        rows = [{"method": "m", "variant": "v", "metric": "latency_apply_ms", "mean": apply_ms, "ci95": [0, 0]},
                {"method": "m", "variant": "v", "metric": "latency_prepare_s", "mean": prepare_s, "ci95": [0, 0]}]
        return {"suite": "s", "rows": rows}

    base = report(0.01, 0.0001)
    assert regressions(report(0.05, 0.0009), base) == []  # ×5 and ×9, but far below the timer-noise floors
    found = regressions(report(300.0, 0.0001), report(100.0, 0.0001))
    assert len(found) == 1 and "v · latency_apply_ms" in found[0] and "×3" in found[0]
    custom = dict(report(0.01, 0.0001), tolerances={"metrics": {"latency_apply_ms": {"mode": "ratio", "value": 2.0}}})
    assert len(regressions(report(0.05, 0.0001), custom)) == 1  # a baseline may drop the floor


def test_compare_scales_latencies_by_the_machine_speed():
    from bench.commands.compare import machine_factor, regressions

    def report(apply_ms, calibration, peak_mb=150.0):
        rows = [{"method": "m", "variant": "v", "metric": "latency_apply_ms", "mean": apply_ms, "ci95": [0, 0]},
                {"method": "m", "variant": "v", "metric": "peak_mem_mb", "mean": peak_mb, "ci95": [0, 0]}]
        return {"suite": "s", "rows": rows, "calibration_ms": calibration}

    base = report(50.0, 10.0)
    assert machine_factor(report(1.0, 25.0), base) == 2.5
    assert regressions(report(105.0, 20.0), base) == []  # x2.1 on a machine twice as slow: x1.05 per unit of speed
    found = regressions(report(105.0, 10.0), base)  # the same x2.1 on an equally fast machine is a regression
    assert len(found) == 1 and "×2.1" in found[0] and "measured" not in found[0]
    found = regressions(report(315.0, 20.0), base)  # x6.3 measured, x3.15 per unit of speed
    assert len(found) == 1 and "157.5 (measured 315 on a machine ×2 as slow)" in found[0] and "×3.15" in found[0]
    assert len(regressions(report(105.0, None), base)) == 1  # without both calibrations: compared as measured
    # memory is not scaled: 400 MB against 150 MB is x2.7 whatever the machine's speed
    assert [f.split(":")[0] for f in regressions(report(50.0, 40.0, peak_mb=400.0), base)] == ["v · peak_mem_mb"]


def test_report_states_the_fid_sample_count():
    from reports.build import tables

    rows = [{"method": "m", "variant": "v", "metric": "fid", "mean": 12.5, "ci95": [11.0, 14.0], "n": 2},
            {"method": "m", "variant": "v", "metric": "fid_n", "mean": 16.0, "ci95": [16.0, 16.0], "n": 2}]
    report = {"suite": "s", "suite_hash": "h", "device": "cpu", "rows": rows, "notes": {}}
    text = tables(report, {"variants": [["m", "v"]]}, "md")
    assert "set of 16 edited images (fid_n)" in text and "12.50 ± 1.500" in text


def test_compare_skips_metrics_undefined_in_the_baseline():
    from bench.commands.compare import regressions

    base = {"suite": "s", "rows": [{"method": "source", "variant": "source", "metric": "clip_direction",
                                    "mean": float("nan"), "ci95": [float("nan")] * 2}]}
    run = {"suite": "s", "rows": [dict(base["rows"][0])]}
    assert regressions(run, base) == []


def test_per_edit_tables_follow_the_suite_order_and_show_the_seed_range():
    import pandas as pd

    from reports.build import by_edit, tables

    values = {("zombie", 0): [1.0, 1.0], ("zombie", 1): [0.0, 1.0], ("comic", 0): [0.0, 0.0], ("comic", 1): [0.0, 1.0]}
    records = pd.DataFrame([{"method": "nada", "variant": "nada", "edit": e, "batch": 0, "seed": s, "sample": i,
                             "metric": "attr_target", "value": v}
                            for (e, s), vs in values.items() for i, v in enumerate(vs)])
    rows = by_edit(records)
    zombie = next(r for r in rows if r["edit"] == "zombie")
    assert zombie["mean"] == pytest.approx(0.75) and zombie["seed_range"] == [0.5, 1.0] and zombie["n"] == 4
    comic = next(r for r in rows if r["edit"] == "comic")
    assert comic["seed_range"] == [0.0, 0.5]
    report = {"suite": "s", "suite_hash": "h", "device": "cpu", "notes": {}, "by_edit": rows,
              "rows": [{"method": "nada", "variant": "nada", "metric": "attr_target", "mean": 0.5,
                        "ci95": [0.2, 0.8], "n": 8}]}
    text = tables(report, {"variants": [["nada", "nada"]], "edits": ["zombie", "comic"]}, "md")
    section = text[text.index("## By edit: attr_target"):]
    assert "| method | variant | zombie ↑ | comic ↑ |" in section  # the suite's order, not alphabetical
    assert "0.750" in section and "[0.500, 1.000]" in section and "[0.000, 0.500]" in section
    latex = tables(report, {"variants": [["nada", "nada"]], "edits": ["zombie", "comic"]}, "latex")
    assert "attr\\_target by edit" in latex and "zombie" in latex
    one_seed = by_edit(records[records["seed"] == 0])
    assert all("seed_range" not in r for r in one_seed)


def test_workers_prepare_the_same_states_as_the_serial_run_and_failures_reach_the_store(tmp_path, tiny_world):
    path = write_suite(tmp_path, tiny_world, clip_loss=True, name="workers", methods=f"""  - {{name: source}}
  - {{name: styleclip_mapper, params: {{steps: 3, val_interval: 3, val_count: 2}}}}
  - {{name: styleclip_mapper, variant: broken, params: {{steps: 3, latents: "{tmp_path / 'bad-latents.pt'}"}}}}""")
    torch.save(torch.zeros(4, 7), tmp_path / "bad-latents.pt")  # a shape no generator takes: fails in prepare
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the serial run on one thread, as each worker runs
    try:
        serial = run(path, tmp_path / "serial")
        done = []
        parallel = Runner(load_suite(path), path, RunOptions(tmp_path / "parallel", workers=2)).run(
            on_prepared=lambda job, error, total: done.append((job.spec.label, job.edit.name, error, total)))
    finally:
        torch.set_num_threads(threads)
    # the pool ran the 4 mapper preparations (2 edits × 2 variants) and not the source's
    assert sorted((label, edit) for label, edit, _, _ in done) == sorted(
        (label, edit) for label in ("styleclip_mapper", "broken") for edit in ("smile", "old"))
    assert {total for *_, total in done} == {4}
    assert all((error is None) == (label == "styleclip_mapper") for label, _, error, _ in done)
    assert "bad-latents.pt have shape [4, 7]" in next(error for label, _, error, _ in done if label == "broken")
    # a worker's state is the serial run's, tensor for tensor (same group seed, one thread each)
    states = [{p.name: torch.load(p, weights_only=True)["state"] for p in (tmp_path / d / "cache" / "prepare").glob(
        "*.pt")} for d in ("serial", "parallel")]
    assert states[0].keys() == states[1].keys() and len(states[0]) == 2
    for name, state in states[0].items():
        for key, tensor in state["mapper"].items():
            assert torch.equal(tensor, states[1][name]["mapper"][key]), (name, key)
    assert _quality_rows(tmp_path / "parallel") == _quality_rows(tmp_path / "serial")
    # the preparations that failed in the workers are stored as errors for their groups (not prepared again)
    cells = parallel.cells()
    broken = cells[cells["variant"] == "broken"]
    assert len(broken) == 2 * 3 and (broken["status"] == "error").all()  # 2 edits × (2 batches + set cell)
    assert broken["error"].str.contains("bad-latents.pt").all()
    assert (cells[cells["variant"] != "broken"]["status"] == "ok").all()
    manifest = json.loads((tmp_path / "parallel" / "manifest.json").read_text())
    assert manifest["prepare_workers"] == 2
    assert "ran up to 2 at a time in processes of 1 thread(s)" in write_reports(tmp_path / "parallel")["markdown_text"]
    assert "at a time" not in write_reports(tmp_path / "serial")["markdown_text"]


HOLD_METHOD = '''
import os
import time
import uuid
from pathlib import Path

import torch

from shift_method import Shift


class Hold(Shift):
    """Test method: each preparation leaves a mark, and one of an edit named `slow*` lasts while the file `hold`
    exists in $HOLD_DIR."""
    independent_prepare = True

    def prepare(self, backbones, edit):
        folder = Path(os.environ["HOLD_DIR"])
        (folder / "marks" / f"{edit.name}.{uuid.uuid4().hex}").write_text("")
        deadline = time.monotonic() + 300
        while edit.name.startswith("slow") and (folder / "hold").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.shift = torch.tensor(0.1)
'''

HOLD_DRIVER = '''
import sys

from methods import METHODS

METHODS.register("test_hold", "hold_method:Hold", replace=True)  # top level: spawned workers import it too

if __name__ == "__main__":
    from bench.cli import main
    sys.exit(main())
'''


def test_ctrl_c_while_workers_prepare_stops_the_queue_and_resume_keeps_what_finished(tmp_path, tiny_world):
    """SIGINT to the process group (a terminal's Ctrl-C) during `--workers 2`: the queued preparations never
    start, no worker prints a traceback, the run exits 130, and a finished preparation is restored by --resume."""
    import os
    import signal
    import time

    (tmp_path / "hold_method.py").write_text(HOLD_METHOD)
    (tmp_path / "driver.py").write_text(HOLD_DRIVER)
    (tmp_path / "marks").mkdir()
    (tmp_path / "hold").write_text("")
    edits = ["fast"] + [f"slow{i}" for i in range(5)]  # six preparations for two workers
    path = write_suite(tmp_path, tiny_world, methods="  - {name: test_hold}")
    text = path.read_text()
    block = text[text.index("edits:"):text.index("methods:")]
    path.write_text(text.replace(block, "edits:\n" + "".join(f"  - {{name: {e}, target: a {e} face}}\n"
                                                             for e in edits)))
    env = {**os.environ, "HOLD_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parent),  # hold_method, shift_method
                                          os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, str(tmp_path / "driver.py"), "run", str(path), "--out", str(tmp_path / "run"),
               "--workers", "2", "--threads", "2"]

    def marks(edit=None):
        return [p for p in (tmp_path / "marks").iterdir() if edit is None or p.name.split(".")[0] == edit]

    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        cache = tmp_path / "run" / "cache" / "prepare"
        deadline = time.monotonic() + 240  # a guard against a hung test, not a measurement
        # the fast edit prepared and cached, and both workers busy with slow edits
        while process.poll() is None and time.monotonic() < deadline and not (
                len(marks()) >= 3 and len(list(cache.glob("*.pt"))) >= 1):
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()
        os.killpg(process.pid, signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # the queue still runs: let it end, so the marks tell what ran
            (tmp_path / "hold").unlink()
            _, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert len(marks()) < len(edits), sorted(p.name for p in marks())  # the queued preparations did not run
    assert len(marks()) <= 4  # the three seen, and at most one a worker had already taken from the queue
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr and "Exception in initializer" not in stderr
    assert "--resume" in stderr
    assert len(marks("fast")) == 1

    (tmp_path / "hold").unlink(missing_ok=True)
    resumed = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert len(marks("fast")) == 1  # restored from the cache, not prepared again
    assert all(len(marks(e)) >= 1 for e in edits)


class TrackedShift(Shift):
    """Test method: `prepare` and `apply` run a `bench.progress.track`ed loop."""

    def prepare(self, backbones, edit):
        from bench.progress import track
        self.shift = torch.tensor(sum(0.05 for _ in track(range(5), "fit")))


def test_a_methods_loops_report_under_the_variant_and_edit_being_prepared(tmp_path, tiny_world):
    from bench.progress import reporting

    METHODS.register("test_tracked_shift", TrackedShift, replace=True)
    try:
        path = write_suite(tmp_path, tiny_world, methods="  - {name: test_tracked_shift, variant: tracked}")
        calls = []
        with reporting(lambda *a: calls.append(a)):
            run(path, tmp_path / "run")
        ends = [c for c in calls if c[1] == c[2]]
        assert ends == [("preparing tracked · smile: fit", 5, 5), ("preparing tracked · old: fit", 5, 5)]
    finally:
        METHODS._entries.pop("test_tracked_shift", None)

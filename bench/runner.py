"""`bench run`: a suite → cells → results in the store.

A cell is (method variant, edit, source batch, seed). For each (variant, edit, seed) the method's `prepare` runs
once (or is restored from the on-disk cache keyed by method and the parameters `prepare` reads + backbone content
hashes + edit + seed + device, `Runner.prepare_key`: the run's own `<out>/cache/prepare`, or a folder shared by
runs, `--prepare-cache`; with `--workers N` the per-edit preparations run in N processes first, `bench/prepare.py`),
then `apply` runs per source batch; per-sample metrics score each batch and every row of the cell is written in one
transaction, with the batch's apply latency (per image) and peak memory once per cell. After a group's batches, a
*set cell* (batch -1) holds the set metrics (FID/KID, diversity) and the preparation cost, or an error when any
batch cell of its group failed. Cells already in the store without an error are skipped, so a killed run resumes
where it stopped (into a directory whose manifest matches, on the same device and threads) and runs its failed
cells again; a failing cell is stored with its error and the run goes on.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.backbone_set import BackboneSet, load_backbones
from bench.cachefile import content_hash, named_path, with_content_hashes
from bench.calibration import calibration_ms
from bench.errors import BenchError
from bench.images import read_png_folder, save_pngs, slug
from bench.prepare import PrepareJob, group_seed, method_family, prepare_cached, prepare_in_workers
from bench.progress import labelled
from bench.sources import source_batches
from bench.store import CellKey, RunStore
from bench.suite import Edit, MethodSpec, Suite
from bench.suite_checks import check_registered_names, metric_problem
from methods import METHODS
from methods.base import EditMethod, SourceBatch
from metrics import METRICS
from metrics.base import EditBatch, Metric, MetricOutput, ScoringContext
from metrics.cost import Stopwatch, device_name

SET_BATCH = -1  # the batch index of a (variant, edit, seed) group's set cell
# what a resumed run must share with the run in its directory: the same work, and latencies measured in one setting
MATCH_KEYS = ("suite", "suite_hash", "sources_content", "inputs_content", "backbone_hashes", "limit", "device",
              "torch_threads")
# what each session of a run records in the manifest's `sessions` history (the top level holds the latest): what
# may differ between sessions, so nothing of MATCH_KEYS
SESSION_KEYS = ("git_commit", "packages", "python", "calibration_ms", "prepare_cache", "prepare_workers",
                "prepare_worker_threads")
PACKAGES = ("torch", "open_clip_torch", "torchmetrics", "clean-fid", "lpips", "insightface", "numpy", "clipedit-bench")


@dataclass
class RunOptions:
    out_dir: Path
    methods: list[str] | None = None  # variant labels or method names to run (default: all)
    limit: int | None = None  # first N sources only
    device: str = "cpu"
    resume: bool = False
    # prepared states shared by runs (trained mappers, relevance statistics, adapted generators), so an ablation
    # pays a long preparation once; None: the run's own <out>/cache/prepare
    prepare_cache: Path | None = None
    # processes that run the preparations of per-edit-independent methods (mapper training, NADA) side by side,
    # each on its share of the threads (bench/prepare.py); 1: everything in this process
    workers: int = 1


def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def sources_content(suite: Suite) -> str | None:
    """The content hash of the latents file or image folder the sources read (None for generated sources, or a path
    that does not exist: loading the sources reports that), so a resume sees sources changed between sessions."""
    path = named_path(getattr(suite.sources, "path", None))
    return None if path is None else content_hash(path)


def inputs_content(suite: Suite, memo: dict[str, str] | None = None) -> dict[str, str] | None:
    """{path as written: content hash} of the files and folders named in the suite's method parameters (defaults
    included: the mapper's `latents`) and edits (`target_images`), None when none is named: what the preparations
    read besides the sources and backbones, so a resume sees such a file changed between sessions (its finished
    cells were made with the old one). Every variant of the suite counts, whatever `--methods` selects; a method's
    own cache folder (`CACHE_LOCATION_PARAMS`, an output that grows) does not. `memo`: the run's hashes of its
    input files, shared with its prepare keys, so both record the same content and each file is read once."""
    named: dict[str, str] = {}
    for spec in suite.methods:
        method = METHODS.get(spec.name)
        _collect_named(with_content_hashes({**method.defaults(), **spec.params},
                                           getattr(method, "CACHE_LOCATION_PARAMS", frozenset()), memo), named)
    for edit in suite.edits:
        _collect_named(with_content_hashes(edit.target_images, memo=memo), named)
    return named or None


def _collect_named(value: Any, into: dict[str, str]) -> None:
    """The {"path", "content"} entries `with_content_hashes` made in `value`, into {path: content}."""
    if isinstance(value, dict) and value.keys() == {"path", "content"}:
        into[value["path"]] = value["content"]
    elif isinstance(value, dict):
        for item in value.values():
            _collect_named(item, into)
    elif isinstance(value, list):
        for item in value:
            _collect_named(item, into)


def build_manifest(suite: Suite, suite_path: Path, losses: BackboneSet, judges: BackboneSet,
                   options: RunOptions, input_hashes: dict[str, str] | None = None) -> dict[str, Any]:
    return {"suite": suite.name, "suite_version": suite.version, "suite_path": str(suite_path),
            "suite_hash": suite.content_hash(), "sources_content": sources_content(suite),
            "inputs_content": inputs_content(suite, input_hashes),
            "backbone_hashes": {**losses.hashes, **judges.hashes},
            "limit": options.limit, "git_commit": _git_commit(), "packages": _versions(),
            "python": platform.python_version(), "device": device_name(options.device),
            "torch_threads": torch.get_num_threads(),
            # this machine's speed on a fixed workload: `bench compare` scales latencies by it (bench/calibration.py)
            "calibration_ms": calibration_ms(options.device),
            "prepare_cache": str(options.prepare_cache) if options.prepare_cache else None,
            "prepare_workers": options.workers,
            # each worker's torch threads: an equal share of this process's (bench/prepare.py)
            "prepare_worker_threads": max(1, torch.get_num_threads() // options.workers),
            # what the report's grids read: the first seed's images, a failed batch cell's sources
            "seeds": list(suite.seeds), "batch_size": suite.sources.batch_size}


def _selected(methods: list[MethodSpec], wanted: list[str] | None) -> list[MethodSpec]:
    if not wanted:
        return methods
    known = {m.label for m in methods} | {m.name for m in methods}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise BenchError(f"--methods {', '.join(unknown)}: not in the suite; valid: {', '.join(sorted(known))}")
    return [m for m in methods if m.label in wanted or m.name in wanted]


def build_metrics(suite: Suite, context: ScoringContext, checked: bool = False) -> list[Metric]:
    """One instance per producing metric: a listed output (`clip_gain`) brings in its producer (`clip_score`);
    costs are measured by the runner itself. `checked`: the suite's metric parameters were validated already
    (`check_registered_names`), else they are here."""
    params: dict[str, dict] = {}
    for spec in suite.metrics:
        problem = None if checked else metric_problem(spec.name, spec.params)
        if problem:  # a metric would fail with a TypeError traceback
            raise BenchError(f"metric {spec.name}: {problem}")
        target = METRICS.get(spec.name)
        producer = target.produced_by if isinstance(target, MetricOutput) else METRICS.canonical(spec.name)
        if producer != "runner":
            params.setdefault(producer, {}).update(spec.params)
    return [METRICS.get(name)(context, **kwargs) for name, kwargs in params.items()]


def _outputs(metric: Metric) -> dict[str, list[float]]:
    values = metric.compute()
    if not isinstance(values, dict):
        values = {metric.name: values}
    return {name: v.detach().cpu().reshape(-1).tolist() for name, v in values.items()}


class Runner:
    def __init__(self, suite: Suite, suite_path: Path, options: RunOptions,
                 on_sources: Callable[[int, int], Any] | None = None, names_checked: bool = False):
        """`on_sources(done, total)`: progress of an image folder's inversion, after each batch. `names_checked`:
        the suite came through `load_suite` with its name checks (`bench run`), which are not repeated."""
        self.suite, self.options = suite, options
        self.variants = _selected(suite.methods, options.methods)
        # a bad name, method parameter, metric parameter or backbone option fails here, before anything loads
        # (for a suite built in code or loaded without checks; `bench run` has checked it with file:line already)
        if not names_checked:
            check_registered_names(suite)
        self.losses, self.judges = load_backbones(suite, options.device)
        context = ScoringContext(judges=self.judges.roles, losses=self.losses.roles, device=options.device)
        self.metrics = build_metrics(suite, context, checked=True)  # check_registered_names ran, here or before
        self.store = RunStore(options.out_dir)
        # content hashes of files named in parameters and edits, read once: the manifest's and the prepare keys'
        self._input_hashes: dict[str, str] = {}
        self.manifest = build_manifest(suite, suite_path, self.losses, self.judges, options, self._input_hashes)
        self.manifest["variants"] = [[m.name, m.label] for m in suite.methods]
        self.manifest["edits"] = [e.name for e in suite.edits]  # the suite's order, for per-edit tables
        self.manifest["metric_notes"] = {m.name: "the judge scoring this metric is also a loss network in this run"
                                         for m in self.metrics if m.judge_is_loss_network()}
        # on a GPU, each variant's first apply runs once untimed before its timed cells: the first call of a kernel
        # pays one-off costs (lazy module loading, cuBLAS/cuDNN handles and algorithm choice) that are no part of
        # an edit's latency. On the CPU the first cell of a group times like the others (runs/faces-s22: batch 0
        # over batch 1 of the same group, median 0.97-1.06 per variant), so nothing is repeated there
        self.warm_up_apply = torch.device(options.device).type == "cuda"
        self._warmed: set[str] = set()
        self.manifest["apply_warmup"] = self.warm_up_apply
        self.store.open_run(self.manifest, options.resume, MATCH_KEYS, SESSION_KEYS)
        self.images_dir = Path(options.out_dir) / "images"
        self.cache_dir = Path(options.prepare_cache or Path(options.out_dir) / "cache" / "prepare")
        self.sources = source_batches(suite.sources, self.losses, options.device, options.limit,
                                      cache_dir=Path(options.out_dir) / "cache" / "sources", on_progress=on_sources)
        save_pngs(torch.cat([b.images for b in self.sources]), self.images_dir / "_source")

    # -- cells ----------------------------------------------------------------------------------------------
    def cells(self) -> list[CellKey]:
        return [CellKey(spec.name, spec.label, edit.name, batch, seed)
                for spec in self.variants for edit in self.suite.edits for seed in self.suite.seeds
                for batch in [*range(len(self.sources)), SET_BATCH]]

    def pending(self) -> list[CellKey]:
        done = self.store.completed_cells()
        return [cell for cell in self.cells() if cell.cell_id not in done]

    def run(self, on_cell: Callable[[CellKey], Any] | None = None,
            on_prepared: Callable[[PrepareJob, str | None, int], Any] | None = None) -> RunStore:
        by_group: dict[tuple[str, str, int], list[CellKey]] = {}
        for cell in self.pending():
            by_group.setdefault((cell.variant, cell.edit, cell.seed), []).append(cell)
        specs = {spec.label: spec for spec in self.variants}
        edits = {edit.name: edit for edit in self.suite.edits}
        groups = [(specs[variant], edits[edit_name], seed) for variant, edit_name, seed in by_group]
        # the preparations that failed in a worker, by state file: their groups record the error, not prepare again
        worker_errors = self._prepare_in_workers(groups, on_prepared) if self.options.workers > 1 else {}
        for (spec, edit, seed), cells in zip(groups, by_group.values()):
            self._run_group(spec, edit, seed, cells, on_cell, worker_errors)
        return self.store

    def _group_dir(self, variant: str, edit: str, seed: int) -> Path:
        return self.images_dir / slug(variant) / slug(edit) / f"seed{seed}"

    def _run_group(self, spec: MethodSpec, edit: Edit, seed: int, cells: list[CellKey], on_cell,
                   worker_errors: dict[Path, str] | None = None) -> None:
        method: EditMethod = METHODS.get(spec.name)(**spec.params)
        prepare_s, prepare_mem = float("nan"), float("nan")
        cached = self._cached_state(method, spec, edit, seed)
        prepare_error = (worker_errors or {}).get(cached)
        if prepare_error is None:
            try:
                with labelled(f"preparing {spec.label} · {edit.name}"):
                    prepare_s, prepare_mem = prepare_cached(method, method_family(spec.name), edit, seed,
                                                            self.losses, self.options.device, cached)
            except Exception as exc:  # recorded, the run goes on
                prepare_error = f"prepare: {_describe(exc)}"
        if not prepare_error:
            self._warm_up(method, spec, edit, cells)
        for cell in cells:
            if cell.batch == SET_BATCH:
                continue
            if prepare_error:
                self.store.record_cell(cell, [], error=prepare_error)
            else:
                with labelled(f"{spec.label} · {edit.name} · batch {cell.batch}"):
                    self._apply_cell(method, edit, cell)
            if on_cell:
                on_cell(cell)
        set_cell = next((c for c in cells if c.batch == SET_BATCH), None)
        if set_cell is not None:
            self._set_cell(set_cell, edit, prepare_s, prepare_mem, prepare_error)
            if on_cell:
                on_cell(set_cell)

    def prepare_key(self, method: EditMethod, spec: MethodSpec, edit: Edit, seed: int) -> str:
        """The prepare cache's key: what a prepared state depends on, so a state made on another device, or for
        other backbones (content hashes), parameters, edit or seed, is never restored. Files and folders named in
        the parameters (the mapper's `latents:`) or the edit (`target_images`) enter by content. Left out: the
        variant's label and the method's `APPLY_ONLY_PARAMS` (read by `apply` only), which the preparation's
        random stream does not depend on either (`prepare_cached`): variants that differ only there share a state,
        and a state is restored only where a fresh run would have made the same one. Which parameters the suite
        set (not only their values) enters too, and the method's `PREPARE_VERSION` (the code that made the state)."""
        apply_only = getattr(method, "APPLY_ONLY_PARAMS", frozenset())
        params = {k: v for k, v in method.params.items() if k not in apply_only}
        edit_fields = edit.model_dump(mode="json")
        edit_fields["target_images"] = with_content_hashes(edit_fields.get("target_images"), memo=self._input_hashes)
        # the method's PREPARE_VERSION (bumped when its prepare() changes the state it makes) enters from 2 on only,
        # so the states made before the key had it (version 1) keep their keys
        version = getattr(method, "PREPARE_VERSION", 1)
        versioned = {} if version == 1 else {"prepare_version": version}
        return hashlib.sha256(json.dumps({
            **versioned,
            "method": method_family(spec.name),
            # a method's own cache folder (`CACHE_LOCATION_PARAMS`) enters by name, not by its growing content
            "params": with_content_hashes(params, getattr(method, "CACHE_LOCATION_PARAMS", frozenset()),
                                          self._input_hashes),
            # which parameters the suite set explicitly: a method may act on that (the mapper's `id_lambda`), so a
            # default and the same value set by hand are two states
            "set": sorted(method.set_params - apply_only),
            "edit": edit_fields, "seed": seed, "backbones": self.losses.hashes, "device": self.options.device},
            sort_keys=True, default=str).encode()).hexdigest()[:20]

    def _cached_state(self, method: EditMethod, spec: MethodSpec, edit: Edit, seed: int) -> Path:
        return self.cache_dir / f"{self.prepare_key(method, spec, edit, seed)}.pt"

    def _prepare_in_workers(self, groups: list[tuple[MethodSpec, Edit, int]], on_prepared) -> dict[Path, str]:
        """The pending preparations of per-edit-independent methods, in `options.workers` processes (see
        `bench.prepare`); the serial loop then restores them from the cache. Returns the preparations that failed
        there, as {state file: the error to record}: every group of that state records it, as in a serial run."""
        jobs, seen = [], set()
        for spec, edit, seed in groups:
            method = METHODS.get(spec.name)(**spec.params)
            if not method.independent_prepare:
                continue
            cached = self._cached_state(method, spec, edit, seed)
            # variants that differ only in apply-only parameters share one state: one job makes it for all. A file
            # is taken as made without reading it (the serial loop reads it anyway, and remakes a damaged one)
            if cached in seen or cached.exists():
                continue
            seen.add(cached)
            jobs.append(PrepareJob(spec, edit, seed, cached))
        if len(jobs) < 2:
            return {}
        failed = prepare_in_workers(jobs, self.suite, self.options.device, min(self.options.workers, len(jobs)),
                                    self.manifest["prepare_worker_threads"], on_prepared)
        return {job.cached: f"prepare: {_describe(exc)}" for job, exc in failed or ()}

    def _warm_up(self, method: EditMethod, spec: MethodSpec, edit: Edit, cells: list[CellKey]) -> None:
        """One untimed apply on the group's first batch, once per variant, when `warm_up_apply` (see __init__).
        Its result is discarded; an error here is left to the timed cell, which records it."""
        batches = [cell.batch for cell in cells if cell.batch != SET_BATCH]
        if not self.warm_up_apply or spec.label in self._warmed or not batches:
            return
        self._warmed.add(spec.label)
        try:
            with labelled(f"{spec.label} · warm-up"):
                method.apply(self.losses, self.sources[batches[0]], edit)
        except Exception:  # the timed cell meets and records the same error
            pass

    def _apply_cell(self, method: EditMethod, edit: Edit, cell: CellKey) -> None:
        sources: SourceBatch = self.sources[cell.batch]
        first = cell.batch * self.suite.sources.batch_size
        try:
            torch.manual_seed(group_seed(cell.seed, cell.variant, edit.name, str(cell.batch)))
            with Stopwatch(self.options.device) as cost:
                result = method.apply(self.losses, sources, edit)
            edited = result.edited_images.detach()
            if not torch.isfinite(edited).all():
                raise FloatingPointError("the method produced non-finite pixels (NaN/inf)")
            edited = edited.clamp(-1, 1)
            # one timing of the whole batch: one value per cell (milliseconds per image), like its peak memory
            rows = [(SET_BATCH, "latency_apply_ms", 1000.0 * cost.seconds / len(edited)),
                    (SET_BATCH, "peak_mem_mb", cost.peak_mem_mb)]
            batch = EditBatch(sources.images, edited, edit.target, edit.neutral, dict(edit.expect))
            for metric in self.metrics:
                if metric.per_sample:
                    metric.reset()
                    metric.update(batch)
                    for name, values in _outputs(metric).items():
                        rows += [(first + i, name, v) for i, v in enumerate(values)]
            save_pngs(edited, self._group_dir(cell.variant, cell.edit, cell.seed), start=first)
            self.store.record_cell(cell, rows)
        except Exception as exc:  # NaN, out of memory, a broken network: recorded, the run goes on
            self.store.record_cell(cell, [], error=_describe(exc))

    def _set_cell(self, cell: CellKey, edit: Edit, prepare_s: float, prepare_mem: float,
                  prepare_error: str | None) -> None:
        if prepare_error:
            self.store.record_cell(cell, [], error=prepare_error)
            return
        batches = [CellKey(cell.method, cell.variant, cell.edit, b, cell.seed).cell_id
                   for b in range(len(self.sources))]
        done = self.store.completed_among(batches)
        failed = [cell_id for cell_id in batches if cell_id not in done]
        if failed:  # a set metric of part of the set, or of nothing, is not the group's: error, retried by --resume
            self.store.record_cell(cell, [], error=f"skipped: {len(failed)} of {len(batches)} batch cell(s) of this "
                                   f"group failed (first: {failed[0]}), and the set metrics and preparation cost "
                                   "are stored only for a group whose every batch succeeded")
            return
        rows = [(SET_BATCH, "latency_prepare_s", prepare_s), (SET_BATCH, "prepare_peak_mem_mb", prepare_mem)]
        set_metrics = [m for m in self.metrics if not m.per_sample]
        try:
            if set_metrics:
                indices, edited = read_png_folder(self._group_dir(cell.variant, cell.edit, cell.seed))
                _, sources = read_png_folder(self.images_dir / "_source", indices)
                batch = EditBatch(sources, edited, edit.target, edit.neutral, dict(edit.expect))
                for metric in set_metrics:
                    metric.reset()
                    metric.update(batch)
                    rows += [(SET_BATCH, name, values[0]) for name, values in _outputs(metric).items()]
            self.store.record_cell(cell, rows)
        except Exception as exc:
            self.store.record_cell(cell, [], error=_describe(exc))


def _describe(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}"[:500]

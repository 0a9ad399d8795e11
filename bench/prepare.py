"""A method's `prepare` phase through the on-disk cache, in the runner's process or in parallel worker processes.

`prepare_cached` is the one place a preparation runs: restore the state from the cache file, or seed the group's
generator, time `prepare`, and store its state atomically (`bench.cachefile`: an interrupted run loses nothing
finished, runs sharing the folder never write through one temp file, and a damaged file is made again).

`prepare_in_workers` runs the preparations of methods whose `prepare` is independent per edit (a mapper trained
per edit, a generator adapted per domain) in N worker processes before the runner's serial loop, which then
restores them from the cache, or records a worker's error for the groups it prepared (without preparing again).
On a CPU this is the faster way to use the cores: one training of these small networks gains little from a second
thread, two trainings side by side nearly twice (the faces suite's mapper on a 2-core Xeon,
`tools/prepare_workers_speed.py`: 16.8 steps/s on one thread, 20.8 on two, 36.6 in two processes of one thread).
Each worker loads the loss networks once and runs torch on its share of the driver's threads (the run
manifest's `prepare_worker_threads`). The pool is the standard library's; what it does not know (load once per
worker, split the threads, seed each group as the serial run does) is the few lines below.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.cachefile import atomic_save, load_or_none, remove_damaged
from metrics.cost import Stopwatch


def group_seed(seed: int, *parts: str) -> int:
    """A 32-bit seed for one (seed, variant, edit, phase) group, the same in every process."""
    digest = hashlib.sha256("|".join((str(seed), *parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def method_family(name: str) -> str:
    """The registered name a method's preparation is seeded by: an alias and its method share it."""
    from methods import METHODS

    return METHODS.canonical(name)


def load_cached(cached: Path, device: str = "cpu") -> dict | None:
    """The cached state file's contents, or None when it is missing or not a valid state (a damaged file is
    deleted): the one rule for whether a preparation must run."""
    blob = load_or_none(cached, map_location=device, weights_only=True)  # a damaged file is deleted: None
    if isinstance(blob, dict) and {"state", "seconds", "peak_mem_mb"} <= blob.keys():
        return blob
    return None


def prepare_cached(method: Any, family: str, edit: Any, seed: int, backbones: Any, device: str,
                   cached: Path) -> tuple[float, float]:
    """(seconds, peak MiB) of `method.prepare`, measured now or when the cached state was made.

    The preparation's random stream is seeded by (seed, method family, edit name), not by the variant's label or
    parameters: every variant of a family draws the same random numbers for an edit (a paired ablation: two variants
    differ by their parameters, not by their luck), so a variant that differs from another only in parameters that
    `prepare` does not read (`APPLY_ONLY_PARAMS`) makes the same state and shares it through the cache."""
    restored = _restore(method, cached, device)
    if restored is not None:
        return restored
    torch.manual_seed(group_seed(seed, family, edit.name, "prepare"))
    with Stopwatch(device) as cost:
        method.prepare(backbones, edit)
    state = method.prepared_state()
    if state is not None:
        atomic_save({"state": state, "seconds": cost.seconds, "peak_mem_mb": cost.peak_mem_mb}, cached)
    return cost.seconds, cost.peak_mem_mb


def _restore(method: Any, cached: Path, device: str) -> tuple[float, float] | None:
    """The cached state put into `method`, with its (seconds, peak MiB); None when there is none to use. A state the
    method refuses (`load_prepared_state` raises: a state of an older layout, keys of another network) is a cache
    miss like a damaged file: deleted, then prepared again, rather than an error for every run sharing the cache.
    `prepare` then sets what the refused load may have set half-way."""
    try:
        before = cached.stat()
    except FileNotFoundError:
        return None
    blob = load_cached(cached, device)
    if blob is None:
        return None
    try:
        method.load_prepared_state(blob["state"])
    except Exception as exc:
        if isinstance(exc, torch.cuda.OutOfMemoryError) or "CUDA" in str(exc):
            raise  # the state is fine; this device cannot hold it
        from zoo.checkpoints import error_detail

        remove_damaged(cached, f"{type(method).__name__}.load_prepared_state refused it: {error_detail(exc)}", before)
        return None
    return blob["seconds"], blob["peak_mem_mb"]


@dataclass(frozen=True)
class PrepareJob:
    spec: Any  # bench.suite.MethodSpec
    edit: Any  # bench.suite.Edit
    seed: int
    cached: Path


_WORKER: dict[str, Any] = {}  # a worker process's loss networks and device, loaded once by `_start_worker`


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _start_worker(suite: Any, device: str, threads: int) -> None:
    from bench.backbone_set import load_backbones

    # Ctrl-C reaches every process of the terminal's group: only the driver acts on it (it cancels what is queued
    # and ends the workers). A worker is spawned with SIGINT already ignored (`_sigint_ignored`), so this only
    # repeats it for a pool started another way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the driver ends running workers with SIGTERM (`_stop`), whose default action skips every cleanup: as an
    # exception instead, `atomic_save` removes its temp file and leaves no `.*.tmp` in the shared cache
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    torch.set_num_threads(threads)
    # the loss networks only (a preparation scores nothing), without content hashes (the driver recorded them)
    _WORKER["backbones"], _ = load_backbones(suite, device, hashes=False, with_judges=False)
    _WORKER["device"] = device


def _run_job(job: PrepareJob) -> None:
    from methods import METHODS

    method = METHODS.get(job.spec.name)(**job.spec.params)
    try:
        prepare_cached(method, method_family(job.spec.name), job.edit, job.seed, _WORKER["backbones"],
                       _WORKER["device"], job.cached)
    except SystemExit as exc:  # SIGTERM (`_exit_on_sigterm`): the cleanups ran on the way here; end the process
        # now, as the signal's default would: the pool's loop catches a job's exception and takes the next job
        os._exit(exc.code if isinstance(exc.code, int) else 1)


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored in this process for the block (main thread only): the worker processes spawned in it inherit
    the ignored disposition through exec, so a Ctrl-C while they start (importing torch, loading the networks)
    cannot interrupt them half-way (it printed "Exception in initializer" tracebacks)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel every queued preparation and end the running ones now; what finished is already in the cache."""
    # the standard library has no public way to end a pool's workers before Python 3.14 (terminate_workers);
    # take them before shutdown() forgets them
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()


def prepare_in_workers(jobs: list[PrepareJob], suite: Any, device: str, workers: int, threads: int,
                       on_done: Callable[[PrepareJob, str | None, int], Any] | None = None
                       ) -> list[tuple[PrepareJob, BaseException]]:
    """Run `jobs` in `workers` spawned processes of `threads` torch threads each, calling `on_done(job, error or
    None, len(jobs))` as each ends. Returns the jobs whose preparation raised, each with its exception: the caller
    records it as the error of every group that job prepares, without preparing it a second time (a deterministic
    failure would only repeat, at the cost of a second preparation). A job the pool could not run (the pool broke:
    a worker died, its start failed) is not among them and has no cached state: the serial pass prepares it.

    Interrupted (Ctrl-C, KeyboardInterrupt in this process; the workers ignore SIGINT), it cancels the queued
    preparations, terminates the running ones and re-raises: the preparations that finished are in the cache,
    where `--resume` restores them."""
    context = multiprocessing.get_context("spawn")  # fork would copy the driver's torch thread pools
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                               initargs=(suite, device, threads))
    failed: list[tuple[PrepareJob, BaseException]] = []
    try:
        with _sigint_ignored():  # the workers are spawned by the submits
            futures = {pool.submit(_run_job, job): job for job in jobs}
        for future in as_completed(futures):
            job, error = futures[future], None
            try:
                future.result()
            except BrokenProcessPool as exc:  # not the job's failure: left to the serial pass
                error = f"{type(exc).__name__}: {exc} (prepared again in this process)"
            except Exception as exc:  # a broken network or a bad parameter: the job's own error
                failed.append((job, exc))
                error = f"{type(exc).__name__}: {exc}"
            if on_done:
                on_done(job, error, len(jobs))
    except BaseException:  # KeyboardInterrupt, or an error of on_done: stop the workers, lose nothing finished
        _stop(pool)
        raise
    pool.shutdown(wait=True)
    return failed

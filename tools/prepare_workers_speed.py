"""How `bench run --workers` pays off on a CPU: one mapper training on 1 and on 2 threads, then two trainings side
by side in two processes of one thread each (what `--workers 2` does on 2 cores).

    python tools/prepare_workers_speed.py [--suite suites/faces.yaml] [--steps 200]

Trains the suite's first `styleclip_mapper` variant (its parameters, `--steps` steps) on its first edit, after a
10-step warm-up in each process, and prints ms per step and the throughput of each layout.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def train_seconds(suite_path: str, steps: int, threads: int, results=None) -> float:
    """Seconds for `steps` mapper training steps on `threads` torch threads (after a warm-up)."""
    from bench.backbone_set import load_backbones
    from bench.suite import load_suite
    from methods import METHODS

    torch.set_num_threads(threads)
    suite = load_suite(suite_path)
    spec = next(m for m in suite.methods if m.name == "styleclip_mapper")
    backbones, _ = load_backbones(suite, "cpu")
    edit = suite.edits[0]
    METHODS.get(spec.name)(**{**spec.params, "steps": 10}).prepare(backbones, edit)
    method = METHODS.get(spec.name)(**{**spec.params, "steps": steps})
    start = time.perf_counter()
    method.prepare(backbones, edit)
    seconds = time.perf_counter() - start
    if results is not None:
        results.put(seconds)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="suites/faces.yaml")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    for threads in (1, 2):
        seconds = train_seconds(args.suite, args.steps, threads)
        print(f"one process, {threads} thread(s): {seconds / args.steps * 1000:.1f} ms/step, "
              f"{args.steps / seconds:.1f} steps/s")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=train_seconds, args=(args.suite, args.steps, 1, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = [results.get() for _ in workers]
    print(f"two processes, 1 thread each: {', '.join(f'{s / args.steps * 1000:.1f}' for s in seconds)} ms/step, "
          f"{2 * args.steps / max(seconds):.1f} steps/s together")


if __name__ == "__main__":
    main()

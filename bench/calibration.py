"""The machine's speed on a fixed reference workload, recorded in each run's manifest (`calibration_ms`).

`bench compare` divides a run's latencies by (run calibration / baseline calibration) before applying the cost
tolerances, so a CI runner that is twice as slow as the machine that recorded the baseline does not read as a
twice-slower method, while code that slows down on the same machine still does. The workload is what the methods
spend their time on (3x3 convolutions forward and backward on a 64-pixel feature map, and a matmul), timed as the
median of repeats over at least `min_run_time` seconds, with CUDA synchronised. Written here because no library
gives one portable "speed of this machine for these networks" number (`torch.utils.benchmark.Timer` would time it,
but importing it loads `torch.utils.cpp_extension`, which prints a CUDA warning on every CPU-only run); it is a
ratio between two machines only, never a reported cost.

The runner measures it once the backbones are loaded, in the state the methods then run in: the same workload took
16-22 ms on 2 threads of a 2-core Intel Xeon in a fresh process and 11 ms right after loading the synthetic world,
so a run and its baseline must measure it at the same point (both do: `bench.runner.build_manifest`).
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F


def _workload(device: str):
    g = torch.Generator().manual_seed(0)  # its own generator: the global random stream stays untouched
    x = torch.randn(4, 32, 64, 64, generator=g).to(device).requires_grad_(True)
    w1 = torch.randn(32, 32, 3, 3, generator=g).mul_(0.06).to(device).requires_grad_(True)
    w2 = torch.randn(32, 32, 3, 3, generator=g).mul_(0.06).to(device).requires_grad_(True)
    a = torch.randn(256, 512, generator=g).to(device)
    b = torch.randn(512, 512, generator=g).to(device)

    def step() -> None:
        y = F.conv2d(F.leaky_relu(F.conv2d(x, w1, padding=1), 0.2), w2, padding=1)
        y.square().mean().backward()
        (a @ b).sum().item()
    return step


def calibration_ms(device: str = "cpu", min_run_time: float = 0.5) -> float:
    """Median milliseconds of one reference step on `device` with this process's torch threads (`.item()` in the step
    already waits for the device; the explicit synchronise keeps that true if the step changes)."""
    step = _workload(device)
    step()  # warm-up: allocator, kernels
    times: list[float] = []
    while sum(times) < min_run_time or len(times) < 5:
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3

"""Cost: latency and peak memory of a method's phases, recorded with the device name.

* Latency: CUDA events on a GPU (synchronised), `time.perf_counter` on a CPU. The runner times each phase once,
  since an edit is expensive and its time is what a user pays.
* Peak memory: on CUDA, `torch.cuda.max_memory_allocated` after a reset, minus what was allocated at the start.
  On a CPU, the same quantity for the C heap: the bytes malloc has handed out and not taken back (glibc's
  `mallinfo2`: in-use chunks of every arena plus mmapped blocks), sampled every 5 ms by a background thread, its peak
  during the phase minus its value at the start. PyTorch's CPU allocator keeps no statistics, and the process's
  resident set size is no substitute: malloc keeps freed pages, so a phase that reuses them showed ~0 MiB (the
  mapper's apply read 0.004 MiB) and only a process's first cells grew the RSS. No library we depend on samples the
  heap over an interval (ru_maxrss is a process-lifetime high-water mark), hence this small sampler. Where there is
  no glibc (macOS) it falls back to the RSS from /proc or ru_maxrss, with that caveat. A peak shorter than the
  sampling interval can be missed.

Registered names (all lower is better, one measurement per cell): `latency_prepare_s` (seconds per (method variant,
edit, seed)), `latency_apply_ms` (milliseconds per edited image: a cell's apply time over its image count),
`peak_mem_mb` (MiB over the apply phase of a cell), `prepare_peak_mem_mb` (MiB over the preparation phase).
On a GPU the runner applies each variant once, untimed, before its first timed cell, so that one-off kernel
costs (lazy loading, library handles, algorithm choice) stay out of `latency_apply_ms` and `peak_mem_mb`; on
the CPU it does not (a group's first cell timed like the others: `bench.runner.Runner.warm_up_apply`).

Reports pool `latency_apply_ms` per image, not per cell: each cell's value is weighted by its image count (batches
differ in size, e.g. a smaller last batch), so the mean is total apply time over total edited images; its 95% CI
is the t interval of the per-cell values around that mean (`reports.aggregate`). The other costs are one
measurement per cell, pooled unweighted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from metrics.base import MetricOutput

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def device_name(device: str | torch.device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({_cpu_model()}, {torch.get_num_threads()} threads)"


def _cpu_model() -> str:
    """The CPU's model name where Linux tells it (`/proc/cpuinfo`), else the architecture: runs on two 2-core
    machines of different speed must be told apart in their reports."""
    import platform
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {platform.machine()}"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except OSError:  # not Linux: fall back to the lifetime high-water mark
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _glibc_mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    function.restype, function.argtypes = _MallInfo2, []
    return function


_MALLINFO2 = _glibc_mallinfo2()


def _heap_bytes() -> int:
    """Bytes the C heap has handed out and not taken back (all arenas + mmapped blocks); the RSS without glibc."""
    if _MALLINFO2 is None:
        return _rss_bytes()
    info = _MALLINFO2()
    return info.uordblks + info.hblkhd


class _HeapSampler(threading.Thread):
    def __init__(self, interval_s: float = 0.005, read: Callable[[], int] = _heap_bytes):
        super().__init__(daemon=True)
        self.interval_s, self.read = interval_s, read
        self.start_bytes = self.peak = read()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, self.read())
            self._stop_event.wait(self.interval_s)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, self.read())
        return max(0, self.peak - self.start_bytes)


@dataclass
class Measurement:
    seconds: float = 0.0
    peak_mem_mb: float = 0.0


class Stopwatch:
    """``with Stopwatch(device) as m: ...`` → ``m.seconds``, ``m.peak_mem_mb`` of the block."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.result = Measurement()

    def __enter__(self) -> Measurement:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self._start_event = torch.cuda.Event(enable_timing=True)
            self._end_event = torch.cuda.Event(enable_timing=True)
            self._start_event.record()
        else:
            self._sampler = _HeapSampler()
            self._sampler.start()
            self._t0 = time.perf_counter()
        return self.result

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            self._end_event.record()
            torch.cuda.synchronize(self.device)
            self.result.seconds = self._start_event.elapsed_time(self._end_event) / 1000.0
            peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self.result.seconds = time.perf_counter() - self._t0
            peak = self._sampler.stop()
        self.result.peak_mem_mb = peak / 2**20


def _cost(name: str, unit: str, description: str, per_sample: bool = False) -> MetricOutput:
    return MetricOutput(name, False, description, produced_by="runner", per_sample=per_sample, unit=unit, kind="cost")


LATENCY_PREPARE = _cost("latency_prepare_s", "s", "preparation (training / preprocessing) per edit and seed")
LATENCY_APPLY = _cost("latency_apply_ms", "ms", "inference per edited image")  # one value per cell
PEAK_MEMORY = _cost("peak_mem_mb", "MiB", "peak memory over a cell's apply phase")
PREPARE_PEAK_MEMORY = _cost("prepare_peak_mem_mb", "MiB", "peak memory over the preparation phase")

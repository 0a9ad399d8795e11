"""Cost: latency and peak memory of a method's phases, recorded with the device name.

* Latency: CUDA events on a GPU (synchronised), `time.perf_counter` on a CPU. The runner times each phase once,
  since an edit is expensive and its time is what a user pays.
* Peak memory: on CUDA, `torch.cuda.max_memory_allocated` after a reset; on a CPU, the peak resident set size
  during the phase minus the RSS at its start, sampled by a background thread every few milliseconds from
  /proc/self/statm. No library we depend on samples RSS over an interval (ru_maxrss is a process-lifetime
  high-water mark and cannot give a per-phase delta), hence this small sampler.

Registered names (all lower is better, one measurement per cell): `latency_prepare_s` (seconds per (method variant,
edit, seed)), `latency_apply_ms` (milliseconds per edited image: a cell's apply time over its image count),
`peak_mem_mb` (MiB over the apply phase of a cell), `prepare_peak_mem_mb` (MiB over the preparation phase).

Reports pool `latency_apply_ms` per image, not per cell: each cell's value is weighted by its image count (batches
differ in size, e.g. a smaller last batch), so the mean is total apply time over total edited images; its 95% CI
is the t interval of the per-cell values around that mean (`reports.aggregate`). The other costs are one
measurement per cell, pooled unweighted.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

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


class _RssSampler(threading.Thread):
    def __init__(self, interval_s: float = 0.005):
        super().__init__(daemon=True)
        self.interval_s, self.start_rss, self.peak = interval_s, _rss_bytes(), 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop_event.wait(self.interval_s)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, _rss_bytes())
        return max(0, self.peak - self.start_rss)


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
            self._sampler = _RssSampler()
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

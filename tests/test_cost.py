"""The CPU peak-memory measurement: the heap's in-use bytes, not the resident set (which malloc's reuse hides)."""

import time

import pytest
import torch

from metrics import cost


def _phase(megabytes: int = 48, hold_s: float = 0.05) -> None:
    """What an apply batch does: many mid-sized tensors (below glibc's mmap threshold once it has grown), freed."""
    chunks = [torch.ones(256 * 1024) for _ in range(megabytes)]  # 1 MiB each
    time.sleep(hold_s)  # held across several sampling intervals
    del chunks


def _measure(read) -> float:
    sampler = cost._HeapSampler(interval_s=0.002, read=read)
    sampler.start()
    _phase()
    return sampler.stop() / 2**20


@pytest.mark.skipif(cost._MALLINFO2 is None, reason="needs glibc's mallinfo2")
def test_a_repeated_phase_reads_the_same_peak():
    readings = [_measure(cost._heap_bytes) for _ in range(3)]
    assert all(47.5 <= mib <= 52 for mib in readings), readings


@pytest.mark.skipif(cost._MALLINFO2 is None, reason="needs glibc's mallinfo2")
def test_the_resident_set_misses_a_repeated_phase():
    """Why the sampler reads the heap: once a phase has run, malloc keeps its freed pages for the next one, so the
    process's resident set barely grows in a repeat while the heap's in-use bytes do."""
    _phase()
    assert _measure(cost._rss_bytes) < 8 < 40 < _measure(cost._heap_bytes)


def test_stopwatch_reports_the_phase_not_what_was_allocated_before():
    kept = torch.ones(16 * 2**20 // 4)  # 16 MiB alive before and after the phase: not the phase's
    with cost.Stopwatch("cpu") as measured:
        _phase(megabytes=24)
    assert measured.seconds >= 0.05
    assert 23.5 <= measured.peak_mem_mb <= 28, measured.peak_mem_mb
    with cost.Stopwatch("cpu") as freeing:
        del kept
    assert freeing.peak_mem_mb < 0.01  # freeing is no peak (a few bytes of the sampler thread itself)

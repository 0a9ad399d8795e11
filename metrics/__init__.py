"""Metrics, one file per metric. Register a new metric with one line in `METRICS` below."""

from bench.registry import Registry

METRICS = Registry("metric")

"""Metrics, one file per metric. Register a new metric with one line in `METRICS` below."""

from bench.registry import Registry

METRICS = Registry("metric")
METRICS.register("latency_prepare_s", "metrics.cost:LATENCY_PREPARE", "preparation time per edit and seed (s)")
METRICS.register("latency_apply_ms", "metrics.cost:LATENCY_APPLY", "inference time per edited image (ms)")
METRICS.register("peak_mem_mb", "metrics.cost:PEAK_MEMORY", "peak memory of the apply phase (MiB)")
METRICS.register("prepare_peak_mem_mb", "metrics.cost:PREPARE_PEAK_MEMORY", "peak memory of the preparation (MiB)")
METRICS.register("clip_score", "metrics.clip_score:ClipScore", "cosine of edited image and target text (judge CLIP)")
METRICS.register("clip_score_x100", "metrics.clip_score:CLIP_SCORE_X100", "torchmetrics CLIPScore, 100·max(cos, 0)")
METRICS.register("clip_gain", "metrics.clip_score:CLIP_GAIN", "CLIP score gain of the edit over its source")
METRICS.register("clip_direction", "metrics.clip_direction:ClipDirection",
                 "directional CLIP similarity of image change and text change (judge CLIP)")

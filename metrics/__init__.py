"""Metrics, one file per metric. Register a new metric with one line in `METRICS` below."""

from bench.registry import Registry

METRICS = Registry("metric")
METRICS.register("latency_prepare_s", "metrics.cost:LATENCY_PREPARE", "preparation time per edit and seed (s)")
METRICS.register("latency_apply_ms", "metrics.cost:LATENCY_APPLY", "inference time per edited image (ms)")
METRICS.register("peak_mem_mb", "metrics.cost:PEAK_MEMORY", "peak memory of the apply phase (MiB)")
METRICS.register("prepare_peak_mem_mb", "metrics.cost:PREPARE_PEAK_MEMORY", "peak memory of the preparation (MiB)")
METRICS.register("clip_score", "metrics.clip_score:ClipScore", "cosine of edited image and target text (judge CLIP)")
METRICS.register("clip_score_x100", "metrics.clip_score:CLIP_SCORE_X100",
                 "100·max(cos, 0) per image (torchmetrics CLIPScore's scale; its compute() clamps the mean)")
METRICS.register("clip_gain", "metrics.clip_score:CLIP_GAIN", "CLIP score gain of the edit over its source")
METRICS.register("clip_direction", "metrics.clip_direction:ClipDirection",
                 "directional CLIP similarity of image change and text change (judge CLIP)")
METRICS.register("identity", "metrics.identity:Identity", "cosine of source and edited face embeddings (identity judge)")
METRICS.register("lpips", "metrics.lpips:Lpips", "LPIPS (lpips package, alex/vgg) between source and edit")
METRICS.register("lpips_synthface", "metrics.lpips:LpipsSynthface",
                 "LPIPS-style unweighted distance on the synthetic attribute judge's features (not LPIPS-alex)")
METRICS.register("fid", "metrics.fid:Fid", "FID of the edited set vs a reference (judge CLIP or clean-fid Inception)")
METRICS.register("fid_n", "metrics.fid:FID_N", "number of edited images in the FID set")
METRICS.register("kid", "metrics.fid:Kid", "KID of the edited set vs a reference (judge CLIP or clean-fid Inception)")
METRICS.register("kid_n", "metrics.fid:KID_N", "number of edited images in the KID set")
METRICS.register("diversity", "metrics.diversity:Diversity", "mean pairwise distance within the edited set")
METRICS.register("diversity_ratio", "metrics.diversity:DIVERSITY_RATIO", "diversity(edited) / diversity(sources)")
METRICS.register("attr_target", "metrics.attributes:AttrTarget", "share of the edit's expected attributes the judge reads")
METRICS.register("attr_preserved", "metrics.attributes:ATTR_PRESERVED",
                 "share of non-target attributes the judge reads unchanged")

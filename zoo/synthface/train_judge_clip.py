"""Trainer of the synthetic face world's judge CLIP (`python -m zoo.synthface.train judge_clip`).

The same trainer, data and objective as the main CLIP (`train_clip`), with another seed (so other
initial weights and another data stream) and another width (`clip_configs/synthface-judge-clip.json`: 160
instead of 128). The judge CLIP only *scores* edits (CLIP score of a result, independent of the CLIP a method
optimised against); no method uses it as a loss. Load it with `train_clip.load("judge_clip")`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import train_clip, training

NAME = "judge_clip"
DEFAULTS: dict[str, Any] = {**train_clip.DEFAULTS, "model": "synthface-judge-clip", "seed": 1, "steps": 800,
                           "p_attribute_from": 249, "p_hard_batch": 0.0}
SUMMARY = train_clip.SUMMARY.replace("`synthface-clip`", "`synthface-judge-clip`, width 160") + """
The judge CLIP: another seed and width than the main CLIP; used only to score edits, never as a loss."""


def build(config: dict[str, Any]) -> training.Trainable:
    return train_clip.build(config, name=NAME)


def export(trainable: training.Trainable, weights_dir: Path = training.WEIGHTS_DIR) -> Path:
    return train_clip.export(trainable, weights_dir=weights_dir)


def load(device: str = "cpu", weights_dir: Path | str | None = None):
    return train_clip.load(NAME, device=device, weights_dir=weights_dir)


def gates(device: str = "cpu", **kwargs) -> list[dict[str, Any]]:
    return train_clip.gates(device=device, name=NAME, **kwargs)

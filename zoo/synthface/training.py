"""Shared machinery for the synthetic world's trainers: resumable checkpoints, the step loop, weight export.

Every trainer (`zoo/synthface/train_*.py`) exposes `build(config) -> Trainable` and the loop here does the rest:

* the whole training state (model, optimizer, step, RNG states) is saved atomically every `checkpoint_every` steps
  and on SIGINT/SIGTERM to `runs/train/<name>/last.pt` (not committed), and a rerun resumes from it;
* `torch.set_num_threads(1)` by default: trainings run in the background beside everything else on 2 cores;
* `device`: the model (and the modules in `extra_state`) train there; the data are still drawn and rendered on
  the CPU (the same stream on every device) and each step moves them to `device_of(model)`; the loop moves the
  model back to the CPU before it returns, so export and gates run on the CPU;
* finished weights are exported to `zoo/synthface/weights/<name>.safetensors` (committed) with a JSON sidecar of
  the config, and the trainer's gates go into the model card `zoo/synthface/cards/<name>.md`.
"""

from __future__ import annotations

import json
import os
import platform
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

SYNTHFACE_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = SYNTHFACE_DIR / "weights"
CARDS_DIR = SYNTHFACE_DIR / "cards"
DEFAULT_RUN_DIR = Path("runs") / "train"


@dataclass
class Trainable:
    """What a trainer hands to the loop."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: Callable[[int], dict[str, Any]]  # one step at the given step index → scalars to log (floats or 0-d tensors)
    config: dict[str, Any]
    extra_state: dict[str, Any] = field(default_factory=dict)  # e.g. an EMA copy, saved with the checkpoint


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def save_checkpoint(path: Path, trainable: Trainable, step: int, elapsed_s: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": trainable.model.state_dict(), "optimizer": trainable.optimizer.state_dict(),
                "extra": {k: v.state_dict() if hasattr(v, "state_dict") else v
                          for k, v in trainable.extra_state.items()},
                "step": step, "elapsed_s": elapsed_s, "rng": _rng_state(), "config": trainable.config}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, trainable: Trainable) -> tuple[int, float]:
    state = torch.load(path, map_location="cpu", weights_only=False)  # our own file, holds RNG/numpy state
    trainable.model.load_state_dict(state["model"])
    trainable.optimizer.load_state_dict(state["optimizer"])
    for key, value in state["extra"].items():
        target = trainable.extra_state.get(key)
        if hasattr(target, "load_state_dict"):
            target.load_state_dict(value)
        else:
            trainable.extra_state[key] = value
    _set_rng_state(state["rng"])
    return state["step"], state["elapsed_s"]


def device_of(module: nn.Module) -> torch.device:
    """Where a module's parameters live (a step moves its CPU-made batch there)."""
    return next(module.parameters()).device


def move(trainable: Trainable, device: str | torch.device) -> None:
    """The model and every module of `extra_state` (EMA copies, training-only heads) to `device`."""
    trainable.model.to(device)
    for value in trainable.extra_state.values():
        if isinstance(value, nn.Module):
            value.to(device)


def run_training(trainable: Trainable, steps: int, run_dir: Path = DEFAULT_RUN_DIR, checkpoint_every: int = 200,
                 log_every: int = 50, threads: int = 1, device: str = "cpu") -> dict[str, Any]:
    """Run (or resume) `steps` optimisation steps on `device`; returns {"start", "steps", "elapsed_s", "last",
    "finished"}: the step it resumed from, the step reached, the run's total time and the last scalars. The model
    is back on the CPU afterwards."""
    torch.set_num_threads(threads)
    cudnn_benchmark = torch.backends.cudnn.benchmark
    if torch.device(device).type == "cuda":
        # every step has the same shapes: let cuDNN time its kernels once and keep the fastest (the generator's
        # GPU legs of 2026-11-27 ran without this at ~0.85 TFLOP/s, cards/generator.md; its effect is unmeasured)
        torch.backends.cudnn.benchmark = True
    move(trainable, device)  # before the checkpoint: the optimizer state follows its parameters' device
    ckpt = run_dir / trainable.name / "last.pt"
    log_path = run_dir / trainable.name / "log.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start, elapsed = (load_checkpoint(ckpt, trainable) if ckpt.exists() else (0, 0.0))
    stop = {"requested": False}

    def request_stop(signum, frame):  # finish the current step, checkpoint, exit
        stop["requested"] = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    last: dict[str, float] = {}
    t0 = time.perf_counter()
    # the steady rate: timed from the end of the first fifth of the steps (a GPU run's first steps pay for cuDNN's
    # kernel search and one-off work such as the generator's mapping regression; tools/gpu_train_world.sh sizes its
    # runs by this rate)
    warm = start + max(1, (steps - start) // 5)
    t_warm = None
    step = start
    try:
        trainable.model.train()
        bar = tqdm(range(start, steps), initial=start, total=steps, desc=trainable.name, mininterval=5)
        for step in bar:
            last = trainable.step(step)  # scalars may be tensors: read only when logged, so a GPU never waits
            if step + 1 == warm:
                if torch.device(device).type == "cuda":
                    torch.cuda.synchronize()
                t_warm = time.perf_counter()
            if (step + 1) % log_every == 0 or step + 1 == steps:
                last = {k: float(v) for k, v in last.items()}
                bar.set_postfix({k: f"{v:.4g}" for k, v in last.items()})
                with open(log_path, "a") as handle:
                    handle.write(json.dumps({"step": step + 1, **last}) + "\n")
            if (step + 1) % checkpoint_every == 0 or stop["requested"]:
                save_checkpoint(ckpt, trainable, step + 1, elapsed + time.perf_counter() - t0)
            if stop["requested"]:
                break
        else:
            step = steps - 1
        done = step + 1
        save_checkpoint(ckpt, trainable, done, elapsed + time.perf_counter() - t0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        torch.backends.cudnn.benchmark = cudnn_benchmark
        move(trainable, "cpu")
    trainable.model.eval()
    now = time.perf_counter()
    steady = (now - t_warm) / (done - warm) if t_warm is not None and done > warm else None
    return {"start": start, "steps": done, "elapsed_s": elapsed + now - t0, "steady_s_per_step": steady,
            "last": {k: float(v) for k, v in last.items()}, "finished": done >= steps}


def export_weights(name: str, model: nn.Module | dict[str, torch.Tensor], config: dict[str, Any],
                   weights_dir: Path = WEIGHTS_DIR, dtype: torch.dtype | None = None) -> Path:
    """Write `<name>.safetensors` (optionally cast, e.g. to float16 to keep the repo small) and `<name>.json`.
    `model` is a module or an already prepared state dict (e.g. with a pruned embedding)."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    source = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    state = {k: (v.detach().to(dtype) if dtype is not None and v.is_floating_point() else v.detach()).contiguous()
             for k, v in source.items()}
    path = weights_dir / f"{name}.safetensors"
    save_file(state, str(path))
    (weights_dir / f"{name}.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path


def load_weights(name: str, weights_dir: Path = WEIGHTS_DIR) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The exported state dict (cast back to float32) and its config."""
    state = load_file(str(weights_dir / f"{name}.safetensors"))
    config = json.loads((weights_dir / f"{name}.json").read_text())
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, config


def check_names(setting: str, names, valid) -> None:
    """A ValueError naming the unknown entries of a trainer setting (a list or a dict's keys) and the valid ones."""
    valid = list(valid)
    unknown = sorted(set(names) - set(valid))
    if unknown:
        raise ValueError(f"{setting}: unknown name(s) {unknown}; valid: {', '.join(valid)}")


def share_count(setting: str, fraction: float, n: int) -> int:
    """How many of a batch's n items a trainer's share setting (a fraction in [0, 1]) covers: round(fraction * n);
    a ValueError naming the setting otherwise."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"{setting} must be in [0, 1], got {fraction}")
    return round(fraction * n)


RENDER_DEVICES = ("cpu", "model")


def render_device(config: dict[str, Any], model_device: torch.device) -> torch.device:
    """Where a trainer renders its batches: its `render_device` setting, "cpu" (the default: the same bits on any
    machine) or "model" (on the model's device, sparing the CPU cores; floats may differ from the CPU's in the last
    bits). On the H100 leg of 2026-11-27 the generator ran 7.1 steps/s of 256 with "model", 6.5 with "cpu" on 16
    cores (cards/generator.md)."""
    choice = config.get("render_device", "cpu")
    if choice not in RENDER_DEVICES:
        raise ValueError(f"render_device: unknown value {choice!r}; valid: {', '.join(RENDER_DEVICES)}")
    return torch.device("cpu") if choice == "cpu" else model_device


def init_dir(init_from: str | None) -> Path | None:
    """Where a trainer's `init_from` points: None (train from scratch), "weights" (the committed
    `WEIGHTS_DIR`) or any weights folder with the network's export."""
    if not init_from:
        return None
    return WEIGHTS_DIR if init_from == "weights" else Path(init_from)


def hardware(device: str = "cpu") -> str:
    """The card's hardware line: CPU, core count, torch build, threads, and the GPU's name when one trained."""
    line = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} thread(s)"
    if torch.device(device).type == "cuda":
        line += f", trained on {torch.cuda.get_device_name(torch.device(device))}"
    return line


def write_model_card(name: str, summary: str, facts: dict[str, Any], gates: list[dict[str, Any]] | None = None,
                     cards_dir: Path = CARDS_DIR) -> Path:
    """A short Markdown model card: what was trained on what, how long, on which machine, and its gates.

    The summary, facts and gates are rewritten; every other `## ` section of an existing card (training history,
    legs, diagnostics, per-domain tables) is kept after them, so a resumed leg does not erase the card's record."""
    cards_dir.mkdir(parents=True, exist_ok=True)
    path = cards_dir / f"{name}.md"
    kept = [s for s in _card_sections(path.read_text())[1:] if not s.startswith("## Gates")] if path.is_file() else []
    lines = [f"# {name}", "", summary.strip(), "", "| fact | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in facts.items()]
    if gates:
        lines += ["", "## Gates", "", "| gate | value | threshold | passed |", "|---|---|---|---|"]
        lines += [f"| {g['name']} | {g['value']:.4f} | {g['threshold']} | {g['passed']} |" for g in gates]
    text = "\n".join(lines) + "\n"
    for section in kept:
        text += "\n" + section.rstrip("\n") + "\n"
    path.write_text(text)
    return path


def _card_sections(text: str) -> list[str]:
    """[the part before the first `## ` heading, then each `## ` section with its heading]."""
    parts = ("\n" + text).split("\n## ")
    return [parts[0].lstrip("\n")] + ["## " + p for p in parts[1:]]


def step_generator(seed: int, step: int) -> torch.Generator:
    """The RNG for one step's data, derived from (seed, step): the data stream does not depend on resume points."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)

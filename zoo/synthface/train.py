"""`python -m zoo.synthface.train NETWORK`: train one synthetic-world network (resumable), export its weights,
evaluate its gates and write its model card.

Each trainer module (`zoo/synthface/train_<network>.py`) defines:
    DEFAULTS: dict                         the documented config (seed, steps, widths, lr, ...)
    SUMMARY: str                           one paragraph for the model card (data, objective)
    build(config) -> training.Trainable
    export(trainable) -> Path              writes zoo/synthface/weights/<name>.safetensors (+ .json)
    gates(device="cpu") -> list[dict]      evaluates the exported weights: [{name, value, threshold, passed}]

A step draws its batch on the CPU and moves it to `training.device_of(model)`, so `--device cuda` trains the same
data stream on a GPU (the loop moves the model there and back; export and gates run on the CPU).
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
from pathlib import Path

import torch

from zoo.synthface import training

TRAINERS = {  # network → trainer module; add a network with one line here and one train_<network>.py file
    "clip": "zoo.synthface.train_clip",
    "judge_clip": "zoo.synthface.train_judge_clip",
    "identity": "zoo.synthface.train_identity",
    "attributes": "zoo.synthface.train_attributes",
    "generator": "zoo.synthface.train_generator",
    "encoder": "zoo.synthface.train_encoder",
}


def _device_available(device: str) -> bool:
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError):
        return False
    return True


def card_facts(args: argparse.Namespace, argv: list[str] | None, config: dict, result: dict) -> dict[str, str]:
    """The model card's facts: the command as typed and the config; a run resumed from a checkpoint labels them
    as its last leg (the card's hand-written history section records the earlier legs)."""
    command = shlex.join(["python", "-m", "zoo.synthface.train", *(sys.argv[1:] if argv is None else argv)])
    leg = f" (last leg: steps {result['start']}-{result['steps']}; earlier legs in the history below)" \
        if result.get("start") else ""
    return {f"command{leg}": command, "config" + (" (last leg)" if leg else ""): json.dumps(config, sort_keys=True),
            "steps": result["steps"], "wall time (s)": f"{result['elapsed_s']:.0f}",
            "hardware": training.hardware(args.device)}


def export_checkpoint(network: str, run_dir: Path, out: Path,
                      committed: Path = training.WEIGHTS_DIR) -> int:
    """Export the checkpoint `run_dir/<network>/last.pt` (any step, finished or not) into the weights folder `out`,
    beside copies of the other committed networks' files, so that a candidate can be judged in place of the
    committed one (`tools/guidance_check.py --weights out`, `tools/gate_draws.py --weights out`, a suite's
    `backbones: {set: {synthface: out}}`) without touching `committed`. The network is built from the config the
    checkpoint holds, not from the command line. Returns the checkpoint's step."""
    import shutil

    from bench.errors import CheckpointError

    trainer = importlib.import_module(TRAINERS[network])
    ckpt = Path(run_dir) / network / "last.pt"
    if not ckpt.is_file():
        raise CheckpointError(f"no checkpoint {ckpt}: train with `python -m zoo.synthface.train {network} "
                              f"--run-dir {run_dir} ...` first")
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)  # our own file (RNG state, config)
    # the checkpoint replaces every weight (and the RNG state) that init_from or a seed would set
    trainable = trainer.build(dict(saved["config"], init_from=None))
    step, _ = training.load_checkpoint(ckpt, trainable)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for path in Path(committed).iterdir():
        if path.is_file() and not path.name.startswith(f"{network}."):
            shutil.copy2(path, out / path.name)
    trainer.export(trainable, out)
    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.synthface.train", description=__doc__.split("\n")[0])
    parser.add_argument("network", choices=sorted(TRAINERS))
    parser.add_argument("--steps", type=int, help="total steps (default: the trainer's documented value)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON", help="override config entries")
    parser.add_argument("--run-dir", type=Path, default=training.DEFAULT_RUN_DIR)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (rendering the data; the model on cpu)")
    parser.add_argument("--device", default="cpu", help="where the model trains: cpu, cuda, cuda:1, ... "
                        "(the data are rendered on the CPU unless --set render_device='\"model\"')")
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--no-export", action="store_true", help="train only (e.g. a CI smoke run)")
    parser.add_argument("--export-checkpoint", type=Path, metavar="DIR",
                        help="train nothing: export the --run-dir checkpoint (its own config, any step) into DIR "
                             "beside copies of the other committed networks, for checks with --weights DIR")
    args = parser.parse_args(argv)
    if args.export_checkpoint is not None:
        step = export_checkpoint(args.network, args.run_dir, args.export_checkpoint)
        print(f"exported {args.network} at step {step} to {args.export_checkpoint}")
        return 0

    trainer = importlib.import_module(TRAINERS[args.network])
    config = dict(trainer.DEFAULTS)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in config:
            parser.error(f"unknown config key {key!r} for {args.network}; valid: {', '.join(sorted(config))}")
        config[key] = json.loads(value)
    if args.steps is not None:
        config["steps"] = args.steps
    if args.device != "cpu" and not _device_available(args.device):
        parser.error(f"--device {args.device!r} is not available here; valid: cpu"
                     + (", cuda" if torch.cuda.is_available() else "") + " (see torch.cuda.is_available())")
    training.seed_everything(config["seed"])
    trainable = trainer.build(config)
    result = training.run_training(trainable, config["steps"], args.run_dir, args.checkpoint_every,
                                   threads=args.threads, device=args.device)
    print(json.dumps({"network": args.network, **{k: v for k, v in result.items() if k != "last"},
                      "last": result["last"]}))
    if args.no_export or not result["finished"]:
        return 0
    trainer.export(trainable)
    gate_results = trainer.gates()
    training.write_model_card(trainable.name, trainer.SUMMARY, card_facts(args, argv, config, result), gate_results)
    print(json.dumps({"gates": gate_results}, indent=2))
    return 0 if all(g["passed"] for g in gate_results) else 1


if __name__ == "__main__":
    sys.exit(main())

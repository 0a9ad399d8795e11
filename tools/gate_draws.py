"""Do the embedded world's gates hold on other draws than their own fixed ones?

`bench zoo eval synthface` computes every gate on one fixed set of held-out renders, samples or pairs per network.
A gate that passes there by a thousandth can fail on the next draw, and a weight change that passes only on the fixed
set is selection, not quality (cards/attributes.md and cards/identity.md give the cases that prompted this). This
tool recomputes the thresholded gates of the attribute judge, the generator, the identity network and both CLIPs on
`--draws` further draws (new renders, z, test pairs or zero-shot renders; the identity threshold stays calibrated on
its own pairs) and prints, per gate, the value on its own draw, the values on the others and the lowest.

    python tools/gate_draws.py --draws 3 --threads 2          # about 5 minutes on 2 CPU cores
    python tools/gate_draws.py --networks attributes identity --json

A generator coverage gate is the lowest class's ratio on each draw, so the class can differ between draws. Exit
code 0 when every gate passes on every draw, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.synthface import (train_attributes, train_clip, train_generator, train_identity,  # noqa: E402
                           train_judge_clip, training)
from zoo.synthface.zero_shot import HELDOUT_SEED  # noqa: E402

# network -> (gates function, keyword arguments of draw k; k = 0 is the gate's own draw)
DRAWS: dict[str, tuple[Callable[..., list[dict]], Callable[[int], dict]]] = {
    "attributes": (train_attributes.gates,
                   lambda k: {"photo_seed": train_attributes.EVAL_PHOTO_SEED + 100 * k,
                              "domains_seed": train_attributes.EVAL_DOMAINS_SEED + 100 * k}),
    "generator": (train_generator.gates,
                  lambda k: {"seed": train_generator.EVAL_COVERAGE_SEED if k == 0 else k}),
    "identity": (train_identity.gates, lambda k: {"test_seed": train_identity.EVAL_TEST_SEED + k}),
    "clip": (train_clip.gates, lambda k: {"seed": None if k == 0 else HELDOUT_SEED + k}),
    "judge_clip": (train_judge_clip.gates, lambda k: {"seed": None if k == 0 else HELDOUT_SEED + k}),
}


def thresholded(gates: list[dict]) -> list[dict]:
    return [g for g in gates if g["threshold"] != "info"]


def passes(value: float, threshold) -> bool:
    """`threshold` as the gates write it: a number (>=) or a string like ">= 0.95"."""
    limit = float(str(threshold).split()[-1])
    return value >= limit


def gate_draws(networks: list[str], draws: int, weights_dir: Path = training.WEIGHTS_DIR) -> list[dict]:
    """One row per thresholded gate: name, threshold, values (own draw first), lowest, passed on every draw."""
    rows = []
    for net in networks:
        gates_of, kwargs_of = DRAWS[net]
        runs = [thresholded(gates_of(weights_dir=weights_dir, **kwargs_of(k))) for k in range(draws + 1)]
        for i, own in enumerate(runs[0]):
            values = [float(run[i]["value"]) for run in runs]
            rows.append({"network": net, "name": own["name"], "threshold": own["threshold"], "values": values,
                         "lowest": min(values), "passed": all(passes(v, own["threshold"]) for v in values)})
    return rows


def markdown(rows: list[dict]) -> str:
    draws = len(rows[0]["values"]) - 1 if rows else 0
    lines = ["| network | gate | threshold | own draw | " + " | ".join(f"draw {k}" for k in range(1, draws + 1))
             + " | lowest | passed |", "|---|---|---|---|" + "---|" * draws + "---|---|"]
    for r in rows:
        lines.append(f"| {r['network']} | {r['name']} | {r['threshold']} | "
                     + " | ".join(f"{v:.4f}" for v in r["values"]) + f" | {r['lowest']:.4f} | {r['passed']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(DRAWS), choices=list(DRAWS), metavar="NETWORK",
                        help=f"any of {', '.join(DRAWS)} (default: all)")
    parser.add_argument("--draws", type=int, default=3, help="further draws besides each gate's own (default 3)")
    parser.add_argument("--weights", type=Path, default=training.WEIGHTS_DIR, help="a folder of the world's weights")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.draws < 1:
        parser.error(f"--draws must be at least 1, got {args.draws}")
    torch.set_num_threads(args.threads)
    rows = gate_draws(args.networks, args.draws, args.weights)
    print(json.dumps({"gates": rows}, indent=1) if args.json else markdown(rows))
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""`bench zoo eval synthface [--json]`: recompute the synthetic world's gates from the committed weights.

Prints ``{"gates": [{"name", "value", "threshold", "passed"}, ...]}`` (one entry per attribute and network) with
--json, a table otherwise; exit code 0 only when every gate passes. A network whose weights are missing is a
failing gate of its own.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math

from bench.errors import UnknownNameError

WORLDS = ("synthface",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["eval"], help="eval: recompute the gates of a trained world")
    parser.add_argument("world", help=f"one of: {', '.join(WORLDS)}")
    parser.add_argument("--json", action="store_true", help="print the gates as JSON")
    parser.add_argument("--only", nargs="+", metavar="NETWORK", help="evaluate only these networks")
    parser.add_argument("--device", default="cpu",
                        help="where the networks run for the gates: cpu, cuda or cuda:N (default cpu)")


def synthface_gates(only: list[str] | None = None, device: str = "cpu") -> list[dict]:
    from zoo.synthface.backbones import WEIGHTS_DIR
    from zoo.synthface.train import TRAINERS

    gates = []
    for network, module_name in TRAINERS.items():
        if only and network not in only:
            continue
        if not (WEIGHTS_DIR / f"{network}.safetensors").is_file():  # trainers export <network>.safetensors
            gates.append({"name": f"{network}.weights_present", "value": 0.0, "threshold": 1.0, "passed": False})
            continue
        gates.extend(importlib.import_module(module_name).gates(device=device))
    return gates


def run(args: argparse.Namespace) -> int:
    from bench.commands import checked_device
    from zoo.synthface.train import TRAINERS

    if args.world not in WORLDS:
        raise UnknownNameError("world", args.world, list(WORLDS))
    for network in args.only or []:  # an unknown name would evaluate nothing: an empty table and exit 1
        if network not in TRAINERS:
            raise UnknownNameError("network", network, list(TRAINERS))
    checked_device(args.device)
    gates = synthface_gates(args.only, args.device)
    for gate in gates:  # JSON has no NaN: an undefined value fails its gate and prints as null
        if gate["value"] is None or (isinstance(gate["value"], float) and math.isnan(gate["value"])):
            gate["value"], gate["passed"] = None, False
    if args.json:
        print(json.dumps({"gates": gates}, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{args.world} gates")
        for column in ("gate", "value", "threshold", "passed"):
            table.add_column(column)
        for gate in gates:
            value = "–" if gate["value"] is None else f"{gate['value']:.4f}"
            table.add_row(gate["name"], value, str(gate["threshold"]),
                          "[green]yes[/green]" if gate["passed"] else "[red]no[/red]")
        Console(width=120).print(table)
    return 0 if gates and all(g["passed"] for g in gates) else 1

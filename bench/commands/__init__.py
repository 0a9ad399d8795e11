"""One module per `bench` subcommand (`add_arguments(parser)`, `run(args) -> int`), and the checks they share."""

from __future__ import annotations

DEVICE_FORMS = "cpu, cuda, cuda:N"


def checked_device(value: str, flag: str = "--device") -> str:
    """`value` when this machine can run on it (cpu, or a CUDA device it has); a one-line BenchError naming the
    value and the valid forms otherwise, before anything loads (a bad name was a RuntimeError traceback, a CUDA
    device on a machine without one "Found no NVIDIA driver" deep in the first network's load)."""
    import torch

    from bench.errors import BenchError

    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise BenchError(f"{flag} {value!r} is not a device; valid: {DEVICE_FORMS}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"{flag} {value}: CUDA is not available on this machine; use {flag} cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise BenchError(f"{flag} {value}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif device.type != "cpu":
        raise BenchError(f"{flag} {value!r}: the harness runs on {DEVICE_FORMS}, not {device.type}")
    return value

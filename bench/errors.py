"""User-facing errors.

Anything the user can fix (a bad name, a malformed suite, a missing checkpoint) raises a `BenchError`. The CLI
prints its message on one line and exits with code 2, without a traceback; everything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class BenchError(Exception):
    """An error caused by the user's input; printed as one line, exit code 2."""

    exit_code = 2


class UnknownNameError(BenchError, KeyError):
    """A name that is not in a registry (method, metric, backbone, suite...)."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        choices = ", ".join(self.valid) if self.valid else "(none registered)"
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {choices}")

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return self.args[0]


class CheckpointError(BenchError):
    """A checkpoint that is missing, unreadable or in the wrong format."""

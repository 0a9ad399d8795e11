"""The results store of one run directory: SQLite (WAL) + a manifest + PNGs.

* One transaction per cell: a cell's rows land all together or not at all, so a run killed at any point loses at
  most the cell in flight, and `--resume` reruns exactly the cells that are not in the store.
* A failed cell is stored too (status "error" with its message), so the run goes on and the report shows it; it
  does not count as completed, so `--resume` runs it again (its row is replaced in one transaction).
* The manifest (suite hash, git commit, package versions, device, backbone content hashes) is written atomically
  (`bench.cachefile`); resuming is allowed only into a directory whose manifest matches (for `bench run`: suite,
  the content of its input files, backbones, limit, device and torch threads, so latencies of one run come from one
  setting), and each session (git commit, start time, calibration) is kept in `manifest["sessions"]`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.cachefile import write_json_atomic  # noqa: F401  (re-exported: the store's manifest writer)
from bench.errors import BenchError

SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    cell_id TEXT PRIMARY KEY,
    method TEXT NOT NULL, variant TEXT NOT NULL, edit TEXT NOT NULL,
    batch INTEGER NOT NULL, seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error TEXT,
    finished_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    cell_id TEXT NOT NULL REFERENCES cells(cell_id),
    sample INTEGER NOT NULL,           -- index of the source within the run; -1 for set-level metrics
    metric TEXT NOT NULL,
    value REAL,                        -- NULL (never the string 'nan') when a value is undefined
    PRIMARY KEY (cell_id, sample, metric)
);
"""


@dataclass(frozen=True)
class CellKey:
    """One unit of work: a method variant applied to one edit, one batch of sources, one seed."""

    method: str
    variant: str
    edit: str
    batch: int
    seed: int

    @property
    def cell_id(self) -> str:
        return f"{self.variant}|{self.edit}|b{self.batch}|s{self.seed}"


class RunStore:
    """The store of one run directory."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.run_dir / "results.sqlite"
        self.manifest_path = self.run_dir / "manifest.json"
        self._db = sqlite3.connect(self.db_path, isolation_level=None)  # explicit transactions below
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    # -- manifest -----------------------------------------------------------------------------------------
    def read_manifest(self) -> dict | None:
        if not self.manifest_path.exists():
            return None
        return json.loads(self.manifest_path.read_text())

    def open_run(self, manifest: dict, resume: bool, match_keys: Iterable[str],
                 session_keys: Iterable[str] = ()) -> None:
        """Start or resume a run. Resuming (or reusing a non-empty directory) needs a manifest that matches in
        `match_keys`. The manifest's top level describes the latest session; `manifest["sessions"]` keeps every
        session's `session_keys` values (git commit, calibration, ...) with its start time and the number of cells
        done before it, so a resumed run's earlier sessions are not lost (a cell's `finished_at` tells its session).
        A directory whose run recorded no cell yet (stopped while loading or preparing) takes any new run."""
        previous = self.read_manifest()
        sessions: list[dict] = []
        session_keys = tuple(session_keys)
        done = self.completed_cells()
        recorded = self.recorded_cells()
        differing = [k for k in match_keys if previous.get(k) != manifest.get(k)] if previous is not None else []
        if differing and not recorded:
            previous = None  # a run stopped before its first cell: nothing to mix, this one starts afresh here
        if previous is not None:
            if differing:
                details = "; ".join(_difference(k, previous.get(k), manifest.get(k)) for k in differing)
                raise BenchError(
                    f"{self.run_dir} holds a run whose manifest differs in {', '.join(differing)} ({details}); "
                    "its results cannot be mixed with this session's: resume it with the same suite, backbones, "
                    "--limit, --device and --threads" + _input_hint(differing) + ", or use another --out directory "
                    "(or delete this one)")
            if not resume and recorded:
                raise BenchError(f"{self.run_dir} already holds results of this suite; pass --resume to continue "
                                 "it, or choose another --out directory")
            sessions = list(previous.get("sessions") or
                            [{"started_at": None, **{k: previous.get(k) for k in session_keys}}])  # an older manifest
        sessions.append({"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "started_at_unix": time.time(),
                         "cells_done_before": len(done), **{k: manifest.get(k) for k in session_keys}})
        write_json_atomic(self.manifest_path, {**manifest, "sessions": sessions})

    # -- cells --------------------------------------------------------------------------------------------
    def completed_cells(self) -> set[str]:
        """The cells that finished without an error: a resumed run skips these and runs the failed ones again."""
        return {row[0] for row in self._db.execute("SELECT cell_id FROM cells WHERE status = 'ok'")}

    def completed_among(self, cell_ids: Iterable[str]) -> set[str]:
        """The cells of `cell_ids` that finished without an error (one group's, without reading the whole store)."""
        ids = list(cell_ids)
        if not ids:
            return set()
        marks = ", ".join("?" * len(ids))
        return {row[0] for row in self._db.execute(
            f"SELECT cell_id FROM cells WHERE status = 'ok' AND cell_id IN ({marks})", ids)}

    def recorded_cells(self) -> set[str]:
        """Every cell in the store, failed ones included."""
        return {row[0] for row in self._db.execute("SELECT cell_id FROM cells")}

    def record_cell(self, key: CellKey, rows: Iterable[tuple[int, str, float | None]],
                    error: str | None = None) -> None:
        """Write a cell and all its (sample, metric, value) rows in one transaction."""
        rows = [(key.cell_id, int(sample), metric, _finite_or_none(value)) for sample, metric, value in rows]
        with self._transaction():
            self._db.execute("DELETE FROM records WHERE cell_id = ?", (key.cell_id,))
            self._db.execute("DELETE FROM cells WHERE cell_id = ?", (key.cell_id,))
            self._db.execute(
                "INSERT INTO cells (cell_id, method, variant, edit, batch, seed, status, error, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key.cell_id, key.method, key.variant, key.edit, key.batch, key.seed,
                 "error" if error else "ok", error, time.time()))
            self._db.executemany("INSERT INTO records VALUES (?, ?, ?, ?)", rows)

    def _transaction(self):
        db = self._db

        class _Tx:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, exc, tb):
                db.execute("ROLLBACK" if exc_type else "COMMIT")
                return False

        return _Tx()

    # -- reading ------------------------------------------------------------------------------------------
    def records(self) -> pd.DataFrame:
        """One row per (cell, sample, metric), joined with the cell's method/variant/edit/seed."""
        return pd.read_sql_query(
            "SELECT c.method, c.variant, c.edit, c.batch, c.seed, r.sample, r.metric, r.value "
            "FROM records r JOIN cells c USING (cell_id) ORDER BY c.variant, c.edit, c.seed, r.sample, r.metric",
            self._db)

    def cells(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM cells ORDER BY cell_id", self._db)

    def failed_cells(self, cell_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """The failed cells among `cell_ids` (default: all), real errors first: batch cells before set cells (a set
        cell whose batches failed only says "skipped"), each in the order they failed (`finished_at`)."""
        failed = pd.read_sql_query("SELECT * FROM cells WHERE status = 'error'", self._db)
        if cell_ids is not None:
            failed = failed[failed["cell_id"].isin(set(cell_ids))]
        failed = failed.assign(_set=failed["batch"] < 0)
        return failed.sort_values(["_set", "finished_at", "cell_id"]).drop(columns="_set").reset_index(drop=True)

    def export(self, path: str | Path) -> Path:
        """Write the records as Parquet (`.parquet`) or CSV (`.csv`) for pandas."""
        path = Path(path)
        frame = self.records()
        if path.suffix == ".parquet":
            frame.to_parquet(path, index=False)
        elif path.suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            raise BenchError(f"cannot export to {path.name!r}: valid suffixes are .parquet, .csv")
        return path

    def close(self) -> None:
        self._db.close()


# match keys that hold the content of input files: the message says which files, and what to do
_INPUT_KEYS = {"sources_content": "the sources' latents file or image folder",
               "inputs_content": "the files and folders named in method parameters and edits (latents:, "
                                 "target_images:)"}


def _input_hint(differing: list[str]) -> str:
    changed = [_INPUT_KEYS[k] for k in differing if k in _INPUT_KEYS]
    return f", and {' and '.join(changed)} as they were (their content changed since)" if changed else ""


def _difference(key: str, stored: Any, now: Any) -> str:
    """`key: stored X, now Y`, or for mappings (backbone hashes) the entries that differ."""
    if isinstance(stored, dict) and isinstance(now, dict):
        changed = sorted(k for k in stored.keys() | now.keys() if stored.get(k) != now.get(k))
        return f"{key}: {', '.join(changed)} differ"

    def short(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return f"{key}: stored {short(stored)}, now {short(now)}"


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None

import math
import multiprocessing as mp
import os
import signal
import time

import pytest

from bench.errors import BenchError
from bench.store import CellKey, RunStore


def key(variant="v", edit="smile", batch=0, seed=0):
    return CellKey("m", variant, edit, batch, seed)


def test_cell_rows_round_trip_and_nan_becomes_null(tmp_path):
    store = RunStore(tmp_path)
    store.record_cell(key(), [(0, "clip_score", 0.25), (1, "clip_score", float("nan")), (-1, "fid", 12.5)])
    frame = store.records()
    assert len(frame) == 3
    values = dict(zip(zip(frame["sample"], frame["metric"]), frame["value"]))
    assert values[(0, "clip_score")] == 0.25 and values[(-1, "fid")] == 12.5
    assert math.isnan(values[(1, "clip_score")])  # stored as NULL, read back as NaN by pandas
    assert store.completed_cells() == {key().cell_id}


def test_rewriting_a_cell_replaces_its_rows(tmp_path):
    store = RunStore(tmp_path)
    store.record_cell(key(), [(0, "a", 1.0), (1, "a", 2.0)])
    store.record_cell(key(), [(0, "a", 3.0)])
    assert store.records()["value"].tolist() == [3.0]


def test_failed_transaction_leaves_nothing(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(Exception):
        store.record_cell(key(), [(0, "a", 1.0), (0, "a", 2.0)])  # duplicate primary key mid-transaction
    assert store.completed_cells() == set()
    assert store.records().empty


def test_error_cells_are_recorded(tmp_path):
    store = RunStore(tmp_path)
    store.record_cell(key(), [], error="loss became NaN at step 12")
    cells = store.cells()
    assert cells.loc[0, "status"] == "error" and "NaN" in cells.loc[0, "error"]


def _write_forever(path):
    store = RunStore(path)
    i = 0
    while True:
        store.record_cell(key(batch=i), [(s, "a", float(i)) for s in range(50)])
        i += 1


def test_sigkill_mid_write_leaves_only_whole_cells(tmp_path):
    process = mp.get_context("spawn").Process(target=_write_forever, args=(tmp_path,))
    process.start()
    store = RunStore(tmp_path)
    deadline = time.monotonic() + 120
    while len(store.completed_cells()) < 5 and process.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.is_alive(), "writer process died"
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    frame = RunStore(tmp_path).records()
    assert (frame.groupby("batch").size() == 50).all()
    assert set(frame["batch"]) == {int(c.split("|b")[1].split("|")[0]) for c in RunStore(tmp_path).completed_cells()}


def test_manifest_mismatch_refuses(tmp_path):
    store = RunStore(tmp_path)
    store.open_run({"suite": "smoke", "suite_hash": "a"}, resume=False, match_keys=["suite_hash"])
    store.record_cell(key(), [(0, "a", 1.0)])
    with pytest.raises(BenchError, match="differs in suite_hash"):
        store.open_run({"suite": "faces", "suite_hash": "b"}, resume=True, match_keys=["suite_hash"])
    with pytest.raises(BenchError, match="pass --resume"):
        store.open_run({"suite": "smoke", "suite_hash": "a"}, resume=False, match_keys=["suite_hash"])
    store.open_run({"suite": "smoke", "suite_hash": "a"}, resume=True, match_keys=["suite_hash"])


def test_export_parquet_and_csv(tmp_path):
    store = RunStore(tmp_path / "run")
    store.record_cell(key(), [(0, "a", 1.5)])
    import pandas as pd
    assert pd.read_parquet(store.export(tmp_path / "r.parquet"))["value"].tolist() == [1.5]
    assert pd.read_csv(store.export(tmp_path / "r.csv"))["metric"].tolist() == ["a"]
    with pytest.raises(BenchError, match="valid suffixes"):
        store.export(tmp_path / "r.xlsx")

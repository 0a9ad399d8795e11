import json
import logging
import math
import multiprocessing as mp
import os
import signal
import sqlite3
import time

import pytest

import torch

from bench import cachefile
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
    store.record_cell(key(), [(0, "a", 1.0), (1, "a", 2.0)])
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed: records"):
        store.record_cell(key(), [(0, "a", 5.0), (0, "a", 6.0)])  # duplicate primary key mid-transaction
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed: records"):
        store.record_cell(key(batch=1), [(0, "a", 7.0), (0, "a", 8.0)])
    assert store.completed_cells() == {key().cell_id}  # the new cell is not there, the old one's rows survived
    assert store.records()[["sample", "value"]].values.tolist() == [[0, 1.0], [1, 2.0]]


def test_error_cells_are_recorded(tmp_path):
    store = RunStore(tmp_path)
    store.record_cell(key(), [], error="loss became NaN at step 12")
    cells = store.cells()
    assert cells.loc[0, "status"] == "error" and "NaN" in cells.loc[0, "error"]


def test_failed_cells_of_a_selection_real_errors_first(tmp_path):
    store = RunStore(tmp_path)
    store.record_cell(key(variant="other"), [], error="another variant's failure")
    store.record_cell(key(batch=1), [], error="RuntimeError: out of memory")
    store.record_cell(key(batch=0), [], error="FloatingPointError: NaN")
    store.record_cell(key(batch=-1), [], error="skipped: 2 of 2 batch cell(s) of this group failed")
    store.record_cell(key(batch=2), [(0, "a", 1.0)])
    selected = [key(batch=b).cell_id for b in (0, 1, 2, -1)]
    failed = store.failed_cells(selected)
    # only the selection's failures; the first is the batch that failed first, not the set cell that sorts first
    assert failed["cell_id"].tolist() == [key(batch=1).cell_id, key(batch=0).cell_id, key(batch=-1).cell_id]
    assert failed.iloc[0]["error"] == "RuntimeError: out of memory"
    assert len(store.failed_cells()) == 4


def test_completed_among_reads_only_the_given_cells(tmp_path):
    store = RunStore(tmp_path)
    store.record_cell(key(batch=0), [])
    store.record_cell(key(batch=1), [], error="boom")
    store.record_cell(key(variant="other"), [])
    assert store.completed_among([key(batch=0).cell_id, key(batch=1).cell_id, key(batch=2).cell_id]) == {
        key(batch=0).cell_id}
    assert store.completed_among([]) == set()


def test_a_failed_cell_is_not_completed_and_its_retry_replaces_it(tmp_path):
    store = RunStore(tmp_path)
    store.open_run({"suite_hash": "a"}, resume=False, match_keys=["suite_hash"])
    store.record_cell(key(batch=0), [(0, "a", 1.0)])
    store.record_cell(key(batch=1), [(1, "a", 2.0)], error="RuntimeError: out of memory")
    assert store.completed_cells() == {key(batch=0).cell_id}  # --resume runs the failed one again
    assert store.recorded_cells() == {key(batch=0).cell_id, key(batch=1).cell_id}
    with pytest.raises(BenchError, match="pass --resume"):  # failed cells are results too: not overwritten silently
        RunStore(tmp_path).open_run({"suite_hash": "a"}, resume=False, match_keys=["suite_hash"])
    store.record_cell(key(batch=1), [(1, "a", 3.0), (2, "a", 4.0)])
    cells = store.cells().set_index("cell_id")
    assert len(cells) == 2 and (cells["status"] == "ok").all() and cells["error"].isna().all()
    assert store.records()[["sample", "value"]].values.tolist() == [[0, 1.0], [1, 3.0], [2, 4.0]]


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
    assert process.exitcode == -signal.SIGKILL
    assert len(RunStore(tmp_path).completed_cells()) >= 5  # what was there before the kill is still there
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


def test_resume_needs_the_same_device_and_threads_and_keeps_every_session(tmp_path):
    keys = ["suite_hash", "device", "torch_threads"]
    sessions = ["git_commit", "calibration_ms"]
    first = {"suite": "smoke", "suite_hash": "a", "device": "cpu (Xeon, 2 threads)", "torch_threads": 2,
             "git_commit": "c1", "calibration_ms": 11.0}
    store = RunStore(tmp_path)
    store.open_run(first, resume=False, match_keys=keys, session_keys=sessions)
    store.record_cell(key(), [(0, "latency_apply_ms", 3.0)])
    with pytest.raises(BenchError, match=r"differs in device \(device: stored 'cpu \(Xeon, 2 threads\)', now "
                                         r"'NVIDIA H100'\); .*same suite, backbones, --limit, --device and --threads, "
                                         r"or use another --out directory"):
        store.open_run({**first, "device": "NVIDIA H100"}, resume=True, match_keys=keys, session_keys=sessions)
    with pytest.raises(BenchError, match="differs in torch_threads \\(torch_threads: stored 2, now 1\\)"):
        store.open_run({**first, "torch_threads": 1}, resume=True, match_keys=keys, session_keys=sessions)
    assert json.loads(store.manifest_path.read_text())["device"] == "cpu (Xeon, 2 threads)"  # refused: unchanged
    store.open_run({**first, "git_commit": "c2", "calibration_ms": 12.5}, resume=True, match_keys=keys,
                   session_keys=sessions)
    manifest = json.loads(store.manifest_path.read_text())
    assert manifest["git_commit"] == "c2" and manifest["calibration_ms"] == 12.5  # the top level: the latest session
    history = [{k: s[k] for k in ("git_commit", "calibration_ms", "cells_done_before")} for s in manifest["sessions"]]
    assert history == [{"git_commit": "c1", "calibration_ms": 11.0, "cells_done_before": 0},
                       {"git_commit": "c2", "calibration_ms": 12.5, "cells_done_before": 1}]
    assert all(s["started_at"] and "device" not in s for s in manifest["sessions"])
    from bench.runner import MATCH_KEYS, SESSION_KEYS
    assert not set(MATCH_KEYS) & set(SESSION_KEYS)  # the history holds what can differ between sessions only


def test_resuming_a_run_from_before_the_session_history_keeps_its_session(tmp_path):
    store = RunStore(tmp_path)
    cachefile.write_json_atomic(store.manifest_path, {"suite_hash": "a", "git_commit": "old", "calibration_ms": 9.0})
    store.open_run({"suite_hash": "a", "git_commit": "new", "calibration_ms": 10.0}, resume=True,
                   match_keys=["suite_hash"], session_keys=["git_commit", "calibration_ms"])
    sessions = json.loads(store.manifest_path.read_text())["sessions"]
    assert [(s["git_commit"], s["calibration_ms"]) for s in sessions] == [("old", 9.0), ("new", 10.0)]
    assert sessions[0]["started_at"] is None


def test_atomic_writes_use_a_temp_name_of_their_own_and_leave_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "cache" / "state.pt"
    names = {cachefile.temp_path(target) for _ in range(100)}
    assert len(names) == 100  # two writers (or two calls of one) never share a temp file
    assert all(n.parent == target.parent and n.name.startswith(f".state.pt.{os.getpid()}.") for n in names)
    cachefile.atomic_save({"x": torch.arange(3)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["x"], torch.arange(3))
    cachefile.write_json_atomic(tmp_path / "m.json", {"b": 1, "a": [2]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [2], "b": 1}

    def broken_save(obj, handle):
        handle.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(cachefile.torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        cachefile.atomic_save({"x": torch.zeros(3)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["x"], torch.arange(3))  # the old file is whole
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cache", "m.json", "state.pt"]  # no temp file left


@pytest.mark.parametrize("damage", [b"", b"not a torch file", "truncated"])
def test_a_damaged_cache_file_is_deleted_and_read_as_missing(tmp_path, caplog, damage):
    path = tmp_path / "state.pt"
    cachefile.atomic_save({"x": torch.arange(1000)}, path)
    assert torch.equal(cachefile.load_or_none(path, weights_only=True)["x"], torch.arange(1000))
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) // 2] if damage == "truncated" else damage)
    with caplog.at_level(logging.WARNING, logger="bench.cachefile"):
        assert cachefile.load_or_none(path, weights_only=True) is None
    assert not path.exists()
    assert f"cache file {path} is damaged" in caplog.text
    assert cachefile.load_or_none(path, weights_only=True) is None  # missing: None, no error


def test_content_hash_of_files_and_folders(tmp_path):
    folder = tmp_path / "style"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(b"one")
    (folder / "sub" / "b.png").write_bytes(b"two")
    before = cachefile.content_hash(folder)
    (folder / ".a.png.123.tmp").write_bytes(b"temp")  # hidden names are not content
    assert cachefile.content_hash(folder) == before
    (folder / "sub" / "b.png").write_bytes(b"TWO")
    assert cachefile.content_hash(folder) != before
    (folder / "sub" / "b.png").write_bytes(b"two")
    assert cachefile.content_hash(folder) == before
    (folder / "sub" / "b.png").rename(folder / "b.png")  # the same bytes under another name: another folder
    assert cachefile.content_hash(folder) != before
    assert cachefile.with_content_hashes({"latents": str(folder / "a.png"), "n": 3, "cache_dir": str(folder),
                                          "groups": ["coarse", str(folder / "a.png")]}, frozenset({"cache_dir"})) == {
        "latents": {"path": str(folder / "a.png"), "content": cachefile.content_hash(folder / "a.png")}, "n": 3,
        "cache_dir": str(folder),
        "groups": ["coarse", {"path": str(folder / "a.png"), "content": cachefile.content_hash(folder / "a.png")}]}


def test_export_parquet_and_csv(tmp_path):
    store = RunStore(tmp_path / "run")
    store.record_cell(key(), [(0, "a", 1.5)])
    import pandas as pd
    assert pd.read_parquet(store.export(tmp_path / "r.parquet"))["value"].tolist() == [1.5]
    assert pd.read_csv(store.export(tmp_path / "r.csv"))["metric"].tolist() == ["a"]
    with pytest.raises(BenchError, match="valid suffixes"):
        store.export(tmp_path / "r.xlsx")

"""The prepare cache and --resume against what changed between runs: a method's PREPARE_VERSION, a cached state its
method refuses, input files named in parameters and edits, and the errors of preparations run in worker processes."""

import logging

import pytest
import torch
from PIL import Image

import bench.runner
from bench.errors import BenchError
from bench.runner import RunOptions, Runner, inputs_content
from bench.suite import load_suite
from methods import METHODS
from methods.base import EditMethod
from shift_method import Shift
from test_runner import run, write_suite


class CountedShift(Shift):
    """Test method: `prepare` learns a shift (counted); `table` names a file it would read."""
    prepared = 0

    @classmethod
    def defaults(cls):
        return {"amount": 0.25, "table": None}

    def prepare(self, backbones, edit):
        CountedShift.prepared += 1
        self.shift = torch.tensor(self.params["amount"])


class CountedShiftV2(CountedShift):
    """The same method after a fix to its preparation: a new state layout, and the version bumped."""
    PREPARE_VERSION = 2

    def prepared_state(self):
        return {"shift": self.shift, "layout": 2}

    def load_prepared_state(self, state):
        if state.get("layout") != 2:
            raise KeyError("layout")
        self.shift = state["shift"]


class RefusingShift(CountedShiftV2):
    """CountedShiftV2 whose version was not bumped: the old states reach its load_prepared_state, which refuses them."""
    PREPARE_VERSION = 1


@pytest.fixture
def counted():
    METHODS.register("test_counted", CountedShift, replace=True)
    CountedShift.prepared = 0
    yield "test_counted"
    METHODS._entries.pop("test_counted", None)


def _cells(store):
    cells = store.cells()
    return len(cells), set(cells["status"]), [e for e in cells["error"] if e]


def test_prepare_version_enters_the_key_from_2_on(tmp_path, tiny_world, counted):
    assert EditMethod.PREPARE_VERSION == 1
    path = write_suite(tmp_path, tiny_world, methods="  - {name: test_counted}")
    shared = tmp_path / "shared"
    runner = Runner(load_suite(path), path, RunOptions(tmp_path / "keys", prepare_cache=shared))
    runner.store.close()
    spec, edit = runner.variants[0], runner.suite.edits[0]
    key = runner.prepare_key(CountedShift(), spec, edit, 0)
    assert runner.prepare_key(CountedShiftV2(), spec, edit, 0) != key
    assert runner.prepare_key(RefusingShift(), spec, edit, 0) == key  # version 1: the key states already have

    run(path, tmp_path / "first", prepare_cache=shared)
    assert CountedShift.prepared == 2  # one per edit
    METHODS.register("test_counted", CountedShiftV2, replace=True)  # the fixed code, its version bumped
    store = run(path, tmp_path / "second", prepare_cache=shared)
    assert CountedShift.prepared == 4  # the old states are not served to the new code
    assert _cells(store)[1:] == ({"ok"}, [])
    assert len(list(shared.glob("*.pt"))) == 4  # both versions' states, each under its own key
    run(path, tmp_path / "third", prepare_cache=shared)
    assert CountedShift.prepared == 4  # the new states are restored


def test_a_cached_state_its_method_refuses_is_prepared_again_not_an_error(tmp_path, tiny_world, counted, caplog):
    path = write_suite(tmp_path, tiny_world, methods="  - {name: test_counted}")
    shared = tmp_path / "shared"
    run(path, tmp_path / "first", prepare_cache=shared)
    assert CountedShift.prepared == 2
    METHODS.register("test_counted", RefusingShift, replace=True)  # a new layout, version not bumped
    with caplog.at_level(logging.WARNING):
        store = run(path, tmp_path / "second", prepare_cache=shared)
    assert CountedShift.prepared == 4  # each refused state was prepared again
    count, statuses, errors = _cells(store)
    assert count == 2 * 3 and statuses == {"ok"} and errors == []  # 2 edits × (2 batches + set cell), no error
    assert "RefusingShift.load_prepared_state refused it: KeyError" in caplog.text
    assert all(torch.load(p, weights_only=True)["state"]["layout"] == 2 for p in shared.glob("*.pt"))
    assert len(list(shared.glob("*.pt"))) == 2 and not list(shared.glob(".*.tmp"))
    run(path, tmp_path / "third", prepare_cache=shared)
    assert CountedShift.prepared == 4  # the states made again are restored


# ----------------------------------------------------------------------------------------------- resume and inputs
def _suite_with_inputs(tmp_path, world, table, style):
    path = write_suite(tmp_path, world, methods=f"  - {{name: test_counted, params: {{table: '{table}'}}}}")
    text = path.read_text().replace("  - {name: old, target: an old person, neutral: a person}",
                                    f"  - {{name: old, target: an old person, neutral: a person, "
                                    f"target_images: '{style}'}}")
    path.write_text(text)
    return path


def test_resume_refuses_input_files_changed_between_sessions(tmp_path, tiny_world, counted):
    table, style = tmp_path / "table.pt", tmp_path / "style"
    style.mkdir()
    table.write_bytes(b"latents v1")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(style / "a.png")
    path = _suite_with_inputs(tmp_path, tiny_world, table, style)
    suite = load_suite(path)
    named = inputs_content(suite)
    assert set(named) == {str(table), str(style)} and all(len(h) == 64 for h in named.values())
    run(path, tmp_path / "run")
    manifest = bench.runner.RunStore(tmp_path / "run").read_manifest()
    assert manifest["inputs_content"] == named
    assert "inputs_content" in bench.runner.MATCH_KEYS and "inputs_content" not in bench.runner.SESSION_KEYS

    table.write_bytes(b"latents v2")  # new latents at the same path: the finished cells used the old ones
    with pytest.raises(BenchError, match=rf"differs in inputs_content \(inputs_content: {table} differ\).*the files "
                                         r"and folders named in method parameters and edits .* as they were"):
        run(path, tmp_path / "run", resume=True)
    table.write_bytes(b"latents v1")
    Image.new("RGB", (8, 8), (10, 200, 10)).save(style / "a.png")  # another style image in the edit's folder
    with pytest.raises(BenchError, match=rf"inputs_content: {style} differ"):
        run(path, tmp_path / "run", resume=True)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(style / "a.png")
    run(path, tmp_path / "run", resume=True)  # the same inputs again: resumed

    # a run that recorded no cell yet (stopped while loading or preparing) holds nothing to mix: a new run may start
    Runner(load_suite(path), path, RunOptions(tmp_path / "empty")).store.close()
    table.write_bytes(b"latents v3")
    assert _cells(run(path, tmp_path / "empty"))[1] == {"ok"}


def test_inputs_content_reads_defaults_and_skips_a_methods_own_cache_folder(tmp_path, tiny_world, counted):
    folder = tmp_path / "own-cache"
    folder.mkdir()

    class DefaultTable(CountedShift):
        @classmethod
        def defaults(cls):
            return {"amount": 0.25, "table": str(folder)}

    class OwnCache(DefaultTable):
        CACHE_LOCATION_PARAMS = frozenset({"table"})

    path = write_suite(tmp_path, tiny_world, methods="  - {name: test_counted}")
    assert inputs_content(load_suite(path)) is None  # nothing named: None, as in manifests before the key
    METHODS.register("test_counted", DefaultTable, replace=True)
    assert inputs_content(load_suite(path)) == {str(folder): bench.runner.content_hash(folder)}  # a default too
    METHODS.register("test_counted", OwnCache, replace=True)
    assert inputs_content(load_suite(path)) is None  # the method's own cache folder: an output, not an input


# ------------------------------------------------------------------------------------------- worker preparations
class IndependentShift(CountedShift):
    independent_prepare = True


def test_a_preparation_that_failed_in_a_worker_is_recorded_for_its_groups_not_prepared_again(tmp_path, tiny_world,
                                                                                             monkeypatch):
    METHODS.register("test_indep", IndependentShift, replace=True)
    try:
        path = write_suite(tmp_path, tiny_world, methods="""  - {name: test_indep, variant: a}
  - {name: test_indep, variant: b, params: {amount: 0.5}}""")
        submitted = []

        def workers(jobs, *args, **kwargs):  # the pool: the smile edits fail, the old ones never ran (pool broken)
            submitted.extend(jobs)
            return [(job, ValueError(f"bad latents for {job.edit.name}\nsecond line")) for job in jobs
                    if job.edit.name == "smile"]

        monkeypatch.setattr(bench.runner, "prepare_in_workers", workers)
        CountedShift.prepared = 0
        store = Runner(load_suite(path), path, RunOptions(tmp_path / "run", workers=2)).run()
        assert len(submitted) == 4  # 2 variants × 2 edits
        assert CountedShift.prepared == 2  # the serial pass prepared only what the pool did not run: the old edits
        cells = store.cells()
        smile, old = cells[cells["edit"] == "smile"], cells[cells["edit"] == "old"]
        assert len(smile) == 2 * 3 and (smile["status"] == "error").all()  # every cell of the group, set cell too
        assert set(smile["error"]) == {"prepare: ValueError: bad latents for smile"}  # as a serial run words it
        assert (old["status"] == "ok").all()
    finally:
        METHODS._entries.pop("test_indep", None)


def test_a_broken_pool_leaves_its_jobs_to_the_serial_pass(tmp_path, tiny_world):
    """Workers that cannot start (here: the generator file is gone) break the pool: no job is reported as failed,
    so the serial pass prepares them (and records an error only if it fails there too)."""
    from bench.prepare import PrepareJob, prepare_in_workers

    generator = tmp_path / "generator.pt"
    generator.write_bytes(open(tiny_world["generator"], "rb").read())
    path = write_suite(tmp_path, {**tiny_world, "generator": str(generator)}, clip_loss=True)
    suite = load_suite(path)
    generator.unlink()
    jobs = [PrepareJob(suite.methods[0], edit, 0, tmp_path / f"{edit.name}.pt") for edit in suite.edits]
    done = []
    failed = prepare_in_workers(jobs, suite, "cpu", 2, 1, lambda job, error, total: done.append(error))
    assert failed == []
    assert len(done) == 2 and all("BrokenProcessPool" in e and "prepared again in this process" in e for e in done)

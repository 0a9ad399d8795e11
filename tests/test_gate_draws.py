"""tools/gate_draws.py: the gates recomputed on further draws (the real gates run in `bench zoo eval`; here the
tool's bookkeeping, and that its draw 0 is exactly each gate's own draw)."""

import importlib.util
import inspect
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "tools" / "gate_draws.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("gate_draws", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_draw_zero_is_each_gates_own_draw(tool):
    for net, (gates_of, kwargs_of) in tool.DRAWS.items():
        defaults = {k: p.default for k, p in inspect.signature(gates_of).parameters.items()}
        if net == "judge_clip":  # forwards **kwargs to train_clip.gates
            defaults = {k: p.default for k, p in inspect.signature(tool.train_clip.gates).parameters.items()}
        for key, value in kwargs_of(0).items():
            assert defaults[key] == value, (net, key)
        assert kwargs_of(1) != kwargs_of(0) and kwargs_of(1) != kwargs_of(2), net


def test_rows_keep_thresholded_gates_and_flag_a_failure_on_any_draw(tool, monkeypatch):
    def fake_gates(weights_dir, seed):
        return [{"name": "close", "value": 0.96 - 0.006 * seed, "threshold": ">= 0.95", "passed": True},
                {"name": "wide", "value": 0.99, "threshold": 0.9, "passed": True},
                {"name": "note", "value": 0.1, "threshold": "info", "passed": True}]

    monkeypatch.setattr(tool, "DRAWS", {"fake": (fake_gates, lambda k: {"seed": k})})
    rows = tool.gate_draws(["fake"], draws=2)
    assert [r["name"] for r in rows] == ["close", "wide"]
    close, wide = rows
    assert close["values"] == pytest.approx([0.96, 0.954, 0.948])
    assert close["lowest"] == pytest.approx(0.948) and not close["passed"]
    assert wide["passed"] and wide["values"] == [0.99, 0.99, 0.99]
    table = tool.markdown(rows)
    assert "| fake | close | >= 0.95 | 0.9600 | 0.9540 | 0.9480 | 0.9480 | False |" in table
    assert tool.main(["--networks", "fake", "--draws", "1"]) == 0  # 0.954 still passes with one draw
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--networks", "nonesuch"])
    assert exit_info.value.code == 2  # argparse's usage error, not a clean exit

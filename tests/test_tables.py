"""The GTSP-on-NCI1 table's paired column: an arm against dense on the splits both finished."""
import json

import pytest

from benchmarks import tables


def test_paired_difference_uses_only_the_shared_splits():
    arm = {0: 0.80, 1: 0.82, 3: 0.70}           # split 3: dense has not finished it
    dense = {0: 0.81, 1: 0.80, 2: 0.90}         # split 2: the arm has not finished it
    # differences 100 * (-0.01, +0.02) = (-1, +2): mean +0.5, sample std sqrt(4.5) = 2.12
    assert tables.paired_difference(arm, dense) == "+0.50 ± 2.12 (2 splits)"
    assert tables.paired_difference({5: 0.8}, dense) == "—"


def test_finished_tests_skip_unfinished_runs(tmp_path, monkeypatch):
    (tmp_path / "train").mkdir()
    runs = [{"seed": 0, "test": 0.8, "epochs_done": 100}, {"seed": 1, "test": 0.7, "epochs_done": 64}]
    (tmp_path / "train" / "arm-cpu.json").write_text(json.dumps({"runs": runs}))
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    assert tables.finished_tests({"results": "arm-cpu.json", "epochs": 100}) == {0: pytest.approx(0.8)}
    assert tables.finished_tests({"results": None, "epochs": 100}) == {}

"""``benchmarks/dropout_recipe_epochs.py``: the per-epoch comparison of new runs against the old runs' spread."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.dropout_recipe_epochs import main  # noqa: E402


def _curve(path: Path, rows: list[tuple[int, float, float]]) -> str:
    path.write_text("epoch,train_loss,valid,test,seconds,lr\n" +
                    "".join(f"{e},{loss},{valid},0.5,1.0,0.001\n" for e, loss, valid in rows))
    return str(path)


def test_new_mean_against_old_range(tmp_path):
    old = [_curve(tmp_path / f"old{i}.csv", [(1, 0.20 + i / 100, 0.50 + i / 10), (2, 0.15, 0.60 + i / 10)])
           for i in range(3)]
    new = [_curve(tmp_path / f"new{i}.csv", [(1, 0.30, 0.61), (2, 0.15, 0.95 + i / 100)]) for i in range(3)]
    out = tmp_path / "check.json"
    main(["--old", *old, "--new", *new, "--epochs", "1", "2", "--out", str(out)])
    rows = {(r["epoch"], r["metric"]): r for r in json.loads(out.read_text())["rows"]}
    assert rows[1, "valid"]["old"] == pytest.approx([0.5, 0.6, 0.7])
    assert rows[1, "valid"]["old_spread"]["std"] == pytest.approx(0.1)
    assert rows[1, "valid"]["new_mean_within_old_range"]            # 0.61 in [0.5, 0.7]
    assert not rows[1, "train_loss"]["new_mean_within_old_range"]   # 0.30 above [0.20, 0.22]
    assert rows[2, "train_loss"]["new_mean_within_old_range"]       # 0.15 == every old value
    assert not rows[2, "valid"]["new_mean_within_old_range"]        # 0.96 above [0.6, 0.8]
    assert rows[2, "valid"]["new_spread"]["mean"] == pytest.approx(0.96)


def test_missing_epoch_names_the_argument(tmp_path):
    old = [_curve(tmp_path / "old.csv", [(1, 0.2, 0.5), (2, 0.1, 0.6)])]
    new = [_curve(tmp_path / "new.csv", [(1, 0.2, 0.5)])]
    with pytest.raises(ValueError, match="--epochs: epoch 2 is missing from a new run"):
        main(["--old", *old, "--new", *new, "--epochs", "2", "--out", str(tmp_path / "x.json")])

"""Kill-and-resume: a training run killed at any point and resumed with ``--resume`` ends with the
logs, best checkpoint and summary of the uninterrupted run (timings aside), from an epoch's checkpoint or
from a mid-epoch one (``--checkpoint-every``), and after ``SIGTERM``, which writes a checkpoint and exits;
a damaged checkpoint is one error line naming the file."""
import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

EPOCHS = 3
REPO = Path(__file__).resolve().parents[1]
# A GPS with dropout in the attention and the layers: resuming must restore the dropout generator and the
# loader's shuffling generator, not only the weights and the optimiser.
CONFIG = """dataset: ogbg-molesol
model: gps
epochs: 3
batch_size: 64
seeds: [0]
model_args:
  channels: 32
  num_layers: 2
  dropout: 0.2
  attn_dropout: 0.3
optim:
  lr: 0.001
  scheduler: cosine
  warmup_epochs: 1
"""


def _env(tmp_path, crash_at=None):
    env = {**os.environ, "GRAPHATTN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("GRAPHATTN_CRASH_AT", None)
    if crash_at:
        env["GRAPHATTN_CRASH_AT"] = crash_at
    return env


def _command(tmp_path, out, *args):
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    return [sys.executable, "-m", "graphattn.cli", "train", "--no-progress", "--config", str(config), "--out", str(out),
            *args]


def _train(tmp_path, out, *args, crash_at=None):
    return subprocess.run(_command(tmp_path, out, *args), capture_output=True, text=True, timeout=600,
                          env=_env(tmp_path, crash_at))


def _rows(out):
    """metrics.csv without the wall-clock column."""
    with open(out / "seed0" / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def _summary(out):
    summary = json.loads((out / "summary.json").read_text())
    return {k: summary[k] for k in ("test_mean", "epochs")}, [
        {k: r[k] for k in ("best_epoch", "valid", "test")} for r in summary["runs"]]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    out = tmp_path / "run"
    result = _train(tmp_path, out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


# the points a kill can land on: mid-epoch, before/after the checkpoint, between the two log files
@pytest.mark.slow
@pytest.mark.parametrize("crash_at", ["step:2:3", "before_checkpoint:2", "after_checkpoint:1", "between_logs"])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted, crash_at):
    out = tmp_path / "run"
    killed = _train(tmp_path, out, crash_at=crash_at)
    assert killed.returncode == 137 and not (out / "summary.json").exists()
    resumed = _train(tmp_path, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout or crash_at == "step:1:1"
    assert_same_run(out, uninterrupted)


def assert_same_run(out, uninterrupted):
    """The logs, summary and best checkpoint of ``out`` are the uninterrupted run's."""
    assert _rows(out) == _rows(uninterrupted)
    assert json.loads((out / "seed0" / "history.json").read_text())[-1]["epoch"] == EPOCHS
    assert _summary(out) == _summary(uninterrupted)
    best, reference = (torch.load(o / "seed0" / "best.pt") for o in (out, uninterrupted))
    assert best.keys() == reference.keys() and all(torch.equal(best[k], reference[k]) for k in best)
    assert not list((out / "seed0").glob("*.tmp"))          # no temporary file left behind


# with a checkpoint after every optimiser step: killed before a step's checkpoint, or right after one
@pytest.mark.slow
@pytest.mark.parametrize("crash_at, resumed_at", [
    ("step:2:3", "after epoch 1 and 2 steps of epoch 2"),
    ("after_step_checkpoint:1:5", "after epoch 0 and 5 steps of epoch 1")])
def test_killed_after_a_mid_epoch_checkpoint_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted, crash_at,
                                                                                 resumed_at):
    out = tmp_path / "run"
    killed = _train(tmp_path, out, "--checkpoint-every", "0", crash_at=crash_at)
    assert killed.returncode == 137
    state = torch.load(out / "seed0" / "last.pt", weights_only=False)
    assert state["position"]["done"]["steps"] == int(crash_at.split(":")[-1]) - crash_at.startswith("step")
    resumed = _train(tmp_path, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed_at in resumed.stdout, resumed.stdout
    assert_same_run(out, uninterrupted)


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_exits(tmp_path, uninterrupted):
    out = tmp_path / "run"
    process = subprocess.Popen(_command(tmp_path, out, "--checkpoint-every", "1000"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_env(tmp_path))
    for line in process.stdout:
        if line.startswith("epoch   1"):
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143 and "stopped by SIGTERM after writing the checkpoint" in stderr, stderr
    assert torch.load(out / "seed0" / "last.pt", weights_only=False)["epoch"] >= 1
    resumed = _train(tmp_path, out, "--resume")
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-3000:]
    assert_same_run(out, uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "garbage", "not_a_checkpoint"])
def test_damaged_checkpoint_is_one_error_line(tmp_path, uninterrupted, damage):
    out = tmp_path / "run"
    (out / "seed0").mkdir(parents=True)
    last = out / "seed0" / "last.pt"
    data = (uninterrupted / "seed0" / "last.pt").read_bytes()
    if damage == "truncate":
        last.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        last.write_bytes(b"\x00not a zip file" * 10)
    else:
        torch.save({"weights": torch.zeros(3)}, last)
    result = _train(tmp_path, out, "--resume")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(last) in lines[0] and "checkpoint" in lines[0], result.stderr


@pytest.mark.slow
def test_collected_seed_folders_give_the_runs_summary(tmp_path, uninterrupted):
    """benchmarks/collect_train.py rebuilds summary.json from the seed folders' checkpoints."""
    out = tmp_path / "collected.json"
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    result = subprocess.run([sys.executable, "benchmarks/collect_train.py", "--config", str(config), "--device", "cpu",
                             "--out", str(out), str(uninterrupted / "seed0")], capture_output=True, text=True,
                            cwd=REPO, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    collected, original = json.loads(out.read_text()), json.loads((uninterrupted / "summary.json").read_text())
    assert collected["partial"] is False and collected["runs"][0]["epochs_done"] == EPOCHS
    for key in ("dataset", "model", "metric", "epochs", "test_mean", "test_std"):
        assert collected[key] == original[key], key
    for key in ("seed", "best_epoch", "valid", "test", "epochs_done", "train_seconds"):
        assert collected["runs"][0][key] == original["runs"][0][key], key
    collected_curve = (tmp_path / "collected-seed0-metrics.csv").read_text()
    assert collected_curve == (uninterrupted / "seed0" / "metrics.csv").read_text()


def test_checkpoints_record_the_dropout_generator(tmp_path):
    """rng_state names the dropout generator in use; check_dropout_generator refuses another one (or none: the
    checkpoints made before the counter dropout drew with PyTorch's bernoulli_) in one line naming both."""
    from graphattn.checkpoint import CheckpointError, check_dropout_generator, rng_state
    from graphattn.functional import use_dropout_generator

    path = str(tmp_path / "last.pt")
    state = {"rng": rng_state()}
    assert state["rng"]["dropout"] == "counter-v1"
    check_dropout_generator(state, path)
    with use_dropout_generator("torch-bernoulli"):
        old = {"rng": rng_state()}
        check_dropout_generator(old, path)
    unrecorded = {"rng": {k: v for k, v in state["rng"].items() if k != "dropout"}}
    for made in (old, unrecorded):
        with pytest.raises(CheckpointError) as error:
            check_dropout_generator(made, path)
        message = str(error.value)
        assert len(message.splitlines()) == 1 and path in message and "'torch-bernoulli'" in message
        assert "'counter-v1'" in message


@pytest.mark.slow
def test_resuming_across_a_dropout_generator_change_is_one_error_line(tmp_path, uninterrupted, monkeypatch):
    """A checkpoint of another dropout generator is refused in one line; with GRAPHATTN_DROPOUT naming that
    generator the run resumes."""
    out = tmp_path / "run"
    (out / "seed0").mkdir(parents=True)
    state = torch.load(uninterrupted / "seed0" / "last.pt", weights_only=False)
    assert state["rng"]["dropout"] == "counter-v1"
    state["rng"]["dropout"] = "torch-bernoulli"
    torch.save(state, out / "seed0" / "last.pt")
    result = _train(tmp_path, out, "--resume")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "dropout generator 'torch-bernoulli'" in lines[0], result.stderr
    monkeypatch.setenv("GRAPHATTN_DROPOUT", "torch-bernoulli")
    resumed = _train(tmp_path, out, "--resume")
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-3000:]

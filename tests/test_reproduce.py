"""``graphattn reproduce``: the registry of published targets, ``--status`` on a store of finished and partial
runs, the verdict table on synthetic summaries, and the driver on the tiny GPS run of test_resume.py (two
jobs side by side; a store left by a killed worker resumed to the uninterrupted run; SIGTERM passed to the
workers, which write a checkpoint and stop)."""
import json
import os
import re
import signal
import threading
import time
from dataclasses import asdict

import pytest
import torch

from graphattn.data import PLANETOID, dataset_metric
from graphattn.reproduce import main, pending_seeds
from graphattn.reproductions import report_row, runs_done_cell, verdict, write_report
from graphattn.run_store import status_lines
from graphattn.targets import TARGETS, Target
from graphattn.train_cli import seed_protocol
from graphattn.training import EpochRecord

from test_resume import CONFIG, EPOCHS, assert_same_run, uninterrupted  # noqa: F401  (uninterrupted: a fixture)

#: name: published mean, std (None: no published target) and runs of the published protocol
EXPECTED = {"gin-vn-molhiv": (0.7707, 0.0149, 3), "gat-cora": (0.830, 0.007, 100), "gat-citeseer": (0.725, 0.007, 100),
            "gatv2-cora": (None, None, 100), "gatv2-citeseer": (None, None, 100),
            "graphtrans-small-nci1": (0.813, 0.019, 20), "graphtrans-large-nci1": (0.826, 0.012, 20),
            "gtsp-graphtrans-small-nci1-keep0.75": (None, None, 10),
            "gtsp-graphtrans-small-nci1-keep0.5": (None, None, 10),
            "gtsp-graphtrans-small-nci1-keep0.5-heads0.5": (None, None, 10)}


def test_registry_names_configs_and_published_values():
    assert set(TARGETS) == set(EXPECTED)
    for name, target in TARGETS.items():
        mean, std, runs = EXPECTED[name]
        assert len(set(target.seeds)) == runs and target.source and target.results
        assert target.published == (None if mean is None else pytest.approx((mean, std))), name
        if not target.available:       # the GraphTrans configs come from another branch
            assert name.startswith("graphtrans-"), f"{name}: config {target.config} missing"
            assert status_lines(target, "unused") == [f"{name}: unavailable (config {target.config} is not in this "
                                                      f"checkout)"]
            continue
        config = target.load()
        with open(target.config_path) as f:
            header = f.read()
        assert target.epochs is None or f"epochs: {target.epochs}\n" in header, name   # the config's own schedule
        if mean is not None:      # the figure the config's header cites as published
            figure = re.findall(r"\d+\.\d+ ± \d+\.\d+", target.source)[-1]
            assert figure in header, f"{name}: {figure} not in {target.config_path}"
        if config.dataset.startswith("ogbg-") or config.dataset in PLANETOID:
            assert dataset_metric(config.dataset) == target.metric


def test_unknown_and_unavailable_targets_are_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(TARGETS, "missing", Target("missing", "no-such-config", (0,), 1, "rocauc", None, "-", "x"))
    for argv, message in [(["nope"], "unknown target 'nope'"),
                          (["missing"], "missing: unavailable: config no-such-config is not in this checkout"),
                          (["gat-cora", "--store", str(tmp_path)], "gat-cora: pass --root")]:
        with pytest.raises(SystemExit) as info:
            main(argv + ["--results", str(tmp_path / "results")])
        assert message in str(info.value.code) and "\n" not in str(info.value.code)
    assert not (tmp_path / "results").exists()


def _record(target, seed, seconds, test_acc):
    return {"seed": seed, "best_epoch": 50, "val_acc": 0.8, "val_loss": 1.0, "test_acc": test_acc, "epochs_run": 150,
            "stopped_early": True, "seconds": seconds, "cpu_seconds": seconds, "device": "cpu", "threads": 1,
            "config": seed_protocol(target.load())}


def _history(epochs, seconds=300.0):
    return [asdict(EpochRecord(e, 0.2, 0.80 + e / 1e4, 0.77 + e / 1e4, seconds, 1e-3)) for e in range(1, epochs + 1)]


def _checkpoint(path, epochs, steps=0):
    history = _history(epochs)
    state = {"model": {}, "epoch": epochs, "history": history, "best": history[-1]}
    if steps:
        state["position"] = {"done": {"steps": steps, "loss_sum": 1.0, "graphs": 32 * steps, "seconds": 60.0},
                             "loader_at_start": torch.zeros(1)}
    path.parent.mkdir(parents=True)
    torch.save(state, path)


def test_status_of_finished_partial_and_missing_runs(tmp_path, capsys):
    gat, gin = TARGETS["gat-cora"], TARGETS["gin-vn-molhiv"]
    for seed in range(3):
        folder = tmp_path / "gat-cora" / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "record.json").write_text(json.dumps(_record(gat, seed, 36.0, 0.82 + seed / 100)))
    citeseer = TARGETS["gat-citeseer"]
    for seed in citeseer.seeds:                 # every seed done: no "so far", no time left
        folder = tmp_path / "gat-citeseer" / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "record.json").write_text(json.dumps(_record(citeseer, seed, 30.0, 0.72)))
    _checkpoint(tmp_path / "gin-vn-molhiv" / "seed0" / "last.pt", 100)
    _checkpoint(tmp_path / "gin-vn-molhiv" / "seed1" / "last.pt", 24, steps=300)
    main(["--status", "--store", str(tmp_path)])
    out = capsys.readouterr().out
    # 97 seeds x 36 s left; 76 epochs x 300 s left
    assert f"gat-cora: 3/100 seeds done ({tmp_path / 'gat-cora'}), test accuracy 0.8300 so far, 36.0 s per seed, " \
           "about 58 min left at one job" in out
    # 76 + 100 epochs x 300 s left
    assert f"gin-vn-molhiv: 3 runs x 100 epochs, 1 finished ({tmp_path / 'gin-vn-molhiv'}), about 14.7 h left " \
           "at one job\n" \
           "  seed 0: 100/100 epochs, test rocauc 0.7800 (best epoch 100), finished\n" \
           "  seed 1: 24/100 epochs and 300 steps, test rocauc 0.7724 (best epoch 24), 300.0 s per epoch, " \
           "about 6.3 h left\n  seed 2: not started\n" in out
    assert f"gat-citeseer: 100/100 seeds done ({tmp_path / 'gat-citeseer'}), test accuracy 0.7200, 30.0 s per " \
           "seed\n" in out
    assert "gatv2-cora: 0/100 seeds done" in out
    assert pending_seeds(gin.load(), str(tmp_path / "gin-vn-molhiv")) == [1, 2]
    assert pending_seeds(gat.load(), str(tmp_path / "gat-cora")) == list(range(3, 100))
    main(["gat-cora", "--status", "--store", str(tmp_path)])
    assert capsys.readouterr().out.count("\n") == 1


def _node_summary(dataset, mean, seeds):
    return {"dataset": dataset, "device": "cpu", "seeds_done": len(seeds), "test_mean": mean, "test_std": 0.005,
            "runs": [{"seed": s} for s in seeds]}


def _graph_summary(mean, epochs_done):
    return {"dataset": "ogbg-molhiv", "device": "cpu", "epochs": 100, "test_mean": mean, "test_std": 0.006,
            "runs": [{"seed": s, "epochs_done": e} for s, e in enumerate(epochs_done)]}


def test_verdicts_and_report(tmp_path):
    gin = TARGETS["gin-vn-molhiv"]
    assert verdict(gin, _graph_summary(0.7800, [100, 100, 100])) == "within one std"        # |+0.0093| <= 0.0149
    assert verdict(gin, _graph_summary(0.7500, [100, 100, 100])) == "outside one std"       # |-0.0207| > 0.0149
    assert verdict(gin, _graph_summary(0.7800, [100, 100])) == "partial"                    # a seed missing
    assert verdict(gin, None) == "not run"
    summaries = {"cora-gat-cpu.json": _node_summary("cora", 0.825, range(100)),
                 "citeseer-gat-cpu.json": _node_summary("citeseer", 0.700, range(100)),
                 "cora-gatv2-cpu.json": _node_summary("cora", 0.820, range(100)),
                 "citeseer-gatv2-cuda.json": _node_summary("citeseer", 0.710, range(40)),
                 "ogbg-molhiv-gin-vn-cpu.json": _graph_summary(0.7798, [24, 24, 24])}
    for name, summary in summaries.items():
        (tmp_path / name).write_text(json.dumps(summary))
    rows = write_report(str(tmp_path))
    by_target = {r["target"]: r for r in rows}
    assert len(rows) == len(TARGETS) == len(by_target)
    assert {k: r["verdict"] for k, r in by_target.items() if not k.startswith(("graphtrans", "gtsp"))} == {
        "gin-vn-molhiv": "partial", "gat-cora": "within one std", "gat-citeseer": "outside one std",
        "gatv2-cora": "no target", "gatv2-citeseer": "no target (partial)"}
    assert by_target["graphtrans-small-nci1"]["verdict"] in ("not run", "unavailable")
    assert by_target["gtsp-graphtrans-small-nci1-keep0.5"]["verdict"] == "not run"
    assert by_target["gat-citeseer"]["difference"] == pytest.approx(-0.025)
    assert by_target["gin-vn-molhiv"]["runs_done"] == 0 and by_target["gatv2-citeseer"]["device"] == "cpu"
    table = (tmp_path / "reproductions.md").read_text()
    assert "| gat-cora | cora | accuracy | cpu | 100 of 100 | 0.8250 ± 0.0050 | 0.8300 ± 0.0070 | -0.0050 | " \
           "within one std |" in table
    assert "| gin-vn-molhiv | ogbg-molhiv | rocauc | cpu | 0 of 3 (unfinished: 24, 24, 24 of 100 epochs) | " \
           "0.7798 ± 0.0060 | 0.7707 ± 0.0149 | +0.0091 | partial |" in table
    assert json.loads((tmp_path / "reproductions.json").read_text())["targets"] == json.loads(json.dumps(rows))


def test_a_partial_row_scores_its_finished_runs_and_says_how_far_the_others_got():
    """With some runs finished, a partial row's mean and std are theirs alone (a run stopped at epoch 3 does not
    pull them down), and its cell names the unfinished runs' epochs and the runs not started."""
    large = TARGETS["graphtrans-large-nci1"]                     # 20 runs x 100 epochs
    runs = [{"seed": s, "epochs_done": 100, "test": t} for s, t in enumerate([0.80, 0.82, 0.84])]
    runs += [{"seed": 3, "epochs_done": 37, "test": 0.79}, {"seed": 4, "epochs_done": 3, "test": 0.50}]
    summary = {"dataset": "nci1", "device": "cpu", "epochs": 100, "runs": runs,
               "test_mean": sum(r["test"] for r in runs) / 5, "test_std": 0.13}
    row = report_row(large, summary)
    assert row["verdict"] == "partial" and row["runs_done"] == 3
    assert row["mean"] == pytest.approx(0.82) and row["std"] == pytest.approx(0.02)
    assert row["difference"] == pytest.approx(0.82 - 0.826)
    assert runs_done_cell(row) == "3 of 20 (unfinished: 37, 3 of 100 epochs; 15 not started)"
    none_finished = report_row(large, {**summary, "runs": runs[3:], "test_mean": 0.645, "test_std": 0.2})
    assert none_finished["mean"] == 0.645 and runs_done_cell(none_finished) == \
        "0 of 20 (unfinished: 37, 3 of 100 epochs; 18 not started)"
    finished = {**summary, "runs": [{"seed": s, "epochs_done": 100, "test": 0.8} for s in range(20)],
                "test_mean": 0.8, "test_std": 0.0}
    assert runs_done_cell(report_row(large, finished)) == "20 of 20"


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A registered target: the GPS run of test_resume.py (embedded ogbg-molesol, 3 epochs)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    target = Target("tiny", str(config), (0,), EPOCHS, "rmse", (1.0, 0.5), "test_resume.py", "molesol-tiny")
    monkeypatch.setitem(TARGETS, "tiny", target)
    monkeypatch.setenv("GRAPHATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GRAPHATTN_CRASH_AT", raising=False)
    return target, ["tiny", "--store", str(tmp_path / "store"), "--results", str(tmp_path / "results")]


@pytest.mark.slow
def test_killed_run_resumes_from_the_store(tmp_path, tiny, uninterrupted, monkeypatch, capsys):
    target, argv = tiny
    monkeypatch.setenv("GRAPHATTN_CRASH_AT", "step:2:3")      # the worker dies as if by SIGKILL
    with pytest.raises(SystemExit) as info:
        main(argv + ["--checkpoint-every", "0"])
    assert info.value.code == 1
    assert "job 0: exit status 137" in capsys.readouterr().err
    store = tmp_path / "store" / "tiny"
    assert torch.load(store / "seed0" / "last.pt", weights_only=False)["position"]["done"]["steps"] == 2
    monkeypatch.delenv("GRAPHATTN_CRASH_AT")
    main(argv + ["--status"])
    assert "seed 0: 1/3 epochs and 2 steps" in capsys.readouterr().out
    main(argv)
    out = capsys.readouterr().out
    assert "0/1 runs finished" in out and "resumed from" in out and "after epoch 1 and 2 steps of epoch 2" in out
    assert_same_run(store, uninterrupted)
    summary = json.loads((tmp_path / "results" / "molesol-tiny-cpu.json").read_text())
    assert not summary["partial"] and summary["runs"][0]["epochs_done"] == EPOCHS
    assert (tmp_path / "results" / "molesol-tiny-cpu-seed0-metrics.csv").read_text() == \
        (store / "seed0" / "metrics.csv").read_text()
    row = next(r for r in json.loads((tmp_path / "results" / "reproductions.json").read_text())["targets"]
               if r["target"] == "tiny")
    assert row["runs_done"] == 1 and row["mean"] == summary["test_mean"]
    assert row["verdict"] in ("within one std", "outside one std")
    main(argv)                                                   # nothing left to run
    assert "1/1 runs finished" in capsys.readouterr().out


@pytest.mark.slow
def test_sigterm_stops_the_workers_after_a_checkpoint(tmp_path, tiny, uninterrupted, capsys, request):
    target, argv = tiny
    last = tmp_path / "store" / "tiny" / "seed0" / "last.pt"

    def terminate_once_training():
        deadline = time.monotonic() + 300
        while not last.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, lambda *_: None)   # a signal landing after the driver's end is lost
    request.addfinalizer(lambda: signal.signal(signal.SIGTERM, previous))
    threading.Thread(target=terminate_once_training, daemon=True).start()
    with pytest.raises(SystemExit) as info:
        main(argv + ["--checkpoint-every", "0"])
    out = capsys.readouterr().out
    assert info.value.code == 143 and "stopped by SIGTERM after writing the checkpoint" in out, out
    assert len(torch.load(last, weights_only=False)["history"]) < EPOCHS
    main(argv)
    assert_same_run(tmp_path / "store" / "tiny", uninterrupted)


@pytest.mark.slow
def test_two_jobs_run_side_by_side(tmp_path, tiny, monkeypatch, capsys):
    target, argv = tiny
    monkeypatch.setitem(TARGETS, "tiny", Target("tiny", target.config, (0, 1), 1, "rmse", None, "-", "molesol-tiny"))
    main(argv + ["--jobs", "2"])
    out = capsys.readouterr().out
    assert "job 0: seed 0\njob 1: seed 1\n" in out
    pids = dict(re.findall(r"^job (\d): pid (\d+)$", out, re.M))
    assert set(pids) == {"0", "1"} and pids["0"] != pids["1"], out
    summary = json.loads((tmp_path / "results" / "molesol-tiny-cpu.json").read_text())
    assert [r["seed"] for r in summary["runs"]] == [0, 1] and not summary["partial"]
    assert "2 job(s) side by side" in summary["device"]

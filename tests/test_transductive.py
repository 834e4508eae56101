"""Node-level training: the GAT authors' early stopping against a hand-written trace of their rule, the
restored model's test accuracy, and ``graphattn train`` on a Planetoid fixture with PyG's GATConv standing in
for graphattn's (seed records written as seeds finish, finished seeds skipped on a rerun with identical
records, a seed killed halfway run again to the same numbers, another config refused)."""
import gzip
import json
import os

import pytest
import torch

from graphattn.config import OptimConfig
from graphattn.data import load_planetoid
from graphattn.models import GAT
from graphattn.models.gat import dropout_nonzero
from graphattn.transductive import model_features
from graphattn.train_cli import main
from graphattn.transductive import GATEarlyStopping, fit_transductive

from helpers import planetoid_release

CONFIG = """dataset: cora
model: gat
epochs: 40
patience: 5
model_args: {hidden_channels: 4, heads: 2, conv: "pyg:GATConv"}
transforms: {normalize_features: true}
optim: {optimizer: adam, lr: 0.01, weight_decay: 5.0e-4}
"""
TIMING = ("seconds", "cpu_seconds")


def test_early_stopping_follows_the_authors_rule():
    """execute_cora.py: reset when val acc >= best acc OR val loss <= best loss (ties count), save when both,
    bests updated separately; stop when the counter reaches the patience."""
    stopper = GATEarlyStopping(patience=3)
    script = [(1.00, 0.50),   # 1: first epoch: both best -> save
              (0.90, 0.40),   # 2: loss improves only -> reset, no save; best loss 0.90, best acc still 0.50
              (0.95, 0.50),   # 3: acc ties its best -> reset; loss 0.95 > 0.90 -> no save
              (0.95, 0.45),   # 4: neither -> 1
              (0.92, 0.48),   # 5: neither -> 2
              (0.90, 0.50),   # 6: both tie their bests -> save, reset
              (1.10, 0.30),   # 7: -> 1
              (0.91, 0.49),   # 8: -> 2
              (1.30, 0.30)]   # 9: -> 3 = patience: stop
    steps = [stopper.step(loss, acc) for loss, acc in script]
    assert [epoch for epoch, (save, _) in enumerate(steps, 1) if save] == [1, 6]
    assert [stop for _, stop in steps] == [False] * 8 + [True]
    assert (stopper.best_loss, stopper.best_acc, stopper.counter) == (0.90, 0.50, 3)
    never = GATEarlyStopping(patience=0)
    assert not any(never.step(2.0 + i, 0.0 if i else 0.1)[1] for i in range(50))
    with pytest.raises(ValueError, match="patience"):
        GATEarlyStopping(-1)


def test_fit_restores_the_saved_model(tmp_path):
    bench = load_planetoid("cora", str(planetoid_release(tmp_path)), normalize_features=True)
    torch.manual_seed(0)
    model = GAT(bench.num_features, bench.num_classes, hidden_channels=4, heads=2, conv="pyg:GATConv")
    result = fit_transductive(model, bench, seed=0, max_epochs=60, patience=5,
                              optim=OptimConfig(optimizer="adam", lr=0.01, weight_decay=5e-4))
    assert result.stopped_early and result.epochs_run == len(result.curve) < 60
    # replaying the curve through the rule gives the saved epoch; the restored model is that epoch's model
    replay, saved = GATEarlyStopping(5), []
    for point in result.curve:
        if replay.step(point.val_loss, point.val_acc)[0]:
            saved.append(point.epoch)
    assert saved[-1] == result.best_epoch and result.epochs_run - result.best_epoch >= 5
    best = result.curve[result.best_epoch - 1]
    assert (result.test_acc, result.val_acc, result.val_loss) == (best.test_acc, best.val_acc, best.val_loss)


@pytest.mark.parametrize("conv, message", [("graphattn.nn.NoSuchConv", "graphattn.nn has no layer class NoSuchConv"),
                                           ("pyg:NoSuchConv", "torch_geometric.nn has no layer class"),
                                           ("nosuchpackage.Conv", "cannot import nosuchpackage"),
                                           ("GATConv", "name a class as")])
def test_conv_names_that_resolve_to_nothing(conv, message):
    with pytest.raises(ValueError, match=message):
        GAT(5, 3, conv=conv)


def test_dropout_nonzero_has_dropouts_distribution():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(400, 500, generator=g) * (torch.rand(400, 500, generator=g) < 0.3)
    out = dropout_nonzero(x, 0.6)
    kept = out != 0
    assert not kept[x == 0].any()                                         # zeros stay zero
    torch.testing.assert_close(out[kept], x[kept] / 0.4)                  # survivors scaled by 1 / (1 - p)
    assert abs(kept.sum() / (x != 0).sum() - 0.4) < 0.01                  # each kept with probability 1 - p
    assert dropout_nonzero(x, 0.6, training=False) is x and dropout_nonzero(x, 0.0) is x
    learned = x.clone().requires_grad_()
    dropout_nonzero(learned, 0.6).sum().backward()
    assert ((learned.grad == 0) | (learned.grad == 2.5)).all() and (learned.grad[x == 0] != 0).any()


def test_sparse_features_give_the_dense_path_results():
    """Bag-of-words features stored as CSR: the same dropout draws (row-major nonzeros) and the same logits
    and parameter gradients as the dense features, in float64."""
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(60, 90, generator=g, dtype=torch.float64)
         * (torch.rand(60, 90, generator=g) < 0.03)).to(torch.float64)
    sparse = model_features(x)
    assert sparse.layout == torch.sparse_csr and model_features(torch.ones(4, 3)).layout == torch.strided
    torch.manual_seed(7)
    dense_drop = dropout_nonzero(x, 0.6)
    torch.manual_seed(7)
    torch.testing.assert_close(dropout_nonzero(sparse, 0.6).to_dense(), dense_drop, rtol=0, atol=0)
    edge_index = torch.randint(0, 60, (2, 300), generator=g)
    torch.manual_seed(3)
    model = GAT(90, 4, conv="graphattn.nn.GATConv", conv_args=dict(attention_bias=True)).double().eval()
    outs = [model(features, edge_index) for features in (x, sparse)]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-12, atol=1e-12)
    grads = [torch.autograd.grad(out.square().sum(), list(model.parameters())) for out in outs]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.chdir(tmp_path)
    root = planetoid_release(tmp_path / "data")
    (tmp_path / "gat-test.yaml").write_text(CONFIG)
    yield tmp_path, ["--config", "gat-test.yaml", "--root", str(root), "--no-progress"]
    torch.set_num_threads(threads)


def _records(out):
    return {p.parent.name: {k: v for k, v in json.loads(p.read_text()).items() if k not in TIMING}
            for p in sorted(out.glob("seed*/record.json"))}


def _curves(out):
    return {p.parent.name: p.read_text() for p in sorted(out.glob("seed*/metrics.csv"))}


def test_cli_runs_seeds_skips_finished_ones_and_writes_results(setup, capsys):
    tmp_path, args = setup
    main(args + ["--seeds", "0-1", "--out", "runs/a"])
    first = capsys.readouterr().out
    assert "seed 0: " in first and "seed 1: " in first and "finished before" not in first
    assert json.loads((tmp_path / "runs/a/summary.json").read_text())["seeds_done"] == 2
    stamp = os.stat(tmp_path / "runs/a/seed0/record.json").st_mtime_ns
    main(args + ["--seeds", "0-2", "--out", "runs/a", "--results", "results/cora-gat-test.json"])
    second = capsys.readouterr().out
    assert second.count("finished before") == 2 and "seed 2: " in second
    assert os.stat(tmp_path / "runs/a/seed0/record.json").st_mtime_ns == stamp
    main(args + ["--seeds", "0", "1", "2"])                        # default output folder runs/<config name>
    fresh = tmp_path / "runs/gat-test"
    assert _records(tmp_path / "runs/a") == _records(fresh) and _curves(tmp_path / "runs/a") == _curves(fresh)
    summary = json.loads((tmp_path / "results/cora-gat-test.json").read_text())
    assert summary["seeds_done"] == 3 and not summary["partial"] and summary["metric"] == "accuracy"
    tests = [r["test_acc"] for r in summary["runs"]]
    assert summary["test_mean"] == pytest.approx(sum(tests) / 3) and summary["config"]["patience"] == 5
    curves = gzip.decompress((tmp_path / "results/cora-gat-test-curves.csv.gz").read_bytes()).decode().splitlines()
    assert curves[0] == "seed,epoch,train_loss,val_loss,val_acc,test_acc"
    assert len(curves) == 1 + sum(r["epochs_run"] for r in summary["runs"])
    record = json.loads((fresh / "seed1" / "record.json").read_text())
    assert record["epochs_run"] == len(_curves(fresh)["seed1"].splitlines()) - 1 and record["threads"] == 1


@pytest.mark.parametrize("args, message", [
    (["--dataset", "cora"], "cora is a node-level dataset (one graph): use a node-level model"),
    (["--model", "gat"], "use dataset cora or citeseer"),
    (["--dataset", "cora", "--model", "gat", "--root", "/nonexistent"], "missing ind.cora.x"),
    (["--dataset", "citeseer", "--model", "gat", "--root", "data"], "missing ind.citeseer.x"),
    (["--dataset", "cora", "--model", "gat", "--seeds", "3-1"], "seeds: range '3-1' ends before it starts"),
    (["--dataset", "cora", "--model", "gat", "--seeds", "0-2", "1"], "names a seed twice"),
    (["--dataset", "ogbg-molesol", "--results", "r.json"], "--results is for node-level runs"),
    (["--dataset", "cora", "--model", "gat", "--threads", "0"], "--threads must be >= 1"),
])
def test_cli_errors_are_one_line(setup, args, message):
    with pytest.raises(SystemExit) as info:
        main(args + ["--no-progress"])
    assert message in str(info.value.code) and "\n" not in str(info.value.code)


def test_cli_refuses_records_of_another_config(setup, capsys):
    tmp_path, args = setup
    main(args + ["--seeds", "0", "--out", "runs/a", "--epochs", "3"])
    with pytest.raises(SystemExit) as info:
        main(args + ["--seeds", "0", "--out", "runs/a", "--epochs", "4"])
    message = str(info.value.code)
    assert "\n" not in message and "seed0/record.json: written by another config (differs in epochs)" in message


class Killed(BaseException):
    """What the fault-injection point raises here instead of ending the process."""


def test_seed_killed_halfway_runs_again_to_the_same_record(setup, monkeypatch, capsys):
    tmp_path, args = setup
    command = args + ["--seeds", "0-1", "--out", "runs/killed"]
    monkeypatch.setenv("GRAPHATTN_CRASH_AT", "seed1:epoch3")
    monkeypatch.setattr(os, "_exit", lambda status: (_ for _ in ()).throw(Killed(status)))
    with pytest.raises(Killed):
        main(command)
    summary = json.loads((tmp_path / "runs/killed/summary.json").read_text())
    assert summary["partial"] and summary["seeds_done"] == 1 and not (tmp_path / "runs/killed/seed1").exists()
    monkeypatch.delenv("GRAPHATTN_CRASH_AT")
    capsys.readouterr()
    main(command)
    assert "seed 0: finished before" in capsys.readouterr().out
    main(args + ["--seeds", "0-1", "--out", "runs/whole"])
    assert _records(tmp_path / "runs/killed") == _records(tmp_path / "runs/whole")
    assert _curves(tmp_path / "runs/killed") == _curves(tmp_path / "runs/whole")


def test_records_without_a_newer_setting_still_count():
    """A record written before a setting existed (its default kept the old behaviour) is reused; a setting it
    has with another value is named with its path."""
    from graphattn.train_cli import _differences

    protocol = {"epochs": 5, "optim": {"lr": 0.005, "schedule_step": "epoch"}, "select_epochs": None}
    assert _differences({"epochs": 5, "optim": {"lr": 0.005}}, protocol) == []
    assert _differences({"epochs": 5, "optim": {"lr": 0.01}}, protocol) == ["optim.lr"]
    assert _differences({"epochs": 5, "removed": 1}, protocol) == ["removed"]

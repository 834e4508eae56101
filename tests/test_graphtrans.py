"""GraphTrans (Wu et al. 2021): OGB's GCN/GIN without edge features, the CLS token layout, the transformer on
the engine against torch.nn.TransformerEncoder over the padded batch (float64, same weights), the repository's
parameter counts, the per-iteration cosine schedule, and `graphattn train` on a TU dataset (resumable)."""
import csv
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch
from torch_geometric.nn import MessagePassing

from graphattn.bench.graphtrans import PaddedGraphTrans
from graphattn.bench.graphtrans import main as bench_main
from graphattn.config import ConfigError, load_config
from graphattn.models import GraphTrans, LocalConv, model_inputs
from graphattn.models.graphtrans import with_cls_tokens
from graphattn.nn import GraphTransformerEncoderLayer, OGBGCNConv
from graphattn.train_cli import build_model
from graphattn.training import build_scheduler

from helpers import labelled_paths as _graphs, tu_release


class RepoGCNConv(MessagePassing):
    """GraphTrans's ``modules/conv.py`` GCNConv (OGB's), as written there, with edge features ``edge_attr``."""

    def __init__(self, conv: OGBGCNConv):
        super().__init__(aggr="add")
        self.linear, self.root_emb = conv.linear, conv.root_emb

    def forward(self, x, edge_index, edge_attr):
        x = self.linear(x)
        row, col = edge_index
        deg = torch.zeros(x.size(0), dtype=x.dtype).index_add_(0, row, torch.ones(row.numel(), dtype=x.dtype)) + 1
        deg_inv_sqrt = deg.pow(-0.5)
        norm = deg_inv_sqrt[row] * deg_inv_sqrt[col]
        return self.propagate(edge_index, x=x, edge_attr=edge_attr, norm=norm) + F.relu(
            x + self.root_emb.weight) * 1.0 / deg.view(-1, 1)

    def message(self, x_j, edge_attr, norm):
        return norm.view(-1, 1) * F.relu(x_j + edge_attr)


def test_ogb_gcn_is_graphtrans_gcn_with_and_without_edge_features():
    torch.manual_seed(0)
    conv = OGBGCNConv(6).double()
    batch = _graphs([4, 1, 6, 3], features=6)
    x = torch.randn(batch.num_nodes, 6, dtype=torch.float64)
    edge_attr = torch.randn(batch.num_edges, 6, dtype=torch.float64)
    reference = RepoGCNConv(conv)
    torch.testing.assert_close(conv(x, batch.edge_index, edge_attr), reference(x, batch.edge_index, edge_attr))
    torch.testing.assert_close(conv(x, batch.edge_index), reference(x, batch.edge_index, torch.zeros_like(edge_attr)))
    single = batch.ptr[1].item()               # the 1-node graph: only its root term, relu(Wx + b + r)
    torch.testing.assert_close(conv(x, batch.edge_index)[single],
                               F.relu(conv.linear(x[single]) + conv.root_emb.weight[0]))
    with pytest.raises(ValueError, match="edge_attr must have shape"):
        conv(x, batch.edge_index, edge_attr[:-1])


def test_ogb_gin_without_edge_features_sums_relu_of_neighbours():
    torch.manual_seed(0)
    conv = LocalConv("gin", 5).double().eval()
    batch = _graphs([3, 5], features=5)
    x = torch.randn(batch.num_nodes, 5, dtype=torch.float64)
    src, dst = batch.edge_index
    summed = torch.zeros_like(x).index_add_(0, dst, F.relu(x[src]))
    out, edges = conv(x, batch.edge_index)
    torch.testing.assert_close(out, conv.conv.nn((1 + conv.conv.eps) * x + summed))
    assert edges is None


def test_cls_token_is_appended_after_each_graphs_nodes():
    h = torch.arange(6.0).view(6, 1)
    batch = torch.tensor([0, 0, 0, 2, 2, 2])                        # graph 1 has no node
    tokens, token_batch, cls_rows = with_cls_tokens(h, torch.tensor([-1.0]), batch, 3)
    assert tokens.view(-1).tolist() == [0, 1, 2, -1, -1, 3, 4, 5, -1]
    assert token_batch.tolist() == [0, 0, 0, 0, 1, 2, 2, 2, 2] and cls_rows.tolist() == [3, 4, 8]


def _model(gnn="gcn", **kwargs):
    torch.manual_seed(0)
    args = dict(channels=16, gnn=gnn, gnn_layers=3, d_model=12, num_layers=2, heads=3, dim_feedforward=20)
    return GraphTrans(7, 3, **{**args, **kwargs}).double()


@pytest.mark.parametrize("gnn", ["gcn", "gin"])
def test_graphtrans_equals_torch_transformer_encoder_over_the_padded_batch(gnn):
    """The repository's transformer: nn.TransformerEncoder (post-norm, sequence first) over the batch padded
    to its largest graph, CLS appended, src_key_padding_mask; same weights, float64, outputs and gradients."""
    model = _model(gnn).eval()
    with torch.no_grad():                                    # distinct layers (TransformerEncoder copies one)
        for p in model.transformer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    padded = PaddedGraphTrans(model).double().eval()
    reference = model.transformer.state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in padded.transformer.state_dict().items())
    batch = _graphs([5, 1, 9, 2, 7, 3])
    inputs = model_inputs(batch)
    ours, theirs = model(**inputs), padded(**inputs)
    torch.testing.assert_close(ours, theirs)
    assert ours.shape == (6, 3)
    grad = torch.randn_like(ours)
    ours_grads = torch.autograd.grad(ours, list(model.transformer.parameters()) + [model.cls_embedding], grad)
    theirs_grads = torch.autograd.grad(theirs, list(padded.transformer.parameters()) + [model.cls_embedding], grad)
    for a, b in zip(ours_grads, theirs_grads):
        torch.testing.assert_close(a, b)


def test_graphtrans_runs_per_graph_and_trains():
    model = _model()
    batch = _graphs([4, 6, 1])
    model.eval()
    whole = model(**model_inputs(batch))
    alone = torch.cat([model(**model_inputs(Batch.from_data_list([g]))) for g in batch.to_data_list()])
    torch.testing.assert_close(whole, alone)
    model.train()
    F.cross_entropy(model(**model_inputs(batch)), batch.y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_encoder_outputs_of_some_rows_are_those_rows_of_the_full_output():
    from graphattn import AttentionGraph
    from graphattn.nn import GraphTransformerEncoder

    torch.manual_seed(0)
    encoder = GraphTransformerEncoder(8, 2, 12, 0.0, num_layers=2).double()
    token_batch = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2, 2])
    x = torch.randn(9, 8, dtype=torch.float64, requires_grad=True)
    rows = torch.tensor([2, 3, 8])                                   # one row per graph
    graph = AttentionGraph.full_per_graph(token_batch, 3)
    to_rows = AttentionGraph.from_sorted_rows(token_batch, torch.arange(9), 9, 3)
    full, part = encoder(x, graph)[rows], encoder(x, graph, (rows, to_rows))
    torch.testing.assert_close(part, full)
    grad = torch.randn_like(part)
    torch.testing.assert_close(torch.autograd.grad(part, x, grad)[0], torch.autograd.grad(full, x, grad)[0])


def test_transformer_encoder_layers_start_as_copies_and_load_torch_weights():
    model = _model()
    first, second = model.transformer.layers
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    torch_layer = torch.nn.TransformerEncoderLayer(12, 3, 20, 0.1).double()
    layer = GraphTransformerEncoderLayer(12, 3, 20, 0.1).double()
    assert layer.load_state_dict(torch_layer.state_dict()).missing_keys == []


def test_parameter_counts_are_the_repositorys():
    """ucbrise/graphtrans GNNTransformer on NCI1 (37 one-hot labels, 2 classes), counted from its code:
    Linear(37, 128) 4,864; per GCN layer Linear 16,512 + root_emb 128 + BatchNorm 256; per GIN layer
    Linear(128, 256) 33,024 + BN(256) 512 + Linear(256, 128) 32,896 + eps 1 + BatchNorm 256; gnn2transformer
    16,512; per transformer layer in_proj 49,536 + out_proj 16,512 + linear1 33,024 + linear2 32,896 + 2 norms
    512 = 132,480; final norm 256, input norm 256, CLS 128; Linear(128, 2) 258."""
    small = build_model(load_config("graphtrans-small-nci1"), num_tasks=2, num_features=37)
    large = build_model(load_config("graphtrans-large-nci1"), num_tasks=2, num_features=37)
    common = 4864 + 16512 + 256 + 256 + 128 + 258
    assert sum(p.numel() for p in small.parameters()) == common + 5 * (16512 + 128 + 256) + 3 * 132480 == 504194
    assert sum(p.numel() for p in large.parameters()) == common + 5 * (66433 + 256) + 4 * 132480 == 885639


def test_per_iteration_cosine_is_graphtrans_cosine_annealing():
    optim = load_config("graphtrans-small-nci1").optim
    p = torch.nn.Parameter(torch.zeros(1))
    ours_opt, theirs_opt = torch.optim.AdamW([p], lr=optim.lr), torch.optim.AdamW([p], lr=optim.lr)
    ours = build_scheduler(ours_opt, optim, epochs=3, steps_per_epoch=26)
    theirs = torch.optim.lr_scheduler.CosineAnnealingLR(theirs_opt, T_max=3 * 26)
    for _ in range(3 * 26):
        assert math.isclose(ours_opt.param_groups[0]["lr"], theirs_opt.param_groups[0]["lr"], rel_tol=1e-9,
                            abs_tol=1e-15)
        ours_opt.step(), theirs_opt.step()                        # no gradient: only the order of the calls
        ours.step(), theirs.step()
    assert ours_opt.param_groups[0]["lr"] == 0.0
    with pytest.raises(ConfigError, match="schedule_step"):
        load_config(None, {"optim": {"scheduler": "cosine", "schedule_step": "batch"}})
    with pytest.raises(ConfigError, match="select_epochs"):
        load_config(None, {"epochs": 5, "select_epochs": ["6-9"]})
    assert load_config("graphtrans-small-nci1").select_epochs == [1] + list(range(16, 101))


CONFIG = """dataset: nci1
model: graphtrans
epochs: 3
batch_size: 8
seeds: [0, 1]
select_epochs: [1, 3]
model_args: {channels: 8, gnn_layers: 2, d_model: 8, num_layers: 1, heads: 2, dim_feedforward: 16}
optim: {optimizer: adamw, lr: 1.0e-3, weight_decay: 1.0e-4, scheduler: cosine, schedule_step: iteration,
        min_lr: 0.0}
"""


def _train(tmp_path, out, *args, crash_at=None, config=CONFIG):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("GRAPHATTN_CRASH_AT", None)
    if crash_at:
        env["GRAPHATTN_CRASH_AT"] = crash_at
    (tmp_path / "config.yaml").write_text(config)
    return subprocess.run([sys.executable, "-m", "graphattn.cli", "train", "--no-progress", "--config",
                           str(tmp_path / "config.yaml"), "--root", str(tmp_path / "tu"), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=600, env=env)


def _curve(out, seed):
    with open(out / f"seed{seed}" / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def test_train_graphtrans_on_a_tu_dataset_selects_and_resumes_exactly(tmp_path):
    tu_release(tmp_path / "tu", sizes=[3 + i % 9 for i in range(60)])
    whole = _train(tmp_path, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["metric"] == "accuracy" and len(summary["runs"]) == 2
    assert all(run["best_epoch"] in (1, 3) and run["epochs_done"] == 3 for run in summary["runs"])
    curves = [_curve(tmp_path / "whole", seed) for seed in (0, 1)]
    assert [len(c) for c in curves] == [3, 3]
    assert float(curves[0][1]["lr"]) < float(curves[0][0]["lr"]) == 1e-3          # decayed within epoch 1
    killed = _train(tmp_path, tmp_path / "resumed", crash_at="step:2:3")
    assert killed.returncode == 137
    resumed = _train(tmp_path, tmp_path / "resumed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert [_curve(tmp_path / "resumed", seed) for seed in (0, 1)] == curves


def test_bench_graphtrans_smoke(tmp_path, capsys):
    tu_release(tmp_path / "tu", sizes=[3 + i % 9 for i in range(30)], num_labels=37)
    bench_main(["--root", str(tmp_path / "tu"), "--device", "cpu", "--graphs", "4", "--batches", "2", "--reps", "2",
                "--out-dir", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "graphtrans-cpu.json").read_text())
    row = result["rows"][0]
    assert row["graphattn_ms"] > 0 and row["padded_ms"] > 0 and row["parameters"] == 504194
    assert "padded/graphattn" in capsys.readouterr().out

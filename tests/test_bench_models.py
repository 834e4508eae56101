"""``graphattn bench models``: the model pairs are the same models, and the command writes its JSON."""
import json

import torch
from torch_geometric.loader import DataLoader
from torch_geometric.nn import TransformerConv

from graphattn.bench.models import TransformerConvStack, main
from graphattn.data import load_dataset
from graphattn.nn import GraphAttnConv


def test_transformer_conv_stacks_agree():
    bench = load_dataset("ogbg-molesol", None)
    batch = next(iter(DataLoader(bench.subset("train")[:24], batch_size=24)))
    pyg = TransformerConvStack(TransformerConv, 32, 1, num_layers=3, heads=4, dropout=0.0).eval()
    ours = TransformerConvStack(GraphAttnConv, 32, 1, num_layers=3, heads=4, dropout=0.0).eval()
    ours.load_state_dict(pyg.state_dict())
    args = (batch.x, batch.edge_index, batch.edge_attr, batch.batch)
    torch.testing.assert_close(ours(*args), pyg(*args), atol=1e-5, rtol=1e-5)


def test_bench_models_writes_both_families(tmp_path, capsys):
    main(["--device", "cpu", "--max-graphs", "16", "--epochs", "1", "--layers", "1", "--batch-size", "8",
          "--out-dir", str(tmp_path)])
    result = json.loads((tmp_path / "models-cpu.json").read_text())
    assert set(result["pyg_over_graphattn"]) == {"gps", "transformer"}
    by_family = {}
    for row in result["rows"]:
        by_family.setdefault(row["family"], set()).add(row["parameters"])
    assert all(len(counts) == 1 for counts in by_family.values())     # same parameter count per pair
    assert "PyG epoch / graphattn epoch" in capsys.readouterr().out

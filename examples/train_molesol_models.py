"""Train the ready-made models (GPS, GraphTransformer, MPNNVirtualNode) on ogbg-molesol.

Prints the official OGB test RMSE of each model (at the epoch of best validation RMSE) next
to the mean-predictor baseline (the training-set mean predicted for every molecule).

    OMP_NUM_THREADS=1 python examples/train_molesol_models.py --epochs 30
    python examples/train_molesol_models.py --root /path/to/ogb --models gps --epochs 100

``--root`` is a folder holding ``ogbg_molesol/`` in OGB's layout; by default the copy
embedded in graphattn is used (no download).
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torch_geometric.loader import DataLoader
from torch_geometric.transforms import Compose

from graphattn.data import load_dataset
from graphattn.data.positional import AddLapPE, AddRWSE
from graphattn.models import GPS, GraphTransformer, MPNNVirtualNode, model_inputs

LAP_K, RW_STEPS = 8, 16


def build(name: str, channels: int, out: int) -> torch.nn.Module:
    if name == "gps":
        return GPS(channels, out, num_layers=3, heads=4, local_conv="gine", rwse_dim=RW_STEPS, dropout=0.1,
                   head_layers=2)
    if name == "gt":
        return GraphTransformer(channels, out, num_layers=3, heads=4, lap_pe_dim=LAP_K, dropout=0.1,
                                head_layers=2)
    if name == "mpnn_vn":
        return MPNNVirtualNode(channels, out, num_layers=3, local_conv="gine", dropout=0.1, head_layers=2)
    raise ValueError(f"unknown model {name!r}")


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, evaluator) -> float:
    model.eval()
    ys, preds = [], []
    for batch in loader:
        preds.append(model(**model_inputs(batch)))
        ys.append(batch.y)
    return float(evaluator.eval({"y_true": torch.cat(ys), "y_pred": torch.cat(preds)})["rmse"])


def run(name: str, bench, args) -> dict:
    torch.manual_seed(args.seed)
    data = bench.dataset
    train, valid, test = (data[bench.split[s]] for s in ("train", "valid", "test"))
    loaders = {"train": DataLoader(train, batch_size=args.batch_size, shuffle=True),
               "valid": DataLoader(valid, batch_size=256), "test": DataLoader(test, batch_size=256)}
    y_mean = train.y.mean()
    model = build(name, args.channels, bench.num_tasks)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-5)
    best = (float("inf"), float("nan"), -1)
    start = time.time()
    for epoch in range(1, args.epochs + 1):
        model.train()
        for batch in loaders["train"]:
            opt.zero_grad()
            pred = model(**model_inputs(batch))
            loss = torch.nn.functional.mse_loss(pred, batch.y - y_mean)   # targets centred on the train mean
            loss.backward()
            opt.step()
        # the model predicts y - mean; shift back before the official evaluator
        model_eval = _Shifted(model, y_mean)
        val = evaluate(model_eval, loaders["valid"], bench.evaluator)
        tst = evaluate(model_eval, loaders["test"], bench.evaluator)
        if val < best[0]:
            best = (val, tst, epoch)
        print(f"{name} epoch {epoch:3d} loss {loss.item():.4f} valid {val:.4f} test {tst:.4f}", flush=True)
    return {"model": name, "params": sum(p.numel() for p in model.parameters()), "best_valid_rmse": best[0],
            "test_rmse_at_best_valid": best[1], "best_epoch": best[2], "seconds": round(time.time() - start, 1)}


class _Shifted(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, shift: torch.Tensor):
        super().__init__()
        self.model, self.shift = model, shift

    def forward(self, **kwargs):
        return self.model(**kwargs) + self.shift


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="folder with ogbg_molesol/ (default: embedded copy)")
    parser.add_argument("--models", default="gps,gt,mpnn_vn")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    bench = load_dataset("ogbg-molesol", args.root, pre_transform=Compose([AddLapPE(LAP_K), AddRWSE(RW_STEPS)]))
    train_y = bench.dataset[bench.split["train"]].y
    test_y = bench.dataset[bench.split["test"]].y
    baseline = bench.evaluator.eval({"y_true": test_y, "y_pred": train_y.mean().expand_as(test_y)})["rmse"]
    baseline = float(baseline)
    print(f"mean-predictor baseline: test RMSE {baseline:.4f}")
    results = [run(name, bench, args) for name in args.models.split(",")]
    print(json.dumps({"dataset": "ogbg-molesol", "mean_baseline_test_rmse": baseline, "epochs": args.epochs,
                      "results": results}, indent=2))


if __name__ == "__main__":
    import sys

    from graphattn.cli import one_line_errors

    with one_line_errors(f"python {sys.argv[0]}"):
        main()

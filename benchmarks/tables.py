"""The results tables of the README and the documentation, generated from the committed results files
(``make tables``).

A table lives in a page between two markers, ``<!-- table: NAME -->`` and ``<!-- end table: NAME -->``; this
module renders every table from ``benchmarks/results/`` and rewrites what stands between the markers of
every page that has them (``README.md``, ``docs/**.md``). ``--check`` rewrites nothing and fails when a page
is stale (``tests/test_docs.py`` runs it)::

    python -m benchmarks.tables [--check]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Callable

from graphattn.reproductions import runs_done_cell
from graphattn.utils.stats import mean_std

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKED = re.compile(r"(<!-- table: ([\w-]+) -->\n)(.*?)(<!-- end table: \2 -->)", re.S)


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _table(header: list[str], align: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def _ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:,.1f} ms" if value >= 10 else f"{value:.2f} ms"


def _ratio(value: float | None, bold: bool = False) -> str:
    if value is None:
        return "—"
    return f"**{value:.2f}x**" if bold else f"{value:.2f}x"


LAYER_STACKS = {"conv": "6 x `GraphAttnConv(edge_dim=64)` vs 6 x `TransformerConv(edge_dim=64)`",
                "gps": "6 x `GPSLayer` (GINE, multihead, attention dropout 0.5) vs 6 x `GPSConv`",
                "gps_nodrop": "the same without attention dropout"}


def layer_stacks() -> str:
    rows = [r for r in _load("layers-cpu.json")["rows"] if r["comparison"] in LAYER_STACKS]
    return _table(["stack", "graphattn", "PyG", "PyG / graphattn"], ["l", "r", "r", "r"],
                  [[LAYER_STACKS[r["comparison"]], _ms(r["graphattn_ms"]), _ms(r["pyg_ms"]),
                    _ratio(r["pyg_over_graphattn"], bold=r["comparison"] != "gps_nodrop")] for r in rows])


def core_op() -> str:
    """The full-size run of the core op (the ``measured`` group with the most rows)."""
    core = [r for r in _load("layers-cpu.json")["rows"] if r["comparison"] == "core"]
    groups: dict[str, list[dict]] = {}
    for row in core:
        groups.setdefault(row.get("measured") or "", []).append(row)
    rows = max(groups.values(), key=len)
    return _table(["edges", "nodes", "graphattn", "PyG", "PyG / graphattn"], ["r"] * 5,
                  [[f"{r['edges']:,}", f"{r['nodes']:,}", _ms(r["graphattn_ms"]),
                    _ms(r["pyg_ms"]) if r["pyg_ms"] else (r.get("note") or "—"), _ratio(r["pyg_over_graphattn"])]
                   for r in rows])


GAT_GRAPHS = {"cora": "Cora ({nodes:,} nodes, {edges:,} edges + loops, {features:,} features)",
              "random": "random, {nodes:,} nodes, {edges:,} edges, {features} features"}


def gat() -> str:
    rows, seen = [], set()
    for r in _load("gat-cpu.json")["rows"]:
        graph = GAT_GRAPHS.get(r["dataset"], r["dataset"]).format(**r) if r["dataset"] not in seen else "same"
        seen.add(r["dataset"])
        memory = f"{r['graphattn_peak_growth_mb']:,g} / {r['pyg_peak_growth_mb']:,g} MiB"
        rows.append([graph, "`GATConv`" if r["comparison"] == "gat" else "`GATv2Conv`", _ms(r["graphattn_ms"]),
                     _ms(r["pyg_ms"]), _ratio(r["pyg_over_graphattn"], bold=True), memory])
    return _table(["graph", "layer", "graphattn", "PyG", "PyG / graphattn", "peak RSS growth, graphattn / PyG"],
                  ["l", "l", "r", "r", "r", "r"], rows)


MODEL_FAMILIES = {"gps": "GPS, GatedGCN + multihead (attention dropout 0.5), 10 layers, dim 64, 4 heads, batch 32 "
                         "({parameters:,} params) vs `GPSConv`",
                  "transformer": "10 x `TransformerConv` with bond features (edge_dim 64), 4 heads, dim 64 vs the "
                                 "same stack of `GraphAttnConv` ({parameters:,} params)"}


def models() -> str:
    by_family: dict[str, list[list[str]]] = {}
    for name in ("models-cpu.json", "models-cpu-molhiv.json"):
        data = _load(name)
        data_label = (f"{data['dataset']} train ({data['graphs']:,} graphs)" if name == "models-cpu.json"
                      else f"first {data['graphs']:,} {data['dataset']} train graphs")
        for family, ratio in data["pyg_over_graphattn"].items():
            sides = {r["library"]: r for r in data["rows"] if r["family"] == family}
            first = family not in by_family
            by_family.setdefault(family, []).append([
                MODEL_FAMILIES[family].format(**sides["graphattn"]) if first else "same", data_label,
                f"{sides['graphattn']['epoch_seconds']:.2f} s", f"{sides['PyG']['epoch_seconds']:.2f} s",
                _ratio(ratio)])
    return _table(["model (same parameters in both)", "data", "graphattn", "PyG", "PyG / graphattn"],
                  ["l", "l", "r", "r", "r"], [row for rows in by_family.values() for row in rows])


def _score(value: float | None, metric: str) -> str:
    if value is None:
        return "—"
    return f"{100 * value:.2f}" if metric == "accuracy" else f"{value:.4f}"


def reproductions() -> str:
    """Every target of ``graphattn reproduce`` against its published number (accuracy in %)."""
    rows = []
    for t in _load("train/reproductions.json")["targets"]:
        ours = (f"{_score(t['mean'], t['metric'])} ± {_score(t['std'], t['metric'])}" if t["mean"] is not None
                else "—")
        published = (f"{_score(t['published_mean'], t['metric'])} ± {_score(t['published_std'], t['metric'])}"
                     if t["published_mean"] is not None else "no published figure")
        verdict = f"**{t['verdict']}**" if t["verdict"] == "partial" else t["verdict"]
        rows.append([f"`{t['target']}`", t["metric"] + (" (%)" if t["metric"] == "accuracy" else ""), ours,
                     published, runs_done_cell(t), verdict])
    return _table(["target", "metric", "graphattn", "published", "runs done", "verdict"],
                  ["l", "l", "l", "l", "l", "l"], rows)


MOLECULENET = ["ogbg-molesol", "ogbg-molfreesolv", "ogbg-molbace"]
ARROWS = {"rmse": "RMSE ↓", "rocauc": "ROC-AUC ↑", "ap": "AP ↑"}


def moleculenet() -> str:
    """``gps-moleculenet``, 40 epochs, 3 seeds, on the small OGB molecule datasets."""
    rows = []
    for name in MOLECULENET:
        data = _load(f"train/{name}-gps-cpu.json")
        seconds = sum(r["epoch_seconds"] for r in data["runs"]) / len(data["runs"])
        rows.append([name, ARROWS[data["metric"]], f"{data['test_mean']:.3f} ± {data['test_std']:.3f}",
                     str(len(data["runs"])), f"{seconds:.1f}"])
    return _table(["dataset", "metric", "graphattn (test, best-validation epoch)", "seeds", "s / epoch (CPU)"],
                  ["l", "l", "l", "r", "r"], rows)


GTSP_NCI1_TARGETS = {"dense": "graphtrans-small-nci1", "keep0.75": "gtsp-graphtrans-small-nci1-keep0.75",
                     "keep0.5": "gtsp-graphtrans-small-nci1-keep0.5",
                     "keep0.5-heads0.5": "gtsp-graphtrans-small-nci1-keep0.5-heads0.5"}


def finished_tests(target: dict, results: Path | None = None) -> dict[int, float]:
    """Test value by seed of the finished runs of one ``reproductions.json`` target (none before its results
    file exists), read from ``results/train/`` (default: the committed results). A graph-level run's seed is
    also its split, so two targets' equal seeds share a split."""
    if target.get("results") is None:
        return {}
    summary = json.loads(((results or RESULTS) / "train" / target["results"]).read_text())
    return {r["seed"]: r["test"] for r in summary["runs"] if r["epochs_done"] >= target["epochs"]}


def paired_difference(arm: dict[int, float], dense: dict[int, float]) -> str:
    """Mean ± std over the splits both finished of ``arm - dense``, in accuracy points."""
    splits = sorted(arm.keys() & dense.keys())
    if not splits:
        return "—"
    mean, std = mean_std(100 * (arm[s] - dense[s]) for s in splits)
    return f"{mean:+.2f} ± {std:.2f} ({len(splits)} splits)"


def gtsp_nci1() -> str:
    """GTSP on GraphTrans-small, NCI1: FLOPs and training-step time per arm (``graphattn bench gtsp-graphtrans``)
    beside each arm's test accuracy from its ``graphattn reproduce`` target (runs done so far), and the arm's
    accuracy minus dense's on the same splits (the runs of equal seed)."""
    bench = _load("gtsp-nci1-cpu.json")
    targets = {t["target"]: t for t in _load("train/reproductions.json")["targets"]}
    dense = finished_tests(targets[GTSP_NCI1_TARGETS["dense"]])
    rows = []
    for r in bench["rows"]:
        t = targets.get(GTSP_NCI1_TARGETS[r["arm"]])
        accuracy = "—" if t is None or t["mean"] is None else (
            f"{_score(t['mean'], 'accuracy')} ± {_score(t['std'], 'accuracy')} ({t['runs_done']} of {t['runs']})")
        paired = "—" if t is None or r["arm"] == "dense" else paired_difference(finished_tests(t), dense)
        rows.append([r["arm"], f"{r['token_ratio']:g}", f"{r['head_density']:g}",
                     f"{r['forward_flops'] / 1e9:.2f} G ({r['forward_vs_dense']:.2f})",
                     f"{r['train_flops'] / 1e9:.2f} G ({r['train_vs_dense']:.2f})",
                     f"{_ms(r['train_step_ms'])} ({r['train_time_vs_dense']:.2f})", accuracy, paired])
    return _table(["arm", "tokens kept", "heads kept", "forward FLOPs (vs dense)", "training-step FLOPs (vs dense)",
                   "training step (vs dense)", "test accuracy % (runs done)", "minus dense, same splits (points)"],
                  ["l", "r", "r", "r", "r", "r", "l", "l"], rows)


TABLES: dict[str, Callable[[], str]] = {"layer-stacks": layer_stacks, "core-op": core_op, "gat": gat,
                                        "models": models, "reproductions": reproductions,
                                        "moleculenet": moleculenet, "gtsp-nci1": gtsp_nci1}


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def render(text: str, tables: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name not in tables:
            raise KeyError(f"unknown table {name!r}: the tables are {sorted(tables)}")
        return f"{match.group(1)}{tables[name]}{match.group(4)}"
    return MARKED.sub(replace, text)


def stale_pages() -> list[Path]:
    """The pages whose generated tables differ from what the results files give."""
    tables = {name: make() for name, make in TABLES.items()}
    return [page for page in pages() if render(page.read_text(), tables) != page.read_text()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a page is stale instead of rewriting it")
    args = parser.parse_args(argv)
    tables = {name: make() for name, make in TABLES.items()}
    stale = []
    for page in pages():
        text = page.read_text()
        new = render(text, tables)
        if new != text:
            stale.append(page.relative_to(ROOT))
            if not args.check:
                page.write_text(new)
    verb = "stale" if args.check else "rewritten"
    print(f"{verb}: {', '.join(map(str, stale))}" if stale else "every table is current")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())

"""The documentation's figures, drawn from the committed results files with matplotlib (``make figures``).

Reads ``benchmarks/results/**.json``, the per-epoch curves of the training runs
(``benchmarks/results/train/*-curves.csv.gz``, ``*-metrics.csv``) and the GTSP results
(``examples/results/gtsp_*.json``); writes PNGs to ``docs/figures/`` and ``docs/figures/figures.json``, the
list of figures with the series each one draws. Every figure is stamped with the device, threads and date
of the results it shows. A figure whose results do not exist yet (a GPU series, GTSP) is left out with a
note instead of drawn empty::

    python -m benchmarks.figures [--results benchmarks/results] [--out docs/figures]
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.tables import GTSP_NCI1_TARGETS, finished_tests  # noqa: E402
from graphattn.utils import mean_std  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PNG_METADATA = {"Software": None}  # no matplotlib version in the file: a regenerated figure is byte-stable


@dataclass
class Figure:
    """One figure: its file name, title, the series it draws and the stamp of its sources."""
    name: str
    series: list[str] = field(default_factory=list)
    stamp: str = ""


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _date(path: Path, data: dict) -> str:
    """The date of a results file: its own ``date`` field, else its last commit, else its file date."""
    if isinstance(data.get("date"), str):
        return data["date"]
    measured = [row.get("measured", "") for row in data.get("rows", []) if isinstance(row, dict)]
    dates = sorted({m[:10] for m in measured if re.match(r"\d{4}-\d{2}-\d{2}", m or "")})
    if dates:
        return dates[-1]
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%cs", "--", str(path)], cwd=ROOT, capture_output=True,
                             text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    if out:
        return out
    import datetime
    return datetime.date.fromtimestamp(path.stat().st_mtime).isoformat()


def _stamp(sources: list[tuple[Path, dict]]) -> str:
    parts = []
    for path, data in sources:
        device = str(data.get("device", "unknown device")).split(" (")[0]
        threads = data.get("threads", (data.get("args") or {}).get("threads"))
        threads = f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""
        parts.append(f"{path.name}: {device}{threads}, {_date(path, data)}")
    return "; ".join(dict.fromkeys(parts))


def _finish(fig, ax, figure: Figure, out: Path, legend: str = "best") -> Figure:
    fig.text(0.01, 0.005, figure.stamp, fontsize=6.5, color="0.35", ha="left", va="bottom", wrap=True)
    if ax is not None and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc=legend)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(out / figure.name, dpi=110, metadata=PNG_METADATA)
    plt.close(fig)
    return figure


def _is_gpu(data: dict) -> bool:
    return "cuda" in str(data.get("device", "")).lower() or "gpu" in str(data.get("device", "")).lower()


def core_speedup(results: Path, out: Path) -> Figure | None:
    """PyG time / graphattn time of the core op (forward + backward) against the edge count: the ``core``
    rows of ``graphattn bench layers`` (one series per run) and the PyG rows of ``graphattn bench kernels``;
    CPU and, where results exist, GPU."""
    series: dict[str, list[tuple[int, float]]] = {}
    sources = []
    for path in sorted(results.glob("layers-*.json")):
        data = _load(path)
        rows = [r for r in data.get("rows", []) if r.get("comparison") == "core" and r.get("pyg_over_graphattn")]
        if not rows:
            continue
        sources.append((path, data))
        kind = "GPU" if _is_gpu(data) else "CPU"
        for row in rows:
            label = f"{kind}, bench layers: {row.get('measured') or _date(path, data)}"
            series.setdefault(label, []).append((row["edges"], row["pyg_over_graphattn"]))
    for path in sorted(results.glob("kernels-*.json")):
        data = _load(path)
        by_graph: dict[tuple, dict] = {}
        for row in data.get("rows", []):
            if row.get("fwd_bwd_ms"):
                by_graph.setdefault((row["graph"], row["dtype"], row["dim"]), {})[row["method"]] = row
        points = [(rows["graphattn"]["edges"], rows["pyg"]["fwd_bwd_ms"] / rows["graphattn"]["fwd_bwd_ms"])
                  for rows in by_graph.values() if "graphattn" in rows and "pyg" in rows]
        if points:
            sources.append((path, data))
            kind = "GPU" if _is_gpu(data) else "CPU"
            series[f"{kind}, bench kernels ({path.stem})"] = points
    if not series:
        return None
    figure = Figure("core-speedup.png", list(series), _stamp(sources))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, points in series.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
    ax.set(xscale="log", xlabel="edges", ylabel="PyG time / graphattn time (forward + backward)",
           title="Core op: graph_attention against PyG's gather-softmax-scatter")
    return _finish(fig, ax, figure, out)


def peak_memory(results: Path, out: Path) -> Figure | None:
    """Peak memory (growth of the peak RSS, or the device's peak) of a training step against the edge
    count, graphattn and PyG, one pair of series per layer."""
    series: dict[str, list[tuple[int, float]]] = {}
    sources = []
    for path in sorted(results.glob("*.json")):
        data = _load(path)
        rows = [r for r in data.get("rows", []) if isinstance(r, dict) and r.get("graphattn_peak_growth_mb")]
        if not rows:
            continue
        sources.append((path, data))
        for row in rows:
            layer = {"gat": "GATConv", "gatv2": "GATv2Conv"}.get(row["comparison"], row["comparison"])
            series.setdefault(f"graphattn {layer}", []).append((row["edges"], row["graphattn_peak_growth_mb"]))
            if row.get("pyg_peak_growth_mb"):
                series.setdefault(f"PyG {layer}", []).append((row["edges"], row["pyg_peak_growth_mb"]))
    if not series:
        return None
    figure = Figure("peak-memory.png", list(series), _stamp(sources))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, points in series.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ls="-" if "graphattn" in label else "--",
                label=label)
    ax.set(xscale="log", yscale="log", xlabel="edges", ylabel="peak memory growth of a training step (MiB)",
           title="Peak memory, graphattn and PyG (2-layer GAT / GATv2, forward + backward)")
    return _finish(fig, ax, figure, out)


LAYER_LABELS = {"conv": "6 x GraphAttnConv vs TransformerConv", "gps": "6 x GPSLayer vs GPSConv",
                "gps_nodrop": "6 x GPSLayer vs GPSConv, no attention dropout"}


def ratios(results: Path, out: Path) -> Figure | None:
    """Speed ratios above the core op: layer stacks (``bench layers``), GAT layers (``bench gat``) and
    whole training epochs (``bench models``), one series per results file."""
    series: dict[str, list[tuple[str, float]]] = {}
    sources = []
    for path in sorted(p for p in results.glob("layers-*.json") if not re.search(r"\d{4}-\d{2}-\d{2}", p.name)):
        data = _load(path)
        bars = [(LAYER_LABELS.get(r["comparison"], r["comparison"]), r["pyg_over_graphattn"])
                for r in data["rows"] if r["comparison"] != "core" and r.get("pyg_over_graphattn")]
        if bars:
            series[f"layer stacks ({path.name})"] = bars
            sources.append((path, data))
    for path in sorted(results.glob("gat-*.json")):
        data = _load(path)
        bars = [(f"{'GATConv' if r['comparison'] == 'gat' else 'GATv2Conv'}, {r['dataset']}", r["pyg_over_graphattn"])
                for r in data["rows"] if r.get("pyg_over_graphattn")]
        if bars:
            series[f"GAT layers ({path.name})"] = bars
            sources.append((path, data))
    for path in sorted(results.glob("models-*.json")):
        data = _load(path)
        bars = [(f"{family} epoch, {data.get('dataset')}", value)
                for family, value in (data.get("pyg_over_graphattn") or {}).items()]
        if bars:
            series[f"model epochs ({path.name})"] = bars
            sources.append((path, data))
    if not series:
        return None
    figure = Figure("speed-ratios.png", list(series), _stamp(sources))
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * sum(len(b) for b in series.values()) + 1.6))
    positions, labels, y = [], [], 0
    for label, bars in series.items():
        ys = list(range(y, y + len(bars)))
        ax.barh(ys, [b[1] for b in bars], label=label)
        for yy, (name, value) in zip(ys, bars):
            ax.text(value, yy, f" {value:.2f}x", va="center", fontsize=7)
        positions, labels, y = positions + ys, labels + [b[0] for b in bars], y + len(bars) + 1
    ax.set_yticks(positions, labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="0.5", lw=0.8, ls="--")
    ax.set(xlabel="PyG time / graphattn time", title="Layer stacks, GAT layers and training epochs against PyG")
    return _finish(fig, ax, figure, out, legend="lower right")


def _read_curves(path: Path) -> dict[str, list[dict]]:
    """Per-epoch rows by seed: a ``*-curves.csv.gz`` with a ``seed`` column, or one ``*-seed<N>-metrics.csv``
    / ``*-metrics.csv`` per run."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        rows = list(csv.DictReader(io.StringIO(handle.read())))
    if rows and "seed" in rows[0]:
        by_seed: dict[str, list[dict]] = {}
        for row in rows:
            by_seed.setdefault(row["seed"], []).append(row)
        return by_seed
    seed = re.search(r"seed(\d+)", path.name)
    return {seed.group(1) if seed else "0": rows}


def _curve_files(train: Path, results_name: str) -> list[Path]:
    stem = results_name.removesuffix(".json")
    return sorted([*train.glob(f"{stem}-curves.csv.gz"), *train.glob(f"{stem}-seed*-metrics.csv"),
                   *train.glob(f"{stem}-metrics.csv")])


def reproduction_curves(results: Path, out: Path) -> list[Figure]:
    """For every reproduction with per-epoch curves: validation and test curves per seed, with the
    published mean ± std as a band."""
    index = results / "train" / "reproductions.json"
    if not index.exists():
        return []
    figures = []
    for target in _load(index)["targets"]:
        files = _curve_files(results / "train", target.get("results") or "")
        if not target.get("results") or not files:
            continue
        summary_path = results / "train" / target["results"]
        curves: dict[str, list[dict]] = {}
        for path in files:
            curves.update(_read_curves(path))
        valid_key = "val_acc" if "val_acc" in next(iter(curves.values()))[0] else "valid"
        test_key = "test_acc" if valid_key == "val_acc" else "test"
        figure = Figure(f"curves-{target['target']}.png", stamp=_stamp([(summary_path, _load(summary_path))]))
        fig, (ax_valid, ax_test) = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
        many = len(curves) > 10
        for seed, rows in sorted(curves.items(), key=lambda kv: int(kv[0])):
            epochs = [int(r["epoch"]) for r in rows]
            for ax, key, split in ((ax_valid, valid_key, "validation"), (ax_test, test_key, "test")):
                ax.plot(epochs, [float(r[key]) for r in rows], lw=0.6 if many else 1.2, alpha=0.35 if many else 0.9,
                        label=None if many else f"seed {seed}")
                figure.series.append(f"{split}, seed {seed}")
        if target.get("published_mean") is not None:
            mean, std = target["published_mean"], target["published_std"] or 0.0
            ax_test.axhspan(mean - std, mean + std, color="tab:orange", alpha=0.25,   # a test figure: test panel only
                            label=f"published test {mean:.4g} ± {std:.2g}")
            figure.series.append("published mean ± std")
        metric = target["metric"]
        ax_valid.set(xlabel="epoch", ylabel=metric, title="validation")
        ax_test.set(xlabel="epoch", title="test")
        low = min(float(r[test_key]) for rows in curves.values() for r in rows[len(rows) // 4:])
        ax_valid.set_ylim(bottom=max(0.0, min(low, (target.get("published_mean") or low)) - 0.1))
        seeds = f"{len(curves)} seed{'s' if len(curves) != 1 else ''}"
        fig.suptitle(f"{target['target']}: {seeds}, {target['verdict']} "
                     f"({target['runs_done']} of {target['runs']} runs done)", fontsize=10)
        if ax_test.get_legend_handles_labels()[0]:        # seeds (at most 10) or the published band
            ax_test.legend(fontsize=7, loc="lower right")
        figures.append(_finish(fig, None, figure, out))
    return figures


def gtsp(out: Path, sources: list[Path]) -> Figure | None:
    """GTSP's FLOPs per graph against test ROC-AUC, one series per results file (the variants as points)."""
    files = [(p, _load(p)) for p in sources]
    files = [(p, d) for p, d in files if any("flops_per_graph" in r and "auc_mean" in r for r in d.get("rows", []))]
    if not files:
        return None
    figure = Figure("gtsp-flops-auc.png", stamp="; ".join(
        f"{p.name}: {d['args'].get('device', '?')}, {d['args'].get('train_graphs') or 'all'} train graphs, "
        f"{d['args'].get('epochs')} epochs, {_date(p, d)}" for p, d in files))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for path, data in files:
        rows = [r for r in data["rows"] if "auc_mean" in r]
        ax.errorbar([r["flops_per_graph"]["total"] / 1e6 for r in rows], [r["auc_mean"] for r in rows],
                    yerr=[r.get("auc_std", 0.0) for r in rows], fmt="o", capsize=2, label=path.stem)
        for r in rows:
            ax.annotate(r["variant"], (r["flops_per_graph"]["total"] / 1e6, r["auc_mean"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        figure.series.append(path.stem)
    ax.set(xlabel="MFLOPs per graph (exported model)", ylabel="test ROC-AUC (mean ± std over seeds)",
           title="GTSP on ogbg-molhiv: FLOPs against accuracy")
    return _finish(fig, ax, figure, out)


def gtsp_nci1(results: Path, out: Path) -> Figure | None:
    """GTSP on GraphTrans-small, NCI1: each arm's test accuracy (mean ± std over its finished runs) against its
    forward FLOPs relative to dense (``graphattn bench gtsp-graphtrans``), and, per split, the arm's accuracy
    minus dense's on that split (the runs of equal seed share a split)."""
    bench_path, index = results / "gtsp-nci1-cpu.json", results / "train" / "reproductions.json"
    if not bench_path.exists() or not index.exists():
        return None
    bench, targets = _load(bench_path), {t["target"]: t for t in _load(index)["targets"]}
    tests = {r["arm"]: finished_tests(targets[GTSP_NCI1_TARGETS[r["arm"]]], results) for r in bench["rows"]
             if GTSP_NCI1_TARGETS[r["arm"]] in targets}
    arms = [r for r in bench["rows"] if tests.get(r["arm"])]
    if len(arms) < 2 or "dense" not in tests:
        return None
    summaries = [results / "train" / targets[GTSP_NCI1_TARGETS[r["arm"]]]["results"] for r in arms]
    sources = [(bench_path, bench)] + [(path, _load(path)) for path in summaries]
    figure = Figure("gtsp-nci1.png", stamp=_stamp(sources))
    fig, (ax_acc, ax_pair) = plt.subplots(1, 2, figsize=(9.5, 4.0))
    dense = tests["dense"]
    for i, r in enumerate(arms):
        values = [100 * v for v in tests[r["arm"]].values()]
        mean, std = mean_std(values)
        ax_acc.errorbar([r["forward_vs_dense"]], [mean], yerr=[std], fmt="o", capsize=3, color=f"C{i}",
                        label=f"{r['arm']} ({len(values)} runs)")
        figure.series.append(f"{r['arm']}: test accuracy against forward FLOPs")
        if r["arm"] == "dense":
            continue
        splits = sorted(tests[r["arm"]].keys() & dense.keys())
        differences = [100 * (tests[r["arm"]][s] - dense[s]) for s in splits]
        ax_pair.scatter([i] * len(differences), differences, s=14, alpha=0.7, color=f"C{i}")
        ax_pair.errorbar([i + 0.2], [mean_std(differences)[0]], yerr=[mean_std(differences)[1]], fmt="D",
                         capsize=3, color=f"C{i}")
        figure.series.append(f"{r['arm']}: minus dense per split")
    ax_acc.set(xlabel="forward FLOPs / dense's (batches of 128 graphs)", ylabel="test accuracy % (mean ± std)",
               title="accuracy against FLOPs")
    ax_pair.axhline(0.0, color="0.5", lw=0.8, ls="--")
    paired = [(i, r["arm"]) for i, r in enumerate(arms) if r["arm"] != "dense"]
    ax_pair.set_xticks([i for i, _ in paired], [arm for _, arm in paired])
    ax_pair.set(ylabel="test accuracy minus dense's, same split (points)", title="paired by split")
    fig.suptitle("GTSP on GraphTrans-small, NCI1 (our measurement, not a reproduction)", fontsize=10)
    return _finish(fig, ax_acc, figure, out, legend="lower right")


def make_figures(results: Path, out: Path, gtsp_results: list[Path]) -> list[Figure]:
    """Draws every figure whose results exist into ``out`` and writes ``out/figures.json``."""
    out.mkdir(parents=True, exist_ok=True)
    figures = [core_speedup(results, out), peak_memory(results, out), ratios(results, out),
               *reproduction_curves(results, out), gtsp(out, gtsp_results),
               gtsp_nci1(results, out)]
    figures = [f for f in figures if f is not None]
    (out / "figures.json").write_text(json.dumps(
        [{"file": f.name, "series": f.series, "stamp": f.stamp} for f in figures], indent=1) + "\n")
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--gtsp", type=Path, nargs="*", default=None,
                        help="GTSP results files (default: examples/results/gtsp_*.json)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    args = parser.parse_args(argv)
    gtsp_results = args.gtsp if args.gtsp is not None else sorted((ROOT / "examples" / "results").glob("gtsp_*.json"))
    figures = make_figures(args.results, args.out, gtsp_results)
    for figure in figures:
        print(f"{args.out / figure.name}: {len(figure.series)} series")
    if not any(f.name.startswith("gtsp") for f in figures):
        print("GTSP: no results files yet, figure not drawn")


if __name__ == "__main__":
    main()

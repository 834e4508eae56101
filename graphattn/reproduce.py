"""``graphattn reproduce TARGET``: runs the protocol of a published number (:mod:`graphattn.targets`) to its
end across stops, and compares graphattn's result with the published one.

Examples::

    graphattn reproduce gin-vn-molhiv --root data/ogb --jobs 3      # OGB's GIN + VN on molhiv, 3 seeds x 100 epochs
    graphattn reproduce gat-cora --root data/planetoid --jobs 2      # GAT on Cora, 100 seeds
    graphattn reproduce --status                                     # every target: runs done, time left

Every run lives in the run store (:mod:`graphattn.run_store`; ``--store``, default ``~/.cache/graphattn/runs``),
outside the work tree, and the command started again resumes every unfinished run where it stopped. The runs
not finished are dealt out in turn to ``--jobs`` worker processes, each ``graphattn train`` on one thread,
side by side. Graph-level workers resume from ``last.pt``, written after every epoch, every
``--checkpoint-every`` seconds inside an epoch (default 300: a stop may be a ``SIGKILL``) and on ``SIGTERM``;
node-level workers skip the seeds whose record exists (a seed takes about a minute: it is rerun whole). A
``SIGTERM`` or ``SIGINT`` to this command is passed to the workers as ``SIGTERM``; the command waits for them,
writes the report and exits with status 143. The workers run in sessions of their own and share the lock of
the target's folder: if this command is killed outright they go on to their end, and the command started
again refuses to run the target until they have ended.

Each time it ends, the command writes the target's summary (partial or final) to the store's
``<target>/summary.json`` and to ``<results>/<stem>-<device type>.json`` (node-level: with the seeds' curves
in ``-curves.csv.gz``; graph-level: each seed's ``-seed<k>-metrics.csv``), then the table of every target
against its published number, ``<results>/reproductions.{md,json}`` (:mod:`graphattn.reproductions`).
``--results`` defaults to ``benchmarks/results/train``.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import threading
from typing import Iterator, Optional

import torch

from .checkpoint import CheckpointError, atomic_write_text
from .config import ConfigError, TrainConfig
from .data import EMBEDDED
from .reproductions import results_path, verdict, write_report
from .run_store import default_store, graph_runs, node_records, status_lines, store_summary, target_folder
from .targets import TARGETS, Target
from .train_cli import write_node_results

__all__ = ["main", "reproduce", "pending_seeds"]

DEFAULT_RESULTS = osp.join("benchmarks", "results", "train")
STOPPED = 143


def pending_seeds(config: TrainConfig, folder: str) -> list[int]:
    """The seeds of ``config`` that ``folder`` does not hold finished."""
    if config.node_level:
        done = node_records(folder, config)
        return [seed for seed in config.seeds if seed not in done]
    runs = graph_runs(folder, config)
    return [seed for seed in config.seeds if seed not in runs or len(runs[seed].result.history) < config.epochs]


@contextlib.contextmanager
def _locked(folder: str) -> Iterator[int]:
    """An exclusive lock on ``folder/.lock`` (its file descriptor): the workers inherit it, so that the lock
    is held until the last of them ends, even if this process is killed first."""
    os.makedirs(folder, exist_ok=True)
    fd = os.open(osp.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(f"{folder}: runs of this target are going on (a graphattn reproduce or its "
                                  f"workers hold {folder}/.lock)") from None
        yield fd
    finally:
        os.close(fd)


def _worker_command(target: Target, config: TrainConfig, folder: str, seeds: list[int], device: str,
                    checkpoint_every: float) -> list[str]:
    command = [sys.executable, "-m", "graphattn.cli", "train", "--config", target.config_path, "--seeds",
               *map(str, seeds), "--epochs", str(config.epochs), "--out", folder, "--threads", "1", "--device", device,
               "--no-progress"]
    if config.root:
        command += ["--root", config.root]
    if not config.node_level:
        command += ["--resume", "--checkpoint-every", str(checkpoint_every)]
    return command


def _forward(name: str, stream) -> None:
    for line in stream:
        print(f"[{name}] {line}", end="", flush=True)


def _run_workers(commands: list[list[str]], lock_fd: int) -> tuple[list[int], bool]:
    """Runs ``commands`` side by side (the output of the k-th prefixed with ``[job k]``) until they end; returns
    their exit statuses and whether a ``SIGTERM`` / ``SIGINT`` stopped them."""
    package_parent = osp.dirname(osp.dirname(osp.abspath(__file__)))    # the workers import this graphattn
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))}
    stopped = False
    processes: list[subprocess.Popen] = []

    def stop(signum, frame) -> None:
        nonlocal stopped
        stopped = True
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for k, command in enumerate(commands):
            if stopped:
                break
            # a session of its own: a Ctrl-C on the terminal reaches this process only, which passes on SIGTERM
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                       pass_fds=(lock_fd,), start_new_session=True)
            processes.append(process)
            print(f"job {k}: pid {process.pid}", flush=True)
        readers = [threading.Thread(target=_forward, args=(f"job {k}", p.stdout), daemon=True)
                   for k, p in enumerate(processes)]
        for reader in readers:
            reader.start()
        codes = [process.wait() for process in processes]
        for reader in readers:
            reader.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return codes, stopped


def _device_type(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def _write_results(target: Target, config: TrainConfig, folder: str, summary: dict, results: str,
                   device_type: str) -> str:
    """The summary in the store and in ``results`` (with the curves); returns the results file."""
    text = json.dumps(summary, indent=1) + "\n"
    atomic_write_text(osp.join(folder, "summary.json"), text)
    path = results_path(results, target, device_type)
    if config.node_level:
        write_node_results(path, summary, folder)
        return path
    atomic_write_text(path, text)
    for run in summary["runs"]:
        with open(osp.join(folder, f"seed{run['seed']}", "metrics.csv")) as f:
            atomic_write_text(f"{osp.splitext(path)[0]}-seed{run['seed']}-metrics.csv", f.read())
    return path


def reproduce(target: Target, root: Optional[str], store: str, jobs: int, results: str, device: str = "auto",
              checkpoint_every: float = 300.0) -> int:
    """Starts or resumes every unfinished run of ``target``, then writes the summary and the report;
    returns the exit status (0, or 143 when stopped by a signal).

    Raises:
        ConfigError: a bad argument, or a target whose config is not in this checkout.
        CheckpointError: the store holds unreadable runs, or another process is running the target.
    """
    if not target.available:
        raise ConfigError(f"{target.name}: unavailable: config {target.config} is not in this checkout")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0 seconds, got {checkpoint_every}")
    config = target.load(root=osp.abspath(root) if root else None, device=device)
    if config.root is None and config.dataset not in EMBEDDED:
        raise ConfigError(f"{target.name}: pass --root, the folder holding {config.dataset}")
    folder, device_type = target_folder(store, target), _device_type(device)
    status = 0
    with _locked(folder) as lock_fd:
        pending = pending_seeds(config, folder)
        groups = [pending[k::jobs] for k in range(min(jobs, len(pending)))]
        print(f"{target.name}: {len(config.seeds) - len(pending)}/{len(config.seeds)} runs finished in {folder}; "
              f"{len(pending)} to run in {len(groups)} job{'s' if len(groups) != 1 else ''}", flush=True)
        for k, group in enumerate(groups):
            print(f"job {k}: seed{'s' if len(group) > 1 else ''} {', '.join(map(str, group))}", flush=True)
        commands = [_worker_command(target, config, folder, group, device, checkpoint_every) for group in groups]
        codes, stopped = _run_workers(commands, lock_fd)
        failed = [f"job {k}: exit status {code}" for k, code in enumerate(codes) if code != 0]
        if stopped:
            status = STOPPED
            print(f"{target.name}: stopped; the runs resume from the store with the same command", flush=True)
        elif failed:
            status = 1
            print(f"{target.name}: {'; '.join(failed)} (output above)", file=sys.stderr, flush=True)
        described = (f"{device_type} ({os.cpu_count()} cores), {len(groups) or jobs} job(s) side by side, one thread "
                     f"each" if device_type == "cpu" else device_type)
        summary = store_summary(target, config, folder, described)
        if summary is not None:
            path = _write_results(target, config, folder, summary, results, device_type)
            print(f"{target.name}: test {target.metric} {summary['test_mean']:.4f} ± {summary['test_std']:.4f} over "
                  f"{len(summary['runs'])} run(s) -> {path}: {verdict(target, summary)}", flush=True)
    write_report(results)
    print(f"report: {osp.join(results, 'reproductions.md')}", flush=True)
    return status


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphattn reproduce", description=__doc__.splitlines()[0],
                                epilog="targets: " + ", ".join(TARGETS))
    p.add_argument("target", nargs="?", help="a registered target (--status: default every target)")
    p.add_argument("--root", help="folder holding the target's dataset (as for graphattn train)")
    p.add_argument("--store", default=default_store(), help="the run store (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes side by side, one thread each")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="folder for the summaries and the report "
                                                              "(default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    p.add_argument("--checkpoint-every", type=float, default=300.0, dest="checkpoint_every", metavar="SECONDS",
                   help="graph-level: write last.pt inside an epoch this often (default: %(default)s)")
    p.add_argument("--status", action="store_true", help="print the runs done and the time left, run nothing")
    return p


def main(argv: Optional[list[str]] = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.target is not None and args.target not in TARGETS:
            raise ConfigError(f"unknown target {args.target!r}; targets: {', '.join(TARGETS)}")
        if args.status:
            for target in [TARGETS[args.target]] if args.target else TARGETS.values():
                print("\n".join(status_lines(target, args.store)))
            return
        if args.target is None:
            raise ConfigError("name a target (or pass --status)")
        status = reproduce(TARGETS[args.target], args.root, args.store, args.jobs, args.results, args.device,
                           args.checkpoint_every)
    except (ConfigError, CheckpointError) as error:
        sys.exit(f"graphattn reproduce: error: {error}")
    if status:
        sys.exit(status)

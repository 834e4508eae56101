"""Published numbers that ``graphattn reproduce`` reruns: for each, the config, the seeds and epochs of the
published protocol, the published mean ± std of the test metric and where it was published.

Published values are in the scale of graphattn's metric (accuracy as a fraction, not a percentage). A
target without a published value (``published=None``) is run all the same; its row in the report says
"no target". A target whose config is not in this checkout (:attr:`Target.available`) is listed but cannot
run.
"""
from __future__ import annotations

import os.path as osp
from dataclasses import dataclass
from typing import Any, Optional

from .config import TrainConfig, builtin_config_path, load_config

__all__ = ["Target", "TARGETS"]


@dataclass(frozen=True)
class Target:
    """A published result and the protocol behind it.

    Attributes:
        name: what ``graphattn reproduce NAME`` calls it; also its folder in the run store.
        config: a shipped config's name (or a YAML file).
        seeds: the runs of the published mean ± std.
        epochs: the published schedule (node-level: the most epochs; early stopping ends a run before);
            ``None``: the config's.
        metric: the test metric (graphattn's name for it).
        published: the published ``(mean, std)``; ``None`` when nothing was published for this protocol.
        source: where the number comes from, as published.
        results: file stem in ``benchmarks/results/train/`` (``<stem>-<device type>.json``).
    """

    name: str
    config: str
    seeds: tuple[int, ...]
    epochs: Optional[int]
    metric: str
    published: Optional[tuple[float, float]]
    source: str
    results: str

    @property
    def config_path(self) -> str:
        """The config file (a shipped config's name resolved as :func:`graphattn.config.load_config` does)."""
        return self.config if osp.exists(self.config) else builtin_config_path(self.config)

    @property
    def available(self) -> bool:
        """Whether this checkout has the config."""
        return osp.exists(self.config_path)

    def load(self, **overrides: Any) -> TrainConfig:
        """The config with the target's seeds and epochs, and ``overrides`` (``root``, ``device``)."""
        return load_config(self.config_path, {**overrides, "seeds": list(self.seeds), "epochs": self.epochs})


_GAT = "Veličković et al., Graph Attention Networks, ICLR 2018, Table 2 (mean ± std over 100 runs)"
_GRAPHTRANS = ("Wu et al., Representing Long-Range Context for Graph Neural Networks with Global Attention "
               "(GraphTrans), NeurIPS 2021; the authors' ucbrise/graphtrans README, NCI1 row (test accuracy, "
               "mean ± std over 20 runs, each on its own random 80/10/10 split)")
_NO_TARGET = "no published number for this protocol; compare with the GAT row of the same dataset"
_GTSP = ("our GTSP measurement, not a reproduction (Liu et al., Exploring Sparsity in Graph Transformers, Neural "
         "Networks 2024, on GraphTrans-small; their NCI1 tables are not available offline): {arm}, 10 runs on the "
         "splits of graphtrans-small-nci1 runs 0-9; compare with those runs")
#: our GTSP arms on GraphTrans-small, NCI1: target name suffix -> what is pruned
_GTSP_ARMS = {"keep0.75": "token keep ratio 0.75", "keep0.5": "token keep ratio 0.5",
              "keep0.5-heads0.5": "token keep ratio 0.5 and head density 0.5"}

TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("gin-vn-molhiv", "gin-vn-molhiv", (0, 1, 2), 100, "rocauc", (0.7707, 0.0149),
           "OGB leaderboard, ogbg-molhiv, GIN + virtual node (Hu et al., Open Graph Benchmark, NeurIPS 2020): "
           "ROC-AUC 0.7707 ± 0.0149", "ogbg-molhiv-gin-vn"),
    Target("gat-cora", "gat-cora", tuple(range(100)), 100000, "accuracy", (0.830, 0.007),
           f"{_GAT}: Cora 83.0 ± 0.7 %", "cora-gat"),
    Target("gat-citeseer", "gat-citeseer", tuple(range(100)), 100000, "accuracy", (0.725, 0.007),
           f"{_GAT}: CiteSeer 72.5 ± 0.7 %", "citeseer-gat"),
    Target("gatv2-cora", "gatv2-cora", tuple(range(100)), 100000, "accuracy", None, _NO_TARGET, "cora-gatv2"),
    Target("gatv2-citeseer", "gatv2-citeseer", tuple(range(100)), 100000, "accuracy", None, _NO_TARGET,
           "citeseer-gatv2"),
    Target("graphtrans-small-nci1", "graphtrans-small-nci1", tuple(range(20)), 100, "accuracy", (0.813, 0.019),
           f"{_GRAPHTRANS}: GraphTrans (small) 81.3 ± 1.9 %", "nci1-graphtrans-small"),
    Target("graphtrans-large-nci1", "graphtrans-large-nci1", tuple(range(20)), 100, "accuracy", (0.826, 0.012),
           f"{_GRAPHTRANS}: GraphTrans (large) 82.6 ± 1.2 %", "nci1-graphtrans-large"),
    *(Target(f"gtsp-graphtrans-small-nci1-{arm}", f"gtsp-graphtrans-small-nci1-{arm}", tuple(range(10)), 100,
             "accuracy", None, _GTSP.format(arm=what), f"nci1-gtsp-graphtrans-small-{arm}")
      for arm, what in _GTSP_ARMS.items()),
]}

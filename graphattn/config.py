"""Training configuration: a YAML file, checked key by key, with command-line overrides.

A config has four sections besides the top-level run settings::

    dataset: ogbg-molhiv          # any ogbg-* name, peptides-func, peptides-struct; mutag, nci1, proteins (TU);
                                  # cora, citeseer (node-level)
    model: gps                    # gps | graph-transformer | mpnn-vn | gin-attention | graphtrans; gat (node-level)
    epochs: 100                   # node-level: the most epochs, early stopping ends the run before
    select_epochs: [1, "16-100"]  # the epochs whose validation metric may select the result (default: all)
    patience: 0                   # node-level: the GAT authors' early stopping (0: none)
    batch_size: 32
    seeds: [0, 1, 2]              # or a range "0-99"
    model_args: {channels: 64, num_layers: 10, heads: 4, local_conv: gatedgcn, attn_dropout: 0.5}
    transforms: {rwse: 16}        # lap_pe: k, rwse: steps, virtual_node: count (LRGB-style); normalize_features
    optim: {optimizer: adamw, lr: 1.0e-4, weight_decay: 1.0e-5, scheduler: cosine, warmup_epochs: 5,
            schedule_step: epoch} # or iteration: the schedule advances after every optimiser step
    gtsp: {token_ratio: 0.5}      # optional: train the model wrapped in GTSP (graphattn.sparsify.GTSPConfig's
                                  # fields but epochs, which is the run's; models gps and graphtrans)

Unknown keys raise :class:`ConfigError` naming the key and the allowed ones; ``model_args``
are checked against the model's constructor when the model is built.
"""
from __future__ import annotations

import dataclasses
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

__all__ = ["ConfigError", "OptimConfig", "TransformConfig", "TrainConfig", "load_config", "builtin_config_path",
           "parse_seeds", "parse_int_ranges", "MODELS", "NODE_MODELS"]

#: models of node-level (transductive) training; the others predict one value per graph
NODE_MODELS = ("gat",)
MODELS = ("gps", "graph-transformer", "mpnn-vn", "gin-attention", "graphtrans") + NODE_MODELS


class ConfigError(ValueError):
    """A configuration value or key that the trainer does not accept."""


@dataclass
class OptimConfig:
    optimizer: str = "adamw"          # adam | adamw
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "none"           # none | cosine | plateau
    warmup_epochs: int = 0
    plateau_factor: float = 0.5
    plateau_patience: int = 10
    min_lr: float = 1e-6
    grad_clip: float = 0.0            # 0: no clipping
    schedule_step: str = "epoch"      # epoch | iteration (the cosine schedule after every optimiser step)


@dataclass
class TransformConfig:
    lap_pe: int = 0                   # Laplacian eigenvectors (0: none)
    rwse: int = 0                     # random-walk steps (0: none)
    virtual_node: int = 0             # LRGB-style virtual nodes added as graph nodes (0: none)
    normalize_features: bool = False  # node-level: rows of x scaled to sum 1 (the GAT authors' preprocess_features)


@dataclass
class TrainConfig:
    dataset: str = "ogbg-molesol"
    root: Optional[str] = None
    model: str = "gps"
    epochs: int = 50
    patience: int = 0                 # node-level early stopping (GATEarlyStopping); 0: none
    select_epochs: Optional[list[int]] = None   # epochs eligible as the best-validation epoch (None: all)
    batch_size: int = 128
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"
    compile: bool = False
    num_workers: int = 0
    out: Optional[str] = None
    model_args: dict[str, Any] = field(default_factory=dict)
    transforms: TransformConfig = field(default_factory=TransformConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    gtsp: Optional[dict[str, Any]] = None   # GTSPConfig fields (checked when the model is built)

    def validate(self) -> "TrainConfig":
        if self.model not in MODELS:
            raise ConfigError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.optim.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"optim.optimizer must be adam or adamw, got {self.optim.optimizer!r}")
        if self.optim.scheduler not in ("none", "cosine", "plateau"):
            raise ConfigError(f"optim.scheduler must be none, cosine or plateau, got {self.optim.scheduler!r}")
        if self.optim.schedule_step not in ("epoch", "iteration"):
            raise ConfigError(f"optim.schedule_step must be epoch or iteration, got {self.optim.schedule_step!r}")
        if self.optim.schedule_step == "iteration" and self.optim.scheduler == "plateau":
            raise ConfigError("optim.schedule_step iteration needs scheduler cosine (plateau follows the validation "
                              "metric, once per epoch)")
        if not self.seeds:
            raise ConfigError("seeds must not be empty")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0, got {self.patience}")
        node_level = self.model in NODE_MODELS
        if self.gtsp is not None and (not isinstance(self.gtsp, dict) or "epochs" in self.gtsp):
            raise ConfigError(f"gtsp must be a mapping of GTSPConfig fields without epochs (the run's), got "
                              f"{self.gtsp!r}")
        if self.select_epochs is not None:
            if node_level:
                raise ConfigError(f"select_epochs is for graph-level models, not {self.model!r}")
            if not any(1 <= e <= self.epochs for e in self.select_epochs) or min(self.select_epochs) < 1:
                raise ConfigError(f"select_epochs must be epochs >= 1 and include one of 1..{self.epochs}, got "
                                  f"{self.select_epochs}")
        if not node_level and (self.patience or self.transforms.normalize_features):
            raise ConfigError(f"patience and transforms.normalize_features are for node-level models "
                              f"({', '.join(NODE_MODELS)}), not {self.model!r}")
        return self

    @property
    def node_level(self) -> bool:
        """Whether the model classifies the nodes of one graph (transductive) instead of whole graphs."""
        return self.model in NODE_MODELS


def _build(cls, values: Any, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in "
                          f"{where}; allowed: {', '.join(fields)}")
    kwargs = {}
    for name, value in values.items():
        nested = {"transforms": TransformConfig, "optim": OptimConfig}.get(name) if cls is TrainConfig else None
        kwargs[name] = _build(nested, value, f"{where}.{name}" if where != "config" else name) if nested else value
    try:
        return cls(**kwargs)
    except TypeError as error:  # pragma: no cover - dataclass arity errors are covered by the key check
        raise ConfigError(f"{where}: {error}") from None


def parse_seeds(values: Any) -> list[int]:
    """Seeds from an int, a string ``"3"`` or range ``"0-99"`` (both ends included), or a list of those.

    Raises:
        ConfigError: anything else, or a range whose end is below its start.
    """
    return parse_int_ranges(values, "seeds", "seed")


def parse_int_ranges(values: Any, key: str, item: str) -> list[int]:
    """Integers from an int, a string ``"3"`` or range ``"0-99"`` (both ends included), or a list of those;
    error messages name the config ``key`` and what an ``item`` is.

    Raises:
        ConfigError: anything else, a range whose end is below its start, or a number given twice.
    """
    numbers: list[int] = []
    for value in values if isinstance(values, (list, tuple)) else [values]:
        if isinstance(value, int) and not isinstance(value, bool):
            numbers.append(value)
            continue
        first, dash, last = str(value).partition("-")
        try:
            start, stop = int(first), int(last if dash else first)
        except ValueError:
            raise ConfigError(f"{key}: {value!r} is not a {item} or a range like 0-99") from None
        if stop < start:
            raise ConfigError(f"{key}: range {value!r} ends before it starts")
        numbers.extend(range(start, stop + 1))
    if len(set(numbers)) != len(numbers):
        raise ConfigError(f"{key}: {values!r} names a {item} twice")
    return numbers


def builtin_config_path(name: str) -> str:
    """Path of a config shipped in ``graphattn/configs`` (``name`` with or without ``.yaml``)."""
    stem = name[:-5] if name.endswith(".yaml") else name
    return osp.join(osp.dirname(osp.abspath(__file__)), "configs", f"{stem}.yaml")


def load_config(path: Optional[str] = None, overrides: Optional[dict[str, Any]] = None) -> TrainConfig:
    """Reads ``path`` (a YAML file, or the name of a shipped config) and applies ``overrides``.

    Raises:
        ConfigError: unreadable file, unknown keys, bad values.
    """
    values: dict[str, Any] = {}
    if path is not None:
        if not osp.exists(path) and osp.exists(builtin_config_path(path)):
            path = builtin_config_path(path)
        if not osp.exists(path):
            raise ConfigError(f"config file {path!r} not found")
        with open(path) as f:
            try:
                values = yaml.safe_load(f) or {}
            except yaml.YAMLError as error:
                raise ConfigError(f"config file {path!r} is not valid YAML: {error}") from None
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    config = _build(TrainConfig, values, "config")
    config.seeds = parse_seeds(config.seeds)
    if config.select_epochs is not None:
        config.select_epochs = parse_int_ranges(config.select_epochs, "select_epochs", "epoch")
    return config.validate()

"""Training configuration: a YAML file, checked key by key, with command-line overrides.

A config has four sections besides the top-level run settings::

    dataset: ogbg-molhiv          # any ogbg-* name, peptides-func, peptides-struct
    model: gps                    # gps | graph-transformer | mpnn-vn | gin-attention
    epochs: 100
    batch_size: 32
    model_args: {channels: 64, num_layers: 10, heads: 4, local_conv: gatedgcn, attn_dropout: 0.5}
    transforms: {rwse: 16}        # lap_pe: k, rwse: steps, virtual_node: count (LRGB-style)
    optim: {optimizer: adamw, lr: 1.0e-4, weight_decay: 1.0e-5, scheduler: cosine, warmup_epochs: 5}

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
           "MODELS"]

MODELS = ("gps", "graph-transformer", "mpnn-vn", "gin-attention")


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


@dataclass
class TransformConfig:
    lap_pe: int = 0                   # Laplacian eigenvectors (0: none)
    rwse: int = 0                     # random-walk steps (0: none)
    virtual_node: int = 0             # LRGB-style virtual nodes added as graph nodes (0: none)


@dataclass
class TrainConfig:
    dataset: str = "ogbg-molesol"
    root: Optional[str] = None
    model: str = "gps"
    epochs: int = 50
    batch_size: int = 128
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"
    compile: bool = False
    num_workers: int = 0
    out: Optional[str] = None
    model_args: dict[str, Any] = field(default_factory=dict)
    transforms: TransformConfig = field(default_factory=TransformConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def validate(self) -> "TrainConfig":
        if self.model not in MODELS:
            raise ConfigError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.optim.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"optim.optimizer must be adam or adamw, got {self.optim.optimizer!r}")
        if self.optim.scheduler not in ("none", "cosine", "plateau"):
            raise ConfigError(f"optim.scheduler must be none, cosine or plateau, got {self.optim.scheduler!r}")
        if not self.seeds:
            raise ConfigError("seeds must not be empty")
        return self


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
    if isinstance(config.seeds, int):
        config.seeds = [config.seeds]
    return config.validate()

r"""GTSPConfig: which components of a graph transformer GTSP compresses, and on what schedule."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["GTSPConfig"]


def _fraction(name: str, value: float, low_open: bool = True) -> None:
    if not (0.0 < value <= 1.0 if low_open else 0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in {'(0, 1]' if low_open else '[0, 1)'}, got {value}")


@dataclass
class GTSPConfig:
    r"""The four compressible components of GTSP (Liu et al., "Exploring Sparsity in Graph
    Transformers", 2024), each off at its default (ratio/density ``1.0``) and usable alone or together.

    Input data (:class:`~graphattn.sparsify.TokenMask`, :class:`~graphattn.sparsify.EdgeMask`):

    ``token_ratio``
        fraction of the tokens (nodes) of *each graph* kept for global attention,
        :math:`k_g = \lceil r\, n_g\rceil`.
    ``edge_ratio``
        fraction of the attention-graph edges of each graph kept (among the edges
        between kept tokens).
    ``edge_rank``
        rank of the bilinear edge scorer.
    ``tau``
        Gumbel-softmax temperature.

    Heads (:class:`~graphattn.sparsify.HeadPruner`):

    ``head_density``
        fraction of the heads of each layer kept (at least one).
    ``head_update_frequency``
        optimiser steps between prune-and-regrow updates.
    ``head_death_rate``
        fraction of the active heads replaced at an update.
    ``head_stop_epoch``
        no head updates after this epoch (``None``: ``3/4`` of ``epochs``).

    Layers (:class:`~graphattn.sparsify.LayerPruner`):

    ``layer_keep``
        fraction of the global-attention blocks kept (at least one).
    ``drop_path``
        drop-path probability of the global-attention branch during training (when
        ``layer_keep < 1``).
    ``layer_prune_epoch``
        epoch after which the lowest-importance blocks are removed
        (``None``: half of ``epochs``).

    Weights (:class:`~graphattn.sparsify.WeightPruner`):

    ``weight_density``
        final fraction of the prunable weights kept (global magnitude pruning).
    ``weight_start_epoch, weight_end_epoch``
        the cubic schedule runs between these epochs
        (``None`` end: ``3/4`` of ``epochs``).
    ``weight_regrow``
        fraction of the kept weights pruned and regrown (largest gradient) at each update.
    ``sparse_storage_density``
        exported linear layers at or below this density are stored sparse (CSR).

    ``epochs``
        the length of training, for the schedules.
    """

    token_ratio: float = 1.0
    edge_ratio: float = 1.0
    edge_rank: int = 8
    tau: float = 1.0
    head_density: float = 1.0
    head_update_frequency: int = 200
    head_death_rate: float = 0.5
    head_stop_epoch: Optional[int] = None
    layer_keep: float = 1.0
    drop_path: float = 0.1
    layer_prune_epoch: Optional[int] = None
    weight_density: float = 1.0
    weight_start_epoch: int = 0
    weight_end_epoch: Optional[int] = None
    weight_regrow: float = 0.0
    sparse_storage_density: float = 0.3
    epochs: int = 1

    def __post_init__(self) -> None:
        for name in ("token_ratio", "edge_ratio", "head_density", "layer_keep", "weight_density"):
            _fraction(name, getattr(self, name))
        for name in ("head_death_rate", "drop_path", "weight_regrow"):
            _fraction(name, getattr(self, name), low_open=False)
        for name in ("edge_rank", "head_update_frequency", "epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.tau <= 0:
            raise ValueError(f"tau must be positive, got {self.tau}")
        if not 0.0 <= self.sparse_storage_density <= 1.0:
            raise ValueError(f"sparse_storage_density must be in [0, 1], got {self.sparse_storage_density}")
        if self.head_stop_epoch is None:
            self.head_stop_epoch = max(1, (3 * self.epochs) // 4)
        if self.layer_prune_epoch is None:
            self.layer_prune_epoch = max(1, self.epochs // 2)
        if self.weight_end_epoch is None:
            self.weight_end_epoch = max(self.weight_start_epoch + 1, (3 * self.epochs) // 4)
        if self.weight_end_epoch <= self.weight_start_epoch:
            raise ValueError(f"weight_end_epoch ({self.weight_end_epoch}) must exceed weight_start_epoch "
                             f"({self.weight_start_epoch})")

    @property
    def prunes_tokens(self) -> bool:
        return self.token_ratio < 1.0

    @property
    def prunes_edges(self) -> bool:
        return self.edge_ratio < 1.0

    @property
    def prunes_heads(self) -> bool:
        return self.head_density < 1.0

    @property
    def prunes_layers(self) -> bool:
        return self.layer_keep < 1.0

    @property
    def prunes_weights(self) -> bool:
        return self.weight_density < 1.0

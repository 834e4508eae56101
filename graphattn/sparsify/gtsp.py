r"""GTSP: the sparsification wrapper (training hooks, export of the smaller model)."""
from __future__ import annotations

import copy
from typing import Any, Dict, Optional, Union

import torch
from torch import Tensor

from ..models.gps import GPS
from ..models.graphtrans import GraphTrans
from .base import SparseModel
from .config import GTSPConfig
from .export import shrink_mlp, store_sparse
from .graphtrans import SparseGraphTrans
from .heads import HeadPruner
from .layers import LayerPruner
from .model import SparseGPS
from .weights import WeightPruner, prunable_weights

__all__ = ["GTSP"]


class GTSP(torch.nn.Module):
    r"""Graph Transformer SParsification (Liu et al., 2024) of a :class:`~graphattn.models.GPS` (all four
    components, :class:`SparseGPS`) or a :class:`~graphattn.models.GraphTrans` (tokens and heads,
    :class:`~graphattn.sparsify.SparseGraphTrans`), with the pruned parts *removed* from the computation of
    the exported model.

    Usage::

        gtsp = GTSP(GPS(...), GTSPConfig(token_ratio=0.5, head_density=0.5, epochs=E))
        optimizer = torch.optim.Adam(gtsp.parameters())           # includes the mask scorers
        for epoch in range(E):
            train_epoch(gtsp, loader, optimizer, task, device, step_hook=gtsp.step)
            gtsp.epoch_end()
        small = gtsp.export()                                     # a SparseGPS in structural mode

    ``forward`` is the masked model (:class:`SparseGPS`, masked mode). :meth:`step` (after
    every optimiser step) accumulates head and layer importances from the mask gradients, runs
    the head prune-and-regrow schedule and re-applies the weight masks; :meth:`epoch_end` runs
    the layer removal and the cubic weight schedule. :meth:`export` returns a deep copy with
    pruned tokens and edges out of the attention graph, pruned heads out of the projections,
    removed attention blocks gone, dead MLP units removed and very sparse linears stored as CSR.

    The pruners' state (epoch, accumulated importances, weight masks) is part of :meth:`~torch.nn.Module.state_dict`
    (as extra state), so a training run resumes exactly from a checkpoint.

    Args:
        model: the GPS or GraphTrans model (modified in place: it is the wrapped model's body).
        config: :class:`GTSPConfig`.
        seed: seed of the initial random head subset.
    """

    def __init__(self, model: Union[GPS, GraphTrans], config: GTSPConfig, seed: int = 0):
        super().__init__()
        if not isinstance(config, GTSPConfig):
            raise TypeError(f"config must be a GTSPConfig, got {type(config).__name__}")
        if not isinstance(model, (GPS, GraphTrans)):
            raise TypeError(f"model must be a graphattn.models.GPS or GraphTrans, got {type(model).__name__}")
        self.config = config
        self.sparse: SparseModel = (SparseGPS(model, config) if isinstance(model, GPS)
                                    else SparseGraphTrans(model, config))
        self.epoch = 0
        self.heads = (HeadPruner(config.head_density, config.head_update_frequency, config.head_death_rate,
                                 config.head_stop_epoch) if config.prunes_heads else None)
        if self.heads is not None:
            self.heads.init_mask(self.sparse.head_mask, torch.Generator().manual_seed(seed))
        self.layers = LayerPruner(config.layer_keep, config.layer_prune_epoch) if config.prunes_layers else None
        self.weights = None
        if config.prunes_weights:
            self.weights = WeightPruner(prunable_weights(model.layers), config.weight_density,
                                        config.weight_start_epoch, config.weight_end_epoch, config.weight_regrow)

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.sparse(*args, **kwargs)

    def step(self) -> None:
        """Call after every optimiser step (e.g. ``train_epoch(..., step_hook=gtsp.step)``)."""
        if self.heads is not None:
            heads = self.sparse.live_head_mask
            self.heads.accumulate(None if heads is None else heads.grad)
            self.heads.step(self.epoch, self.sparse.head_mask)
        if self.layers is not None:
            gates = self.sparse.live_layer_gate
            self.layers.accumulate(None if gates is None else gates.grad)
        if self.weights is not None:
            self.weights.apply()

    def epoch_end(self) -> None:
        """Call after every training epoch."""
        self.epoch += 1
        if self.layers is not None:
            self.layers.epoch_end(self.epoch, self.sparse.layer_gate)
        if self.weights is not None:
            self.weights.epoch_end(self.epoch)

    def state(self) -> Dict[str, float]:
        """What is pruned now: kept fractions of heads, attention blocks and weights."""
        out = {"epoch": self.epoch, "heads": float(self.sparse.head_mask.mean())}
        if isinstance(self.sparse, SparseGPS):
            out["attention_blocks"] = float(self.sparse.layer_gate.mean())
        if self.weights is not None:
            out["weights"] = self.weights.density
        return out

    def get_extra_state(self) -> Dict[str, Any]:
        """The pruners' state between steps (what :meth:`~torch.nn.Module.state_dict` stores besides parameters and
        buffers)."""
        state: Dict[str, Any] = {"epoch": self.epoch}
        if self.heads is not None:
            state["heads"] = {"importance": self.heads.importance, "steps": self.heads.steps,
                              "updates": self.heads.updates}
        if self.layers is not None:
            state["layers"] = {"importance": self.layers.importance, "pruned": self.layers.pruned}
        if self.weights is not None:
            state["weights"] = {"masks": dict(self.weights.masks), "sparsity": self.weights.sparsity}
        return state

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        for name in ("heads", "layers", "weights"):
            pruner = getattr(self, name)
            if (pruner is None) != (name not in state):
                raise ValueError(f"state: the checkpoint's GTSP {'has' if name in state else 'lacks'} a {name} "
                                 f"pruner, this one {'lacks' if pruner is None else 'has'} one")
            for key, value in state.get(name, {}).items():
                setattr(pruner, key, value)

    @torch.no_grad()
    def export(self, sparse_storage_density: Optional[float] = None) -> SparseModel:
        """A smaller copy for inference (eval mode) with the pruned parts removed."""
        if self.weights is not None:
            self.weights.apply()
        small = copy.deepcopy(self.sparse).eval()
        small.make_structural()
        if self.weights is not None:
            density = self.config.sparse_storage_density if sparse_storage_density is None else sparse_storage_density
            for layer in small.model.layers:
                for mlp in [m for m in layer.modules() if isinstance(m, torch.nn.Sequential)]:
                    shrink_mlp(mlp)                                  # FFN and the GINE MLP
                store_sparse(layer, density)
        return small

r"""VirtualNode: the OGB virtual node (per graph, MLP update, optionally residual)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from ..functional import dropout
from ._edge_ops import segment_sum

__all__ = ["VirtualNode"]


def _mlp(channels: int, hidden: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(channels, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, channels), torch.nn.BatchNorm1d(channels), torch.nn.ReLU())


class VirtualNode(torch.nn.Module):
    r"""Virtual node(s) of the OGB baselines (`Gilmer et al. 2017 <https://arxiv.org/abs/1704.01212>`_;
    OGB's ``GNN_node_Virtualnode``; `Cai et al. 2023 <https://arxiv.org/abs/2301.11956>`_), one state
    per graph and virtual node :math:`k = 1..K`:

    .. math::
        \mathbf{x}_i \leftarrow \mathbf{x}_i + \frac{1}{K}\sum_k \mathbf{v}_{g(i),k}
        \quad(\text{:meth:`broadcast`}),\qquad
        \mathbf{v}_{g,k} \leftarrow [\mathbf{v}_{g,k} +]\, \operatorname{Dropout}\Big(\operatorname{MLP}_k
        \Big(\sum_{i \in g} \mathbf{x}_i + \mathbf{v}_{g,k}\Big)\Big)\quad(\text{:meth:`update`})

    with :math:`\operatorname{MLP}_k` = Linear(:math:`C, hC`)-BN-ReLU-Linear(:math:`hC, C`)-BN-ReLU
    (:math:`h` = ``hidden_factor``; OGB: 2) and the residual term :math:`\mathbf{v}_{g,k}` only with
    ``residual=True`` (OGB: only when the whole model is residual). OGB's recipe around a
    message-passing layer pools the layer's *input* (after the broadcast), not its output::

        x_in = vn.broadcast(x, state, batch)      # OGB: h_list[layer] + vn[batch]
        x = conv(x_in, ...)                       # then norm, activation, dropout
        state = vn.update(x_in, state, batch)     # OGB: global_add_pool(h_list[layer]) + vn

    The last layer skips the update. :meth:`initial_state` is :math:`\mathbf{v}^{(0)} = 0`; OGB learns
    :math:`\mathbf{v}^{(0)}` from zero (an ``Embedding(1, C)``, kept as a parameter by
    :class:`~graphattn.models.MPNNVirtualNode`). Several virtual nodes (``num_virtual_nodes > 1``) have
    their own MLPs and are averaged when broadcast.

    Args:
        channels: node channels :math:`C`.
        num_virtual_nodes: :math:`K`.
        dropout: dropout of the update.
        hidden_factor: hidden width of the MLP in multiples of :math:`C`.
        residual: add the MLP output to the previous state.

    Shapes: ``x`` ``[N, C]``, ``batch`` ``[N]``, ``state`` ``[G, K, C]``.
    """

    def __init__(self, channels: int, num_virtual_nodes: int = 1, dropout: float = 0.0, hidden_factor: int = 1,
                 residual: bool = True):
        super().__init__()
        if num_virtual_nodes < 1:
            raise ValueError(f"num_virtual_nodes must be >= 1, got {num_virtual_nodes}")
        if hidden_factor < 1:
            raise ValueError(f"hidden_factor must be >= 1, got {hidden_factor}")
        self.channels, self.num_virtual_nodes, self.dropout = channels, num_virtual_nodes, dropout
        self.hidden_factor, self.residual = hidden_factor, residual
        self.mlps = torch.nn.ModuleList([_mlp(channels, hidden_factor * channels) for _ in range(num_virtual_nodes)])

    def reset_parameters(self) -> None:
        for mlp in self.mlps:
            for layer in mlp:
                if hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()

    def initial_state(self, num_graphs: int, like: Tensor) -> Tensor:
        """Zero state ``[G, K, C]`` with the dtype and device of ``like``."""
        return like.new_zeros(num_graphs, self.num_virtual_nodes, self.channels)

    def broadcast(self, x: Tensor, state: Tensor, batch: Tensor) -> Tensor:
        if x.dim() != 2 or x.size(-1) != self.channels:
            raise ValueError(f"x must have shape [N, {self.channels}], got {list(x.shape)}")
        if state.dim() != 3 or state.shape[1:] != (self.num_virtual_nodes, self.channels):
            raise ValueError(f"state must have shape [G, {self.num_virtual_nodes}, {self.channels}], "
                             f"got {list(state.shape)}")
        return x + state.mean(dim=1)[batch]

    def update(self, x: Tensor, state: Tensor, batch: Tensor) -> Tensor:
        pooled = segment_sum(x, batch, state.size(0))                        # [G, C]
        new = torch.stack([dropout(mlp(pooled + state[:, k]), p=self.dropout, training=self.training)
                           for k, mlp in enumerate(self.mlps)], dim=1)
        return state + new if self.residual else new

    def forward(self, x: Tensor, state: Optional[Tensor], batch: Tensor,
                num_graphs: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """Broadcast only (returns ``(x + v[batch], state)``); a ``None`` state starts at zero."""
        if state is None:
            num_graphs = int(batch.max()) + 1 if num_graphs is None else num_graphs
            state = self.initial_state(num_graphs, x)
        return self.broadcast(x, state, batch), state

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, num_virtual_nodes={self.num_virtual_nodes}, "
                f"hidden_factor={self.hidden_factor}, residual={self.residual})")

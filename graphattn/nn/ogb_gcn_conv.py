r"""OGBGCNConv: OGB's GCN layer (``examples/graphproppred/mol/conv.py``), the GNN of GraphTrans's GCN models."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ._edge_ops import segment_sum

__all__ = ["OGBGCNConv"]


class OGBGCNConv(torch.nn.Module):
    r"""The GCN layer of the OGB baselines (``GCNConv`` in OGB's ``conv.py``, copied by GraphTrans's
    ``modules/conv.py``): with :math:`\mathbf{z} = \mathbf{W}\mathbf{x} + \mathbf{b}`,

    .. math::
        \mathbf{x}'_i = \sum_{j \to i} \frac{1}{\sqrt{d_j d_i}}\,
        \operatorname{ReLU}(\mathbf{z}_j + \mathbf{e}_{ji})
        + \frac{1}{d_i}\operatorname{ReLU}(\mathbf{z}_i + \mathbf{r}),

    where :math:`d_i = 1 + |\{e : \text{edge_index}[0, e] = i\}|` (OGB counts the source side; with both
    directions of every edge, as in OGB's and TU's molecules, it is the degree), :math:`\mathbf{r}` is a
    learned root embedding (``root_emb``, an ``Embedding(1, C)``: :math:`\mathcal N(0, 1)` at start) and
    :math:`\mathbf{e}` the optional edge features (0 without: GraphTrans's TU models).

    Args:
        channels: input and output width :math:`C`.

    Shapes:
        - **input:** ``x`` ``[N, C]``, ``edge_index`` ``[2, E]``, ``edge_attr`` ``[E, C]`` or ``None``.
        - **output:** ``[N, C]``.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.linear = torch.nn.Linear(channels, channels)
        self.root_emb = torch.nn.Embedding(1, channels)

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()
        self.root_emb.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor] = None) -> Tensor:
        if x.dim() != 2 or x.size(-1) != self.linear.in_features:
            raise ValueError(f"x must have shape [N, {self.linear.in_features}], got {list(x.shape)}")
        if edge_attr is not None and edge_attr.shape != (edge_index.size(1), x.size(-1)):
            raise ValueError(f"edge_attr must have shape [{edge_index.size(1)}, {x.size(-1)}], "
                             f"got {list(edge_attr.shape)}")
        z = self.linear(x)
        src, dst = edge_index
        deg = segment_sum(torch.ones_like(src, dtype=z.dtype), src, z.size(0)) + 1
        deg_inv_sqrt = deg.pow(-0.5)
        norm = deg_inv_sqrt.index_select(0, src) * deg_inv_sqrt.index_select(0, dst)
        z_j = z.index_select(0, src)
        messages = norm.unsqueeze(-1) * F.relu(z_j if edge_attr is None else z_j + edge_attr)
        return segment_sum(messages, dst, z.size(0)) + F.relu(z + self.root_emb.weight) / deg.unsqueeze(-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.linear.in_features})"

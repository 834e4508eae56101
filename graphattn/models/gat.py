r"""GAT: the two-layer graph attention network of Veličković et al. (ICLR 2018) for transductive node
classification (Cora, CiteSeer)."""
from __future__ import annotations

import importlib
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import dropout

__all__ = ["GAT", "dropout_nonzero", "resolve_conv"]

#: prefix naming a class of ``torch_geometric.nn`` (``"pyg:GATConv"``)
PYG_PREFIX = "pyg:"


def resolve_conv(name: str) -> type:
    """The attention layer class named by ``name``: a dotted path (``"graphattn.nn.GATConv"``) or
    ``"pyg:<Class>"`` for ``torch_geometric.nn.<Class>``.

    Raises:
        ValueError: the module cannot be imported or has no such class.
    """
    module_name, _, cls_name = (("torch_geometric.nn", "", name[len(PYG_PREFIX):]) if name.startswith(PYG_PREFIX)
                                else name.rpartition("."))
    if not module_name or not cls_name:
        raise ValueError(f"conv {name!r}: name a class as 'package.module.Class' or 'pyg:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"conv {name!r}: cannot import {module_name} ({error})") from None
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ValueError(f"conv {name!r}: {module_name} has no layer class {cls_name}")
    return cls


def dropout_nonzero(x: Tensor, p: float, training: bool = True) -> Tensor:
    r"""``F.dropout(x, p, training)`` drawing one number per nonzero entry of ``x`` only: a zero stays zero
    whatever its mask, so each nonzero entry is kept with probability :math:`1 - p` and scaled by
    :math:`1 / (1 - p)` as in ``F.dropout``, the same distribution. Planetoid's bag-of-words features are
    1-2 % nonzero (Cora: 49k of 3.9M entries), where ``F.dropout`` spends half of a GAT epoch drawing masks.
    A sparse CSR ``x`` (see :func:`graphattn.transductive.fit_transductive`) drops its stored values, in the
    same row-major order and with the same draws as the dense path. A dense ``x`` that requires a gradient
    goes through :func:`graphattn.functional.dropout` (its gradient at a zero entry is the mask's)."""
    if not training or p == 0.0:
        return x
    if x.layout == torch.sparse_csr:
        values = x.values()
        keep = torch.rand(values.shape, dtype=values.dtype, device=values.device) >= p
        return torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(), values * keep / (1.0 - p), x.shape,
                                       check_invariants=False)   # the indices of a valid x
    if x.requires_grad:
        return dropout(x, p, training)
    index = x.nonzero(as_tuple=True)
    values = x[index]
    keep = torch.rand(values.shape, dtype=values.dtype, device=values.device) >= p
    return torch.zeros_like(x).index_put_(index, values * keep / (1.0 - p))


class GAT(nn.Module):
    r"""The paper's transductive GAT (Section 3.3):

    .. math::
        \mathbf{H} = \operatorname{ELU}\big(\big\Vert_{k=1}^{K}
            \operatorname{GAT}_k(\operatorname{Dropout}_p(\mathbf{X}))\big),

        \mathbf{Z} = \operatorname{GAT}_{out}(\operatorname{Dropout}_p(\mathbf{H})),

    layer 1 with :math:`K` = ``heads`` heads of ``hidden_channels`` features concatenated, layer 2 with
    ``out_heads`` heads of ``out_channels`` logits averaged; both add self loops, use LeakyReLU(0.2)
    scores and drop attention coefficients with probability ``attn_dropout``. Cora and CiteSeer: 8 heads x
    8 features, 1 output head, :math:`p` = 0.6 on inputs and coefficients.

    Args:
        in_channels: node features :math:`F`.
        out_channels: classes.
        hidden_channels, heads: layer 1's features per head and heads.
        out_heads: layer 2's heads (averaged).
        dropout: :math:`p`, on the input of both layers (on the nonzero input features only:
            ``dropout_nonzero``, the same distribution).
        attn_dropout: dropout on the attention coefficients of both layers.
        conv: the layer class (see ``resolve_conv``), constructed as PyG's ``GATConv``
            (``in_channels, out_channels, heads, concat, dropout``).
        conv_args: further keyword arguments of both layers (e.g. ``feature_dropout``,
            ``attention_bias`` of :class:`graphattn.nn.GATConv`).

    Shapes:
        input: ``x`` ``[N, in_channels]``, ``edge_index`` ``[2, E]``; output: logits ``[N, out_channels]``.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 8, heads: int = 8,
                 out_heads: int = 1, dropout: float = 0.6, attn_dropout: float = 0.6,
                 conv: str = "graphattn.nn.GATConv", conv_args: Optional[dict[str, Any]] = None):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        cls = resolve_conv(conv)
        args = dict(conv_args or {})
        self.dropout = dropout
        self.conv1 = cls(in_channels, hidden_channels, heads=heads, concat=True, dropout=attn_dropout, **args)
        self.conv2 = cls(hidden_channels * heads, out_channels, heads=out_heads, concat=False, dropout=attn_dropout,
                         **args)

    def reset_parameters(self) -> None:
        self.conv1.reset_parameters()
        self.conv2.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = dropout_nonzero(x, self.dropout, self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)

r"""The PyG base of graphattn's attention convolutions: a :class:`~torch_geometric.nn.conv.MessagePassing`
that runs on the engine, and through PyG's ``propagate`` only when PyG's instrumentation needs the
per-edge messages.

A graphattn conv computes attention weights :math:`\alpha_{ij}` and messages
:math:`\mathbf{m}_{ij} = \alpha_{ij} (\mathbf{v}_j + \mathbf{e}_{ij})` summed into each destination. On
the engine that is one fused call, and no per-edge message exists. PyG's tools, however, act on the
messages inside :meth:`~torch_geometric.nn.conv.MessagePassing.propagate`: explain mode
(``GNNExplainer`` and every explainer with edge masks) multiplies each message by its mask in
``explain_message``, ``AttentionExplainer`` reads :math:`\alpha` from the message hooks' keyword
arguments, and any registered propagate / message / aggregate hook expects to see them.
:meth:`EngineMessagePassing.instrumented` tells when that is the case; the layer then computes
:math:`\alpha` on the engine (the same values) and sends the messages through :meth:`propagate`
(:meth:`propagate_messages`), so that masks and hooks apply exactly where PyG applies them. Outside
those cases the message tensor is never formed. :func:`needs_propagate` is that test for any
``MessagePassing`` with a fast path of its own (:class:`~graphattn.nn.GatedGCNLayer`).
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor
from torch_geometric.nn.conv import MessagePassing

from ..functional import dropout
from ..graph import AttentionGraph

__all__ = ["EngineMessagePassing", "needs_propagate"]

_HOOKS = ("_propagate_forward_pre_hooks", "_propagate_forward_hooks", "_message_forward_pre_hooks",
          "_message_forward_hooks", "_aggregate_forward_pre_hooks", "_aggregate_forward_hooks",
          "_message_and_aggregate_forward_pre_hooks", "_message_and_aggregate_forward_hooks")


def needs_propagate(module: MessagePassing) -> bool:
    """Explain mode, a registered propagate / message / aggregate hook, or decomposed layers: the
    messages of ``module`` must go through PyG's :meth:`~torch_geometric.nn.conv.MessagePassing.propagate`."""
    return bool(module.explain) or module.decomposed_layers > 1 or any(getattr(module, name) for name in _HOOKS)


class EngineMessagePassing(MessagePassing):
    r"""A :class:`~torch_geometric.nn.conv.MessagePassing` (``aggr="add"``, ``node_dim=0``) whose
    messages are :math:`\operatorname{dropout}(\alpha_{ij})\,(\mathbf{v}_j + \mathbf{e}_{ij})` with
    :math:`\alpha` ``[E, H]``, :math:`\mathbf{v}` ``[N_src, H, C]`` and the optional per-edge
    :math:`\mathbf{e}` ``[E, H, C]``. ``self._alpha`` holds :math:`\alpha` while :meth:`propagate` runs
    (as PyG's attention convs do)."""

    _alpha: Optional[Tensor]

    def __init__(self, **kwargs):
        kwargs.setdefault("aggr", "add")
        super().__init__(node_dim=0, **kwargs)
        self._alpha = None

    @property
    def instrumented(self) -> bool:
        """Explain mode, a registered propagate / message / aggregate hook, or decomposed layers:
        the messages must go through :meth:`propagate` (:func:`needs_propagate`)."""
        return needs_propagate(self)

    def propagate_messages(self, alpha: Tensor, value: Tensor, graph: AttentionGraph,
                           edge_value: Optional[Tensor] = None, dropout: float = 0.0) -> Tensor:
        r""":math:`\sum_j \operatorname{dropout}(\alpha_{ij})(\mathbf{v}_j + \mathbf{e}_{ij})` ``[N_dst, H, C]``
        through PyG's :meth:`propagate` on ``graph.edge_index`` (the per-edge tensors are in its order)."""
        self._alpha = alpha
        try:
            return self.propagate(graph.edge_index, value=value, alpha=alpha, edge_value=edge_value,
                                  attn_dropout=dropout, size=(graph.num_src_nodes, graph.num_dst_nodes))
        finally:
            self._alpha = None

    def message(self, value_j: Tensor, alpha: Tensor, edge_value: Optional[Tensor], attn_dropout: float) -> Tensor:
        alpha = dropout(alpha, p=attn_dropout, training=self.training)
        out = value_j if edge_value is None else value_j + edge_value
        return out * alpha.unsqueeze(-1)

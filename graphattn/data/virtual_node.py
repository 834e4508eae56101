r"""The LRGB-style virtual node as a data transform: an extra node linked both ways to every node,
with its own atom and bond categories."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

__all__ = ["AddVirtualNode"]


def _ogb_dims() -> tuple[list[int], list[int]]:
    from ogb.utils.features import get_atom_feature_dims, get_bond_feature_dims
    return get_atom_feature_dims(), get_bond_feature_dims()


class AddVirtualNode(BaseTransform):
    r"""Appends ``num_virtual_nodes`` virtual nodes to a graph, each linked to every real node
    in both directions (as in the LRGB MPNN+VN baselines, Cai et al. 2023).

    Unlike PyG's :class:`~torch_geometric.transforms.VirtualNode` (zero features, which an OGB
    ``AtomEncoder``/``BondEncoder`` reads as category 0, a real atom/bond type), the new node and
    edges get *their own* category in every feature column: category ``node_categories[c]``
    (one past the last real one) in atom column ``c`` and ``edge_categories[c]`` in bond column
    ``c``. Encoders must then have one extra category per column
    (:class:`graphattn.models.AtomEncoder` / ``BondEncoder`` with ``extra_categories=1``).

    Node-level attributes other than ``x`` (e.g. positional encodings) are padded with zeros;
    edge-level ones are padded with zeros (``edge_attr`` gets the virtual category, ``edge_weight``
    ones). As in PyG's transform, ``data.edge_type`` keeps the existing types (0 when absent) and
    gives the new edges two new types, :math:`t_{max} + 1` from the real nodes to the virtual ones and
    :math:`t_{max} + 2` back. ``data.virtual_mask`` ``[N + K]`` marks the virtual nodes so that
    pooling can exclude them.

    Args:
        num_virtual_nodes: :math:`K`.
        node_categories: number of categories of each integer column of ``x``
            (default: OGB's atom feature dims).
        edge_categories: same for ``edge_attr`` (default: OGB's bond feature dims).
    """

    def __init__(self, num_virtual_nodes: int = 1, node_categories: Optional[Sequence[int]] = None,
                 edge_categories: Optional[Sequence[int]] = None):
        if num_virtual_nodes < 1:
            raise ValueError(f"num_virtual_nodes must be >= 1, got {num_virtual_nodes}")
        atom, bond = _ogb_dims()
        self.num_virtual_nodes = num_virtual_nodes
        self.node_categories = list(atom if node_categories is None else node_categories)
        self.edge_categories = list(bond if edge_categories is None else edge_categories)

    def forward(self, data: Data) -> Data:
        n, k = data.num_nodes, self.num_virtual_nodes
        x, edge_attr = data.x, data.edge_attr
        if x is None or x.dtype.is_floating_point or x.dim() != 2 or x.size(1) != len(self.node_categories):
            raise ValueError(f"data.x must be an integer [N, {len(self.node_categories)}] tensor of categories")
        if edge_attr is not None and (edge_attr.dtype.is_floating_point or edge_attr.dim() != 2
                                      or edge_attr.size(1) != len(self.edge_categories)):
            raise ValueError(f"data.edge_attr must be an integer [E, {len(self.edge_categories)}] tensor")
        real = torch.arange(n, device=x.device).repeat(k)
        virtual = torch.arange(n, n + k, device=x.device).repeat_interleave(n)
        new_edges = torch.cat([torch.stack([real, virtual]), torch.stack([virtual, real])], dim=1)
        num_new = new_edges.size(1)
        out = data.clone()
        for key, value in data.items():
            if key in ("x", "edge_attr", "edge_index", "edge_type") or not torch.is_tensor(value):
                continue
            if data.is_node_attr(key) and value.size(0) == n:
                out[key] = torch.cat([value, value.new_zeros((k,) + tuple(value.shape[1:]))])
            elif data.is_edge_attr(key) and value.size(0) == data.num_edges:
                fill = 1 if key == "edge_weight" else 0
                out[key] = torch.cat([value, value.new_full((num_new,) + tuple(value.shape[1:]), fill)])
        out.x = torch.cat([x, torch.tensor(self.node_categories, dtype=x.dtype, device=x.device).repeat(k, 1)])
        out.edge_index = torch.cat([data.edge_index, new_edges], dim=1)
        if edge_attr is not None:
            vn_attr = torch.tensor(self.edge_categories, dtype=edge_attr.dtype, device=edge_attr.device)
            out.edge_attr = torch.cat([edge_attr, vn_attr.repeat(num_new, 1)])
        edge_type = data.get("edge_type")
        edge_type = data.edge_index.new_zeros(data.num_edges) if edge_type is None else edge_type
        top = int(edge_type.max()) if edge_type.numel() else 0
        out.edge_type = torch.cat([edge_type, edge_type.new_full((num_new // 2,), top + 1),
                                   edge_type.new_full((num_new // 2,), top + 2)])
        out.virtual_mask = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(k, dtype=torch.bool)])
        out.num_nodes = n + k
        return out

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(num_virtual_nodes={self.num_virtual_nodes})"

r"""count_flops: the floating-point operations a model spends on one batch, counted by PyTorch's
:class:`~torch.utils.flop_counter.FlopCounterMode`.

Every op counts itself: PyTorch's formulas count the matrix products (``mm``, ``addmm``, ``bmm``,
SDPA, ...), :mod:`sparse_kernels.flops` the attention engine's ops (fused attention forward and
backward, ``sddmm``, ``spmm``, edge softmax), and :data:`AGGREGATIONS` (added here) the scatter
reductions of PyG's message passing. Elementwise ops (activations, norms, residual sums, the
elementwise score products some layers compute outside the engine) are not counted, as in
``FlopCounterMode``. The parts of :class:`FlopCount` are read from the counter's per-module
breakdown and from the operands of each product, never from the layers' types.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, NamedTuple

import torch
from torch import Tensor
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from ..models.inputs import model_inputs

__all__ = ["FlopCount", "count_flops", "AGGREGATIONS"]

_aten = torch.ops.aten


def _sparse_product_flops(self, mat1, mat2, *args, out_val=None, **kwargs) -> int:
    r"""``_sparse_addmm(self, sparse [M, K], dense [K, N])`` (``torch.sparse.mm``): :math:`2\,\text{nnz}\,N`."""
    sparse, dense = (mat1, mat2) if mat1.layout != torch.strided else (mat2, mat1)
    columns = dense.size(-1) if sparse is mat1 else dense.size(0)
    return 2 * sparse.values().numel() * columns


_sparse_product_flops._get_raw = True


#: Matrix products: a product with a weight as an operand is a linear map, a product of two activations
#: (dense attention's :math:`QK^\top` and :math:`PV`, linear attention's :math:`\phi(K)^\top V`) is attention.
_PRODUCTS = (_aten.mm, _aten.addmm, _aten.bmm, _aten.baddbmm, _aten._sparse_addmm)


def _aggregation_flops(self, dim, index, source, *args, out_val=None, **kwargs) -> int:
    """One FLOP per reduced floating-point element of ``source`` (integer counts cost none)."""
    return source.numel() if isinstance(source, Tensor) and source.is_floating_point() else 0


_aggregation_flops._get_raw = True

#: Scatter reductions (PyG's ``scatter``, ``index_add``): one FLOP per element of the source.
AGGREGATIONS = {op: _aggregation_flops for op in (_aten.index_add, _aten.index_add_, _aten.scatter_add,
                                                   _aten.scatter_add_, _aten.scatter_reduce, _aten.scatter_reduce_)}


@dataclass
class FlopCount:
    r"""FLOPs of one forward pass by part, as :class:`~torch.utils.flop_counter.FlopCounterMode`
    counts them (a multiply and an add are two FLOPs).

    Attributes:
        attention: the attention itself — the engine's ops (scores, normaliser, aggregation:
            :math:`EH(4D + 6)` for dot-product softmax attention on :math:`E` edges, see
            :mod:`sparse_kernels.flops`), PyTorch's SDPA, products of two activations (the dense-blocks
            path's :math:`QK^\top` and :math:`PV`, :math:`4EHD` on the edges of full blocks and their
            padding; linear attention's feature products), and scatter reductions run by an attention
            block.
        attention_proj: the linear maps of the attention blocks, modules that run attention ops
            themselves (``MultiheadGraphAttention``, ``GraphAttnConv``, ``GraphTransformerLayer``,
            ``GINAttention``, ...), with their submodules: the projections, and the MLPs of layers that
            hold attention and MLP in one module (``GraphTransformerLayer``'s FFN, ``GINAttention``'s
            per-head MLP).
        linear: every other product with a weight (MLPs, local convolutions' linears, encoders, heads,
            GTSP's scorers); a sparse (CSR) weight costs its non-zeros, a dense one its shape.
        message_passing: scatter reductions outside attention blocks (PyG's aggregation), one FLOP per
            reduced element.
        backward: FLOPs of the backward of the summed output, all parts together (``count_flops(...,
            backward=True)``; 0 otherwise).
        by_module: forward FLOPs per module, keyed by ``FlopCounterMode``'s module names
            (``"GPS.layers.0.attn"``), for parts no category names (e.g. ``"GTSP.sparse.token_mask"``).
    """

    attention: int = 0
    attention_proj: int = 0
    linear: int = 0
    message_passing: int = 0
    backward: int = 0
    by_module: Dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def total(self) -> int:
        """Forward FLOPs, all parts."""
        return self.attention + self.attention_proj + self.linear + self.message_passing

    def as_dict(self) -> Dict[str, int]:
        """The parts, ``total`` and ``backward`` (without ``by_module``)."""
        parts = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "by_module"}
        return {**parts, "total": self.total}


class _ActivationProduct(NamedTuple):
    """Key of a product of two activations in the counter's breakdown (the op itself keys weight products)."""

    op: Any

    def __str__(self) -> str:
        return f"{self.op} (activations)"


class _Counter(FlopCounterMode):
    """``FlopCounterMode`` that counts sparse weights by their non-zeros and keys a product of two
    activations as :class:`_ActivationProduct`, apart from products with a weight: a parameter or
    buffer of ``model``, or the output of an op on weights only (a transpose, a concatenation)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__(display=False, custom_mapping={**AGGREGATIONS, _aten._sparse_addmm: _sparse_product_flops})
        for op in _PRODUCTS:
            self.flop_registry[_ActivationProduct(op)] = self.flop_registry[op]
        # id -> tensor: the references keep every id alive, so no new tensor takes one while counting
        self._weights = {id(t): t for t in (*model.parameters(), *model.buffers())}

    def _is_weight(self, x: Any) -> bool:
        return isinstance(x, Tensor) and id(x) in self._weights

    def _count_flops(self, func_packet, out, args, kwargs):
        tensors = [x for x in tree_leaves((args, kwargs)) if isinstance(x, Tensor)]
        if tensors and all(self._is_weight(x) for x in tensors):
            self._weights.update((id(x), x) for x in tree_leaves(out) if isinstance(x, Tensor))
        if func_packet in _PRODUCTS and not any(self._is_weight(x) for x in args[-2:]):
            func_packet = _ActivationProduct(func_packet)
        return super()._count_flops(func_packet, out, args, kwargs)


def _is_attention_op(op: Any) -> bool:
    """The engine's ops, PyTorch's attention kernels (SDPA's flash/efficient/math ops, flex attention) and
    products of two activations."""
    name = str(op)
    return isinstance(op, _ActivationProduct) or name.startswith("sparse_kernels.") or "attention" in name


def _own_counts(counts: Dict[str, Dict[Any, int]]) -> Dict[str, Dict[Any, int]]:
    """Per module, the counts of the ops it runs itself (its total less that of its nearest counted
    descendants)."""
    names = [n for n in counts if n != "Global"]
    own = {}
    for name in names:
        inner = [m for m in names if m.startswith(name + ".")]
        nearest = [m for m in inner if not any(m.startswith(o + ".") for o in inner if o != m)]
        own[name] = {op: n - sum(counts[m].get(op, 0) for m in nearest) for op, n in counts[name].items()}
    outside = {op: n - sum(counts[m].get(op, 0) for m in names if "." not in m) for op, n in counts["Global"].items()}
    own["Global"] = outside
    return own


def _categorise(counts: Dict[str, Dict[Any, int]]) -> FlopCount:
    count = FlopCount(by_module={n: sum(ops.values()) for n, ops in counts.items() if n != "Global"})
    if "Global" not in counts:
        return count
    own = _own_counts(counts)
    blocks = [n for n, ops in own.items() if n != "Global" and any(_is_attention_op(op) and v for op, v in ops.items())]
    for name, ops in own.items():
        in_block = any(name == b or name.startswith(b + ".") for b in blocks)
        for op, flops in ops.items():
            if _is_attention_op(op):
                count.attention += flops
            elif op in AGGREGATIONS:
                if in_block:
                    count.attention += flops
                else:
                    count.message_passing += flops
            elif in_block:
                count.attention_proj += flops
            else:
                count.linear += flops
    return count


def count_flops(model: torch.nn.Module, batch: Any, *, backward: bool = False) -> FlopCount:
    r"""Counts the FLOPs of ``model`` on ``batch`` by running it once in evaluation mode under
    :class:`~torch.utils.flop_counter.FlopCounterMode`, so it counts what actually runs: a pruned
    attention graph has fewer edges, a pruned attention fewer heads, a removed block nothing, a sparse
    (CSR) weight its non-zeros; a dense weight with zeros costs its full shape, as it runs.

    Args:
        model: any module (e.g. :class:`~graphattn.models.GPS`, :class:`~graphattn.sparsify.GTSP`).
        batch: a PyG ``Data``/``Batch`` (called as ``model(**model_inputs(batch))``) or a mapping of
            keyword arguments.
        backward: also run the backward of the summed output and count it (``FlopCount.backward``).

    Returns:
        :class:`FlopCount`.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    inputs = dict(batch) if isinstance(batch, Mapping) else model_inputs(batch)
    was_training = model.training
    model.eval()
    try:
        with torch.set_grad_enabled(backward):
            with _Counter(model) as forward:
                out = model(**inputs)
            count = _categorise(forward.get_flop_counts())
            if backward:
                with FlopCounterMode(display=False, custom_mapping=AGGREGATIONS) as back:
                    _summed(out).backward()
                count.backward = back.get_total_flops()
    finally:
        model.train(was_training)
    return count


def _summed(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out.sum()
    return sum(x.sum() for x in out if isinstance(x, Tensor))

r"""Capturing what a Hugging Face attention layer computes, without the eager path.

In ``transformers`` every attention module (BERT/RoBERTa/MiniLM ``*SelfAttention``,
``LlamaAttention``, ``ViTAttention``, ...) projects ``query``/``key``/``value`` (and applies
rotary embeddings) itself and then calls
``ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, eager)(module, query,
key, value, attention_mask, scaling=..., ...)``. :func:`install_capture` registers one more
implementation, ``"graphattn"``, that records these arguments on the way to PyTorch's
scaled-dot-product attention (SDPA) and returns SDPA's result unchanged; the masks are
built as for ``"sdpa"`` (a model set to another implementation, e.g. flash attention, runs
on SDPA while captured). The model thus keeps its fast attention; the adapters rebuild the
probabilities they need from ``query``/``key`` on the tokens' graph
(:func:`~graphattn.adapters.attention_graph`), which needs no ``output_attentions`` and no
eager attention.

Each injected model owns one :class:`CaptureStore`; a layer's attention call overwrites
``store.last`` and the adapter behind that layer's output projection reads it (a layer's
attention always runs right before its own output projection, also under gradient
checkpointing). The attention modules are found as the modules with a ``config`` and a
``scaling`` attribute — the signature of the interface-based attention classes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from ..graph import AttentionGraph
from .attention_graphs import attention_graph

__all__ = ["AttentionCapture", "CaptureStore", "install_capture", "uninstall_capture", "attention_modules",
           "collect_attention_graphs", "IMPLEMENTATION"]

#: Name of the capturing attention implementation registered with ``transformers``.
IMPLEMENTATION = "graphattn"
_STORE_ATTR = "_graphattn_capture_store"


@dataclass
class AttentionCapture:
    """Inputs of one attention call.

    Attributes:
        query: ``[B, H, L_q, D]`` (after rotary embeddings).
        key: ``[B, H_kv, L_k, D]``; value: ``[B, H_kv, L_k, D_v]``.
        mask: the mask given to the attention function (SDPA format: ``None`` or boolean
            ``[B, 1, L_q, L_k]``).
        scaling: the score scale the model uses.
        is_causal: causal attention without an explicit mask.
        hidden_states: ``[B, L_q, hidden]``, the attention module's input.
    """

    query: Tensor
    key: Tensor
    value: Tensor
    mask: Optional[Tensor]
    scaling: Optional[float]
    is_causal: bool
    hidden_states: Optional[Tensor]

    def value_heads(self) -> Tensor:
        """``[B, H, L_k, D_v]``: grouped-query values repeated to every query head."""
        groups = self.query.size(1) // self.value.size(1)
        return self.value if groups == 1 else self.value.repeat_interleave(groups, dim=1)

    def graph(self, **kwargs: Any) -> AttentionGraph:
        """This call's attention as an :class:`AttentionGraph` (``kwargs`` go to
        :func:`~graphattn.adapters.attention_graph`: ``threshold``, ``top_k``, ``reduce_heads``)."""
        return attention_graph(self.query, self.key, self.mask, is_causal=self.is_causal,
                               scaling=self.scaling, **kwargs)


class CaptureStore:
    """The latest attention call of a model's marked attention modules."""

    def __init__(self, previous_implementation: Optional[str]):
        self.previous_implementation = previous_implementation
        self.last: Optional[AttentionCapture] = None
        self.hidden_states: Optional[Tensor] = None
        self.hooks: list[Any] = []

    def take(self) -> AttentionCapture:
        if self.last is None:
            raise RuntimeError("no attention call was captured before the adapter ran; is the model's "
                               f"attention implementation still {IMPLEMENTATION!r}?")
        return self.last


def _capturing_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                         attention_mask: Optional[Tensor], **kwargs: Any):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    store = getattr(module, _STORE_ATTR, None)
    if store is not None:
        is_causal = kwargs.get("is_causal")
        if is_causal is None:
            is_causal = getattr(module, "is_causal", False)
        store.last = AttentionCapture(query, key, value, attention_mask, kwargs.get("scaling"),
                                      bool(is_causal) and attention_mask is None, store.hidden_states)
        store.hidden_states = None
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(IMPLEMENTATION, _capturing_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The interface-based attention modules of ``model`` (``(name, module)`` in order)."""
    return [(name, m) for name, m in model.named_modules()
            if hasattr(m, "scaling") and hasattr(getattr(m, "config", None), "_attn_implementation")]


def _set_implementation(model: nn.Module, implementation: str) -> None:
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(implementation)
    for _, m in attention_modules(model):        # modules built outside a PreTrainedModel
        if m.config._attn_implementation != implementation:
            m.config._attn_implementation = implementation


def install_capture(model: nn.Module) -> CaptureStore:
    """Routes ``model``'s attention through the capturing implementation; returns its store.

    Idempotent: a model that already has a store keeps it.
    """
    modules = attention_modules(model)
    if not modules:
        raise ValueError(f"{type(model).__name__} has no transformers attention module (a module with "
                         "`config` and `scaling`); only AttentionInterface-based models are supported")
    existing = getattr(modules[0][1], _STORE_ATTR, None)
    if existing is not None:
        return existing
    _register()
    store = CaptureStore(modules[0][1].config._attn_implementation)

    def pre_hook(module, args, kwargs):
        store.hidden_states = kwargs.get("hidden_states", args[0] if args else None)

    for _, m in modules:
        setattr(m, _STORE_ATTR, store)
        store.hooks.append(m.register_forward_pre_hook(pre_hook, with_kwargs=True))
    _set_implementation(model, IMPLEMENTATION)
    return store


def uninstall_capture(model: nn.Module) -> None:
    """Restores the attention implementation and removes the hooks of :func:`install_capture`."""
    modules = attention_modules(model)
    store = getattr(modules[0][1], _STORE_ATTR, None) if modules else None
    if store is None:
        return
    for handle in store.hooks:
        handle.remove()
    for _, m in modules:
        delattr(m, _STORE_ATTR)
    _set_implementation(model, store.previous_implementation or "sdpa")



@torch.no_grad()
def collect_attention_graphs(model: nn.Module, inputs: dict[str, Any], threshold: Optional[float] = None,
                             top_k: Optional[int] = None, reduce_heads: Optional[str] = None) -> list[AttentionGraph]:
    """Runs ``model(**inputs)`` once and returns every attention layer's graph, in model order.

    The model's attention stays on SDPA; each layer's graph is rebuilt blockwise from its
    captured ``query``/``key`` (see :func:`~graphattn.adapters.attention_graph` for the
    options). A model that was not injected is restored afterwards.
    """
    modules = attention_modules(model)
    installed_here = bool(modules) and getattr(modules[0][1], _STORE_ATTR, None) is None
    store = install_capture(model)
    graphs: list[AttentionGraph] = []

    def hook(module, args, output):
        graphs.append(store.take().graph(threshold=threshold, top_k=top_k, reduce_heads=reduce_heads))

    handles = [m.register_forward_hook(hook) for _, m in modules]
    try:
        model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
        if installed_here:
            uninstall_capture(model)
    return graphs

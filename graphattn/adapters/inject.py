r"""Attaching graph adapters to a pretrained model, the way ``peft`` attaches LoRA.

>>> model = AutoModel.from_pretrained(path)
>>> inject_adapters(model, PAdapterConfig(bottleneck=24))       # backbone frozen
>>> print_trainable_parameters(model)
>>> torch.save(adapter_state_dict(model), "adapter.pt")
>>> load_adapter_state_dict(other_model_with_same_adapters, torch.load("adapter.pt"))

Targets are the attention output projections, matched by regular expressions searched in
the module names (:data:`DEFAULT_TARGETS` covers ``transformers`` 5.x):

=======================  ============================================
BERT / RoBERTa / MiniLM  ``encoder.layer.N.attention.output.dense``
Llama family             ``model.layers.N.self_attn.o_proj``
ViT                      ``[vit.]layers.N.attention.o_proj``
=======================  ============================================

Each adapter becomes a child module ``graph_adapter`` of its target (the base weights keep
their names, so the model's own checkpoint still loads) and runs in a forward hook that
adds its update to the projection's output; the attention it needs is captured on the way
(:mod:`~graphattn.adapters.capture`). Everything but the adapters is frozen unless
``freeze_base=False`` (e.g. to train ``peft`` LoRA weights side by side); a task head
added to the model before the injection must be unfrozen by the caller (as ``peft``'s
``modules_to_save``).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .capture import attention_modules, install_capture, uninstall_capture
from .p_adapter import PAdapter
from .sparse_gin import SparseGINAdapter

__all__ = ["PAdapterConfig", "SparseGINAdapterConfig", "inject_adapters", "remove_adapters",
           "adapter_state_dict", "load_adapter_state_dict", "print_trainable_parameters",
           "count_parameters", "DEFAULT_TARGETS", "ADAPTER_NAME"]

#: Attention output projections of BERT-family encoders, Llama-family decoders and ViT.
DEFAULT_TARGETS = (r"(^|\.)attention\.output\.dense$", r"(^|\.)self_attn\.o_proj$", r"(^|\.)attention\.o_proj$")
#: Name of the adapter child module inside each target.
ADAPTER_NAME = "graph_adapter"
_HOOK_ATTR = "_graphattn_adapter_hook"


@dataclass
class PAdapterConfig:
    r"""p-adapter (:class:`~graphattn.adapters.PAdapter`) settings.

    Args:
        target_modules: regular expressions searched in module names (default :data:`DEFAULT_TARGETS`).
        bottleneck: adapter width, a multiple of the number of heads (default
            ``hidden // reduction`` rounded down to one).
        reduction: :math:`W_\downarrow` reduction when ``bottleneck`` is not given (8 in the paper).
        p_init, mu0, eps: see :class:`~graphattn.adapters.PAdapter`.
        threshold, top_k: sparsification of the attention graph (``None``: every allowed edge).
    """

    target_modules: Optional[Sequence[str]] = None
    bottleneck: Optional[int] = None
    reduction: int = 8
    p_init: float = 1.5
    mu0: float = 0.1
    eps: float = 1e-8
    threshold: Optional[float] = None
    top_k: Optional[int] = None


@dataclass
class SparseGINAdapterConfig:
    r"""Sparse GIN adapter (:class:`~graphattn.adapters.SparseGINAdapter`) settings.

    Args:
        target_modules: regular expressions searched in module names (default :data:`DEFAULT_TARGETS`).
        gin_hidden: GIN MLP width (155 in the paper).
        scale_range: :math:`\lambda_l` initialised linearly from the first to the second value
            across the targets in model order.
        eps_init, one_plus_eps, sharpness, shift, cutoff: see :class:`~graphattn.adapters.SparseGINAdapter`.
    """

    target_modules: Optional[Sequence[str]] = None
    gin_hidden: int = 155
    scale_range: tuple[float, float] = (0.0, 0.5)
    eps_init: float = 0.0
    one_plus_eps: bool = False
    sharpness: float = 10.0
    shift: float = 0.1
    cutoff: float = 0.6


AdapterConfig = Union[PAdapterConfig, SparseGINAdapterConfig]


def _targets(model: nn.Module, patterns: Sequence[str]) -> list[tuple[str, nn.Module]]:
    regexes = [re.compile(p) for p in patterns]
    found = [(name, m) for name, m in model.named_modules()
             if name and any(r.search(name) for r in regexes) and isinstance(getattr(m, "weight", None), Tensor)]
    if not found:
        raise ValueError(f"no module of {type(model).__name__} matches target_modules {list(patterns)}")
    for name, m in found:
        if hasattr(m, ADAPTER_NAME):
            raise ValueError(f"{name} already has a graph adapter; call remove_adapters first")
    return found


def _base_linear(module: nn.Module) -> nn.Module:
    """The frozen linear layer (inside a ``peft`` LoRA wrapper when there is one)."""
    while hasattr(module, "base_layer"):
        module = module.base_layer
    return module


def _build(config: AdapterConfig, hidden: int, heads: int, index: int, count: int) -> nn.Module:
    if isinstance(config, PAdapterConfig):
        bottleneck = config.bottleneck
        if bottleneck is None:
            bottleneck = max(heads, (hidden // config.reduction) // heads * heads)
        return PAdapter(hidden, heads, bottleneck, config.p_init, config.mu0, config.eps,
                        config.threshold, config.top_k)
    lo, hi = config.scale_range
    scale = lo if count == 1 else lo + (hi - lo) * index / (count - 1)
    return SparseGINAdapter(hidden, config.gin_hidden, scale, config.eps_init, config.one_plus_eps,
                            config.sharpness, config.shift, config.cutoff)


def inject_adapters(model: nn.Module, config: AdapterConfig, freeze_base: bool = True) -> nn.Module:
    """Adds a graph adapter behind every target output projection of ``model`` (in place).

    Args:
        model: a ``transformers`` model (or a ``peft`` model wrapping one) whose attention
            uses the ``AttentionInterface`` (BERT, RoBERTa, MiniLM, Llama, ViT, ...).
        config: :class:`PAdapterConfig` or :class:`SparseGINAdapterConfig`.
        freeze_base: freeze every parameter that is not an adapter's.

    Returns:
        ``model``; its attention runs through the capturing SDPA route from now on.
    """
    if not isinstance(config, (PAdapterConfig, SparseGINAdapterConfig)):
        raise TypeError(f"config must be a PAdapterConfig or SparseGINAdapterConfig, got {type(config).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    targets = _targets(model, config.target_modules or DEFAULT_TARGETS)
    attention = attention_modules(model)
    if not attention:
        raise ValueError(f"{type(model).__name__} has no AttentionInterface-based attention module")
    heads = attention[0][1].config.num_attention_heads
    store = install_capture(model)

    def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        base = _base_linear(module)
        adapter = getattr(module, ADAPTER_NAME)
        return output + adapter(store.take(), lambda x: F.linear(x, base.weight, base.bias), output)

    for index, (_, module) in enumerate(targets):
        weight = _base_linear(module).weight
        adapter = _build(config, weight.size(0), heads, index, len(targets)).to(weight.device)
        module.add_module(ADAPTER_NAME, adapter)
        setattr(module, _HOOK_ATTR, module.register_forward_hook(hook))
    if freeze_base:
        for name, param in model.named_parameters():
            param.requires_grad_(ADAPTER_NAME in name.split("."))
    return model


def remove_adapters(model: nn.Module) -> nn.Module:
    """Removes every graph adapter and restores the model's attention implementation."""
    for module in list(model.modules()):
        if hasattr(module, ADAPTER_NAME):
            getattr(module, _HOOK_ATTR).remove()
            delattr(module, _HOOK_ATTR)
            delattr(module, ADAPTER_NAME)
    uninstall_capture(model)
    return model


def _is_adapter_key(key: str) -> bool:
    return ADAPTER_NAME in key.split(".")


def adapter_state_dict(model: nn.Module) -> "OrderedDict[str, Tensor]":
    """The adapters' parameters and buffers only (detached copies), keyed as in ``model.state_dict()``."""
    return OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items() if _is_adapter_key(k))


def load_adapter_state_dict(model: nn.Module, state_dict: "dict[str, Tensor]") -> None:
    """Loads adapter weights saved by :func:`adapter_state_dict` (keys and shapes must match exactly)."""
    own = {k: v for k, v in model.state_dict().items() if _is_adapter_key(k)}
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        raise ValueError(f"adapter state_dict does not match the model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    for key, value in state_dict.items():
        if value.shape != own[key].shape:
            raise ValueError(f"adapter state_dict[{key!r}] has shape {list(value.shape)}, "
                             f"the model {list(own[key].shape)}")
    with torch.no_grad():
        for key, value in state_dict.items():
            own[key].copy_(value)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def print_trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """Prints the trainable and total parameter counts as ``peft`` does.

    The line reads ``trainable params: ... || all params: ... || trainable%: ...``."""
    trainable, total = count_parameters(model)
    print(f"trainable params: {trainable:,d} || all params: {total:,d} || "
          f"trainable%: {100 * trainable / max(total, 1):.4f}")
    return trainable, total

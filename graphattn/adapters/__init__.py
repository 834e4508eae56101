"""Graph adapters for pretrained transformers: message passing on their attention graphs.

* :func:`attention_graph` — a layer's attention probabilities as a sparse weighted
  :class:`~graphattn.graph.AttentionGraph` (thresholded / top-k, causal, padding excluded);
* :class:`PAdapter` — one step of p-Laplacian message passing (Wu et al., AAAI 2024);
* :class:`SparseGINAdapter` — GIN on the sharpened attention graph (Buehler 2025);
* :func:`inject_adapters` and the state-dict helpers — attach them like ``peft`` does.
"""
from .attention_graphs import allowed_pairs, attention_graph
from .capture import AttentionCapture, collect_attention_graphs, install_capture, uninstall_capture
from .inject import (ADAPTER_NAME, DEFAULT_TARGETS, PAdapterConfig, SparseGINAdapterConfig, adapter_state_dict,
                     count_parameters, inject_adapters, load_adapter_state_dict, print_trainable_parameters,
                     remove_adapters)
from .p_adapter import PAdapter, edge_diff_norm, p_laplacian_step
from .sparse_gin import RMSNorm, SparseGINAdapter, sharpened_attention_graph

__all__ = ["attention_graph", "allowed_pairs", "AttentionCapture", "collect_attention_graphs", "install_capture",
           "uninstall_capture",
           "PAdapterConfig", "SparseGINAdapterConfig", "inject_adapters", "remove_adapters",
           "adapter_state_dict", "load_adapter_state_dict", "print_trainable_parameters", "count_parameters",
           "DEFAULT_TARGETS", "ADAPTER_NAME", "PAdapter", "p_laplacian_step", "edge_diff_norm",
           "SparseGINAdapter", "RMSNorm", "sharpened_attention_graph"]

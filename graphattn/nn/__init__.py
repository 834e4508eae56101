r"""PyG-style layers on the graphattn engine (one layer per file).

Every attention runs through :func:`~graphattn.graph_attention` or the engine's ops: no
:math:`E \times H \times D` message tensor, no padding to the largest graph.
"""
from .dropout import Dropout
from .gat_conv import GATConv
from .gated_gcn import GatedGCNLayer
from .gatv2_conv import GATv2Conv
from .gin_attention import GINAttention
from .gps_layer import AttentionMasks, GPSLayer
from .graph_attn_conv import GraphAttnConv
from .graph_transformer_layer import GraphTransformerLayer
from .linear_attention import LinearGraphAttention
from .multihead_attention import MultiheadGraphAttention
from .ogb_gcn_conv import OGBGCNConv
from .pna_attention import PNAAttention
from .transformer_encoder import GraphTransformerEncoder, GraphTransformerEncoderLayer
from .virtual_node import VirtualNode

__all__ = ["GraphAttnConv", "GATConv", "GATv2Conv", "GraphTransformerLayer", "GPSLayer",
           "MultiheadGraphAttention", "LinearGraphAttention", "VirtualNode", "GINAttention", "PNAAttention",
           "GatedGCNLayer", "AttentionMasks", "Dropout", "OGBGCNConv", "GraphTransformerEncoderLayer",
           "GraphTransformerEncoder"]

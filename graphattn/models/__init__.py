"""Ready-made models: GraphTransformer, GPS, MPNNVirtualNode, GraphTrans, GINAttentionNet and GAT, with OGB
atom/bond encoders, positional encodings and graph- or node-level heads. The shipped configs
(``graphattn/configs``) build published architectures with them; each YAML names its source."""
from .base import GraphModel
from .encoders import AtomEncoder, BondEncoder, CategoricalEncoder, EdgeInputEncoder, InputEncoder
from .gat import GAT
from .gin_attention_net import GINAttentionNet
from .gps import GPS
from .graph_transformer import GraphTransformer
from .graphtrans import GraphTrans
from .heads import PredictionHead
from .inputs import model_inputs
from .local import EDGE_AWARE_LOCAL_CONVS, EDGE_UPDATING_LOCAL_CONVS, LOCAL_CONVS, LocalConv
from .mpnn_virtual_node import MPNNVirtualNode

__all__ = ["GAT", "GraphModel", "GraphTransformer", "GraphTrans", "GPS", "MPNNVirtualNode", "GINAttentionNet",
           "PredictionHead", "LocalConv", "LOCAL_CONVS", "EDGE_AWARE_LOCAL_CONVS", "EDGE_UPDATING_LOCAL_CONVS",
           "AtomEncoder", "BondEncoder", "CategoricalEncoder", "InputEncoder", "EdgeInputEncoder", "model_inputs"]

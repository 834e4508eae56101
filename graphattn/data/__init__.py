"""Datasets: OGB graph property prediction, LRGB peptides, the embedded ogbg-molesol, Planetoid (Cora, CiteSeer),
TU graph classification (MUTAG, NCI1, PROTEINS)."""
from .benchmarks import (EMBEDDED, MULTICLASS, AccuracyEvaluator, GraphBenchmark, MAEEvaluator, dataset_metric,
                         embedded_root, load_dataset)
from .lrgb import PeptidesDataset
from .planetoid import PLANETOID, NodeBenchmark, load_planetoid, row_normalize
from .ogb import MissingDataError, OGBGraphDataset, default_cache_dir
from .sst2 import SST2Split, load_sst2
from .tu import TU, TUGraphDataset, random_split_indices
from .validate import CorruptDataError
from .positional import AddLapPE, AddRWSE, laplacian_pe, random_sign_flip
from .virtual_node import AddVirtualNode

__all__ = ["load_dataset", "dataset_metric", "GraphBenchmark", "OGBGraphDataset", "PeptidesDataset", "MissingDataError",
           "CorruptDataError", "MAEEvaluator", "embedded_root", "default_cache_dir", "EMBEDDED", "AddLapPE",
           "AddRWSE", "laplacian_pe", "random_sign_flip", "AddVirtualNode", "SST2Split", "load_sst2", "PLANETOID",
           "NodeBenchmark", "load_planetoid", "row_normalize", "TU", "TUGraphDataset", "random_split_indices",
           "AccuracyEvaluator", "MULTICLASS"]

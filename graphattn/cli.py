"""The ``graphattn`` command: ``graphattn demo``, ``graphattn train``, ``graphattn reproduce``, ``graphattn bench``."""
from __future__ import annotations

import contextlib
import importlib
import sys
from typing import Iterator, Optional

__all__ = ["main", "one_line_errors"]

USAGE = """usage: graphattn <command> [options]
       graphattn --version

commands:
  demo               train a graph transformer on the embedded ogbg-molesol (CPU, ~3 minutes)
  train              train a model on an OGB / LRGB / TU benchmark or a Planetoid graph (`graphattn train --help`)
  reproduce          run a published number's protocol to its end across stops, compare (`graphattn reproduce --help`)
  bench kernels      kernel benchmark against PyG, FlexAttention and SDPA
  bench seq-patterns sequence attention patterns against FlexAttention and SDPA
  bench models       training-epoch time against the same models built from PyG's GPSConv and TransformerConv
  bench layers       training steps of layer stacks and the core op against the PyG layers they replace
  bench gtsp-export  FLOPs and inference time of a GPS before and after GTSP pruning and export
  bench gat          training steps of GATConv / GATv2Conv against PyG's on Cora and a large random graph
  bench dropout      training steps of a model with PyTorch's dropout masks against the counter-based ones
  bench graphtrans   training steps of GraphTrans-small on NCI1 against the padded model of its code
  bench gtsp-graphtrans  FLOPs and training-step time of GraphTrans-small on NCI1, dense against our GTSP
"""

#: ``graphattn bench <name>`` runs ``main`` of ``graphattn.bench.<module>``.
BENCHMARKS = {"kernels": "kernels", "seq-patterns": "seq_patterns", "models": "models", "layers": "layers",
              "gtsp-export": "gtsp_export", "gat": "gat", "dropout": "dropout", "graphtrans": "graphtrans",
              "gtsp-graphtrans": "gtsp_graphtrans"}


@contextlib.contextmanager
def one_line_errors(prog: str) -> Iterator[None]:
    """Missing or corrupt data or checkpoints end a command (``graphattn ...``, an example, a benchmark) with
    one line naming the file and the problem instead of a traceback; exit status 1."""
    from .checkpoint import CheckpointError
    from .data.ogb import MissingDataError
    from .data.validate import CorruptDataError

    try:
        yield
    except (MissingDataError, CorruptDataError, CheckpointError, FileNotFoundError) as error:
        sys.exit(f"{prog}: error: {error}")


def main(argv: Optional[list[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    if argv[0] in ("-V", "--version"):
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"graphattn {version('graphattn')}")
        except PackageNotFoundError:              # run from a source tree without installing
            from . import __version__
            print(f"graphattn {__version__}")
        return
    command, rest = argv[0], argv[1:]
    if command == "demo":
        from .demo import main as run
    elif command == "train":
        from .train_cli import main as run
    elif command == "reproduce":
        from .reproduce import main as run
    elif command == "bench" and rest and rest[0] in BENCHMARKS:
        run = importlib.import_module(f".bench.{BENCHMARKS[rest[0]]}", __package__).main
        rest = rest[1:]
    else:
        print(USAGE, file=sys.stderr)
        sys.exit(f"graphattn: unknown command {' '.join(argv[:2])!r}")
    with one_line_errors("graphattn " + " ".join(argv[:2] if command == "bench" else argv[:1])):
        run(rest)


if __name__ == "__main__":
    main()

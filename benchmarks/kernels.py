"""Graph-attention kernels vs PyG, FlexAttention and dense SDPA (see graphattn.bench.kernels).

    python benchmarks/kernels.py --molhiv-root /path/to/ogbg_molhiv   # GPU, one command, < 10 min
    python benchmarks/kernels.py --device cpu --quick                 # smoke test
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from graphattn.bench.kernels import main  # noqa: E402

if __name__ == "__main__":
    from graphattn.cli import one_line_errors

    with one_line_errors(f"python {sys.argv[0]}"):
        main()

"""Sequence patterns x lengths: graphattn vs FlexAttention vs dense SDPA (see graphattn.bench.seq_patterns).

    python benchmarks/seq_patterns.py --device cuda          # GPU, < 10 min
    python benchmarks/seq_patterns.py --device cpu --quick   # smoke test
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from graphattn.bench.seq_patterns import main  # noqa: E402

if __name__ == "__main__":
    from graphattn.cli import one_line_errors

    with one_line_errors(f"python {sys.argv[0]}"):
        main()

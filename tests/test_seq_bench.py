"""The sequence-pattern benchmark runs end to end in its CPU smoke mode."""
import json

from graphattn.bench.seq_patterns import main
from graphattn.seq import patterns


def test_seq_patterns_benchmark_cpu_smoke(tmp_path):
    limit = patterns.MAX_DENSE_EDGES
    result = main(["--device", "cpu", "--quick", "--lengths", "96", "--reps", "1", "--warmup", "0",
                   "--patterns", "causal_window512_sinks4", "causal", "--out-dir", str(tmp_path)])
    rows = {(r["pattern"], r["method"]): r for r in result["rows"]}
    assert rows[("causal", "graphattn")]["fwd_bwd_ms"] > 0
    assert rows[("causal", "sdpa_flash")]["fwd_ms"] > 0
    assert rows[("causal_window512_sinks4", "graphattn")]["max_abs_diff_vs_flex"] < 1e-4
    assert rows[("causal_window512_sinks4", "sdpa_mask")]["max_abs_diff_vs_flex"] < 1e-4
    saved = json.loads((tmp_path / "seq_patterns-cpu-quick.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    assert (tmp_path / "seq_patterns-cpu-quick.png").stat().st_size > 0
    assert patterns.MAX_DENSE_EDGES == limit          # the benchmark lifts the dense-edge limit only while it runs

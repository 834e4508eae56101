"""examples/pyg_integration.py runs end to end (explainers and to_hetero on real molecules)."""
import importlib.util
import pathlib

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "pyg_integration.py"


def test_example_runs(capsys):
    spec = importlib.util.spec_from_file_location("pyg_integration", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--epochs", "1", "--explainer-epochs", "3"])
    out = capsys.readouterr().out
    assert out.count("GNNExplainer") == 2 and out.count("AttentionExplainer") == 2
    assert "4 edge types" in out and "most important bonds" in out

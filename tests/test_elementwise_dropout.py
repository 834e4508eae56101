"""Element-wise counter-based dropout (``sparse_kernels.elementwise_dropout``, ``graphattn.functional.dropout``,
``graphattn.nn.Dropout``): the mask of element ``t`` is the engine's hash of ``(seed, t)``.

The compiled CPU kernel and the plain-PyTorch reference agree bit for bit (masks and values) in float32 and
float64 on awkward shapes; the keep rate is 1 - p within binomial tolerance; kept values are scaled by
1 / (1 - p); the gradient is the same mask times the gradient; the seed follows ``torch.manual_seed``; the
op traces under ``torch.compile(fullgraph=True)``; the models' dropout modules draw with it."""
import pytest
import torch

import graphattn.functional as GF
import sparse_kernels as sk
from graphattn.models import MPNNVirtualNode, model_inputs
from graphattn.nn import Dropout
from sparse_kernels import dropout as drop
from sparse_kernels.call import Features
from sparse_kernels.triton import interpreter_backend
from sparse_kernels.triton._common import interpreting

needs_cpu_kernels = pytest.mark.skipif(not sk.cpu.available(), reason="compiled CPU kernels unavailable")
needs_interpreter = pytest.mark.skipif(not interpreting(), reason="CPU tests of the kernels need TRITON_INTERPRET=1")
SHAPES = [(0,), (1,), (7, 13, 5), (3 * 4096 + 17,), (2, 4096 + 1)]
SEED = torch.tensor([(0x1234 << 32) + 987654321])


def _mix(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_reference_mask_is_the_documented_hash_of_the_element_index():
    """Scalar re-derivation of the spec (counter = row-major element index) for a few elements."""
    seed, p = int(SEED), 0.3
    k0, k1 = seed & 0xFFFFFFFF, _mix((seed >> 32) ^ 0x9E3779B9)
    keep = drop.elementwise_keep((5, 7), SEED, drop.threshold(p)).flatten()
    for t in (0, 1, 6, 7, 34):
        u = _mix(_mix((t + k0) & 0xFFFFFFFF) ^ k1)
        assert bool(keep[t]) == ((u >> 8) >= round(p * 2 ** 24))


@needs_cpu_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_cpu_kernel_equals_the_reference_bit_for_bit(dtype, shape, p):
    x = torch.randn(shape, dtype=dtype)
    args = (SEED, drop.threshold(p), drop.keep_scale(p))
    got, want = sk.cpu.elementwise_dropout(x, *args), drop.elementwise_dropout(x, *args)
    assert got.shape == x.shape and got.dtype == dtype and got.is_contiguous()
    assert torch.equal(got, want)
    ones = sk.cpu.elementwise_dropout(torch.ones(shape, dtype=dtype), *args)
    assert torch.equal(ones != 0, drop.elementwise_keep(shape, SEED, args[1]))        # the masks, bit for bit


def _with_special_values(x: torch.Tensor) -> torch.Tensor:
    """``x`` with inf, nan and -0 among its first elements (a dropped one gives 0, a kept one inf, nan, -0)."""
    flat = x.view(-1)
    special = torch.tensor([float("inf"), float("nan"), -0.0, float("-inf")] * 4, dtype=x.dtype)[:flat.numel()]
    flat[:special.numel()] = special
    return x


def _assert_same(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.dtype == want.dtype and torch.equal(got.isnan(), want.isnan())
    assert torch.equal(got.nan_to_num(), want.nan_to_num())
    assert torch.equal(got.signbit(), want.signbit())


@needs_cpu_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_kernel_on_inf_nan_and_negative_zero(dtype):
    x = _with_special_values(torch.randn(5000, dtype=dtype))
    args = (SEED, drop.threshold(0.5), drop.keep_scale(0.5))
    _assert_same(sk.cpu.elementwise_dropout(x, *args), drop.elementwise_dropout(x, *args))


@needs_cpu_kernels
def test_non_contiguous_input_counts_elements_in_row_major_order():
    x = torch.randn(37, 53, dtype=torch.float64).t()
    out = sk.elementwise_dropout(x, 0.4, SEED)
    assert torch.equal(out, sk.elementwise_dropout(x.contiguous(), 0.4, SEED))
    assert torch.equal(out, drop.elementwise_dropout(x, SEED, drop.threshold(0.4), drop.keep_scale(0.4)))


@needs_interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_triton_kernel_equals_the_reference_bit_for_bit(dtype):
    for shape in [(0,), (7, 13, 5), (2500,)]:
        x = _with_special_values(torch.randn(shape).to(dtype))
        with interpreter_backend():
            assert sk.dispatch.select_kernels("elementwise_dropout", "cpu", Features(dtype)).name == "triton"
            got = sk.elementwise_dropout(x, 0.3, SEED)
        want = drop.elementwise_dropout(x, SEED, drop.threshold(0.3), drop.keep_scale(0.3))
        if dtype == torch.bfloat16:     # the interpreter truncates float32 -> bfloat16 (a GPU rounds to nearest)
            assert torch.equal(got == 0, want == 0) and torch.equal(got.isnan(), want.isnan())
            torch.testing.assert_close(got, want, atol=0, rtol=2 ** -7, equal_nan=True)
        else:
            _assert_same(got, want)


def test_half_precision_runs_the_reference():
    assert sk.dispatch.select_kernels("elementwise_dropout", "cpu", Features(torch.float16)).name == "reference"
    x = torch.randn(100, dtype=torch.float16)
    out = sk.elementwise_dropout(x, 0.5, SEED)
    assert torch.equal(out, drop.elementwise_dropout(x, SEED, drop.threshold(0.5), 2.0))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_and_scaling(p):
    n = 1 << 20
    x = torch.rand(n, dtype=torch.float64) + 0.5                  # no zeros: a zero output is a dropped element
    out = sk.elementwise_dropout(x, p)
    kept = out != 0
    rate, sigma = kept.double().mean().item(), (p * (1 - p) / n) ** 0.5
    assert abs(rate - (1 - p)) < 5 * sigma
    assert torch.equal(out[kept], x[kept] * (1.0 / (1.0 - p)))
    # neighbouring elements are independent: the correlation of their keep indicators is ~ 0
    a, b = kept[:-1].double(), kept[1:].double()
    corr = ((a - a.mean()) * (b - b.mean())).mean() / (a.std() * b.std())
    assert abs(corr.item()) < 5 / n ** 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_is_the_same_mask_times_the_gradient(dtype):
    x = torch.randn(129, 7, dtype=dtype, requires_grad=True)
    grad = torch.randn(129, 7, dtype=dtype)
    out = sk.elementwise_dropout(x, 0.3, SEED)
    out.backward(grad)
    keep = drop.elementwise_keep(x.shape, SEED, drop.threshold(0.3))
    assert torch.equal(out != 0, keep)
    assert torch.equal(x.grad, torch.where(keep, grad * drop.keep_scale(0.3), torch.zeros((), dtype=dtype)))


def test_gradcheck_and_the_custom_op():
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    fn = lambda t: sk.elementwise_dropout(t, 0.4, SEED)          # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,)) and torch.autograd.gradgradcheck(fn, (x,))
    args = (x.detach(), SEED, drop.threshold(0.4), drop.keep_scale(0.4))
    torch.library.opcheck(torch.ops.sparse_kernels.elementwise_dropout.default, args)
    assert torch.equal(torch.ops.sparse_kernels.elementwise_dropout(*args), fn(x.detach()))


def test_seeds_follow_torch_manual_seed():
    x = torch.randn(1000)
    torch.manual_seed(5)
    a = GF.dropout(x, 0.5)
    torch.manual_seed(5)
    b = GF.dropout(x, 0.5)
    c = GF.dropout(x, 0.5)
    assert torch.equal(a, b) and not torch.equal(b != 0, c != 0)
    assert not torch.equal(sk.elementwise_dropout(x, 0.5, SEED) != 0, sk.elementwise_dropout(x, 0.5, SEED + 1) != 0)


def test_functional_dropout_arguments():
    x = torch.randn(50, 4)
    assert GF.dropout(x, 0.5, training=False) is x and GF.dropout(x, 0.0) is x
    assert torch.equal(GF.dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match="between 0 and 1"):
        GF.dropout(x, 1.5)
    with pytest.raises(TypeError, match="floating-point"):
        sk.elementwise_dropout(torch.ones(3, dtype=torch.long), 0.5)
    y = x.clone()
    torch.manual_seed(1)
    out = GF.dropout(y, 0.5, inplace=True)
    torch.manual_seed(1)
    assert out is y and torch.equal(y, GF.dropout(x, 0.5))
    with GF.use_dropout_generator("torch-bernoulli"):
        assert GF.dropout_generator() == "torch-bernoulli"
        torch.manual_seed(2)
        old = GF.dropout(x, 0.5)
    torch.manual_seed(2)
    assert torch.equal(old, torch.nn.functional.dropout(x, 0.5)) and GF.dropout_generator() == "counter-v1"
    with pytest.raises(ValueError, match="the dropout generator must be one of"):
        with GF.use_dropout_generator("philox"):
            pass


def test_dropout_module_is_a_drop_in_for_torch_nn_dropout():
    ours, theirs = Dropout(0.25), torch.nn.Dropout(0.25)
    assert repr(ours) == repr(theirs) == "Dropout(p=0.25, inplace=False)"
    assert isinstance(ours, torch.nn.Dropout) and not ours.state_dict()
    x = torch.randn(40, 8)
    assert ours.eval()(x) is x
    torch.manual_seed(3)
    out = ours.train()(x)
    torch.manual_seed(3)
    assert torch.equal(out, GF.dropout(x, 0.25))


def _model_and_inputs():
    """A 2-layer GIN + virtual node with dropout 0.5 (head too) and 8 molecules of the embedded ogbg-molesol."""
    from torch_geometric.loader import DataLoader

    from graphattn.data import load_dataset
    bench = load_dataset("ogbg-molesol")
    batch = next(iter(DataLoader(bench.dataset[bench.split["train"]][:8], batch_size=8)))
    model = MPNNVirtualNode(16, 1, num_layers=2, local_conv="gin", dropout=0.5, head_layers=2).train()
    return model, model_inputs(batch)


def test_models_draw_their_dropout_with_the_counter_generator():
    """Every dropout of a model goes through graphattn.functional.dropout: with the PyTorch generator the
    model draws PyTorch's masks, and the two give different outputs for one seed."""
    model, inputs = _model_and_inputs()
    torch.manual_seed(0)
    counter = model(**inputs)
    with GF.use_dropout_generator("torch-bernoulli"):
        torch.manual_seed(0)
        bernoulli = model(**inputs)
    assert not torch.allclose(counter, bernoulli)
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())


def test_compiled_model_with_dropout_traces_and_matches_eager():
    """torch.compile(fullgraph=True) traces through the custom op (forward and backward, fake kernel); with
    eager kernels (aot_eager) the seeds are drawn from the same generator in the same order, so outputs and
    gradients equal eager mode."""
    model, inputs = _model_and_inputs()
    torch.manual_seed(0)
    eager = model(**inputs)
    eager.sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    torch.manual_seed(0)
    out = torch.compile(model, fullgraph=True, backend="aot_eager")(**inputs)
    out.sum().backward()
    torch.testing.assert_close(out, eager)
    for p, g in zip(model.parameters(), eager_grads):
        torch.testing.assert_close(p.grad, g)

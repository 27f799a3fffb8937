"""The memory-efficient position attention routes agree with the naive form;
on CUDA, SDPA runs only its memory-efficient kernels (simulated here on CPU,
run for real in tests/test_cuda.py)."""
import contextlib
import copy
import logging

import pytest
import torch

from danet.errors import InputError
from danet.modeling import attention, chunked_attention
from danet.modeling.attention import (
    FeatureSimilarityPositionAttention,
    PositionAttention,
    position_attention,
    resolve_impl,
)
from helpers import relative_error

EFFICIENT_IMPLS = ("chunked", "sdpa", "auto")


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of 16 rows at N = 91, so the chunked route runs several blocks and a ragged last one."""
    monkeypatch.setattr(chunked_attention, "BLOCK_BYTES", 4 * 2 * 91 * 16)


def assert_gradients_close(grads, ref_grads, tolerance):
    """Relative error per gradient. The key bias gets none: softmax over keys is
    invariant to the shift query . key_bias, so its exact gradient is zero and
    only rounding noise, which must stay small next to the key weight's gradient."""
    assert grads.keys() == ref_grads.keys()
    for name, ref_grad in ref_grads.items():
        if name == "key.bias":
            assert grads[name].norm() <= tolerance * grads["key.weight"].norm()
        else:
            assert relative_error(grads[name], ref_grad) <= tolerance, name


def forward_backward(layer, x, grad):
    """Output and the gradients of the input and of every parameter."""
    x = x.clone().requires_grad_()
    layer.zero_grad(set_to_none=True)
    out = layer(x)
    out.backward(grad)
    grads = {name: p.grad for name, p in layer.named_parameters()}
    return out.detach(), dict(grads, input=x.grad)


def make_layers(layer, impl, dtype):
    reference = copy.deepcopy(layer).to(dtype)
    efficient = copy.deepcopy(layer).to(dtype)
    reference.impl, efficient.impl = "naive", impl
    return reference, efficient


def random_layer(kind):
    torch.manual_seed(0)
    layer = PositionAttention(32, key_channels=4) if kind == "qkv" else FeatureSimilarityPositionAttention()
    with torch.no_grad():
        layer.gamma.fill_(0.7)
    return layer


@pytest.mark.parametrize("impl", EFFICIENT_IMPLS)
@pytest.mark.parametrize("kind", ["qkv", "seed"])
def test_forward_and_gradients_match_naive_float32(impl, kind):
    layer = random_layer(kind)
    # Odd H and W (N = 91), and a feature scale giving peaked attention rows.
    x = 0.5 * torch.randn(2, 32, 7, 13)
    grad = torch.randn_like(x)
    reference, efficient = make_layers(layer, impl, torch.float32)
    ref_out, ref_grads = forward_backward(reference, x, grad)
    out, grads = forward_backward(efficient, x, grad)
    assert relative_error(out, ref_out) <= 1e-4
    assert_gradients_close(grads, ref_grads, 1e-4)


@pytest.mark.parametrize("impl", ["naive", *EFFICIENT_IMPLS])
def test_float32_matches_float64_reference(impl):
    layer = random_layer("qkv")
    x = torch.randn(2, 32, 7, 13, dtype=torch.float64)
    grad = torch.randn_like(x)
    reference, _ = make_layers(layer, "naive", torch.float64)
    _, efficient = make_layers(layer, impl, torch.float32)
    ref_out, ref_grads = forward_backward(reference, x, grad)
    out, grads = forward_backward(efficient, x.float(), grad.float())
    assert relative_error(out, ref_out) <= 1e-5
    assert_gradients_close(grads, ref_grads, 1e-5)


def test_chunked_is_exact_in_float64():
    torch.manual_seed(0)
    inputs = [torch.randn(2, 91, width, dtype=torch.float64, requires_grad=True) for width in (4, 4, 24)]
    grad = torch.randn(2, 91, 24, dtype=torch.float64)
    results = []
    for impl in ("naive", "chunked"):
        out = position_attention(*inputs, impl=impl)
        results.append([out, *torch.autograd.grad(out, inputs, grad)])
    for actual, expected in zip(*reversed(results)):
        assert relative_error(actual, expected) <= 1e-12


def test_large_logits_stay_finite():
    torch.manual_seed(0)
    query, key = ((30 * torch.randn(1, 91, 4)).requires_grad_() for _ in range(2))
    value = torch.randn(1, 91, 24, requires_grad=True)
    out = position_attention(query, key, value, impl="chunked")
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(t.grad).all() for t in (query, key, value))
    assert relative_error(out, position_attention(query, key, value, impl="naive")) <= 1e-4


def test_auto_is_memory_efficient_on_every_device():
    assert resolve_impl("auto", torch.device("cpu")) == "chunked"
    assert resolve_impl("auto", torch.device("cuda")) == "sdpa"
    assert resolve_impl("naive", torch.device("cpu")) == "naive"


def test_unknown_impl_names_the_config_key():
    x = torch.randn(1, 8, 2, 2)
    with pytest.raises(ValueError, match=r"MODEL\.DANET\.ATTENTION_IMPL.*'flash'"):
        PositionAttention(8, impl="flash")(x)


def single_head_inputs(key_width, value_width, num=91):
    torch.manual_seed(0)
    query, key = (torch.randn(1, num, key_width) for _ in range(2))
    return query, key, torch.randn(1, num, value_width)


def test_cuda_sdpa_runs_only_the_memory_efficient_kernels(monkeypatch):
    """Simulated: the kernels accept the inputs, and SDPA is called inside
    sdpa_kernel restricted to them, so PyTorch cannot fall back to the math
    kernel that holds the N x N matrix."""
    selected = []

    @contextlib.contextmanager
    def recording_sdpa_kernel(backends):
        selected.append(backends)
        yield  # on CPU the math kernel computes what CUDA's efficient kernel would

    monkeypatch.setattr(attention, "memory_efficient_sdpa_accepts", lambda *inputs: True)
    monkeypatch.setattr(attention, "sdpa_kernel", recording_sdpa_kernel)
    query, key, value = single_head_inputs(4, 24)
    out = attention._sdpa_cuda(query, key, value, "auto")
    assert selected == [list(attention.MEMORY_EFFICIENT_SDPA)]
    assert torch.backends.cuda.SDPBackend.MATH not in selected[0]
    assert relative_error(out, position_attention(query, key, value, impl="naive")) <= 1e-5


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def attention_log():
    """The records of danet.modeling.attention's logger, seen by a handler of
    its own: train_net's setup_logger may have stopped "danet" from propagating."""
    logger, handler = logging.getLogger(attention.__name__), ListHandler()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_auto_takes_the_chunked_route_when_the_kernels_refuse_and_says_so_once(monkeypatch, attention_log):
    # CPU tensors: torch's own check refuses them, as CUDA's kernels refuse float64.
    query, key, value = single_head_inputs(3, 21)  # widths no other test logs, as the log is once per process
    assert not attention.memory_efficient_sdpa_accepts(*attention._single_head(query, key, value))
    monkeypatch.setattr(attention, "sdpa_kernel", None)  # never reached
    outputs = [attention._sdpa_cuda(query, key, value, "auto") for _ in range(2)]
    expected = position_attention(query, key, value, impl="naive")
    assert all(relative_error(out, expected) <= 1e-5 for out in outputs)
    warnings = [r.getMessage() for r in attention_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "query/key width 3, value width 21" in warnings[0] and "using the chunked route" in warnings[0]


def test_explicit_sdpa_is_refused_when_the_kernels_refuse(monkeypatch):
    monkeypatch.setattr(attention, "memory_efficient_sdpa_accepts", lambda *inputs: False)
    query, key, value = single_head_inputs(4, 24)
    with pytest.raises(InputError, match=r"MODEL\.DANET\.ATTENTION_IMPL is 'sdpa' but .* query/key width 4, value width 24"):
        attention._sdpa_cuda(query, key, value, "sdpa")

"""The memory-efficient position attention routes agree with the naive form."""
import copy

import pytest
import torch

from danet.modeling import chunked_attention
from danet.modeling.attention import (
    FeatureSimilarityPositionAttention,
    PositionAttention,
    position_attention,
    resolve_impl,
)

EFFICIENT_IMPLS = ("chunked", "sdpa", "auto")


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of 16 rows at N = 91, so the chunked route runs several blocks and a ragged last one."""
    monkeypatch.setattr(chunked_attention, "BLOCK_BYTES", 4 * 2 * 91 * 16)


def relative_error(actual, expected):
    return ((actual.double() - expected.double()).norm() / expected.double().norm()).item()


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

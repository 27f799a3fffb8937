"""Attention under half-precision autocast (finite, and as precise as the
dtype allows), and the attention route checked when the model is built."""
import pytest
import torch

from detectron2.modeling import build_model

from danet.errors import InputError
from danet.modeling.attention import ChannelAttention, FeatureSimilarityPositionAttention
from helpers import relative_error, tiny_cfg

# Unit roundoff of bf16 (8 significant bits) and fp16 (11).
BF16_EPS = 2.0**-9
FP16_EPS = 2.0**-11


def relu_features(channels, size, rms):
    """Post-ReLU features (as the attention modules get them) of the given RMS."""
    return torch.relu(torch.randn(1, channels, size, size)) * rms * 2**0.5


def test_channel_attention_under_fp16_autocast_does_not_overflow():
    # 128x128 positions of RMS 7: each energy X X^T sums 16384 products of ~50,
    # far beyond fp16's largest value 65504.
    cam = ChannelAttention()
    cam.gamma.data.fill_(1.0)
    x = relu_features(32, 128, rms=7)
    with torch.no_grad():
        expected = cam(x.double())
        with torch.autocast("cpu", dtype=torch.float16):
            out = cam(x)
    assert torch.isfinite(out).all()
    # The input is rounded to fp16 once, the energy and softmax are float32.
    assert relative_error(out, expected) < 4 * FP16_EPS


@pytest.mark.parametrize("impl", ["naive", "chunked", "sdpa"])
def test_position_attention_routes_under_fp16_autocast_do_not_overflow(impl):
    # The original project's PAM attends with X^T X over 512 channels: at RMS 12
    # each energy sums 512 products of ~144, beyond 65504.
    pam = FeatureSimilarityPositionAttention(impl=impl)
    pam.gamma.data.fill_(1.0)
    x = relu_features(512, 16, rms=12)
    with torch.no_grad():
        expected = pam(x.double())
        with torch.autocast("cpu", dtype=torch.float16):
            out = pam(x)
    assert torch.isfinite(out).all()
    assert relative_error(out, expected) < 4 * FP16_EPS


def test_channel_attention_gradients_under_bf16_autocast_match_float64():
    # Energies of ~150 (144 positions of unit variance): a bf16 energy would be
    # off by ~0.3 and reorder the sharp softmax; in float32 only the bf16
    # roundings of the two products and their inputs remain, a few BF16_EPS.
    cam = ChannelAttention()
    cam.gamma.data.fill_(0.7)
    x = torch.randn(2, 16, 12, 12, requires_grad=True)
    weights = torch.randn(2, 16, 12, 12)

    def gradients(module_input, autocast):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = cam(module_input)
        x.grad = cam.gamma.grad = None
        (out.double() * weights).sum().backward()
        return x.grad.clone(), cam.gamma.grad.clone()

    expected = gradients(x.double(), autocast=False)
    for actual, exact in zip(gradients(x, autocast=True), expected):
        assert relative_error(actual, exact) < 4 * BF16_EPS


def test_unknown_attention_impl_is_rejected_when_the_model_is_built():
    with pytest.raises(InputError, match="MODEL.DANET.ATTENTION_IMPL.*'fast'"):
        build_model(tiny_cfg("MODEL.DANET.ATTENTION_IMPL", "fast"))

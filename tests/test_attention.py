"""Position and channel attention against a float64 transcription of the paper's formulas."""
import pytest
import torch

from danet.modeling.attention import ChannelAttention, FeatureSimilarityPositionAttention, PositionAttention
from helpers import relative_error


def conv1x1(conv, x):
    return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x) + conv.bias[None, :, None, None]


def reference_position_attention(pam, x):
    """Float64: energy = Q^T K, A = softmax over keys, out = gamma * V A^T + x."""
    pam, x = pam.double(), x.double()
    b, c, h, w = x.shape
    q = conv1x1(pam.query, x).reshape(b, -1, h * w)
    k = conv1x1(pam.key, x).reshape(b, -1, h * w)
    v = conv1x1(pam.value, x).reshape(b, c, h * w)
    attention = torch.softmax(q.transpose(1, 2) @ k, dim=-1)
    return (pam.gamma * (v @ attention.transpose(1, 2))).reshape(b, c, h, w) + x


def reference_channel_attention(cam, x):
    """Float64: energy = X X^T, A = softmax(rowmax(energy) - energy), out = gamma * A X + x."""
    x = x.double()
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)
    energy = flat @ flat.transpose(1, 2)
    energy = energy.max(dim=-1, keepdim=True).values - energy
    out = torch.softmax(energy, dim=-1) @ flat
    return (cam.gamma.double() * out).reshape(b, c, h, w) + x


def randomise(module):
    """Random weights and a nonzero gamma, so the attention term is not masked."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)
        module.gamma.fill_(0.7)
    return module


@pytest.mark.parametrize("shape", [(2, 16, 5, 6), (1, 32, 7, 13)])
def test_position_attention_matches_float64_reference(shape):
    pam = randomise(PositionAttention(shape[1]))
    x = torch.randn(shape)
    expected = reference_position_attention(pam, x)
    assert relative_error(pam.float()(x), expected) < 1e-5


@pytest.mark.parametrize("shape", [(2, 16, 5, 6), (1, 32, 7, 13)])
def test_channel_attention_matches_float64_reference(shape):
    cam = randomise(ChannelAttention())
    x = torch.randn(shape)
    assert relative_error(cam(x), reference_channel_attention(cam, x)) < 1e-5


def test_feature_similarity_variant_is_attention_of_features_with_themselves():
    pam = randomise(FeatureSimilarityPositionAttention())
    x = torch.randn(2, 8, 4, 5) * 0.3
    flat = x.double().flatten(2)
    attention = torch.softmax(flat.transpose(1, 2) @ flat, dim=-1)
    expected = (0.7 * flat @ attention.transpose(1, 2)).reshape(x.shape) + x.double()
    assert relative_error(pam(x), expected) < 1e-5


def test_key_channels_default_to_an_eighth():
    pam = PositionAttention(64)
    assert pam.query.out_channels == pam.key.out_channels == 8
    assert pam.value.out_channels == 64
    assert PositionAttention(64, key_channels=4).key.out_channels == 4


@pytest.mark.parametrize("module", [PositionAttention(16), ChannelAttention()], ids=["pam", "cam"])
def test_identity_at_initialisation(module):
    x = torch.randn(2, 16, 5, 7)
    assert module.gamma.item() == 0
    assert torch.equal(module(x), x)


@pytest.mark.parametrize("module", [PositionAttention(16), ChannelAttention()], ids=["pam", "cam"])
def test_gradients_reach_gamma_and_every_conv(module):
    x = torch.randn(2, 16, 5, 7, requires_grad=True)
    # At gamma = 0 the convs get zero gradient by design; a first step moves gamma.
    module(x).square().sum().backward()
    assert module.gamma.grad is not None and module.gamma.grad.abs().item() > 0
    with torch.no_grad():
        module.gamma.fill_(0.5)
    module.zero_grad()
    module(x).square().sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad is not None

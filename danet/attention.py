"""The two self-attention modules of DANet (Fu et al., CVPR 2019, Sec. 3.2-3.3).

Both map a feature map [B, C, H, W] to the same shape and start as the identity:
their residual scale ``gamma`` is initialised to 0 and learned.
"""
import torch
from torch import nn

ATTENTION_IMPLS = ("auto", "naive")


def position_attention(query, key, value, impl="auto"):
    """Attention over all positions, without DANet's (absent) 1/sqrt(d) scaling.

    Args:
        query, key: [B, N, Ck]; value: [B, N, Cv].
        impl: "naive" materialises the [B, N, N] matrix; "auto" picks the
            default route for the device.
    Returns:
        [B, N, Cv]: out[b, i] = sum_j softmax_j(query[b, i] . key[b, j]) value[b, j].
    """
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"Unknown attention impl {impl!r}; choose one of {ATTENTION_IMPLS}")
    energy = torch.bmm(query, key.transpose(1, 2))
    return torch.bmm(energy.softmax(dim=-1), value)


class PositionAttention(nn.Module):
    """Position attention module (PAM): each position aggregates all positions,
    weighted by the similarity of their query and key embeddings."""

    def __init__(self, in_channels, key_channels=None, impl="auto"):
        super().__init__()
        key_channels = key_channels or max(in_channels // 8, 1)
        self.query = nn.Conv2d(in_channels, key_channels, kernel_size=1)
        self.key = nn.Conv2d(in_channels, key_channels, kernel_size=1)
        self.value = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.impl = impl

    def forward(self, x):
        b, c, h, w = x.shape
        out = position_attention(
            _tokens(self.query(x)), _tokens(self.key(x)), _tokens(self.value(x)), self.impl
        )
        return self.gamma * out.transpose(1, 2).reshape(b, c, h, w) + x


class FeatureSimilarityPositionAttention(nn.Module):
    """The original project's simplified PAM: attention between the features
    themselves (energy = X^T X), with no query/key/value convolutions."""

    def __init__(self, impl="auto"):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))
        self.impl = impl

    def forward(self, x):
        b, c, h, w = x.shape
        tokens = _tokens(x)
        out = position_attention(tokens, tokens, tokens, self.impl)
        return self.gamma * out.transpose(1, 2).reshape(b, c, h, w) + x


class ChannelAttention(nn.Module):
    """Channel attention module (CAM): each channel aggregates all channels,
    weighted by their similarity over positions.

    The paper's softmax(rowmax(E) - E) equals softmax(-E), since softmax is
    invariant to a per-row shift; the subtraction is kept out of the hot path.
    """

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        energy = torch.bmm(flat, flat.transpose(1, 2))
        out = torch.bmm(torch.softmax(-energy, dim=-1), flat)
        return self.gamma * out.reshape(b, c, h, w) + x


def _tokens(feature_map):
    """[B, C, H, W] -> [B, H*W, C]."""
    return feature_map.flatten(2).transpose(1, 2)

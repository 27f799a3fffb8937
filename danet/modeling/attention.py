"""The two self-attention modules of DANet (Fu et al., CVPR 2019, Sec. 3.2-3.3).

Both map a feature map [B, C, H, W] to the same shape and start as the identity:
their residual scale ``gamma`` is initialised to 0 and learned.
"""
import logging

import torch
from torch import nn
from torch.backends.cuda import SDPAParams, can_use_efficient_attention, can_use_flash_attention
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from detectron2.utils.logger import log_first_n

from ..errors import InputError
from .chunked_attention import ChunkedAttention, softmax_dtype

# "auto" resolves per device, see resolve_impl.
ATTENTION_IMPLS = ("auto", "naive", "chunked", "sdpa")


def check_impl(impl):
    """``impl`` if it names a route: checked when a module is built, not at its first forward."""
    if impl not in ATTENTION_IMPLS:
        raise InputError(
            f"MODEL.DANET.ATTENTION_IMPL must be one of {ATTENTION_IMPLS}, got {impl!r}"
        )
    return impl


def resolve_impl(impl, device):
    """The route "auto" takes on ``device``.

    CPU: the chunked Function, about as fast as naive for a fraction of its
    memory. SDPA's CPU flash kernel needs equal q/k/v widths, so queries and
    keys are zero-padded to the value width, which makes it slower than naive
    (benchmarks/bench_attention.py; figures in docs/BENCHMARKS.md).
    CUDA: SDPA, whose memory-efficient kernel accepts a value width different
    from the query/key width (chosen from the kernels' documented constraints);
    inputs that kernel refuses take the chunked route (see _sdpa_cuda).
    """
    if check_impl(impl) != "auto":
        return impl
    return "sdpa" if device.type == "cuda" else "chunked"


def position_attention(query, key, value, impl="auto"):
    """Attention over all positions, without DANet's (absent) 1/sqrt(d) scaling.

    Args:
        query, key: [B, N, Ck]; value: [B, N, Cv].
        impl: "naive" materialises the [B, N, N] matrix; "chunked" and "sdpa"
            never hold it; "auto" picks the default route for the device.
    Returns:
        [B, N, Cv]: out[b, i] = sum_j softmax_j(query[b, i] . key[b, j]) value[b, j].
    """
    requested = impl
    impl = resolve_impl(impl, query.device)
    if impl == "naive":
        probs = exact_product(query, key.transpose(1, 2)).softmax(dim=-1)
        return torch.bmm(probs.to(value.dtype), value)
    query, key, value = _autocast_inputs(query, key, value)
    if impl == "chunked":
        return ChunkedAttention.apply(query, key, value)
    if query.device.type == "cuda":
        return _sdpa_cuda(query, key, value, requested)
    return _sdpa_cpu(query, key, value)


def exact_product(a, b):
    """a @ b in float32 at least, also under autocast.

    The energies of attention are sums of many products: in fp16 (largest value
    65504) they overflow at moderate activations, e.g. channel attention over
    128x128 positions of RMS 7, and softmax then gives NaN. float32 keeps them,
    and the softmax after them, finite; float64 stays exact.
    """
    dtype = softmax_dtype(a)
    with torch.autocast(a.device.type, enabled=False):
        return torch.bmm(a.to(dtype), b.to(dtype))


def _single_head(*tensors):
    """[B, N, C] -> [B, 1, N, C] with unit stride in the channels, as the fused
    SDPA kernels need them."""
    return [t.contiguous().unsqueeze(1) for t in tensors]


def _sdpa_cpu(query, key, value):
    """SDPA with a single head on CPU. Its flash kernel requires equal
    query/key/value widths, so queries and keys are zero-padded to the value
    width (the dot products are unchanged)."""
    if query.shape[-1] < value.shape[-1]:
        pad = (0, value.shape[-1] - query.shape[-1])
        query, key = F.pad(query, pad), F.pad(key, pad)
    out = F.scaled_dot_product_attention(*_single_head(query, key, value), scale=1.0)
    return out.squeeze(1)


# The CUDA kernels that never hold the N x N matrix. Left to choose, PyTorch falls
# back to its math kernel, which does, whenever these refuse the inputs.
MEMORY_EFFICIENT_SDPA = (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION)


def memory_efficient_sdpa_accepts(query, key, value):
    """Whether one of MEMORY_EFFICIENT_SDPA runs these [B, 1, N, C] inputs
    (dtype, widths, alignment, device, gradients): flash needs equal widths and
    half precision, the memory-efficient kernel takes a value width different
    from the query/key width."""
    params = SDPAParams(query, key, value, None, 0.0, False, False)
    return can_use_flash_attention(params) or can_use_efficient_attention(params)


def _sdpa_cuda(query, key, value, requested):
    """SDPA with a single head on CUDA, restricted to MEMORY_EFFICIENT_SDPA.

    When those kernels refuse the inputs (float64, or widths they cannot
    align), "auto" computes the chunked route instead, which never holds the
    matrix either, and says so once in the log; an explicit "sdpa" is
    refused, since what was asked for would hold the N x N matrix.
    """
    inputs = _single_head(query, key, value)
    if not memory_efficient_sdpa_accepts(*inputs):
        what = (
            f"{str(query.dtype).replace('torch.', '')} inputs, query/key width {query.shape[-1]}, value width "
            f"{value.shape[-1]}"
        )
        if requested == "sdpa":
            raise InputError(
                f"MODEL.DANET.ATTENTION_IMPL is 'sdpa' but no memory-efficient CUDA kernel of "
                f"scaled_dot_product_attention runs these inputs ({what}): PyTorch would fall back to the "
                "kernel that holds the N x N matrix. Use 'auto' or 'chunked'."
            )
        log_first_n(
            logging.WARNING,
            f"Position attention: no memory-efficient CUDA kernel of scaled_dot_product_attention runs {what}; "
            "using the chunked route, which does not hold the N x N matrix either (MODEL.DANET.ATTENTION_IMPL "
            "'chunked' chooses it directly).",
            n=1,
            name=__name__,
            key="message",
        )
        return ChunkedAttention.apply(query, key, value)
    with sdpa_kernel(list(MEMORY_EFFICIENT_SDPA)):
        out = F.scaled_dot_product_attention(*inputs, scale=1.0)
    return out.squeeze(1)


def _autocast_inputs(query, key, value):
    """Cast to the autocast dtype, as autocast would for the naive form's bmm,
    so the fused routes see one dtype."""
    device_type = query.device.type
    if not torch.is_autocast_enabled(device_type):
        return query, key, value
    dtype = torch.get_autocast_dtype(device_type)
    return query.to(dtype), key.to(dtype), value.to(dtype)


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
        self.impl = check_impl(impl)

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
        self.impl = check_impl(impl)

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
        energy = exact_product(flat, flat.transpose(1, 2))
        # Negated in place: bmm keeps its inputs, not its output, for backward.
        probs = torch.softmax(energy.neg_(), dim=-1)
        out = torch.bmm(probs.to(flat.dtype), flat)
        return self.gamma * out.reshape(b, c, h, w) + x


def _tokens(feature_map):
    """[B, C, H, W] -> [B, H*W, C]."""
    return feature_map.flatten(2).transpose(1, 2)

"""Attention over query blocks that never holds the full [B, N, N] matrix.

Forward keeps only Q, K, V and the output; backward recomputes one block of
probabilities at a time from them (the recomputation of FlashAttention, Dao et
al. 2022, over whole rows). All large products stay plain ``bmm`` calls,
so they run in BLAS on CPU and cuBLAS on CUDA; only Q_blk K^T is computed twice.

The scores, their softmax and the score gradient are computed in float32, so
fp16 inputs (under autocast) do not overflow in Q K^T and bf16 / fp16 inputs do
not lose the softmax normalisation.
"""
import torch

# Rows per block are chosen so one float32 [B, rows, N] score block stays near
# this size. Backward accumulates dK and dV over all keys once per block, so
# smaller blocks cost time (measured on CPU: docs/BENCHMARKS.md, "Design
# measurements").
BLOCK_BYTES = 32 * 2**20


def block_rows(batch, num_keys):
    """Query rows per block, so that one float32 [batch, rows, num_keys] score block
    stays near BLOCK_BYTES; at least one."""
    return max(1, BLOCK_BYTES // (4 * batch * num_keys))


class ChunkedAttention(torch.autograd.Function):
    """out = softmax(Q K^T) V, unscaled, for Q, K: [B, N, Ck] and V: [B, N, Cv]
    of one dtype."""

    @staticmethod
    def forward(ctx, query, key, value):
        batch, num_queries, _ = query.shape
        out = value.new_empty(batch, num_queries, value.shape[2])
        blocks = _BlockBuffers(query, key)
        for block in blocks.slices():
            probs = blocks.probs(query[:, block])
            torch.bmm(probs.to(value.dtype), value, out=out[:, block])
        ctx.save_for_backward(query, key, value, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, out = ctx.saved_tensors
        stats = softmax_dtype(query)
        grad_out = grad_out.to(value.dtype)
        value_t = value.transpose(1, 2)
        # Row i of dS = P * (dP - delta_i) with delta_i = sum_j P_ij dP_ij = dO_i . O_i.
        delta = (grad_out.to(stats) * out.to(stats)).sum(dim=-1, keepdim=True)
        grad_query = torch.empty_like(query)
        grad_key = torch.zeros_like(key, dtype=stats)
        grad_value = torch.zeros_like(value, dtype=stats)
        blocks = _BlockBuffers(query, key)
        grad_scores_buffer = query.new_empty(blocks.scores_buffer.shape)
        for block in blocks.slices():
            query_blk, grad_out_blk = query[:, block], grad_out[:, block]
            probs = blocks.probs(query_blk)
            grad_value.baddbmm_(probs.transpose(1, 2), grad_out_blk.to(stats))
            grad_scores = _view(grad_scores_buffer, probs.shape)
            torch.bmm(grad_out_blk, value_t, out=grad_scores)
            grad_scores = grad_scores.to(stats).sub_(delta[:, block]).mul_(probs)
            torch.bmm(grad_scores.to(query.dtype), key, out=grad_query[:, block])
            grad_key.baddbmm_(grad_scores.transpose(1, 2), query_blk.to(stats))
        return grad_query, grad_key.to(key.dtype), grad_value.to(value.dtype)


class _BlockBuffers:
    """One float32 (at least) score buffer reused by every block: allocating a
    fresh block each time lets the heap grow by several blocks, which raises
    the layer's peak memory (docs/BENCHMARKS.md, "Design measurements")."""

    def __init__(self, query, key):
        batch, self.num_queries, _ = query.shape
        self.rows = block_rows(batch, key.shape[1])
        self.dtype = softmax_dtype(query)
        self.key_t = key.to(self.dtype).transpose(1, 2)
        shape = (batch, min(self.rows, self.num_queries), key.shape[1])
        self.scores_buffer = query.new_empty(shape, dtype=self.dtype)

    def slices(self):
        return [slice(start, start + self.rows) for start in range(0, self.num_queries, self.rows)]

    def probs(self, query_block):
        """softmax(Q_blk K^T) over whole rows, in float32 at least, written over the scores.

        The rows are complete, so backward recomputes them with the same fused
        softmax instead of saving a log-sum-exp: on CPU one fused softmax costs
        less than logsumexp plus exp (benchmarks/bench_attention.py).
        """
        shape = (*query_block.shape[:2], self.key_t.shape[2])
        scores = _view(self.scores_buffer, shape)
        torch.bmm(query_block.to(self.dtype), self.key_t, out=scores)
        return torch.softmax(scores, dim=-1, out=scores)


def _view(buffer, shape):
    """A contiguous tensor of ``shape`` at the start of ``buffer``'s storage."""
    return buffer.view(-1)[: shape[0] * shape[1] * shape[2]].view(shape)


def softmax_dtype(tensor):
    """float32 for half-precision inputs, the input dtype otherwise (float64 stays exact)."""
    return torch.promote_types(tensor.dtype, torch.float32)

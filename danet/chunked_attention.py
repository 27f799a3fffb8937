"""Attention over query blocks that never holds the full [B, N, N] matrix.

Forward keeps only Q, K, V, the output and each row's log-sum-exp; backward
recomputes one block of probabilities at a time from them (as in
FlashAttention, Dao et al. 2022). All large products stay plain ``bmm`` calls,
so they run in BLAS on CPU and cuBLAS on CUDA; only Q_blk K^T is computed twice.

Softmax statistics and the score gradient are kept in float32, so bf16 / fp16
inputs (under autocast) do not lose the softmax normalisation.
"""
import torch

# Rows per block are chosen so one float32 [B, rows, N] score block stays near
# this size: large enough for BLAS to be efficient, small next to the layer's O(N*C).
BLOCK_BYTES = 8 * 2**20


def block_rows(batch, num_keys):
    return max(1, BLOCK_BYTES // (4 * batch * num_keys))


class ChunkedAttention(torch.autograd.Function):
    """out = softmax(Q K^T) V, unscaled, for Q, K: [B, N, Ck] and V: [B, N, Cv]
    of one dtype."""

    @staticmethod
    def forward(ctx, query, key, value):
        batch, num_queries, _ = query.shape
        rows = block_rows(batch, key.shape[1])
        stats = _stats_dtype(query)
        key_t = key.transpose(1, 2)
        out = value.new_empty(batch, num_queries, value.shape[2])
        logsumexp = query.new_empty(batch, num_queries, 1, dtype=stats)
        for start in range(0, num_queries, rows):
            block = slice(start, start + rows)
            scores = torch.bmm(query[:, block], key_t).to(stats)
            block_lse = torch.logsumexp(scores, dim=-1, keepdim=True)
            probs = scores.sub_(block_lse).exp_()
            torch.bmm(probs.to(value.dtype), value, out=out[:, block])
            logsumexp[:, block] = block_lse
        ctx.save_for_backward(query, key, value, out, logsumexp)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, out, logsumexp = ctx.saved_tensors
        batch, num_queries, _ = query.shape
        rows = block_rows(batch, key.shape[1])
        stats = _stats_dtype(query)
        grad_out = grad_out.to(value.dtype)
        key_t, value_t = key.transpose(1, 2), value.transpose(1, 2)
        # Row i of dS = P * (dP - delta_i) with delta_i = sum_j P_ij dP_ij = dO_i . O_i.
        delta = (grad_out.to(stats) * out.to(stats)).sum(dim=-1, keepdim=True)
        grad_query = torch.empty_like(query)
        grad_key = torch.zeros_like(key, dtype=stats)
        grad_value = torch.zeros_like(value, dtype=stats)
        for start in range(0, num_queries, rows):
            block = slice(start, start + rows)
            query_blk, grad_out_blk = query[:, block], grad_out[:, block]
            probs = torch.bmm(query_blk, key_t).to(stats).sub_(logsumexp[:, block]).exp_()
            grad_value.baddbmm_(probs.transpose(1, 2), grad_out_blk.to(stats))
            grad_scores = torch.bmm(grad_out_blk, value_t).to(stats)
            grad_scores = grad_scores.sub_(delta[:, block]).mul_(probs)
            torch.bmm(grad_scores.to(query.dtype), key, out=grad_query[:, block])
            grad_key.baddbmm_(grad_scores.transpose(1, 2), query_blk.to(stats))
        return grad_query, grad_key.to(key.dtype), grad_value.to(value.dtype)


def _stats_dtype(tensor):
    """float32 for half-precision inputs, the input dtype otherwise (float64 stays exact)."""
    return torch.promote_types(tensor.dtype, torch.float32)

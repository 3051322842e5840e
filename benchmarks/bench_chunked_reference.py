"""Hand-written chunked PyTorch delta rule and gated delta rule: the benchmark's baseline.

This is what a careful engineer writes by hand for CPU training: the UT / WY chunk form with
chunk size 64, the triangular solve done by torch.linalg.solve_triangular, every chunk's
intra-chunk work batched, and a short Python loop over chunks for the state. No fla import.

Recurrence (fla's convention, state h = S^T of shape [B, H, K, V], o_t = h_t^T q_t):

    delta rule:        h_t = (I - beta_t k_t k_t^T) h_{t-1} + beta_t k_t v_t^T
    gated delta rule:  h_t = exp(g_t) (I - beta_t k_t k_t^T) h_{t-1} + beta_t k_t v_t^T

Inside a chunk with cumulative log decay b (b_i = g_1 + ... + g_i) and entering state h0:

    A     = strictly_lower(diag(beta) K K^T * exp(b_i - b_j))
    U     = (I + A)^-1 diag(beta) V            W = (I + A)^-1 diag(beta exp(b)) K
    V_new = U - W h0                            (the chunk's corrected values)
    O     = (Q exp(b)) h0 + lower(Q K^T * exp(b_i - b_j)) V_new
    h_C   = exp(b_C) h0 + (K exp(b_C - b))^T V_new

Inputs q, k, v are [B, T, H, K|V], beta and g are [B, T, H]. q is multiplied by `scale`
(default K**-0.5); q and k are used as given (l2-normalise them before calling, as fla's
use_qk_l2norm_in_kernel does). Computation is fp32 (fp64 when the inputs are fp64); the output
has v's dtype, the final state is fp32/fp64. Padding T up to a multiple of 64 with beta = 0 and
g = 0 leaves the result unchanged.

Run `python benchmarks/bench_chunked_reference.py` to time forward + backward at B=4, T=1024, H=4,
D=64 on one thread.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

CHUNK_SIZE = 64


def chunk_delta_rule(q, k, v, beta, scale=None, initial_state=None, chunk_size=CHUNK_SIZE):
    """DeltaNet's delta rule, chunked. Returns (o [B,T,H,V], final_state [B,H,K,V])."""
    return _chunked(q, k, v, beta, None, scale, initial_state, chunk_size)


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None,
                           chunk_size=CHUNK_SIZE):
    """Gated DeltaNet's delta rule with scalar log decay g [B,T,H]. Returns (o, final_state)."""
    return _chunked(q, k, v, beta, g, scale, initial_state, chunk_size)


def _to_chunks(x: torch.Tensor, length: int, chunk: int, dtype: torch.dtype) -> torch.Tensor:
    """[B, T, H, ...] -> [B, H, N, C, ...] in `dtype`, zero-padded to N * C steps."""
    x = x.to(dtype).movedim(1, 2)
    pad = (-length) % chunk
    x = F.pad(x, (0, 0) * (x.dim() - 3) + (0, pad)) if pad else x.contiguous()
    return x.unflatten(2, (-1, chunk))


def _chunked(q, k, v, beta, g, scale, initial_state, chunk):
    batch, length, heads, dim_k = q.shape
    dim_v, out_dtype = v.shape[-1], v.dtype
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    scale = dim_k**-0.5 if scale is None else scale

    q, k, v = (_to_chunks(t, length, chunk, dtype) for t in (q, k, v))  # [B,H,N,C,D]
    beta = _to_chunks(beta, length, chunk, dtype)  # [B,H,N,C]
    q = q * scale
    causal = torch.ones(chunk, chunk, dtype=torch.bool).tril()
    k_beta = k * beta[..., None]

    if g is None:
        gram = (k_beta @ k.transpose(-1, -2)).tril(-1)
        rhs = torch.cat((k_beta, v * beta[..., None]), dim=-1)
        scores = (q @ k.transpose(-1, -2)).masked_fill(~causal, 0.0)
        q_in, k_out, chunk_decay = q, k, None
    else:
        b = _to_chunks(g, length, chunk, dtype).cumsum(-1)  # [B,H,N,C]
        decay = (b[..., :, None] - b[..., None, :]).masked_fill(~causal, float("-inf")).exp()
        gram = ((k_beta @ k.transpose(-1, -2)) * decay).tril(-1)
        rhs = torch.cat((k_beta * b.exp()[..., None], v * beta[..., None]), dim=-1)
        scores = (q @ k.transpose(-1, -2)) * decay
        q_in = q * b.exp()[..., None]
        k_out = k * (b[..., -1:] - b).exp()[..., None]
        chunk_decay = b[..., -1].exp()[..., None, None]  # [B,H,N,1,1]
    # one triangular solve gives both W = T diag(beta e^b) K and U = T diag(beta) V
    w, u = torch.linalg.solve_triangular(gram, rhs, upper=False, unitriangular=True).split(
        (dim_k, dim_v), dim=-1)

    state = q.new_zeros(batch, heads, dim_k, dim_v)
    if initial_state is not None:
        state = state + initial_state.to(dtype)
    # The loop carries the state only; everything that can be batched over chunks is done
    # after it. Unbinding once matters: indexing chunk n inside the loop would make autograd
    # build a full-size zero gradient per index, costlier than the whole computation.
    entering, corrected = [], []
    per_chunk = zip(u.unbind(2), w.unbind(2), k_out.transpose(-1, -2).unbind(2),
                    [None] * u.shape[2] if chunk_decay is None else chunk_decay.unbind(2))
    for u_n, w_n, k_n, decay_n in per_chunk:
        entering.append(state)
        v_new = u_n - w_n @ state
        corrected.append(v_new)
        state = (state if decay_n is None else state * decay_n) + k_n @ v_new
    o = q_in @ torch.stack(entering, dim=2) + scores @ torch.stack(corrected, dim=2)
    o = o.flatten(2, 3)[:, :, :length]
    return o.movedim(1, 2).to(out_dtype), state


def _benchmark(batch=4, length=1024, heads=4, dim=64, repeats=3) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    q = torch.randn(batch, length, heads, dim, requires_grad=True)
    k = F.normalize(torch.randn(batch, length, heads, dim), dim=-1).requires_grad_()
    v = torch.randn(batch, length, heads, dim, requires_grad=True)
    beta = torch.rand(batch, length, heads, requires_grad=True)
    g = F.logsigmoid(torch.randn(batch, length, heads)).requires_grad_()
    runs = {
        "delta rule": lambda: chunk_delta_rule(q, k, v, beta),
        "gated delta rule": lambda: chunk_gated_delta_rule(q, k, v, g, beta),
    }
    for name, run in runs.items():
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            o, state = run()
            (o.square().sum() + state.square().sum()).backward()
            times.append(time.perf_counter() - start)
        best = min(times[1:])
        print(f"{name:17s} B={batch} T={length} H={heads} D={dim} fwd+bwd: {best * 1e3:.1f} ms")


if __name__ == "__main__":
    _benchmark()

# ----------------------------------------------------------------------------------------------
# linarch runtime: the building blocks every generated PyTorch layer uses. This block is copied
# verbatim into each generated file, so the file depends on torch alone.
# ----------------------------------------------------------------------------------------------
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def l2norm(x, eps=1e-6):
    """x / sqrt(sum x^2 + eps) over the last axis (fla's in-kernel convention), in fp32 or fp64."""
    dtype = x.dtype
    x = x.float() if dtype not in (torch.float32, torch.float64) else x
    return (x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)).to(dtype)


def eye_add(x, scale=1.0, sign=1.0):
    """scale * I + sign * x for a batch of square matrices x [..., n, n] (scale may be a tensor
    [..., 1, 1])."""
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    return scale * eye + sign * x


def entropy(p, eps=1e-12):
    return -(p * torch.log(p.clamp_min(eps))).sum(-1)


class RMSNorm(nn.Module):
    """RMS norm over the last axis with a learned scale (fla's RMSNorm: weight [dim], init 1)."""

    def __init__(self, dim, eps=1e-5, elementwise_affine=True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None

    def forward(self, x):
        dtype = x.dtype
        h = x.float() if dtype not in (torch.float32, torch.float64) else x
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            h = h * self.weight.to(h.dtype)
        return h.to(dtype)


def causal_conv(x, weight, bias=None, cache=None):
    """Depthwise causal convolution over time. x [B, T, C], weight [C, 1, W]; cache [B, C, W-1]
    holds the previous W-1 inputs (zeros at the start). Returns (y, new_cache)."""
    B, T, C = x.shape
    W = weight.shape[-1]
    xt = x.transpose(1, 2)
    if cache is None:
        cache = xt.new_zeros(B, C, W - 1)
    full = torch.cat([cache.to(xt.dtype), xt], dim=-1)
    y = F.conv1d(full, weight.to(xt.dtype), None if bias is None else bias.to(xt.dtype), groups=C)
    new_cache = full[..., full.shape[-1] - (W - 1):] if W > 1 else full[..., :0]
    return y.transpose(1, 2), new_cache


def token_shift(x, cache=None):
    """x at t-1 along time (zeros, or the cached last token, at t = 1). x [B, T, ...]."""
    prev = x.new_zeros(x[:, :1].shape) if cache is None else cache.to(x.dtype).unsqueeze(1)
    return torch.cat([prev, x[:, :-1]], dim=1), x[:, -1]


def rotary(x, positions, base=10000.0):
    """Rotary embedding over the last axis, non-interleaved halves; x [B, T, ..., d], positions
    [B, T] (absolute token positions)."""
    d = x.shape[-1]
    wd = torch.float64 if x.dtype == torch.float64 else torch.float32
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=wd, device=x.device) / d))
    theta = positions.to(wd)[..., None] * inv_freq  # [B, T, d/2]
    theta = theta.reshape(theta.shape[:2] + (1,) * (x.dim() - 3) + theta.shape[-1:])
    cos = torch.cat([theta.cos(), theta.cos()], -1).to(x.dtype)
    sin = torch.cat([theta.sin(), theta.sin()], -1).to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def init_a_log(t, low=1.0, high=16.0):
    with torch.no_grad():
        t.copy_(torch.log(torch.empty_like(t).uniform_(low, high)))


def init_dt_bias(t, dt_min=0.001, dt_max=0.1, dt_floor=1e-4):
    """Inverse softplus of dt drawn log-uniformly in [dt_min, dt_max] (Mamba's init)."""
    with torch.no_grad():
        u = torch.rand_like(t)
        dt = torch.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_floor)
        t.copy_(dt + torch.log(-torch.expm1(-dt)))


def init_dirac(conv_weight):
    """A depthwise causal conv that passes its input through (weight 1 on the newest token)."""
    with torch.no_grad():
        conv_weight.zero_()
        conv_weight[..., -1] = 1.0


def _work_dtype(*xs):
    return torch.float64 if any(x is not None and x.dtype == torch.float64 for x in xs) \
        else torch.float32


def chunk_dplr(q, k, v, g=None, a=None, c=None, initial_state=None, chunk_size=64):
    """Chunkwise-parallel form of S_t = S_{t-1} (Diag(exp(g_t)) + a_t c_t^T) + v_t k_t^T, o_t = S_t q_t.

    Shapes: q, k, a, c [B, T, H, K]; v [B, T, H, V]; g [B, T, H] (one decay per head) or
    [B, T, H, K] (per key channel), log-space, <= 0; initial_state [B, H, V, K] (S, row form).
    Returns o [B, T, H, V] and the final state [B, H, V, K], in fp32 (fp64 for fp64 inputs).

    Within a chunk only differences of cumulative log-decays b_t - b_r with r <= t are
    exponentiated, so nothing overflows. With a rank-one term, the reads y_t = S_{t-1} a_t solve a
    unit lower-triangular system once per chunk (the UT / WY transform), giving y = W S^T + U.
    Per-channel decays use chunks of at most 16 and exact [C, C, K] decay tensors.
    """
    dtype = _work_dtype(q, k, v, g, a, c, initial_state)
    out_dtype = v.dtype
    B, T, H, K = k.shape
    V = v.shape[-1]
    per_channel = g is not None and g.dim() == 4
    C = min(chunk_size, 16) if per_channel else chunk_size
    pad = (-T) % C
    N = (T + pad) // C

    def prep(x, width=None):
        x = x.to(dtype)
        if pad:
            x = F.pad(x, (0, 0) * (x.dim() - 2) + (0, pad))
        x = x.transpose(1, 2)  # [B, H, T', ...]
        return x.reshape(B, H, N, C, *x.shape[3:])

    q, k, v = prep(q), prep(k), prep(v)
    has_rank_one = a is not None
    if has_rank_one:
        a, c = prep(a), prep(c)
    if g is None:
        b = q.new_zeros(B, H, N, C)
    else:
        b = prep(g).cumsum(3)  # [B, H, N, C(, K)] inclusive cumulative log-decay
    b_prev = b - prep(g) if g is not None else b
    b_end = b[:, :, :, -1:]  # [B, H, N, 1(, K)]
    incl = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    strict = incl.tril(-1)

    if per_channel:
        def weighted(x, y, bx, by, mask):
            diff = (bx.unsqueeze(4) - by.unsqueeze(3)).masked_fill(~mask[..., None], -math.inf)
            return torch.einsum("bhntk,bhnrk,bhntrk->bhntr", x, y, diff.exp())

        q_state = q * b.exp()
        end_decay = (b_end - b).exp()  # [B, H, N, C, K]
        k_end = k * end_decay
        state_decay = b_end.squeeze(3).exp()  # [B, H, N, K]
    else:
        def weighted(x, y, bx, by, mask):
            decay = (bx.unsqueeze(-1) - by.unsqueeze(-2)).masked_fill(~mask, -math.inf).exp()
            return (x @ y.transpose(-1, -2)) * decay

        q_state = q * b.exp()[..., None]
        end_decay = (b_end - b).exp()[..., None]
        k_end = k * end_decay
        state_decay = b_end.exp()  # [B, H, N, 1]

    qk = weighted(q, k, b, b, incl)  # [B, H, N, C, C]
    o_intra = qk @ v
    if has_rank_one:
        eye = torch.eye(C, dtype=dtype, device=q.device)
        lower = eye - weighted(a, c, b_prev, b, strict)
        a_state = a * (b_prev.exp() if per_channel else b_prev.exp()[..., None])
        w = torch.linalg.solve_triangular(lower, a_state, upper=False, unitriangular=True)
        u = torch.linalg.solve_triangular(lower, weighted(a, k, b_prev, b, strict) @ v,
                                          upper=False, unitriangular=True)
        qc = weighted(q, c, b, b, incl)
        c_end = c * end_decay

    S = (initial_state.to(dtype) if initial_state is not None
         else q.new_zeros(B, H, V, K))
    outs = []
    for n in range(N):
        St = S.transpose(-1, -2)  # [B, H, K, V]
        o = q_state[:, :, n] @ St + o_intra[:, :, n]
        if per_channel:
            S = S * state_decay[:, :, n, None, :]
        else:
            S = S * state_decay[:, :, n, :, None]
        S = S + v[:, :, n].transpose(-1, -2) @ k_end[:, :, n]
        if has_rank_one:
            y = w[:, :, n] @ St + u[:, :, n]  # reads S_{t-1} a_t, [B, H, C, V]
            o = o + qc[:, :, n] @ y
            S = S + y.transpose(-1, -2) @ c_end[:, :, n]
        outs.append(o)
    o = torch.stack(outs, dim=2).reshape(B, H, N * C, V)[:, :, :T]
    return o.transpose(1, 2).to(out_dtype), S


def interleave(steps):
    """[x_1, ..., x_n] each [B, T, ...] -> [B, n T, ...] with the micro-steps of a token adjacent."""
    return torch.stack(steps, dim=2).flatten(1, 2)


class GroupNorm(nn.Module):
    """Group norm over the features of a token (groups of consecutive channels), with a learned
    scale and an optional bias; x [..., C]."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, bias=True):
        super().__init__()
        self.num_groups = num_groups
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine and bias else None

    def forward(self, x):
        shape = x.shape
        h = x.reshape(*shape[:-1], self.num_groups, shape[-1] // self.num_groups)
        h = h.float() if h.dtype not in (torch.float32, torch.float64) else h
        mean = h.mean(-1, keepdim=True)
        var = h.var(-1, keepdim=True, unbiased=False)
        h = ((h - mean) * torch.rsqrt(var + self.eps)).reshape(shape)
        if self.weight is not None:
            h = h * self.weight.to(h.dtype)
        if self.bias is not None:
            h = h + self.bias.to(h.dtype)
        return h.to(x.dtype)


def softmax_attention(q, k, v, scale, past=None, key_mask=None):
    """Causal softmax attention; q [B, T, H, d], k [B, T, H, d], v [B, T, H, e]; past = (K, V)
    of earlier tokens; key_mask [B, S] (1 = real token). Returns (o, (K, V))."""
    if past is not None:
        k = torch.cat([past[0].to(k.dtype), k], dim=1)
        v = torch.cat([past[1].to(v.dtype), v], dim=1)
    T, S = q.shape[1], k.shape[1]
    scores = torch.einsum("bthd,bshd->bhts", q, k) * scale
    allowed = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    scores = scores.masked_fill(~allowed, -math.inf)
    if key_mask is not None:
        scores = scores.masked_fill(key_mask[:, None, None, -S:] == 0, -math.inf)
    p = torch.softmax(scores.float(), dim=-1).nan_to_num(0.0).to(v.dtype)
    return torch.einsum("bhts,bshe->bthe", p, v), (k, v)

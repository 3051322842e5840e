# ----------------------------------------------------------------------------------------------
# linarch runtime: the building blocks every generated PyTorch layer uses. This block is copied
# verbatim into each generated file, so the file depends on torch alone.
# ----------------------------------------------------------------------------------------------
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Hyper:
    """One constructor keyword of a compiled layer: its default (a value, or a function of the
    keywords before it), the range the compiler proved its bounds over, whether it must be an
    integer, and whether the layer reads it (a keyword it does not read is accepted only where it
    changes nothing)."""

    def __init__(self, default, reads=(), low=None, high=None, open_low=False, integer=False,
                 used=True, declared=False):
        self.default, self.reads, self.low, self.high = default, reads, low, high
        self.open_low, self.integer, self.used, self.declared = open_low, integer, used, declared

    def value(self, values):
        if not callable(self.default):
            return self.default
        v = self.default(**{k: values[k] for k in self.reads})
        return int(v) if isinstance(v, float) and v.is_integer() else v


def resolve_hparams(table, given, owner):
    """The layer's keywords: omitted or None ones take their default (computed from earlier
    keywords where it is a formula); every value is checked against what the compiler assumed;
    a keyword the layer does not read must agree with what it would have set, so nothing passed
    is silently ignored."""
    explicit = {k: v for k, v in given.items() if v is not None}
    values = {}
    for name, h in table.items():  # header order: a formula reads earlier keywords only
        values[name] = explicit[name] if name in explicit else h.value(values)
    for name, h in table.items():
        v = values[name]
        if isinstance(h.default, (bool, str)) or not isinstance(v, (int, float)) or \
                isinstance(v, bool):
            if type(v) is not type(h.default):
                raise TypeError(f"{owner}: {name}={v!r}, expected a {type(h.default).__name__}")
            continue
        if h.integer:
            if isinstance(v, float) and not v.is_integer():
                raise TypeError(f"{owner}: {name}={v!r} must be an integer")
            values[name] = v = int(v)
        low_ok = h.low is None or (v > h.low if h.open_low else v >= h.low)
        if not low_ok or h.high is not None and v > h.high:
            what = "> 0" if h.open_low and h.low == 0 and h.high is None else \
                f"in [{h.low}, {h.high}]"
            raise ValueError(f"{owner}: {name}={v!r} must be {what} (the compiler's bounds "
                             "assume it)")
    for name in explicit:
        h = table[name]
        if h.used:
            continue
        readers = [r for r, hr in table.items() if name in hr.reads]
        if readers and all(r in explicit for r in readers):
            for r in readers:
                expected = table[r].value(values)
                if not math.isclose(values[r], expected, rel_tol=1e-9):
                    raise ValueError(f"{owner}: {r}={values[r]!r} contradicts {name}="
                                     f"{values[name]!r} (which gives {r}={expected!r}); pass "
                                     "one of them")
        elif not readers and not h.declared and values[name] != h.value(values):
            raise ValueError(f"{owner}: {name}={values[name]!r} would change nothing: this layer "
                             f"implements {name}={h.value(values)!r} only")
    return values


def width(value, formula):
    """A width the program computes from its keywords, as an int: an error, never a silent
    truncation, when the keywords make it fractional or not positive."""
    if isinstance(value, float) and not value.is_integer() or value <= 0:
        raise ValueError(f"{formula} = {value!r} is not a positive integer: check the "
                         "constructor's keywords")
    return int(value)


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
    # fla computes the frequencies in fp32 (a buffer), then casts: so do we, for exact parity
    inv_freq = (1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d)))
    inv_freq = inv_freq.to(wd)
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


def init_ramp(t, start, end, power=1.0):
    """Channel n of N starts at start + (end - start) * (n / N) ** power (over the flattened
    weight): a spread of mixes or timescales across channels, as RWKV initialises them."""
    with torch.no_grad():
        n = torch.arange(t.numel(), dtype=torch.float64, device=t.device) / t.numel()
        t.copy_((start + (end - start) * n ** power).view_as(t).to(t.dtype))


def init_dirac(conv_weight):
    """A depthwise causal conv that passes its input through (weight 1 on the newest token)."""
    with torch.no_grad():
        conv_weight.zero_()
        conv_weight[..., -1] = 1.0


def _work_dtype(*xs):
    return torch.float64 if any(x is not None and x.dtype == torch.float64 for x in xs) \
        else torch.float32


# per-channel decays: chunk and sub-chunk sizes (fastest on one CPU thread among 8-64 / 2-16)
CHANNEL_CHUNK, CHANNEL_SUB_CHUNK = 16, 4


def _channel_decayed_products(b, b_prev, sub):
    """M[t, r] = sum_k x_tk y_rk exp(B_tk - b_rk) for r <= t (B = b) or r < t (B = b_prev),
    per chunk, exactly, without exponentiating a positive number.

    b, b_prev [B, H, N, C, K] are the inclusive / exclusive cumulative log-decays of each chunk.
    Pairs in different sub-chunks of size ``sub`` go through one matmul, anchored at the decay
    A_i reached just before t's sub-chunk i: exp(B_t - b_r) = exp(B_t - A_i) exp(A_i - b_r),
    both factors <= 1 because cumulative decays only fall. Pairs inside one sub-chunk (the
    diagonal blocks) use an exact [sub, sub, K] decay tensor. Returns weighted(x, y, before).
    """
    C = b.shape[3]
    S = C // sub
    dev = b.device
    pos = torch.arange(C, device=dev)
    anchor = b_prev[:, :, :, ::sub]  # [B, H, N, S, K]
    anchor_t = anchor.repeat_interleave(sub, dim=3)  # the anchor of each t's sub-chunk
    earlier = pos[None, :] < (torch.arange(S, device=dev) * sub)[:, None]  # [S, C]: r < start_i
    y_decay = (anchor.unsqueeze(4) - b.unsqueeze(3)).masked_fill(~earlier[..., None], -math.inf)
    y_decay = y_decay.exp()  # [B, H, N, S, C, K]
    x_decay = {False: (b - anchor_t).exp(), True: (b_prev - anchor_t).exp()}
    bs = b.unflatten(3, (S, sub))
    incl = torch.ones(sub, sub, dtype=torch.bool, device=dev).tril()
    diag = (bs.unsqueeze(5) - bs.unsqueeze(4)).masked_fill(~incl[..., None], -math.inf).exp()
    # exp(b_{t-1} - b_r) for r < t inside a sub-chunk: the inclusive tensor one row down
    diag = {False: diag, True: F.pad(diag[..., :-1, :, :], (0, 0, 0, 0, 1, 0))}
    eye = torch.eye(S, dtype=b.dtype, device=dev)[:, None, :, None]  # [S, 1, S, 1]
    anchored = {}

    def weighted(x, y, before=False):
        key = id(y)
        if key not in anchored:
            anchored[key] = (y, (y.unsqueeze(3) * y_decay).transpose(-1, -2))  # [.., S, K, C]
        y_far = anchored[key][1]
        far = (x * x_decay[before]).unflatten(3, (S, sub)) @ y_far  # [B, H, N, S, sub, C]
        xs, ys = x.unflatten(3, (S, sub)), y.unflatten(3, (S, sub))
        near = ((xs.unsqueeze(5) * diag[before]) * ys.unsqueeze(4)).sum(-1)  # [.., S, sub, sub]
        full = far.unflatten(-1, (S, sub)) + near.unsqueeze(-2) * eye
        return full.flatten(-2).flatten(3, 4)  # [B, H, N, C, C]

    return weighted


def chunk_dplr(q, k, v, g=None, a=None, c=None, initial_state=None, chunk_size=64):
    """Chunkwise form of S_t = S_{t-1} (Diag(exp(g_t)) + a_t c_t^T) + v_t k_t^T, o_t = S_t q_t.

    Shapes: q, k, a, c [B, T, H, K]; v [B, T, H, V]; g [B, T, H] (one decay per head) or
    [B, T, H, K] (per key channel), log-space, <= 0; initial_state [B, H, V, K] (S, row form).
    Returns o [B, T, H, V] and the final state [B, H, V, K], in fp32 (fp64 for fp64 inputs).

    Within a chunk only differences of cumulative log-decays b_t - b_r with r <= t are
    exponentiated, so nothing overflows. With a rank-one term the reads y_t = S_{t-1} a_t solve
    one unit lower-triangular system per chunk (the UT / WY transform): y = W S0^T + U. When
    ``c is k`` (every delta rule) the two writes share their key and merge into corrected values
    v + y = (I - A)^-1 (v + a_state S0^T): one solve, one write per chunk. Per-channel decays use
    chunks of CHANNEL_CHUNK tokens split into sub-chunks (``_channel_decayed_products``). The
    Python loop carries the state only; the intra-chunk work is batched over all chunks.
    """
    dtype = _work_dtype(q, k, v, g, a, c, initial_state)
    out_dtype = v.dtype
    B, T, H, K = k.shape
    V = v.shape[-1]
    per_channel = g is not None and g.dim() == 4
    has_rank_one = a is not None
    shared_key = has_rank_one and c is k
    if per_channel:  # chunks of sub-chunks (see _channel_decayed_products)
        C = max(1, min(chunk_size, CHANNEL_CHUNK))
        sub = min(CHANNEL_SUB_CHUNK, C) if C % min(CHANNEL_SUB_CHUNK, C) == 0 else C
        C = min(C, sub * -(-T // sub))
    else:
        C = max(1, min(chunk_size, T))
    pad = (-T) % C
    N = (T + pad) // C

    def prep(x):
        x = x.to(dtype).movedim(1, 2)  # [B, H, T, ...]
        x = F.pad(x, (0, 0) * (x.dim() - 3) + (0, pad)) if pad else x.contiguous()
        return x.unflatten(2, (N, C))  # [B, H, N, C, ...]

    q, k, v = prep(q), prep(k), prep(v)
    if has_rank_one:
        a = prep(a)
        c = k if shared_key else prep(c)
    incl = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    strict = incl.tril(-1)
    if g is None:
        def weighted(x, y, before=False):
            return (x @ y.transpose(-1, -2)).masked_fill(~(strict if before else incl), 0.0)

        q_state, end, a_state, state_decay = q, None, a, None
    else:
        g = prep(g)
        b = g.cumsum(3)  # inclusive cumulative log-decay within the chunk
        b_prev = b - g  # what S_{t-1} has decayed by since the chunk began
        b_end = b[:, :, :, -1:]
        if per_channel:
            weighted = _channel_decayed_products(b, b_prev, sub)

            q_state = q * b.exp()
            end = (b_end - b).exp()  # [B, H, N, C, K]
            a_state = a * b_prev.exp() if has_rank_one else None
            state_decay = b_end.squeeze(3).exp().unsqueeze(-1)  # [B, H, N, K, 1]
        else:
            diff = b.unsqueeze(-1) - b.unsqueeze(-2)  # b_t - b_r, [B, H, N, C, C]
            gamma = diff.masked_fill(~incl, -math.inf).exp()
            if has_rank_one:  # exp(b_{t-1} - b_r), r < t: gamma moved down one row
                gamma_prev = F.pad(gamma[..., :-1, :], (0, 0, 1, 0))

            def weighted(x, y, before=False):
                return (x @ y.transpose(-1, -2)) * (gamma_prev if before else gamma)

            q_state = q * b.exp().unsqueeze(-1)
            end = (b_end - b).exp().unsqueeze(-1)  # [B, H, N, C, 1]
            a_state = a * b_prev.exp().unsqueeze(-1) if has_rank_one else None
            state_decay = b_end.exp().unsqueeze(-1)  # [B, H, N, 1, 1]

    def write_keys(x):  # [B, H, N, C, K] -> per chunk [B, H, K, C], decayed to the chunk end
        return (x if end is None else x * end).transpose(-1, -2).unbind(2)

    qk = weighted(q, k)  # [B, H, N, C, C]
    h = (initial_state.to(dtype).transpose(-1, -2) if initial_state is not None
         else q.new_zeros(B, H, K, V))  # h = S^T, [B, H, K, V]
    decays = [None] * N if state_decay is None else state_decay.unbind(2)
    entering, reads = [], []
    if not has_rank_one:
        for k_n, v_n, d_n in zip(write_keys(k), v.unbind(2), decays):
            entering.append(h)
            h = (h if d_n is None else h * d_n) + k_n @ v_n
        o = qk @ v
    else:
        # (I - A) X = rhs with A strictly lower. solve_triangular(unitriangular=True) reads
        # only the strict lower part of -A (and gives the rest zero gradient), so without
        # decay the mask is not even applied
        c_read = k if shared_key else c
        lower = -(a @ c_read.transpose(-1, -2) if g is None else weighted(a, c_read, True))
        if shared_key:
            rhs = torch.cat([a_state, v], -1)
        else:
            rhs = torch.cat([a_state, weighted(a, k, before=True) @ v], -1)
        w, u = torch.linalg.solve_triangular(lower, rhs, upper=False,
                                             unitriangular=True).split((K, V), -1)
        if shared_key:
            for k_n, w_n, u_n, d_n in zip(write_keys(k), w.unbind(2), u.unbind(2), decays):
                entering.append(h)
                v_new = u_n + w_n @ h  # v_t + S_{t-1} a_t: the corrected values
                reads.append(v_new)
                h = (h if d_n is None else h * d_n) + k_n @ v_new
            o = qk @ torch.stack(reads, 2)
        else:
            for k_n, c_n, v_n, w_n, u_n, d_n in zip(write_keys(k), write_keys(c), v.unbind(2),
                                                    w.unbind(2), u.unbind(2), decays):
                entering.append(h)
                y_n = u_n + w_n @ h  # S_{t-1} a_t
                reads.append(y_n)
                h = (h if d_n is None else h * d_n) + k_n @ v_n + c_n @ y_n
            o = qk @ v + weighted(q, c) @ torch.stack(reads, 2)
    o = o + q_state @ torch.stack(entering, 2)
    o = o.flatten(2, 3)[:, :, :T]
    return o.movedim(1, 2).to(out_dtype), h.transpose(-1, -2)


def interleave(steps):
    """[x_1, ..., x_n] each [B, T, ...] -> [B, n T, ...], the micro-steps of a token adjacent."""
    return torch.stack(steps, dim=2).flatten(1, 2)


def cat_last(*xs):
    """Concatenation along the last axis of values whose leading axes broadcast (a static
    vector next to per-token ones)."""
    lead = torch.broadcast_shapes(*(x.shape[:-1] for x in xs))
    return torch.cat([x.expand(*lead, x.shape[-1]) for x in xs], dim=-1)


def causal_long_conv(a, k, past=None):
    """y_t = sum_{s <= t} k_{t-s} * a_s per feature: a causal convolution of ``a`` with the
    filter whose tap j is ``k`` at token j. Computed exactly as a masked Toeplitz product, so no
    output moves when a later token does; ``past`` holds (a, k) of the earlier tokens, from
    which decoding recomputes. Returns (y of the new tokens, (a, k) so far)."""
    a, k = torch.broadcast_tensors(a, k)
    new = a.shape[1]
    if past is not None:
        a = torch.cat([past[0].to(a.dtype), a], dim=1)
        k = torch.cat([past[1].to(k.dtype), k], dim=1)
    T = a.shape[1]
    t = torch.arange(T, device=a.device)
    lag = t[:, None] - t[None, :]  # t - s
    taps = k[:, lag.clamp(min=0)]  # [B, T, T, ...]: k_{t-s}
    keep = (lag >= 0).reshape(1, T, T, *([1] * (a.dim() - 2)))
    y = (taps.masked_fill(~keep, 0.0) * a[:, None]).sum(2)
    return y[:, T - new:], (a, k)


def lay_out(x, sizes, groups):
    """A value placed on a state's axes (its last ``len(sizes)`` dims, of size 1 where it does
    not vary) as one flattened dim per group of state axes, in group order: how a state and its
    operands enter the chunk algorithm's [heads, V, K] (``groups`` = (heads, V, K) axes).
    Axes in no group must have size 1; the others are expanded to their sizes."""
    lead = x.dim() - len(sizes)
    keep = [a for group in groups for a in group]
    drop = tuple(lead + a for a in range(len(sizes)) if a not in keep)
    x = x.squeeze(drop) if drop else x
    kept = sorted(keep)
    x = x.permute(*range(lead), *(lead + kept.index(a) for a in keep))
    x = x.expand(*x.shape[:lead], *(sizes[a] for a in keep))
    # a list, not a generator, inside math.prod: torch.compile cannot trace a generator
    # argument there, and that one graph break split every generated layer in two
    return x.reshape(*x.shape[:lead], *(math.prod([sizes[a] for a in g]) for g in groups))


def unlay(x, sizes, groups):
    """The inverse of ``lay_out``: the last ``len(groups)`` dims back onto the state axes of the
    groups, in the state's axis order."""
    lead = x.dim() - len(groups)
    keep = [a for group in groups for a in group]
    x = x.reshape(*x.shape[:lead], *(sizes[a] for a in keep))
    return x.permute(*range(lead), *(lead + keep.index(a) for a in sorted(keep)))


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
    work = torch.float64 if scores.dtype == torch.float64 else torch.float32
    p = torch.softmax(scores.to(work), dim=-1).nan_to_num(0.0).to(v.dtype)
    return torch.einsum("bhts,bshe->bthe", p, v), (k, v)

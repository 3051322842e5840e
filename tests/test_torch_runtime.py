"""``chunk_dplr``, the one chunk algorithm behind every generated layer, against its definition.

The definition is the recurrence itself, run token by token here in a few lines:
S_t = S_{t-1} (Diag(exp g_t) + a_t c_t^T) + v_t k_t^T, o_t = S_t q_t. Every operand pattern the
lowering produces is covered: no decay, one decay per head, one per key channel; no rank-one
term, a rank-one term sharing its key with the write (``c is k``, the delta rules, merged
internally), and an independent one (RWKV-7). Lengths 1, 63 and 100 against chunk sizes 64, 16
and 6 (per-channel decays use chunks of 16 made of 4 sub-chunks, or one sub-chunk when the size
does not divide), key width 60, a nonzero initial state; outputs, final states, every gradient.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from linarch.codegen.runtime import chunk_dplr, interleave
from linarch_testing.torch_cases import rel_err

B, H, K, V = 2, 3, 60, 20


def _recurrence(q, k, v, g=None, a=None, c=None, initial_state=None):
    """The definition, one token at a time, in the row convention (S [B, H, V, K])."""
    S = initial_state if initial_state is not None else q.new_zeros(B, H, V, K)
    outs = []
    for t in range(q.shape[1]):
        if g is None:
            new = S
        elif g.dim() == 4:
            new = S * g[:, t].exp()[:, :, None, :]
        else:
            new = S * g[:, t].exp()[:, :, None, None]
        if a is not None:
            new = new + (S @ a[:, t, :, :, None]) * c[:, t, :, None, :]
        S = new + v[:, t, :, :, None] * k[:, t, :, None, :]
        outs.append((S @ q[:, t, :, :, None])[..., 0])
    return torch.stack(outs, 1), S


def _operands(length, decay, rank_one, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    ops = dict(q=rand(B, length, H, K), k=F.normalize(rand(B, length, H, K), dim=-1),
               v=rand(B, length, H, V), initial_state=rand(B, H, V, K) * 0.5)
    if decay == "head":
        ops["g"] = F.logsigmoid(rand(B, length, H))
    elif decay == "channel":
        ops["g"] = F.logsigmoid(rand(B, length, H, K)) / 2
    if rank_one == "shared":  # the delta rule: a = -beta k, c = k
        ops["a"] = -torch.sigmoid(rand(B, length, H, 1)) * ops["k"]
    elif rank_one == "independent":  # RWKV-7: a = -kk, c = kk * rate
        kk = F.normalize(rand(B, length, H, K), dim=-1)
        ops["a"], ops["c"] = -kk, kk * torch.sigmoid(rand(B, length, H, K))
    ops = {n: t.to(dtype).requires_grad_() for n, t in ops.items()}
    return ops


def _call(fn, ops):
    kw = dict(ops)
    if "a" in kw and "c" not in kw:
        kw["c"] = kw["k"]  # the same tensor object: chunk_dplr's merged path
    return fn(**kw)


CASES = [(d, r) for d in ("none", "head", "channel") for r in ("none", "shared", "independent")]


@pytest.mark.parametrize("chunk_size", [64, 16, 6])
@pytest.mark.parametrize("length", [1, 63, 100])
@pytest.mark.parametrize("decay, rank_one", CASES)
def test_chunk_dplr_equals_the_recurrence_fp64(decay, rank_one, length, chunk_size):
    ops = _operands(length, decay, rank_one, torch.float64)
    o_ref, s_ref = _call(_recurrence, ops)
    o, s = _call(lambda **kw: chunk_dplr(**kw, chunk_size=chunk_size), ops)
    assert o.shape == (B, length, H, V) and s.shape == (B, H, V, K)
    assert rel_err(o, o_ref) < 1e-10 and rel_err(s, s_ref) < 1e-10
    w_o = torch.randn_like(o_ref)
    w_s = torch.randn_like(s_ref)
    leaves = list(ops.values())
    g_ref = torch.autograd.grad((o_ref * w_o).sum() + (s_ref * w_s).sum(), leaves)
    g = torch.autograd.grad((o * w_o).sum() + (s * w_s).sum(), leaves)
    for name, x, y in zip(ops, g, g_ref):
        assert rel_err(x, y) < 1e-10, name


@pytest.mark.parametrize("decay, rank_one", CASES)
def test_chunk_dplr_fp32_within_1e_5(decay, rank_one):
    ops = _operands(100, decay, rank_one, torch.float32)
    exact = {n: t.detach().double() for n, t in ops.items()}
    o_ref, s_ref = _call(_recurrence, exact)
    o, s = _call(chunk_dplr, ops)
    assert o.dtype == torch.float32 and s.dtype == torch.float32
    assert rel_err(o.double(), o_ref) < 1e-5 and rel_err(s.double(), s_ref) < 1e-5


def test_shared_key_path_equals_the_general_path():
    """Passing c as the very tensor k takes the merged path; a copy takes the general one."""
    ops = {n: t.detach() for n, t in _operands(70, "head", "shared", torch.float64).items()}
    merged = chunk_dplr(**ops, c=ops["k"])
    general = chunk_dplr(**ops, c=ops["k"].clone())
    assert rel_err(merged[0], general[0]) < 1e-12 and rel_err(merged[1], general[1]) < 1e-12


def test_interleave_puts_micro_steps_of_a_token_side_by_side():
    x = torch.arange(6.0).reshape(1, 3, 1, 2)
    y = -x
    out = interleave([x, y])
    assert out.shape == (1, 6, 1, 2)
    assert torch.equal(out[:, 0::2], x) and torch.equal(out[:, 1::2], y)


@pytest.mark.parametrize("decay", ["head", "channel"])
def test_strong_decay_does_not_overflow(decay):
    """Log decays of -50 per token: only differences b_t - b_r <= 0 are exponentiated."""
    ops = {n: t.detach() for n, t in _operands(100, decay, "shared", torch.float32).items()}
    ops["g"] = torch.full_like(ops["g"], -50.0)
    o, s = _call(chunk_dplr, ops)
    assert torch.isfinite(o).all() and torch.isfinite(s).all()
    exact = {n: t.double() for n, t in ops.items()}
    o_ref, _ = _call(_recurrence, exact)
    assert rel_err(o.double(), o_ref) < 1e-5

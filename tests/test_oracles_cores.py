"""Each oracle's `naive_core` against fla: other naive forms in fp64, kernels in the interpreter.

Part 1 (fp64, 1e-10): every core equals a second, independently written fla reference of the
same recurrence (chunked vs recurrent, parallel vs recurrent, one family as a special case of
another), ragged lengths, with initial states.
Part 2 (fp32, interpreter): every core equals fla's own fused_recurrent Triton kernel, run on CPU
under TRITON_INTERPRET=1, with an initial state and the final state compared.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fla.ops.comba.naive import naive_recurrent_comba
from fla.ops.delta_rule.naive import delta_rule_chunkwise
from fla.ops.gated_delta_rule.naive import naive_chunk_gated_delta_rule
from fla.ops.kda.naive import naive_chunk_kda
from fla.ops.linear_attn.naive import naive_chunk_linear_attn
from fla.ops.retention.naive import naive_retention
from fla.ops.simple_gla.naive import naive_chunk_simple_gla, naive_parallel_simple_gla

from linarch_testing.oracles import (
    comba,
    deltanet,
    gated_deltanet,
    gated_deltaproduct,
    gla,
    kda,
    linear_attn,
    mamba2,
    retnet,
    rwkv7,
    simple_gla,
)
from linarch_testing.oracles.fp64 import promote_fp32_to_fp64
from linarch_testing.oracles.interpret import OpJob, run_interpreted

B, H, K, V = 2, 2, 12, 10
F64 = dict(rtol=1e-10, atol=1e-10)


def _rand(*shape, dtype=torch.float64, gen=None):
    return torch.randn(*shape, dtype=dtype, generator=gen)


def _qkv(length, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = _rand(B, length, H, K, dtype=dtype, gen=gen)
    k = F.normalize(_rand(B, length, H, K, dtype=dtype, gen=gen), dim=-1)
    v = _rand(B, length, H, V, dtype=dtype, gen=gen)
    beta = torch.rand(B, length, H, dtype=dtype, generator=gen)
    g = F.logsigmoid(_rand(B, length, H, dtype=dtype, gen=gen))
    h0 = _rand(B, H, K, V, dtype=dtype, gen=gen)
    return q, k, v, beta, g, h0


# ---------------------------------------------------------------- part 1: fp64 cross-checks


def test_deltanet_core_matches_fla_chunkwise():
    q, k, v, beta, _, _ = _qkv(48)
    o, state = deltanet.naive_core(q, k, v, beta)
    with promote_fp32_to_fp64():
        o_chunk, s_chunk = delta_rule_chunkwise(*(t.transpose(1, 2) for t in (q, k, v, beta)),
                                                chunk_size=16)
    torch.testing.assert_close(o, o_chunk.transpose(1, 2), **F64)
    torch.testing.assert_close(state, s_chunk, **F64)


def test_deltanet_core_scale_argument():
    q, k, v, beta, _, h0 = _qkv(9)
    o, state = deltanet.naive_core(q, k, v, beta, scale=0.3, initial_state=h0)
    o_ref, s_ref = deltanet.naive_core(q * 0.3 * K**0.5, k, v, beta, initial_state=h0)
    torch.testing.assert_close(o, o_ref, **F64)
    torch.testing.assert_close(state, s_ref, **F64)


@pytest.mark.parametrize("length", [1, 37, 70])
def test_gated_deltanet_core_matches_fla_chunk(length):
    q, k, v, beta, g, h0 = _qkv(length, seed=length)
    o, state = gated_deltanet.naive_core(q, k, v, g, beta, initial_state=h0)
    with promote_fp32_to_fp64():
        o_chunk, s_chunk = naive_chunk_gated_delta_rule(q, k, v, g, beta, chunk_size=32,
                                                        initial_state=h0,
                                                        output_final_state=True)
    torch.testing.assert_close(o, o_chunk, **F64)
    torch.testing.assert_close(state, s_chunk, **F64)


def test_deltanet_is_gated_deltanet_without_decay():
    q, k, v, beta, g, h0 = _qkv(21)
    o, state = deltanet.naive_core(q, k, v, beta, initial_state=h0)
    o_g, s_g = gated_deltanet.naive_core(q, k, v, torch.zeros_like(g), beta, initial_state=h0)
    torch.testing.assert_close(o, o_g, **F64)
    torch.testing.assert_close(state, s_g, **F64)


@pytest.mark.parametrize("length", [5, 70])
def test_simple_gla_core_matches_fla_chunk_and_parallel(length):
    q, k, v, _, g, h0 = _qkv(length, seed=3)
    o, state = simple_gla.naive_core(q, k, v, g, initial_state=h0)
    with promote_fp32_to_fp64():
        o_chunk, s_chunk = naive_chunk_simple_gla(q, k, v, g, initial_state=h0,
                                                  output_final_state=True, chunk_size=16)
        o_par, _ = naive_parallel_simple_gla(q, k, v, g)
    o_zero, _ = simple_gla.naive_core(q, k, v, g)
    torch.testing.assert_close(o, o_chunk, **F64)
    torch.testing.assert_close(state, s_chunk, **F64)
    torch.testing.assert_close(o_zero, o_par, **F64)


def test_retnet_core_matches_fla_naive_retention():
    q, k, v, _, _, _ = _qkv(30)
    o, _ = retnet.naive_core(q, k, v)
    with promote_fp32_to_fp64():
        o_ret = naive_retention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    torch.testing.assert_close(o, o_ret.transpose(1, 2), **F64)


def test_gla_core_with_channel_constant_gate_is_simple_gla():
    q, k, v, _, g, h0 = _qkv(17)
    o, state = gla.naive_core(q, k, v, g[..., None].expand(-1, -1, -1, K), initial_state=h0)
    o_s, s_s = simple_gla.naive_core(q, k, v, g, initial_state=h0)
    torch.testing.assert_close(o, o_s, **F64)
    torch.testing.assert_close(state, s_s, **F64)


@pytest.mark.parametrize("length", [16, 48])
def test_kda_core_matches_fla_chunk_and_reduces_to_gdn(length):
    """naive_chunk_kda asserts T % chunk_size == 0 (no padding, unlike the GDN one)."""
    q, k, v, beta, g, h0 = _qkv(length, seed=5)
    gk = F.logsigmoid(_rand(B, length, H, K)) / 4
    o, state = kda.naive_core(q, k, v, gk, beta, initial_state=h0)
    with promote_fp32_to_fp64():
        o_chunk, s_chunk = naive_chunk_kda(q, k, v, gk, beta, initial_state=h0,
                                           output_final_state=True, chunk_size=16)
    torch.testing.assert_close(o, o_chunk, **F64)
    torch.testing.assert_close(state, s_chunk, **F64)
    o_kda, s_kda = kda.naive_core(q, k, v, g[..., None].expand(-1, -1, -1, K), beta,
                                  initial_state=h0)
    o_gdn, s_gdn = gated_deltanet.naive_core(q, k, v, g, beta, initial_state=h0)
    torch.testing.assert_close(o_kda, o_gdn, **F64)
    torch.testing.assert_close(s_kda, s_gdn, **F64)


def _comba_by_hand(q, k, v, p, g, beta, h0):
    """Kernel semantics: h_t = alpha h - beta k (p^T h) + beta k v^T (read before the decay)."""
    q = q * K**-0.5
    h, outs = h0.clone(), []
    for t in range(q.shape[1]):
        read = torch.einsum("bhk,bhkv->bhv", p[:, t], h)
        h = g[:, t].exp()[..., None, None] * h + torch.einsum(
            "bhk,bhv->bhkv", k[:, t], beta[:, t, :, None] * (v[:, t] - read))
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], h))
    return torch.stack(outs, 1), h


def test_comba_core_is_kernel_semantics_and_naive_recurrent_is_not():
    q, k, v, beta, g, h0 = _qkv(40, seed=7)
    p = F.normalize(_rand(B, 40, H, K), dim=-1)
    o, state = comba.naive_core(q, k, v, p, g, beta, initial_state=h0)
    o_hand, s_hand = _comba_by_hand(q, k, v, p, g, beta, h0)
    torch.testing.assert_close(o, o_hand, **F64)
    torch.testing.assert_close(state, s_hand, **F64)
    with promote_fp32_to_fp64():
        o_rec, _ = naive_recurrent_comba(q, k, v, p, beta, g, initial_state=h0,
                                         output_final_state=True)
    assert (o_rec - o).abs().max() > 1e-3  # fla's naive_recurrent_comba decays before the read


@pytest.mark.parametrize("length", [1, 33])
def test_mamba2_core_fla_mapping_equals_token_recurrence(length):
    gen = torch.Generator().manual_seed(length)
    x = _rand(B, length, H, V, gen=gen)
    dt = F.softplus(_rand(B, length, H, gen=gen))
    A = -torch.rand(H, dtype=torch.float64, generator=gen) * 4
    Bm, Cm = _rand(B, length, H, K, gen=gen), _rand(B, length, H, K, gen=gen)
    D, h0 = _rand(H, gen=gen), _rand(B, H, K, V, gen=gen)
    y, state = mamba2.naive_core(x, dt, A, Bm, Cm, D, initial_state=h0)
    y_rec, s_rec = mamba2.recurrent_core(x, dt, A, Bm, Cm, D, initial_state=h0)
    torch.testing.assert_close(y, y_rec, **F64)
    torch.testing.assert_close(state, s_rec, **F64)


def test_mamba2_oracle_matches_layer_torch_forward():
    """fla's own CPU path (Mamba2.torch_forward, chunked SSD) with its Triton norm swapped out.

    torch_forward casts to fp32 internally, so it runs under the fp64 promotion mode.
    """
    from fla.layers import Mamba2

    from linarch_testing.oracles.common import rms_norm_gated_grouped

    torch.manual_seed(0)
    layer = Mamba2(hidden_size=32, num_heads=2, head_dim=32, state_size=16, chunk_size=16)
    layer.norm.forward = lambda y, z: rms_norm_gated_grouped(
        y, z, layer.norm.weight, layer.norm_eps, layer.intermediate_size, False)
    layer.act = F.silu
    layer.double()
    x = _rand(2, 37, 32)
    with torch.no_grad(), promote_fp32_to_fp64():
        y_fla, _, s_fla = layer.torch_forward(x)
    with torch.no_grad():
        y, state = mamba2.reference_forward(layer, x)
    torch.testing.assert_close(y, y_fla, **F64)
    torch.testing.assert_close(state, s_fla.transpose(-1, -2), **F64)


@pytest.mark.parametrize("householders", [1, 3])
def test_gated_deltaproduct_core_is_gated_delta_rule_on_micro_steps(householders):
    n, length = householders, 11
    q, _, _, _, g, h0 = _qkv(length, seed=n)
    k = F.normalize(_rand(B, n * length, H, K), dim=-1)
    v = _rand(B, n * length, H, V)
    beta = 2 * torch.rand(B, n * length, H, dtype=torch.float64)
    o, state = gated_deltaproduct.naive_core(q, k, v, g, beta, n, initial_state=h0)
    q_micro = torch.zeros(B, length, n, H, K, dtype=torch.float64)
    q_micro[:, :, -1] = q
    g_micro = torch.zeros(B, length, n, H, dtype=torch.float64)
    g_micro[:, :, 0] = g
    o_micro, s_micro = gated_deltanet.naive_core(q_micro.flatten(1, 2), k, v,
                                                 g_micro.flatten(1, 2), beta, initial_state=h0)
    torch.testing.assert_close(o, o_micro.unflatten(1, (length, n))[:, :, -1], **F64)
    torch.testing.assert_close(state, s_micro, **F64)


def test_linear_attn_core_matches_fla_chunk():
    q, k, v, _, _, _ = _qkv(128)
    o, _ = linear_attn.naive_core(q, k, v)
    with promote_fp32_to_fp64():
        o_chunk = naive_chunk_linear_attn(q, k, v)
    torch.testing.assert_close(o, o_chunk, **F64)


def test_rwkv7_core_equals_token_recurrence():
    length = 19
    gen = torch.Generator().manual_seed(11)
    r, k, v = _rand(B, length, H, K, gen=gen), _rand(B, length, H, K, gen=gen), _rand(
        B, length, H, V, gen=gen)
    w = -0.6 * torch.rand(B, length, H, K, dtype=torch.float64, generator=gen)
    kk = F.normalize(_rand(B, length, H, K, gen=gen), dim=-1)
    a_gate = torch.rand(B, length, H, K, dtype=torch.float64, generator=gen)
    h0 = _rand(B, H, K, V, gen=gen)
    o, state = rwkv7.naive_core(r, w, k, v, -kk, kk * a_gate, initial_state=h0)
    h, outs = h0.clone(), []
    for t in range(length):
        transition = torch.diag_embed(w[:, t].exp()) - torch.einsum(
            "bhi,bhj->bhij", kk[:, t] * a_gate[:, t], kk[:, t])
        h = transition @ h + torch.einsum("bhk,bhv->bhkv", k[:, t], v[:, t])
        outs.append(torch.einsum("bhk,bhkv->bhv", r[:, t], h))
    torch.testing.assert_close(o, torch.stack(outs, 1), **F64)
    torch.testing.assert_close(state, h, **F64)


# ------------------------------------------------- part 2: fla kernels under the interpreter

T_OP = 20


def _op_cases():
    """(name, OpJob, oracle thunk returning (o, state [B,H,K,V])) in fp32."""
    q, k, v, beta, g, h0 = (t.float() for t in _qkv(T_OP, seed=21))
    gk = F.logsigmoid(torch.randn(B, T_OP, H, K)) / 4
    p = F.normalize(torch.randn(B, T_OP, H, K), dim=-1)
    w = -0.6 * torch.rand(B, T_OP, H, K)
    kk = F.normalize(torch.randn(B, T_OP, H, K), dim=-1)
    a_gate = torch.rand(B, T_OP, H, K)
    common = dict(initial_state=h0, output_final_state=True)
    ops = "fla.ops."
    return [
        ("delta_rule", OpJob(ops + "delta_rule.fused_recurrent_delta_rule",
                             dict(q=q, k=k, v=v, beta=beta, **common)),
         lambda: deltanet.naive_core(q, k, v, beta, initial_state=h0)),
        ("gated_delta_rule", OpJob(ops + "gated_delta_rule.fused_recurrent_gated_delta_rule",
                                   dict(q=q, k=k, v=v, g=g, beta=beta, **common)),
         lambda: gated_deltanet.naive_core(q, k, v, g, beta, initial_state=h0)),
        ("gla", OpJob(ops + "gla.fused_recurrent_gla", dict(q=q, k=k, v=v, gk=gk, **common)),
         lambda: gla.naive_core(q, k, v, gk, initial_state=h0)),
        ("simple_gla", OpJob(ops + "simple_gla.fused_recurrent_simple_gla",
                             dict(q=q, k=k, v=v, g=g, **common)),
         lambda: simple_gla.naive_core(q, k, v, g, initial_state=h0)),
        ("retention", OpJob(ops + "retention.fused_recurrent_retention",
                            dict(q=q, k=k, v=v, **common)),
         lambda: retnet.naive_core(q, k, v, initial_state=h0)),
        ("kda", OpJob(ops + "kda.fused_recurrent_kda",
                      dict(q=q, k=k, v=v, g=gk, beta=beta, **common)),
         lambda: kda.naive_core(q, k, v, gk, beta, initial_state=h0)),
        ("comba", OpJob(ops + "comba.fused_recurrent_comba",
                        dict(q=q, k=k, v=v, p=p, g=g, beta=beta, **common)),
         lambda: comba.naive_core(q, k, v, p, g, beta, initial_state=h0)),
        ("rwkv7", OpJob(ops + "rwkv7.fused_recurrent_rwkv7",
                        dict(r=q, w=w, k=k, v=v, a=-kk, b=kk * a_gate, scale=1.0, **common)),
         lambda: rwkv7.naive_core(q, w, k, v, -kk, kk * a_gate, initial_state=h0)),
        ("linear_attn", OpJob(ops + "linear_attn.fused_recurrent_linear_attn",
                              dict(q=q, k=k, v=v, **common)),
         lambda: linear_attn.naive_core(q, k, v, initial_state=h0)),
    ]


OP_CASES = _op_cases()


@pytest.fixture(scope="module")
def op_results():
    return run_interpreted([job for _, job, _ in OP_CASES])


@pytest.mark.parametrize("index", range(len(OP_CASES)), ids=[name for name, _, _ in OP_CASES])
def test_core_matches_interpreted_fla_kernel(op_results, index):
    result = op_results[index]
    if isinstance(result, Exception):
        raise result
    o_kernel, s_kernel = result
    o, state = OP_CASES[index][2]()
    torch.testing.assert_close(o, o_kernel, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state, s_kernel, rtol=1e-5, atol=1e-5)

"""CPU oracle for fla.layers.Comba.

From fla: the layer's projections (nn.Linear), decay, D, A_log, dt_bias, conv / norm weights,
and the core `fla.ops.comba.naive.naive_chunk_comba`.
Re-written in torch: ShortConvolution, FusedRMSNormGated (sigmoid) / RMSNorm, the in-kernel
l2norm of q, k **and p**.

Trap: fla's `naive_recurrent_comba` does not compute what the kernels compute. It decays the
state before the delta read, S_t = alpha S_{t-1}(I - beta p k^T) + beta v k^T, while
fused_recurrent_comba and chunk_comba read the undecayed state,
S_t = S_{t-1}(alpha I - beta p k^T) + beta v k^T. `naive_chunk_comba` agrees with the kernels and
is the one used here (the tests check all three).
"""

from __future__ import annotations

import torch.nn.functional as F
from fla.ops.comba.naive import naive_chunk_comba

from .common import (
    compute_dtype,
    l2norm,
    mamba_gate,
    merge_heads,
    no_padding,
    rms_norm,
    rms_norm_gated,
    short_conv,
    split_heads,
)
from .fp64 import precision_context


def naive_core(q, k, v, p, g, beta, scale=None, initial_state=None, chunk_size=64):
    """Comba through fla's naive_chunk_comba; [B,T,H,K] in; state [B,H,K,V]."""
    with precision_context(q, k, v):
        return naive_chunk_comba(q, k, v, p, g, beta, chunk_size=chunk_size, scale=scale,
                                 initial_state=initial_state, output_final_state=True)


def reference_forward(layer, hidden_states, attention_mask=None, initial_state=None):
    """What Comba.forward computes (no cache), plus the final state [B,H,K,V]."""
    no_padding(attention_mask)
    x = hidden_states
    if layer.use_short_conv:
        q = short_conv(layer.q_conv1d, layer.q_proj(x))
        k = short_conv(layer.k_conv1d, layer.k_proj(x))
        v = short_conv(layer.v_conv1d, layer.v_proj(x))
    else:
        q, k, v = (F.silu(proj(x)) for proj in (layer.q_proj, layer.k_proj, layer.v_proj))
    q, k = split_heads(q, layer.head_k_dim), split_heads(k, layer.head_k_dim)
    p = k * layer.decay[None, None, :, None].sigmoid() if layer.use_inner_decay else k
    if layer.use_output_correction:
        q = q - layer.D[None, None, :, None] * p
    v = split_heads(v, layer.head_v_dim)

    dtype = compute_dtype(x)
    beta = layer.b_proj(x).to(dtype).sigmoid()
    g = mamba_gate(layer.a_proj(x).to(dtype), layer.A_log, layer.dt_bias)
    q, k, p = (l2norm(t.to(dtype)) for t in (q, k, p))
    o, state = naive_core(q, k, v.to(dtype), p, g, beta, initial_state=initial_state)
    o = o.to(x.dtype)

    if layer.use_output_gate:
        gate = split_heads(layer.g_proj(x), layer.head_v_dim)
        o = rms_norm_gated(o, gate, layer.o_norm.weight, layer.o_norm.eps,
                           layer.o_norm.activation)
    else:
        o = rms_norm(o, layer.o_norm.weight, layer.o_norm.bias, layer.o_norm.eps)
    return layer.o_proj(merge_heads(o)), state

"""CPU oracle for fla.layers.GatedDeltaProduct.

From fla: the layer's projections (nn.Linear), A_log, dt_bias, conv / norm weights, and the core
`fla.ops.gated_delta_product.naive.naive_recurrent_gated_delta_product`.
Re-written in torch: ShortConvolution, FusedRMSNormGated / RMSNorm, the in-kernel l2norm.
Each token carries n = num_householder (k, v, beta) micro-steps, laid out '(t n)'; the gate
applies once per token, before its first micro-step; q reads after the last one.
"""

from __future__ import annotations

import torch.nn.functional as F
from fla.ops.gated_delta_product.naive import naive_recurrent_gated_delta_product

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


def naive_core(q, k, v, g, beta, num_householder, scale=None, initial_state=None):
    """Gated DeltaProduct via fla's naive reference.

    q [B,T,H,K]; k [B,n*T,H,K], v [B,n*T,H,V], beta [B,n*T,H] in '(t n)' order; g [B,T,H] or
    None. The reference has no default scale (K**-0.5 is supplied here).
    """
    if scale is None:
        scale = q.shape[-1] ** -0.5
    with precision_context(q, k, v):
        o, state = naive_recurrent_gated_delta_product(
            q, k, v, g, beta, scale, initial_state=initial_state, output_final_state=True,
            num_householder=num_householder,
        )
    return o, state


def reference_forward(layer, hidden_states, attention_mask=None, initial_state=None):
    """What GatedDeltaProduct.forward computes (no cache), plus the final state [B,H,K,V]."""
    no_padding(attention_mask)
    x = hidden_states
    n = layer.num_householder
    if layer.use_short_conv:
        q = short_conv(layer.q_conv1d, layer.q_proj(x))
        k = short_conv(layer.k_conv1d, layer.k_proj(x))
        v = short_conv(layer.v_conv1d, layer.v_proj(x))
    else:
        q, k, v = (F.silu(proj(x)) for proj in (layer.q_proj, layer.k_proj, layer.v_proj))
    batch, length = x.shape[:2]
    q = split_heads(q, layer.head_k_dim)
    k = k.reshape(batch, length * n, -1, layer.head_k_dim)
    v = v.reshape(batch, length * n, -1, layer.head_v_dim)
    groups = layer.num_v_heads // layer.num_heads
    if groups > 1:
        q, k = q.repeat_interleave(groups, dim=2), k.repeat_interleave(groups, dim=2)

    dtype = compute_dtype(x)
    beta = layer.b_proj(x).to(dtype).sigmoid()
    if layer.allow_neg_eigval:
        beta = beta * 2.0
    beta = beta.reshape(batch, length * n, -1)
    g = None
    if layer.use_forget_gate:
        g = mamba_gate(layer.a_proj(x).to(dtype), layer.A_log, layer.dt_bias)
    q, k = l2norm(q.to(dtype)), l2norm(k.to(dtype))
    o, state = naive_core(q, k, v.to(dtype), g, beta, n, initial_state=initial_state)
    o = o.to(x.dtype)

    if layer.use_output_gate:
        gate = split_heads(layer.g_proj(x), layer.head_v_dim)
        o = rms_norm_gated(o, gate, layer.o_norm.weight, layer.o_norm.eps,
                           layer.o_norm.activation)
    else:
        o = rms_norm(o, layer.o_norm.weight, layer.o_norm.bias, layer.o_norm.eps)
    return layer.o_proj(merge_heads(o)), state

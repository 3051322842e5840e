"""CPU oracle for fla.layers.KimiDeltaAttention (KDA).

From fla: the layer's projections (q/k/v_proj, the two-layer f_proj and g_proj, b_proj, o_proj
as nn.Linear), A_log, dt_bias, conv / norm weights, and the core recurrence
`fla.ops.kda.naive.naive_recurrent_kda`.
Re-written in torch: ShortConvolution, FusedRMSNormGated (sigmoid), the in-kernel l2norm, and
the in-kernel gate: g = -exp(A_log[h]) * softplus(f + dt_bias) per key channel, or
g = lower_bound * sigmoid(exp(A_log[h]) * (f + dt_bias)) when the layer sets lower_bound.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fla.ops.kda.naive import naive_recurrent_kda

from .common import (
    compute_dtype,
    l2norm,
    merge_heads,
    no_padding,
    rms_norm_gated,
    short_conv,
    softplus,
    split_heads,
)
from .fp64 import precision_context


def naive_core(q, k, v, g, beta, scale=None, initial_state=None):
    """KDA via fla's naive reference: g [B,T,HV,K] per-channel log decay, beta [B,T,HV]."""
    with precision_context(q, k, v):
        return naive_recurrent_kda(q, k, v, g, beta, scale=scale, initial_state=initial_state,
                                   output_final_state=True)


def kda_gate(f: torch.Tensor, A_log: torch.Tensor, dt_bias: torch.Tensor,
             lower_bound: float | None) -> torch.Tensor:
    """The in-kernel KDA gate on f [B,T,HV,K]; A_log [HV]; dt_bias [HV*K]."""
    a = A_log.to(f.dtype).exp()[:, None]
    pre = f + dt_bias.to(f.dtype).view(f.shape[-2:])
    if lower_bound is not None:
        return lower_bound * torch.sigmoid(a * pre)
    return -a * softplus(pre)


def reference_forward(layer, hidden_states, attention_mask=None, initial_state=None):
    """What KimiDeltaAttention.forward computes (no cache), plus the final state [B,H,K,V]."""
    no_padding(attention_mask)
    x = hidden_states
    if layer.use_short_conv:
        q = short_conv(layer.q_conv1d, layer.q_proj(x))
        k = short_conv(layer.k_conv1d, layer.k_proj(x))
        v = short_conv(layer.v_conv1d, layer.v_proj(x))
    else:
        q, k, v = (F.silu(proj(x)) for proj in (layer.q_proj, layer.k_proj, layer.v_proj))
    dtype = compute_dtype(x)
    f = split_heads(layer.f_proj(x), layer.head_k_dim).to(dtype)
    beta = layer.b_proj(x).to(dtype).sigmoid()
    if layer.allow_neg_eigval:
        beta = beta * 2.0
    q = l2norm(split_heads(q, layer.head_k_dim).to(dtype))
    k = l2norm(split_heads(k, layer.head_k_dim).to(dtype))
    v = split_heads(v, layer.head_v_dim).to(dtype)
    g = kda_gate(f, layer.A_log, layer.dt_bias, layer.lower_bound)
    o, state = naive_core(q, k, v, g, beta, initial_state=initial_state)

    gate = split_heads(layer.g_proj(x), layer.head_v_dim)
    o = rms_norm_gated(o.to(x.dtype), gate, layer.o_norm.weight, layer.o_norm.eps,
                       layer.o_norm.activation)
    return layer.o_proj(merge_heads(o)), state

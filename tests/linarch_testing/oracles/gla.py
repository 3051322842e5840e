"""CPU oracle for fla.layers.GatedLinearAttention (GLA).

From fla: the layer's projections (q/k/v/g_proj, the two-layer gk_proj, o_proj as nn.Linear),
its feature_map_fn (transformers ACT2FN, CPU), its gate_fn when the norm is not fused, the norm
weights, and the core recurrence `fla.ops.gla.naive.naive_recurrent_gla`.
Re-written in torch: ShortConvolution (only when use_short_conv), RMSNorm / FusedRMSNormGated.
"""

from __future__ import annotations

import torch.nn.functional as F
from fla.ops.gla.naive import naive_recurrent_gla

from .common import (
    compute_dtype,
    merge_heads,
    no_padding,
    plain_activation,
    repeat_kv_heads,
    rms_norm,
    rms_norm_gated,
    short_conv,
    split_heads,
)
from .fp64 import precision_context


def naive_core(q, k, v, gk, scale=None, initial_state=None):
    """GLA via fla's naive reference: gk [B,T,H,K] per-channel log decay; state [B,H,K,V].

    The reference hard-codes scale K**-0.5; another scale is applied by pre-scaling q.
    """
    if scale is not None:
        q = q * (scale * q.shape[-1] ** 0.5)
    with precision_context(q, k, v):
        return naive_recurrent_gla(q, k, v, gk, initial_state=initial_state,
                                   output_final_state=True)


def gated_output(layer, o, x, norm_name: str):
    """GLA / RetNet / simple-GLA output: fused RMSNorm*swish(g), or RMSNorm then gate_fn(g)."""
    if getattr(layer, "fuse_norm_and_gate", False):
        norm = getattr(layer, norm_name)
        g = split_heads(layer.g_proj(x), layer.head_v_dim)
        return merge_heads(rms_norm_gated(o, g, norm.weight, norm.eps, norm.activation))
    norm = layer.g_norm
    o = merge_heads(rms_norm(o, norm.weight, norm.bias, norm.eps))
    if getattr(layer, "use_output_gate", True):
        o = o * plain_activation(layer.gate_fn)(layer.g_proj(x))
    return o


def reference_forward(layer, hidden_states, attention_mask=None, initial_state=None):
    """What GatedLinearAttention.forward computes (no cache), plus the final state [B,H,K,V]."""
    no_padding(attention_mask)
    x = hidden_states
    if layer.use_short_conv:
        q = short_conv(layer.q_conv1d, layer.q_proj(x))
        k = short_conv(layer.k_conv1d, layer.k_proj(x))
        v = short_conv(layer.v_conv1d, layer.v_proj(x))
    else:
        q, k, v = layer.q_proj(x), layer.k_proj(x), layer.v_proj(x)
    gk = layer.gk_proj(x)
    q = split_heads(q, layer.head_k_dim)
    groups = layer.num_kv_groups
    k, gk = repeat_kv_heads(k, groups, layer.head_k_dim), repeat_kv_heads(gk, groups,
                                                                          layer.head_k_dim)
    v = repeat_kv_heads(v, groups, layer.head_v_dim)
    gk = F.logsigmoid(gk) / layer.gate_logit_normalizer
    if layer.clamp_min is not None:
        gk = gk.clamp_min(layer.clamp_min)
    if layer.feature_map_fn is not None:
        feature_map = plain_activation(layer.feature_map_fn)
        q, k = feature_map(q), feature_map(k)

    dtype = compute_dtype(x)
    o, state = naive_core(q.to(dtype), k.to(dtype), v.to(dtype), gk.to(dtype),
                          initial_state=initial_state)
    o = gated_output(layer, o.to(x.dtype), x, "g_norm_swish_gate")
    return layer.o_proj(o), state

"""CPU oracle for the simple-GLA op and fla.layers.simple_gla.SimpleGatedLinearAttention.

From fla: the layer's projections (nn.Linear, gk_proj with bias), feature_map_fn, gate_fn, norm
weights, and the core recurrence `fla.ops.simple_gla.naive.naive_recurrent_simple_gla`.
Re-written in torch: ShortConvolution, FusedRMSNormGated / RMSNorm.
"""

from __future__ import annotations

import torch.nn.functional as F
from fla.ops.simple_gla.naive import naive_recurrent_simple_gla

from .common import (
    compute_dtype,
    no_padding,
    plain_activation,
    repeat_kv_heads,
    short_conv,
    split_heads,
)
from .fp64 import precision_context
from .gla import gated_output


def naive_core(q, k, v, g, scale=None, initial_state=None):
    """Scalar-gated linear attention: g [B,T,H] log decay; [B,T,H,K] in; state [B,H,K,V]."""
    with precision_context(q, k, v):
        o, state = naive_recurrent_simple_gla(q, k, v, g, scale=scale,
                                              initial_state=initial_state,
                                              output_final_state=True)
    return o, state


def reference_forward(layer, hidden_states, attention_mask=None, initial_state=None):
    """What SimpleGatedLinearAttention.forward computes (no cache), plus the final state."""
    no_padding(attention_mask)
    x = hidden_states
    if layer.use_short_conv:
        q = short_conv(layer.q_conv1d, layer.q_proj(x))
        k = short_conv(layer.k_conv1d, layer.k_proj(x))
        v = short_conv(layer.v_conv1d, layer.v_proj(x))
    else:
        q, k, v = layer.q_proj(x), layer.k_proj(x), layer.v_proj(x)
    gk = layer.gk_proj(x)
    if layer.feature_map_fn is not None:
        feature_map = plain_activation(layer.feature_map_fn)
        q, k = feature_map(q), feature_map(k)
    q = split_heads(q, layer.head_k_dim)
    k = repeat_kv_heads(k, layer.num_kv_groups, layer.head_k_dim)
    v = repeat_kv_heads(v, layer.num_kv_groups, layer.head_v_dim)
    g = F.logsigmoid(gk) / layer.gate_logit_normalizer

    dtype = compute_dtype(x)
    o, state = naive_core(q.to(dtype), k.to(dtype), v.to(dtype), g.to(dtype),
                          initial_state=initial_state)
    o = gated_output(layer, o.to(x.dtype), x, "g_norm_swish_gate")
    return layer.o_proj(o), state

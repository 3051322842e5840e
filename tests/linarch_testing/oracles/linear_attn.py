"""CPU oracle for fla.layers.LinearAttention.

From fla: the layer's projections (nn.Linear), its feature maps (HadamardFeatureMap etc. are
plain torch modules and are called directly), the norm weight, and the core recurrence
`fla.ops.linear_attn.naive.naive_recurrent_linear_attn`. Re-written in torch: RMSNorm.
"""

from __future__ import annotations

from fla.ops.linear_attn.naive import naive_recurrent_linear_attn
from torch import nn

from .common import compute_dtype, merge_heads, no_padding, repeat_kv_heads, rms_norm, split_heads
from .fp64 import precision_context


def naive_core(q, k, v, scale=None, initial_state=None, normalize=False):
    """Linear attention via fla's naive reference; [B,T,H,K] in; state [B,H,K,V]."""
    with precision_context(q, k, v):
        return naive_recurrent_linear_attn(q, k, v, scale=scale, initial_state=initial_state,
                                           output_final_state=True, normalize=normalize)


def reference_forward(layer, hidden_states, attention_mask=None, initial_state=None):
    """What LinearAttention.forward computes (no cache), plus the final state [B,H,K,V]."""
    no_padding(attention_mask)
    x = hidden_states
    q = split_heads(layer.q_proj(x), layer.head_k_dim)
    k = repeat_kv_heads(layer.k_proj(x), layer.num_kv_groups, layer.head_k_dim)
    v = repeat_kv_heads(layer.v_proj(x), layer.num_kv_groups, layer.head_v_dim)
    q, k = layer.feature_map_q(q), layer.feature_map_k(k)
    if layer.norm_q:
        q = q / (q.sum(-1, True) + 1e-4)
    if layer.norm_k:
        k = k / (k.sum(-1, True) + 1e-4)

    dtype = compute_dtype(x)
    o, state = naive_core(q.to(dtype), k.to(dtype), v.to(dtype), initial_state=initial_state,
                          normalize=layer.do_feature_map_norm)
    o = o.to(x.dtype)
    if not isinstance(layer.norm, nn.Identity):
        o = rms_norm(o, layer.norm.weight, layer.norm.bias, layer.norm.eps)
    return layer.o_proj(merge_heads(o)), state

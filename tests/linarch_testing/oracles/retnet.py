"""CPU oracle for fla.layers.MultiScaleRetention (RetNet).

From fla: the layer's projections (nn.Linear), feature_map_fn, gate_fn, norm weights, the
rotary module's inv_freq buffer, and the core recurrence
`fla.ops.simple_gla.naive.naive_recurrent_simple_gla` with the constant per-head log decay
log(1 - 2^(-5-h)) (fla's chunk/fused_recurrent_retention call simple_gla with that g_gamma; the
tests also check the core against `fla.ops.retention.naive.naive_retention`).
Re-written in torch: rotary embedding, ShortConvolution, FusedRMSNormGated / RMSNorm.
"""

from __future__ import annotations

import torch

from .common import (
    compute_dtype,
    no_padding,
    plain_activation,
    repeat_kv_heads,
    rotary,
    short_conv,
    split_heads,
)
from .gla import gated_output
from .simple_gla import naive_core as simple_gla_core


def log_gammas(num_heads: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """RetNet's fixed per-head log decay, log(1 - 2^(-5-h)), h = 0..H-1."""
    return torch.log1p(-torch.exp2(-5.0 - torch.arange(num_heads, dtype=dtype)))


def naive_core(q, k, v, scale=None, initial_state=None):
    """Retention (constant decay per head) through fla's simple-GLA naive reference."""
    batch, length, heads = q.shape[:3]
    g = log_gammas(heads, q.dtype).expand(batch, length, heads)
    return simple_gla_core(q, k, v, g, scale=scale, initial_state=initial_state)


def reference_forward(layer, hidden_states, attention_mask=None, initial_state=None):
    """What MultiScaleRetention.forward computes (no cache), plus the final state [B,H,K,V]."""
    no_padding(attention_mask)
    if layer.rotary.interleaved or layer.rotary.scale_base is not None:
        raise NotImplementedError("oracle covers the default non-interleaved rotary only")
    x = hidden_states
    if layer.use_short_conv:
        q = short_conv(layer.q_conv1d, layer.q_proj(x))
        k = short_conv(layer.k_conv1d, layer.k_proj(x))
        v = short_conv(layer.v_conv1d, layer.v_proj(x))
    else:
        q, k, v = layer.q_proj(x), layer.k_proj(x), layer.v_proj(x)
    q, k = split_heads(q, layer.head_k_dim), split_heads(k, layer.head_k_dim)
    if layer.feature_map_fn is not None:
        feature_map = plain_activation(layer.feature_map_fn)
        q, k = feature_map(q), feature_map(k)
    q, k = rotary(q, layer.rotary.inv_freq), rotary(k, layer.rotary.inv_freq)
    groups = layer.num_kv_groups
    if groups > 1:
        k = k.repeat_interleave(groups, dim=2)
    v = repeat_kv_heads(v, groups, layer.head_v_dim)

    dtype = compute_dtype(x)
    o, state = naive_core(q.to(dtype), k.to(dtype), v.to(dtype), initial_state=initial_state)
    o = gated_output(layer, o.to(x.dtype), x, "g_norm_swish_gate")
    return layer.o_proj(o), state

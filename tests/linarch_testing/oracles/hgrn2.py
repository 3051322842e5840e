"""CPU oracle for fla.layers.HGRN2Attention.

From fla: the layer's projections (q/f/i/o_proj, nn.Linear), g_norm weight, and the core
recurrence `fla.ops.gla.naive.naive_recurrent_gla` (HGRN2 calls the GLA kernels with
k = 1 - forget gate). Re-written in torch: ShortConvolution (only when use_short_conv), swish,
and `rms_norm_linear` (an RMSNorm over the whole hidden size, all heads together, then o_proj).
The model-level `lower_bound` argument of HGRN2Attention.forward is not covered.
"""

from __future__ import annotations

import torch.nn.functional as F

from .common import compute_dtype, merge_heads, no_padding, rms_norm, short_conv, split_heads
from .gla import naive_core as gla_core


def naive_core(q, k, v, g, initial_state=None):
    """HGRN2 core = GLA with gk = g (log forget gate), scale = K**-0.5; state [B,H,K,V]."""
    return gla_core(q, k, v, g, initial_state=initial_state)


def reference_forward(layer, hidden_states, attention_mask=None, initial_state=None):
    """What HGRN2Attention.forward computes (no cache, no lower_bound), plus the final state."""
    no_padding(attention_mask)
    x = hidden_states
    if layer.use_short_conv:
        q = short_conv(layer.q_conv1d, layer.q_proj(x))
        f = short_conv(layer.f_conv1d, layer.f_proj(x))
        i = short_conv(layer.i_conv1d, layer.i_proj(x))
    else:
        q, f, i = layer.q_proj(x), layer.f_proj(x), layer.i_proj(x)
    q = F.silu(q)
    g = F.logsigmoid(f)
    k = 1 - g.exp()
    q, k, g = (split_heads(t, layer.head_f_dim) for t in (q, k, g))
    i = split_heads(i, layer.head_i_dim)

    dtype = compute_dtype(x)
    o, state = naive_core(q.to(dtype), k.to(dtype), i.to(dtype), g.to(dtype),
                          initial_state=initial_state)
    o = rms_norm(merge_heads(o.to(x.dtype)), layer.g_norm.weight, layer.g_norm.bias,
                 layer.g_norm.eps)
    return layer.o_proj(o), state

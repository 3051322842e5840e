"""CPU oracle for fla.layers.GatedDeltaNet.

From fla: the layer's projections (nn.Linear), conv / norm weights, A_log, dt_bias, and the core
recurrence `fla.ops.gated_delta_rule.naive.naive_recurrent_gated_delta_rule`.
Re-written in torch: ShortConvolution, FusedRMSNormGated / RMSNorm, the in-kernel l2norm,
the in-kernel gate g = -exp(A_log) * softplus(a + dt_bias) and beta = sigmoid(b) (x2 when
allow_neg_eigval). Grouped value heads (num_v_heads > num_heads) repeat q and k per value head,
as the kernels do (value head i reads q/k head i // (HV / H)).
"""

from __future__ import annotations

import torch.nn.functional as F
from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule

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


def naive_core(q, k, v, g, beta, scale=None, initial_state=None):
    """Gated delta rule via fla's naive reference; [B,T,H,K] in, (o [B,T,H,V], state [B,H,K,V]).

    Argument order here is (q, k, v, g, beta) like chunk_gated_delta_rule; the fla reference
    itself takes (q, k, v, beta, g): the swap is done here. g is the log decay per head.
    """
    with precision_context(q, k, v):
        return naive_recurrent_gated_delta_rule(
            q, k, v, beta, g, scale=scale, initial_state=initial_state, output_final_state=True,
        )


def reference_forward(layer, hidden_states, attention_mask=None, initial_state=None):
    """What GatedDeltaNet.forward computes (no cache), plus the final state [B,H,K,V]."""
    no_padding(attention_mask)
    x = hidden_states
    if layer.use_short_conv:
        q = short_conv(layer.q_conv1d, layer.q_proj(x))
        k = short_conv(layer.k_conv1d, layer.k_proj(x))
        v = short_conv(layer.v_conv1d, layer.v_proj(x))
    else:
        q, k, v = (F.silu(proj(x)) for proj in (layer.q_proj, layer.k_proj, layer.v_proj))
    q, k = split_heads(q, layer.head_k_dim), split_heads(k, layer.head_k_dim)
    v = split_heads(v, layer.head_v_dim)

    dtype = compute_dtype(x)
    beta = layer.b_proj(x).to(dtype).sigmoid()
    if layer.allow_neg_eigval:
        beta = beta * 2.0
    g = mamba_gate(layer.a_proj(x).to(dtype), layer.A_log, layer.dt_bias)
    q, k, v = l2norm(q.to(dtype)), l2norm(k.to(dtype)), v.to(dtype)
    groups = layer.num_v_heads // layer.num_heads
    if groups > 1:
        q, k = q.repeat_interleave(groups, dim=2), k.repeat_interleave(groups, dim=2)
    o, state = naive_core(q, k, v, g, beta, initial_state=initial_state)
    o = o.to(x.dtype)

    if layer.use_gate:
        gate = split_heads(layer.g_proj(x), layer.head_v_dim)
        o = rms_norm_gated(o, gate, layer.o_norm.weight, layer.o_norm.eps,
                           layer.o_norm.activation)
    else:
        o = rms_norm(o, layer.o_norm.weight, layer.o_norm.bias, layer.o_norm.eps)
    return layer.o_proj(merge_heads(o)), state

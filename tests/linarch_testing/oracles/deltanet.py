"""CPU oracle for fla.layers.DeltaNet.

From fla: the layer's q/k/v/b/g/o projections (nn.Linear, called directly), its conv and norm
weights, and the core recurrence `fla.ops.delta_rule.naive.delta_rule_recurrence`.
Re-written in torch: ShortConvolution, RMSNorm / FusedRMSNormGated, the in-kernel l2norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fla.ops.delta_rule.naive import delta_rule_recurrence

from .common import (
    compute_dtype,
    l2norm,
    merge_heads,
    no_padding,
    rms_norm,
    rms_norm_gated,
    short_conv,
    split_heads,
)
from .fp64 import precision_context


def naive_core(q, k, v, beta, scale=None, initial_state=None):
    """Delta rule via fla's naive reference, [B,T,H,K] in and out, state [B,H,K,V].

    Handles the reference's traps: it wants [B,H,T,K] and hard-codes scale K**-0.5 (so q is
    pre-multiplied by scale * sqrt(K) when another scale is asked for). No l2norm is applied.
    """
    dim_k = q.shape[-1]
    if scale is not None:
        q = q * (scale * dim_k**0.5)
    with precision_context(q, k, v):
        o, state = delta_rule_recurrence(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), beta.transpose(1, 2),
            initial_state=initial_state, output_final_state=True,
        )
    return o.transpose(1, 2), state


def _qk_activation(name: str, x: torch.Tensor) -> torch.Tensor:
    if name in ("silu", "identity"):
        return x
    if name == "relu":
        return x.relu()
    if name == "elu":
        return F.elu(x) + 1.0
    raise NotImplementedError(name)


def reference_forward(layer, hidden_states, attention_mask=None, initial_state=None):
    """What DeltaNet.forward computes (no cache), plus the final state [B,H,K,V]."""
    no_padding(attention_mask)
    x = hidden_states
    if layer.use_short_conv:
        q = short_conv(layer.q_conv1d, layer.q_proj(x))
        k = short_conv(layer.k_conv1d, layer.k_proj(x))
        v = short_conv(layer.v_conv1d, layer.v_proj(x))
    else:
        q, k = layer.q_proj(x), layer.k_proj(x)
        if layer.qk_activation == "silu":
            q, k = F.silu(q), F.silu(k)
        v = F.silu(layer.v_proj(x))
    q, k = split_heads(q, layer.head_k_dim), split_heads(k, layer.head_k_dim)
    v = split_heads(v, layer.head_v_dim)
    q, k = _qk_activation(layer.qk_activation, q), _qk_activation(layer.qk_activation, k)
    if layer.qk_norm == "sum":
        q = F.normalize(q, p=1, dim=-1, eps=1e-6)
        k = F.normalize(k, p=1, dim=-1, eps=1e-6)
    beta = layer.b_proj(x).sigmoid() if layer.use_beta else torch.ones_like(q[..., 0])
    if layer.allow_neg_eigval:
        beta = beta * 2.0

    dtype = compute_dtype(x)
    q, k, v, beta = (t.to(dtype) for t in (q, k, v, beta))
    if layer.qk_norm == "l2":
        q, k = l2norm(q), l2norm(k)
    o, state = naive_core(q, k, v, beta, initial_state=initial_state)
    o = o.to(x.dtype)

    if layer.use_gate:
        g = split_heads(layer.g_proj(x), layer.head_v_dim)
        o = rms_norm_gated(o, g, layer.o_norm.weight, layer.o_norm.eps, layer.o_norm.activation)
    else:
        o = rms_norm(o, layer.o_norm.weight, layer.o_norm.bias, layer.o_norm.eps)
    return layer.o_proj(merge_heads(o)), state

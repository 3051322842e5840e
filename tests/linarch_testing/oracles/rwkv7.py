"""CPU oracle for fla.layers.RWKV7Attention.

From fla: r/k/v/o_proj (nn.Linear), the LoRA modules (nn.Sequential, CPU), x_* / k_k / k_a / r_k
parameters, g_norm (nn.GroupNorm when fuse_norm=False, called directly), and the core
`fla.ops.generalized_delta_rule.dplr.naive.dplr_recurrence` (DPLR with alpha = -kk,
beta = kk * a, gk = w).
Re-written in torch: token shift and fused addcmul, the k update k * (1 + (a - 1) * k_a),
gate_output_correction, l2_norm / GroupNorm when fuse_norm=True (fla's are Triton).
Traps: dplr_recurrence wants [B,H,T,K] and hard-codes scale K**-0.5 while RWKV-7 uses scale 1,
so q is pre-multiplied by sqrt(K). Layer 0 produces `v_first`; other layers need it as input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from fla.ops.generalized_delta_rule.dplr.naive import dplr_recurrence

from .common import compute_dtype, l2norm, no_padding, split_heads
from .fp64 import precision_context

LOG_DECAY_SCALE = -math.exp(-0.5)


def naive_core(r, w, k, v, a, b, scale=1.0, initial_state=None):
    """DPLR recurrence h_t = diag(exp(w)) h + b (a^T h) + k v^T, o = h^T (scale r).

    [B,T,H,K] in (w is the log decay); state [B,H,K,V]. RWKV-7 passes a = -kk, b = kk * a_gate.
    """
    dim_k = r.shape[-1]
    r = r * (scale * dim_k**0.5)
    with precision_context(r, k, v):
        o, state = dplr_recurrence(
            *(t.transpose(1, 2) for t in (r, k, v, a, b, w)),
            initial_state=initial_state, output_final_state=True,
        )
    return o.transpose(1, 2), state


def rwkv7_forward(layer, hidden_states, attention_mask=None, initial_state=None, v_first=None):
    """RWKV7Attention.forward (no cache): returns (output, final_state [B,H,K,V], v_first)."""
    no_padding(attention_mask)
    x = hidden_states
    delta = F.pad(x, (0, 0, 1, -1)) - x
    xr, xw, xk, xv, xa, xg = (x + delta * p for p in (layer.x_r, layer.x_w, layer.x_k,
                                                        layer.x_v, layer.x_a, layer.x_g))
    r = layer.r_proj(xr)
    w = LOG_DECAY_SCALE * layer.w_lora(xw).sigmoid()
    k = layer.k_proj(xk)
    v = layer.v_proj(xv)
    if layer.layer_idx == 0:
        v_first = v
    else:
        if v_first is None:
            raise ValueError("RWKV7 layers other than layer 0 need v_first")
        v = torch.lerp(v, v_first, layer.v_lora(xv).sigmoid())
    a = layer.a_lora(xa).sigmoid()
    g = layer.g_lora(xg)
    kk = split_heads(k * layer.k_k, layer.head_dim)
    kk = l2norm(kk) if layer.fuse_norm else F.normalize(kk, dim=-1, p=2.0)
    k = k + k * (a - 1) * layer.k_a

    r, w, k, a = (split_heads(t, layer.head_dim) for t in (r, w, k, a))
    v = split_heads(v, layer.head_v_dim)
    dtype = compute_dtype(x)
    o, state = naive_core(r.to(dtype), w.to(dtype), k.to(dtype), v.to(dtype),
                          (-kk).to(dtype), (kk * a).to(dtype), initial_state=initial_state)
    o = o.to(x.dtype)

    batch, length = x.shape[:2]
    if layer.fuse_norm:
        norm = layer.g_norm
        heads = o - o.mean(-1, keepdim=True)
        heads = heads * torch.rsqrt(heads.square().mean(-1, keepdim=True) + norm.eps)
        o = heads.flatten(-2) * norm.weight + norm.bias
    else:
        o = layer.g_norm(o.reshape(batch * length, -1)).view(batch, length, -1)
    correction = ((r * k * layer.r_k).sum(-1, keepdim=True) * v).view(o.shape)
    o = (o + correction) * g
    return layer.o_proj(o), state, v_first


def reference_forward(layer, hidden_states, attention_mask=None, initial_state=None,
                      v_first=None):
    """What RWKV7Attention.forward computes (no cache), plus the final state [B,H,K,V]."""
    o, state, _ = rwkv7_forward(layer, hidden_states, attention_mask, initial_state, v_first)
    return o, state

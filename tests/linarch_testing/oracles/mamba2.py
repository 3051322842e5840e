"""CPU oracle for fla.layers.Mamba2.

fla ships no naive.py for Mamba2. The SSD recurrence
    S_t = exp(dt_t A) S_{t-1} + (dt_t x_t) B_t^T,   y_t = S_t C_t + D x_t
is the simple-GLA recurrence with q = C, k = B, v = dt * x, log gate g = dt * A and scale 1, so
`naive_core` runs it through `fla.ops.simple_gla.naive.naive_recurrent_simple_gla`.
`recurrent_core` writes the same recurrence token by token in plain torch, from the math, as an
independent check (the tests compare both, and the layer's own CPU `torch_forward`).
From fla: in_proj, conv1d (nn.Conv1d), out_proj, A_log, dt_bias, D, norm weight.
Re-written in torch: the gated RMSNorm (fla.modules.layernorm_gated is Triton).
Only n_groups == 1 is covered: fla's CPU torch_forward maps head h to group h % G while the
CUDA kernels map it to h // (H/G), so for G > 1 the two fla paths disagree.
State convention here is [B, H, N, P] (K = state_size first, like every other oracle); fla's own
ssm_state is [B, H, P, N].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import compute_dtype, no_padding, plain_activation, rms_norm_gated_grouped
from .simple_gla import naive_core as simple_gla_core


def naive_core(x, dt, A, B, C, D=None, initial_state=None):
    """SSD via fla's simple-GLA naive reference.

    x [B,T,H,P], dt [B,T,H] (after softplus), A [H] (negative), B and C [B,T,H,N], D [H] or
    [H,P]; returns (y [B,T,H,P], state [B,H,N,P]).
    """
    g = dt * A.to(dt.dtype)
    y, state = simple_gla_core(C, B, x * dt[..., None], g, scale=1.0, initial_state=initial_state)
    if D is not None:
        y = y + x * (D[:, None] if D.dim() == 1 else D).to(x.dtype)
    return y, state


def recurrent_core(x, dt, A, B, C, D=None, initial_state=None):
    """The same SSD recurrence, token by token, written from the math (no fla code)."""
    batch, length, heads, head_dim = x.shape
    state = x.new_zeros(batch, heads, B.shape[-1], head_dim)
    if initial_state is not None:
        state = state + initial_state.to(x.dtype)
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A.to(x.dtype))[..., None, None]
        write = B[:, t, :, :, None] * (dt[:, t, :, None] * x[:, t])[:, :, None, :]
        state = decay * state + write
        ys.append(torch.einsum("bhn,bhnp->bhp", C[:, t], state))
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + x * (D[:, None] if D.dim() == 1 else D).to(x.dtype)
    return y, state


def _split_inputs(layer, hidden_states):
    """in_proj, conv, activation and splits as in Mamba2.torch_forward (no cache)."""
    if layer.n_groups != 1:
        raise NotImplementedError("oracle covers n_groups == 1 only (see module docstring)")
    batch, length, _ = hidden_states.shape
    projected = layer.in_proj(hidden_states)
    inter, conv_dim, heads = layer.intermediate_size, layer.conv_dim, layer.num_heads
    gate, xbc, dt = projected.split([inter, conv_dim, heads], dim=-1)
    conv = layer.conv1d(xbc.transpose(1, 2))[..., :length].transpose(1, 2)
    xbc = plain_activation(layer.act)(conv)
    x, B, C = xbc.split([inter, layer.ssm_state_size, layer.ssm_state_size], dim=-1)
    dt = F.softplus(dt + layer.dt_bias).clamp(*layer.dt_limit)
    x = x.reshape(batch, length, heads, layer.head_dim)
    B = B[:, :, None, :].expand(batch, length, heads, layer.ssm_state_size)
    C = C[:, :, None, :].expand(batch, length, heads, layer.ssm_state_size)
    D = layer.D.view(heads, layer.head_dim) if layer.D_has_hdim else layer.D
    return gate, x, dt, B, C, D


def reference_forward(layer, hidden_states, attention_mask=None, initial_state=None):
    """What Mamba2.forward computes (no cache), plus the final state [B,H,N,P]."""
    no_padding(attention_mask)
    gate, x, dt, B, C, D = _split_inputs(layer, hidden_states)
    dtype = compute_dtype(hidden_states)
    A = -torch.exp(layer.A_log.to(dtype))
    y, state = naive_core(x.to(dtype), dt.to(dtype), A, B.to(dtype), C.to(dtype), D.to(dtype),
                          initial_state=initial_state)
    y = y.reshape(*hidden_states.shape[:2], -1).to(hidden_states.dtype)
    if layer.rmsnorm:
        y = rms_norm_gated_grouped(y, gate, layer.norm.weight, layer.norm_eps,
                                   layer.intermediate_size // layer.n_groups,
                                   layer.norm_before_gate)
    else:
        y = y * plain_activation(layer.act)(gate)
    return layer.out_proj(y), state

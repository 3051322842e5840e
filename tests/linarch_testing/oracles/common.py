"""Plain-torch equivalents of the fla modules that have no CPU path.

fla's ShortConvolution, RMSNorm, FusedRMSNormGated, RMSNormGated, RotaryEmbedding and the
in-kernel l2norm / softplus all dispatch to Triton and fail on a CPU-only machine ("0 active
drivers"). Each function here recomputes one of them from the module's own weights, with the
formula read from fla 0.6.0 (kernel constants included: eps inside the sqrt for l2norm, the
softplus threshold 20, fp32 accumulation in the norms). nn.Linear, nn.Conv1d and nn.GroupNorm
run on CPU and are called directly by the oracles.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

L2NORM_EPS = 1e-6
SOFTPLUS_THRESHOLD = 20.0


def no_padding(attention_mask: torch.Tensor | None) -> None:
    """The oracles implement the unpadded path only: refuse a mask that pads anything."""
    if attention_mask is not None and not bool((attention_mask == 1).all()):
        raise NotImplementedError("oracles implement attention_mask=None (or all ones) only")


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Recurrences run in fp32 at least, fp64 when the input is fp64 (fla keeps fp32 states)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def split_heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """'... (h d) -> ... h d' as in every fla layer."""
    return x.unflatten(-1, (x.shape[-1] // head_dim, head_dim))


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(-2)


def activation(name: str | None, x: torch.Tensor) -> torch.Tensor:
    if name is None:
        return x
    if name in ("silu", "swish"):
        return F.silu(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    raise NotImplementedError(f"activation {name!r}")


_TRITON_ACTIVATIONS = {
    "silu": F.silu,
    "swish": F.silu,
    "sigmoid": torch.sigmoid,
    "logsigmoid": F.logsigmoid,
    "bias_gelu": None,
}


def plain_activation(fn):
    """A CPU equivalent of an activation stored on a layer (`gate_fn`, `act`, `feature_map_fn`).

    Entries of fla.modules.activations.ACT2FN such as swish / sigmoid / logsigmoid are Triton
    autograd functions; they are swapped for the torch functions they compute. Anything else
    (transformers' ACT2FN, F.relu, ...) already runs on CPU and is returned as is.
    """
    from fla.modules.activations import ACT2FN as FLA_ACT2FN

    for name, triton_fn in FLA_ACT2FN.items():
        if fn == triton_fn and name in _TRITON_ACTIVATIONS:
            if _TRITON_ACTIVATIONS[name] is None:
                raise NotImplementedError(f"fla activation {name!r}")
            return _TRITON_ACTIVATIONS[name]
    return fn


def short_conv(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """fla ShortConvolution on [B, T, D] without cache: depthwise causal conv then activation.

    Rewritten in torch because ShortConvolution.forward always calls the Triton kernel.
    """
    width = conv.weight.shape[-1]
    y = F.conv1d(
        F.pad(x.transpose(1, 2), (width - 1, 0)),
        conv.weight.to(x.dtype),
        None if conv.bias is None else conv.bias.to(x.dtype),
        groups=conv.weight.shape[0],
    ).transpose(1, 2)
    return activation(getattr(conv, "activation", None), y)


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
             eps: float) -> torch.Tensor:
    """fla RMSNorm (fp32 accumulation): x * rsqrt(mean(x^2) + eps) * weight + bias."""
    dtype = x.dtype
    xf = x.to(compute_dtype(x))
    y = xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.to(y.dtype)
    if bias is not None:
        y = y + bias.to(y.dtype)
    return y.to(dtype)


def rms_norm_gated(x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor | None,
                   eps: float, act: str) -> torch.Tensor:
    """fla FusedRMSNormGated: rms_norm(x) * weight * act(gate), act in {swish, silu, sigmoid}."""
    dtype = x.dtype
    y = rms_norm(x.to(compute_dtype(x)), weight, None, eps)
    return (y * activation(act, gate.to(y.dtype))).to(dtype)


def rms_norm_gated_grouped(x: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, eps: float,
                           group_size: int, norm_before_gate: bool) -> torch.Tensor:
    """fla.modules.layernorm_gated.RMSNormGated (Mamba2's `norm`), silu gate z."""
    dtype = x.dtype
    xf, zf = x.to(compute_dtype(x)), z.to(compute_dtype(x))
    if not norm_before_gate:
        xf = xf * F.silu(zf)
    groups = xf.unflatten(-1, (xf.shape[-1] // group_size, group_size))
    y = (groups * torch.rsqrt(groups.square().mean(-1, keepdim=True) + eps)).flatten(-2)
    y = y * weight.to(y.dtype)
    if norm_before_gate:
        y = y * F.silu(zf)
    return y.to(dtype)


def l2norm(x: torch.Tensor) -> torch.Tensor:
    """The kernels' `use_qk_l2norm_in_kernel`: x / sqrt(sum(x^2) + 1e-6) over the last dim."""
    return x / torch.sqrt(x.square().sum(-1, keepdim=True) + L2NORM_EPS)


def softplus(x: torch.Tensor) -> torch.Tensor:
    """The kernels' softplus: log(1 + exp(x)) below 20, x above (same as F.softplus)."""
    return F.softplus(x, beta=1.0, threshold=SOFTPLUS_THRESHOLD)


def mamba_gate(a: torch.Tensor, A_log: torch.Tensor, dt_bias: torch.Tensor) -> torch.Tensor:
    """Log decay g = -exp(A_log) * softplus(a + dt_bias) (GDN, Comba, GDP, per channel in KDA)."""
    return -A_log.to(a.dtype).exp() * softplus(a + dt_bias.to(a.dtype))


def rotary(x: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """fla RotaryEmbedding, non-interleaved (rotate_half = cat(-x2, x1)), positions 0..T-1.

    x: [B, T, H, D]. Rewritten because fla's rotary_embedding is a Triton kernel.
    """
    dtype = compute_dtype(x)
    positions = torch.arange(x.shape[1], dtype=dtype)
    freqs = torch.outer(positions, inv_freq.to(dtype))
    cos = freqs.cos().to(x.dtype).repeat(1, 2)[None, :, None, :]
    sin = freqs.sin().to(x.dtype).repeat(1, 2)[None, :, None, :]
    rot = 2 * inv_freq.shape[0]
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    x1, x2 = x_rot.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return torch.cat((x_rot * cos + rotated * sin, x_pass), dim=-1)


def repeat_kv_heads(x: torch.Tensor, groups: int, head_dim: int) -> torch.Tensor:
    """einops '... (h d) -> ... (h g) d' used by fla's GQA layers (GLA, RetNet, simple GLA)."""
    heads = split_heads(x, head_dim)
    return heads.repeat_interleave(groups, dim=-2) if groups > 1 else heads


def to_kv_first(state: torch.Tensor | None) -> torch.Tensor | None:
    """[B, H, V, K] (fla's state_v_first layout) <-> [B, H, K, V]; it is its own inverse."""
    return None if state is None else state.transpose(-1, -2)

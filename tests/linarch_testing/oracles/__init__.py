"""CPU oracles for fla 0.6.0's linear-attention layers.

Each family module (deltanet, gated_deltanet, gla, simple_gla, retnet, hgrn2, mamba2, kda, rwkv7,
comba, gated_deltaproduct, linear_attn) exposes

    reference_forward(layer, hidden_states, attention_mask=None, initial_state=None)
        -> (output [B,T,hidden], final_state [B,H,K,V])
    naive_core(...)  # the core recurrence through fla's own naive reference, [B,T,H,K] inputs

`reference_forward` computes what the fla layer's forward computes (default path, no cache,
no padding), on CPU, in fp32 or in fp64 when the layer and input are fp64. It calls the layer's
own nn.Linear / nn.Conv1d / nn.GroupNorm / LoRA / feature-map submodules, re-writes in plain torch
the pieces that are Triton-only in fla (ShortConvolution, RMSNorm, FusedRMSNormGated,
RMSNormGated, rotary, in-kernel l2norm and gates; see `common`), and runs the recurrence through
fla's `ops/*/naive.py` (Mamba2 has none: it is mapped onto simple-GLA's reference and also
written token by token). Each module's docstring lists what it takes from fla and what it
re-writes. States are [B, H, K, V] for every family, including the layers that keep theirs
V-first (GatedDeltaNet, GLA, HGRN2, KDA, simple GLA, Mamba2).

`reference_forward(layer, ...)` in this package dispatches on the layer's class name.
"""

from __future__ import annotations

from types import ModuleType

from . import (
    comba,
    deltanet,
    gated_deltanet,
    gated_deltaproduct,
    gla,
    hgrn2,
    kda,
    linear_attn,
    mamba2,
    retnet,
    rwkv7,
    simple_gla,
)

ORACLES: dict[str, ModuleType] = {
    "DeltaNet": deltanet,
    "GatedDeltaNet": gated_deltanet,
    "GatedLinearAttention": gla,
    "SimpleGatedLinearAttention": simple_gla,
    "MultiScaleRetention": retnet,
    "HGRN2Attention": hgrn2,
    "Mamba2": mamba2,
    "KimiDeltaAttention": kda,
    "RWKV7Attention": rwkv7,
    "Comba": comba,
    "GatedDeltaProduct": gated_deltaproduct,
    "LinearAttention": linear_attn,
}


def oracle_for(layer) -> ModuleType:
    """The oracle module for an fla layer instance (by class name)."""
    name = type(layer).__name__
    if name not in ORACLES:
        raise KeyError(f"no oracle for {name}; known: {sorted(ORACLES)}")
    return ORACLES[name]


def reference_forward(layer, hidden_states, attention_mask=None, initial_state=None):
    """Dispatch to the family oracle: (output, final_state [B,H,K,V])."""
    return oracle_for(layer).reference_forward(layer, hidden_states, attention_mask,
                                               initial_state)


__all__ = ["ORACLES", "oracle_for", "reference_forward"]

"""The CPU oracles equal the real fla layers, run under the Triton interpreter.

Every fla layer's own forward (fused_recurrent kernels, T <= 64, fp32, eval, no grad) runs in a
TRITON_INTERPRET=1 subprocess with random weights; `linarch_testing.oracles.reference_forward`
must give the
same output and final state from the same state_dict. Parameters that fla initialises to zero
or one (o_proj of RWKV-7, LoRA down-projections, norm weights) are randomised so that no term
can hide behind its initial value.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from linarch_testing.oracles import reference_forward
from linarch_testing.oracles.common import to_kv_first
from linarch_testing.oracles.interpret import LayerJob, run_interpreted

HIDDEN, HEADS = 32, 2

# (fla class path, extra kwargs). Several non-default options ride along in the second entries.
CASES = [
    ("fla.layers.DeltaNet", {}),
    ("fla.layers.DeltaNet", dict(use_gate=True, allow_neg_eigval=True, conv_bias=True)),
    ("fla.layers.GatedDeltaNet", dict(head_dim=16)),
    ("fla.layers.GatedDeltaNet", dict(head_dim=8, num_v_heads=4, expand_v=1,
                                      allow_neg_eigval=True, use_gate=False)),
    ("fla.layers.GatedLinearAttention", {}),
    ("fla.layers.GatedLinearAttention", dict(num_kv_heads=1, use_short_conv=True,
                                             fuse_norm=False, clamp_min=-0.05)),
    ("fla.layers.MultiScaleRetention", {}),
    ("fla.layers.HGRN2Attention", dict(expand_ratio=None)),
    ("fla.layers.Mamba2", dict(head_dim=32, state_size=16)),
    ("fla.layers.Mamba2", dict(head_dim=16, state_size=8, expand=1, D_has_hdim=True)),
    ("fla.layers.KimiDeltaAttention", dict(head_dim=16)),
    ("fla.layers.KimiDeltaAttention", dict(head_dim=16, allow_neg_eigval=True,
                                           lower_bound=-3.0)),
    ("fla.layers.RWKV7Attention", dict(head_dim=None, num_hidden_layers=2)),
    ("fla.layers.RWKV7Attention", dict(head_dim=8, num_hidden_layers=3, fuse_norm=True)),
    ("fla.layers.Comba", dict(head_dim=16)),
    ("fla.layers.GatedDeltaProduct", dict(head_dim=16)),
    ("fla.layers.GatedDeltaProduct", dict(head_dim=16, num_householder=3,
                                          allow_neg_eigval=False)),
    ("fla.layers.LinearAttention", {}),
    ("fla.layers.simple_gla.SimpleGatedLinearAttention", {}),
]

# fla layers that keep their recurrent state as [B, H, V, K] (the oracles return [B, H, K, V]).
V_FIRST = {"GatedDeltaNet", "GatedLinearAttention", "HGRN2Attention", "KimiDeltaAttention",
           "SimpleGatedLinearAttention", "Mamba2"}


def _build(path: str, kwargs: dict):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


def _randomise(layer) -> None:
    with torch.no_grad():
        for name, param in layer.named_parameters():
            if name.endswith("o_proj.weight") or "lora.0" in name:
                param.normal_(0.0, 0.2)
            elif "norm" in name:
                param.uniform_(0.5, 1.5)
            elif name in ("decay", "D", "k_a", "r_k") or name.startswith("x_"):
                param.uniform_(-1.0, 1.0)


@pytest.fixture(scope="module")
def interpreted():
    """Build every case, run all of them in one interpreter subprocess."""
    torch.manual_seed(0)
    built, jobs = [], []
    for index, (path, extra) in enumerate(CASES):
        kwargs = dict(hidden_size=HIDDEN, num_heads=HEADS, layer_idx=0, **extra)
        layer = _build(path, kwargs)
        _randomise(layer)
        x = torch.randn(2, 7 + 3 * index % 17, HIDDEN)
        built.append((layer, x))
        jobs.append(LayerJob(path, kwargs, layer.state_dict(), x))
    return built, run_interpreted(jobs)


@pytest.mark.parametrize("index", range(len(CASES)),
                         ids=[f"{p.rsplit('.', 1)[1]}-{i}" for i, (p, _) in enumerate(CASES)])
def test_oracle_matches_interpreted_fla_layer(interpreted, index):
    (layer, x), result = interpreted[0][index], interpreted[1][index]
    if isinstance(result, Exception):
        raise result
    fla_out, fla_state = result
    with torch.no_grad():
        out, state = reference_forward(layer, x)
    torch.testing.assert_close(out, fla_out, rtol=1e-5, atol=2e-5)
    if type(layer).__name__ in V_FIRST:
        fla_state = to_kv_first(fla_state)
    torch.testing.assert_close(state, fla_state, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_oracle_runs_in_fp64(interpreted, index):
    """layer.double() + fp64 input gives an fp64 result that agrees with the fp32 oracle."""
    layer, x = interpreted[0][index]
    with torch.no_grad():
        out32, state32 = reference_forward(layer, x)
        out64, state64 = reference_forward(layer.double(), x.double())
    layer.float()
    assert out64.dtype == torch.float64 and state64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out32, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(state64.float(), state32, rtol=1e-4, atol=1e-4)


def test_oracle_refuses_padding(interpreted):
    layer, x = interpreted[0][0]
    mask = torch.ones(x.shape[:2], dtype=torch.long)
    mask[0, 0] = 0
    with pytest.raises(NotImplementedError):
        reference_forward(layer, x, attention_mask=mask)

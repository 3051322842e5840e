"""Drop-in at any constructor arguments: every fla family's compiled example takes fla's keywords,
derives fla's defaults from them, and loads the fla layer's state_dict strictly, over a grid of
constructor arguments (fla layers construct on CPU; only their forward needs a GPU).

And the other side of the contract: an unknown keyword is an error, a fla keyword the program
does not implement is accepted only at the value it implements, keywords that contradict each
other or fall outside what the compiler assumed are refused, and a computed width that is not a
whole number is an error, never a silent truncation.
"""

from __future__ import annotations

import fla.layers as fla_layers
import pytest
import torch
from fla.layers.simple_gla import SimpleGatedLinearAttention

from linarch_testing.torch_cases import layer_class

GRID = {
    "deltanet": (fla_layers.DeltaNet, [
        dict(hidden_size=32, num_heads=2),
        dict(hidden_size=64, num_heads=4, expand_k=0.5, expand_v=2.0),
        dict(hidden_size=48, num_heads=3, conv_size=2, conv_bias=True),
        dict(hidden_size=32, num_heads=1, use_gate=False, qk_norm="l2", norm_eps=1e-6)]),
    "gated_deltanet": (fla_layers.GatedDeltaNet, [
        dict(hidden_size=32, num_heads=2, head_dim=16),
        dict(hidden_size=64, num_heads=4, head_dim=8, expand_v=1),
        dict(hidden_size=32, num_heads=1, head_dim=24, conv_size=3, conv_bias=True),
        dict(hidden_size=48, num_heads=3, head_dim=16, num_v_heads=3)]),
    "kda": (fla_layers.KimiDeltaAttention, [
        dict(hidden_size=32, num_heads=2, head_dim=16),
        dict(hidden_size=64, num_heads=4, head_dim=8, expand_v=2),
        dict(hidden_size=32, num_heads=2, head_dim=12, conv_bias=True)]),
    "comba": (fla_layers.Comba, [
        dict(hidden_size=32, num_heads=2, head_dim=16),
        dict(hidden_size=64, num_heads=4, head_dim=8, expand_v=1, correction_factor=0.02),
        dict(hidden_size=32, num_heads=1, head_dim=24, conv_size=2)]),
    "deltaproduct": (fla_layers.GatedDeltaProduct, [
        dict(hidden_size=32, num_heads=2, head_dim=16),
        dict(hidden_size=64, num_heads=4, head_dim=8, expand_v=1, num_householder=2),
        dict(hidden_size=32, num_heads=1, head_dim=24, conv_bias=True)]),
    "gla": (fla_layers.GatedLinearAttention, [
        dict(hidden_size=32, num_heads=2),
        dict(hidden_size=64, num_heads=4, expand_k=1.0, gate_low_rank_dim=8),
        dict(hidden_size=48, num_heads=3, expand_v=2.0, elementwise_affine=False)]),
    "simple_gla": (SimpleGatedLinearAttention, [
        dict(hidden_size=32, num_heads=2),
        dict(hidden_size=64, num_heads=4, expand_k=0.5, expand_v=2.0, conv_size=3),
        dict(hidden_size=48, num_heads=3, conv_bias=True)]),
    "retnet": (fla_layers.MultiScaleRetention, [
        dict(hidden_size=32, num_heads=2),
        dict(hidden_size=64, num_heads=4, expand_k=0.5, expand_v=1.0),
        dict(hidden_size=48, num_heads=3, elementwise_affine=False)]),
    "hgrn2": (fla_layers.HGRN2Attention, [
        dict(hidden_size=32, num_heads=2, expand_ratio=None),
        dict(hidden_size=64, expand_ratio=16),
        dict(hidden_size=64, num_heads=4, expand_ratio=None, elementwise_affine=False)]),
    "mamba2": (fla_layers.Mamba2, [
        dict(hidden_size=32, num_heads=4, head_dim=16, state_size=8),
        dict(hidden_size=32, head_dim=8, state_size=4, expand=1),
        dict(hidden_size=64, head_dim=32, state_size=16, use_conv_bias=False, use_bias=True,
             conv_kernel=3)]),
    "linear_attention": (fla_layers.LinearAttention, [
        dict(hidden_size=32, num_heads=2),
        dict(hidden_size=64, num_heads=4, expand_k=0.5, expand_v=2.0),
        dict(hidden_size=48, num_heads=3, elementwise_affine=False)]),
    "rwkv7": (fla_layers.RWKV7Attention, [
        dict(hidden_size=32, num_heads=2, head_dim=None, layer_idx=0, num_hidden_layers=2,
             fuse_norm=True),
        dict(hidden_size=64, head_dim=16, layer_idx=0, num_hidden_layers=4, fuse_norm=True),
        dict(hidden_size=128, head_dim=64, decay_low_rank_dim=16, gate_low_rank_dim=24,
             layer_idx=0, num_hidden_layers=2, fuse_norm=True, value_dim=64),
        dict(hidden_size=256, num_heads=4, head_dim=None, layer_idx=0, num_hidden_layers=2,
             fuse_norm=True)]),
}
CASES = [(name, k) for name, (_, grid) in sorted(GRID.items()) for k in range(len(grid))]


@pytest.mark.parametrize(("name", "k"), CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_loads_fla_layer_strictly_at_the_same_keywords(name: str, k: int) -> None:
    cls, grid = GRID[name]
    kwargs = grid[k]
    torch.manual_seed(0)
    ref = cls(**kwargs)
    ours = layer_class(name)(**kwargs)
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert {n: p.shape for n, p in ours.state_dict().items()} == \
        {n: p.shape for n, p in ref.state_dict().items()}


def test_every_fla_family_has_a_grid() -> None:
    from linarch_testing.torch_cases import EXAMPLES

    fla_families = set(EXAMPLES) - {"fusion_gated_fir", "content_sharp_router"}
    assert set(GRID) == fla_families
    assert all(len(grid) >= 3 for _, grid in GRID.values())


@pytest.mark.parametrize("kwargs", [dict(hidden_size=256, head_dim=32),
                                    dict(hidden_size=1024, num_heads=8, head_dim=None),
                                    dict(hidden_size=2048, head_dim=64)])
def test_derived_defaults_follow_fla(kwargs) -> None:
    """RWKV-7's head count and LoRA ranks follow hidden_size and the head size as fla derives
    them (Python's round, half to even); Mamba2's and HGRN2's head counts likewise."""
    ours = layer_class("rwkv7")(**kwargs, layer_idx=0)
    ref = fla_layers.RWKV7Attention(**kwargs, layer_idx=0, num_hidden_layers=2)
    for key in ("num_heads", "decay_low_rank_dim", "a_low_rank_dim", "gate_low_rank_dim",
                "v_low_rank_dim"):
        assert getattr(ours, key) == getattr(ref, key), key
    assert layer_class("mamba2")(hidden_size=64, head_dim=16).num_heads == \
        fla_layers.Mamba2(hidden_size=64, head_dim=16).num_heads
    assert layer_class("hgrn2")(hidden_size=64, expand_ratio=16).num_heads == \
        fla_layers.HGRN2Attention(hidden_size=64, expand_ratio=16).num_heads


@pytest.mark.parametrize(("name", "kwargs", "error", "says"), [
    ("rwkv7", dict(hidden_size=64, bogus=1), TypeError, "bogus"),
    ("deltanet", dict(hidden_size=32, num_heads=2, head_dim=16), TypeError, "head_dim"),
    ("deltanet", dict(hidden_size=32, num_heads=2, use_gate=True), ValueError,
     "implements use_gate=False only"),
    ("gated_deltanet", dict(hidden_size=32, num_heads=2, head_dim=16, num_v_heads=1), ValueError,
     "implements num_v_heads=2 only"),
    ("rwkv7", dict(hidden_size=32, head_dim=16, num_heads=4), ValueError, "contradicts"),
    ("deltanet", dict(hidden_size=32, num_heads=0), ValueError, "num_heads=0 must be > 0"),
    ("deltanet", dict(hidden_size=50, num_heads=3), ValueError, "not a positive integer"),
    ("deltanet", dict(hidden_size=32.5), TypeError, "must be an integer"),
    ("hgrn2", dict(hidden_size=64, expand_ratio=16, elementwise_affine="yes"), TypeError,
     "expected a bool"),
])
def test_keywords_are_checked(name, kwargs, error, says) -> None:
    with pytest.raises(error, match=says):
        layer_class(name)(**kwargs)


def test_rwkv7_starts_as_fla_initialises_layer_0() -> None:
    """Initialisation is behaviour: with its token-shift mixes at zero RWKV-7 learned no MAD
    in-context recall (docs/evaluation.md). The mixes start exactly as fla's; k_k, k_a, r_k as
    fla's; the decay and `a` biases as fla's ramps without its within-head zig-zag."""
    kwargs = dict(hidden_size=128, head_dim=32, layer_idx=0, num_hidden_layers=2)
    ref = dict(fla_layers.RWKV7Attention(**kwargs).named_parameters())
    ours = dict(layer_class("rwkv7")(**kwargs).named_parameters())
    for name in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "k_a", "r_k"):
        torch.testing.assert_close(ours[name], ref[name], rtol=0, atol=1e-6, msg=name)
    torch.testing.assert_close(ours["k_k"], ref["k_k"], rtol=0, atol=1e-3)
    for name, zigzag in (("w_lora.lora.2.bias", 2.5), ("a_lora.lora.2.bias", 0.3)):
        gap = (ours[name] - ref[name]).abs().max().item()
        assert gap <= zigzag + 0.1, f"{name}: {gap:.3f} beyond fla's zig-zag of {zigzag}"

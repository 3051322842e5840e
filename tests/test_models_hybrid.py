"""Zoology's hybrid stack: a BaseConv block below the mixer, as the MQAR proxy builds it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from linarch.models.base_conv import BaseConv
from linarch.models.configuration import BlockKind, LinarchConfig
from linarch.models.modeling import LinarchForCausalLM
from linarch_testing import mixers as mt

HYBRID = ["base_conv", "mixer"]


@pytest.fixture(autouse=True)
def _test_mixers():
    with mt.install():
        yield


def make(seed: int = 0, **overrides) -> LinarchForCausalLM:
    torch.manual_seed(seed)
    config = mt.tiny_config("linear_attention", block_kinds=HYBRID, use_mlp=False, **overrides)
    return LinarchForCausalLM(config).eval()


def test_the_first_block_is_a_base_conv_and_the_second_the_mixer():
    model = make()
    first, second = (block.mixer for block in model.model.layers)
    assert isinstance(first, BaseConv) and isinstance(second, mt.TestLinearAttention)
    assert first.conv.kernel_size == (3,) and first.conv.groups == 32


@torch.no_grad()
def test_base_conv_is_zoologys_gated_short_convolution():
    """y = conv(u) * proj(u) + u, the conv causal and depthwise (Zoology's BaseConv)."""
    torch.manual_seed(1)
    layer = BaseConv(8, kernel_size=3)
    u = torch.randn(2, 11, 8)
    padded = F.pad(u.transpose(1, 2), (2, 0))
    conv = F.conv1d(padded, layer.conv.weight, layer.conv.bias, groups=8).transpose(1, 2)
    expected = conv * layer.projection(u) + u
    out, _, _ = layer(u)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_hybrid_is_causal_and_decodes_token_by_token():
    model = make()
    x = torch.randint(0, 64, (2, 40), generator=torch.Generator().manual_seed(2))
    full = model(x).logits
    y = x.clone()
    y[:, 25:] = (y[:, 25:] + 3) % 64
    torch.testing.assert_close(model(y).logits[:, :25], full[:, :25], rtol=0, atol=0)
    out = model(x[:, :17], use_cache=True)
    steps, cache = [out.logits], out.cache
    for t in range(17, 40):
        out = model(x[:, t: t + 1], cache=cache, use_cache=True)
        steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-4, atol=1e-5)


def test_hybrid_round_trips_through_save_pretrained(tmp_path):
    model = make(seed=3)
    model.save_pretrained(tmp_path)
    loaded = LinarchForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.block_kinds == HYBRID
    x = torch.randint(0, 64, (1, 12))
    torch.testing.assert_close(loaded(x).logits, model(x).logits, rtol=0, atol=0)


def test_block_kinds_are_checked():
    with pytest.raises(ValueError, match="base_conv"):
        LinarchConfig(num_hidden_layers=2, block_kinds=["mixer", "conv"])
    with pytest.raises(ValueError, match="names 1 blocks"):
        LinarchConfig(num_hidden_layers=2, block_kinds=["mixer"])
    assert [k.value for k in BlockKind] == ["mixer", "base_conv"]

"""Zoology's BaseConv: the short-convolution layer under every mixer in the MQAR proxy.

    y = conv(u) * proj(u) + u        (depthwise causal conv of width 3, linear projection)

Zoology's "original MQAR" models are hybrids: layer 0 is this gated short convolution, layer 1
the mixer being studied (zoology/mixers/base_conv.py, zoology/mixers/hybrid.py). Without it a
mixer that has no short convolution of its own cannot bind a key to the value right after it,
and MQAR measures that missing convolution instead of the mixer's memory. The layer follows the
mixer contract (`forward(hidden_states, attention_mask, past_key_values, use_cache)`), so the
model stacks it like any mixer and decodes through the same cache (its state is the last
`kernel_size - 1` inputs).
"""

from __future__ import annotations

import torch
from torch import nn


class BaseConv(nn.Module):
    """conv(u) * proj(u) + u with a causal depthwise conv (bias on both, as in Zoology).

    Initialised as Zoology does: the model's N(0, 0.02) draw for the projection (so the layer
    starts near the identity), PyTorch's default for the conv.
    """

    def __init__(self, hidden_size: int, num_heads: int | None = None,
                 layer_idx: int | None = None, kernel_size: int = 3, **_: object) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"BaseConv kernel_size must be >= 1, got {kernel_size}")
        self.layer_idx = layer_idx
        self.kernel_size = kernel_size
        self.projection = nn.Linear(hidden_size, hidden_size)
        self.conv = nn.Conv1d(hidden_size, hidden_size, kernel_size, groups=hidden_size)
        self.aux_loss = None

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                past_key_values=None, use_cache: bool = False, **kwargs):
        u = hidden_states
        t = u.shape[1]
        if attention_mask is not None:
            u = u * attention_mask[:, -t:, None].to(u.dtype)
        prev = None
        if past_key_values is not None and self.layer_idx is not None:
            prev = past_key_values.get_layer_state(self.layer_idx)
        width = self.kernel_size - 1
        window = prev["window"] if prev is not None else u.new_zeros(u.shape[0], width, u.shape[2])
        full = torch.cat([window.to(u.dtype), u], dim=1)
        weight = self.conv.weight[:, 0, :]  # [C, W]; shifted multiply-adds beat conv1d on a CPU
        conv = self.conv.bias + sum(full[:, i: i + t] * weight[:, i] for i in range(width + 1))
        out = conv * self.projection(u) + u
        if use_cache and past_key_values is not None and self.layer_idx is not None:
            past_key_values.set_layer_state(
                self.layer_idx, {"window": full[:, full.shape[1] - width:]}, t)
        return out, None, past_key_values

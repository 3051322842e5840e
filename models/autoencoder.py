"""The autoencoder backbone that MAD's compression task needs.

MAD (Poli et al. 2024) tests compression by squeezing a whole sequence into the last position's
hidden state and decoding every token back from it: the encoder is the mixer stack, the decoder an
MLP that sees the code plus a fixed sin-cos embedding of the position to reconstruct.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import RMSNorm
from .configuration import LinarchConfig
from .modeling import LinarchModel


def sincos_positions(length: int, dim: int) -> torch.Tensor:
    """Fixed [length, dim] embedding: sin on the first half of the channels, cos on the second."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half, 1))
    angles = torch.arange(length, dtype=torch.float32)[:, None] * freqs[None, :]
    table = torch.zeros(length, dim)
    table[:, :half] = angles.sin()
    table[:, half: 2 * half] = angles.cos()
    return table


class MixerAutoEncoder(nn.Module):
    """Encoder: a LinarchModel; code: the last hidden state; decoder: an MLP per position."""

    def __init__(self, config: LinarchConfig, layer_cls: type[nn.Module] | None = None) -> None:
        super().__init__()
        d = config.hidden_size
        self.config = config
        self.encoder = LinarchModel(config, layer_cls=layer_cls)
        self.decoder = nn.Sequential(
            RMSNorm(d, config.norm_eps), nn.Linear(d, d), nn.GELU(),
            RMSNorm(d, config.norm_eps), nn.Linear(d, d), nn.GELU(),
        )
        self.head_norm = RMSNorm(d, config.norm_eps)
        self.head = nn.Linear(d, config.vocab_size)
        for module in (*self.decoder, self.head):
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=config.initializer_range)
                nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B, T, V] reconstructing every input token, summed mixer aux loss)."""
        out = self.encoder(input_ids=input_ids)
        code = out.last_hidden_state[:, -1]
        length = input_ids.shape[1]
        pos = sincos_positions(length, code.shape[-1]).to(code.device, code.dtype)
        hidden = self.decoder(code[:, None, :] + pos[None])
        return self.head(self.head_norm(hidden)), out.aux_loss

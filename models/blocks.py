"""The parts around a sequence mixer: RMSNorm, SwiGLU and the pre-norm residual block."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in fp32 so that bf16 activations keep their scale."""

    def __init__(self, hidden_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32 * self.weight.float()).to(dtype)


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), the MLP of Llama-style blocks."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MixerBlock(nn.Module):
    """x + mixer(norm(x)), then x + mlp(norm(x)) when the block has an MLP.

    The mixer follows fla's layer contract: `forward(hidden_states, attention_mask,
    past_key_values, use_cache) -> (output, None, past_key_values)`, with its auxiliary loss left
    in `mixer.aux_loss` after each call (absent or None counts as zero).
    """

    def __init__(
        self,
        mixer: nn.Module,
        hidden_size: int,
        intermediate_size: int | None,
        norm_eps: float,
    ) -> None:
        super().__init__()
        self.mixer_norm = RMSNorm(hidden_size, norm_eps)
        self.mixer = mixer
        self.use_mlp = intermediate_size is not None
        if self.use_mlp:
            self.mlp_norm = RMSNorm(hidden_size, norm_eps)
            self.mlp = SwiGLU(hidden_size, intermediate_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache,
        use_cache: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        mixed, _, _ = self.mixer(
            hidden_states=self.mixer_norm(hidden_states),
            attention_mask=attention_mask,
            past_key_values=cache,
            use_cache=use_cache,
        )
        hidden_states = hidden_states + mixed
        if self.use_mlp:
            hidden_states = hidden_states + self.mlp(self.mlp_norm(hidden_states))
        return hidden_states, getattr(self.mixer, "aux_loss", None)

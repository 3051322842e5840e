"""Two hand-written mixers that follow the compiled-layer contract, for the model and eval tests.

Until `linarch.compile` produces layers, these stand in for them: a causal linear attention
(chunked for training, recurrent state + conv windows for decoding) and a softmax causal
attention with rotary positions and a KV cache. Both take
`(hidden_size, num_heads, layer_idx=None, **hyper-parameters)`, return `(o, None, cache)` and
leave `aux_loss` after each call.

`install()` points linarch at them: the model resolver maps the pseudo-source
"test-mixer <name>" to the class, and the evaluation loader maps such a source (or a .lin file
holding it) to a MixerSpec.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from linarch.evaluation.mixers import MixerSpec, use_mixer_loader
from linarch.models.resolver import use_layer_resolver


def _causal_conv(x: torch.Tensor, conv: nn.Conv1d, window: torch.Tensor | None):
    """Depthwise causal conv over [B, T, C] with a carried window of the last W-1 inputs.

    Written as W shifted multiply-adds, which is faster on a CPU than a grouped conv1d.
    """
    width = conv.kernel_size[0]
    if window is None:
        window = x.new_zeros(x.shape[0], width - 1, x.shape[2])
    full = torch.cat([window.to(x.dtype), x], dim=1)
    weight = conv.weight[:, 0, :]  # [C, W]
    t = x.shape[1]
    out = sum(full[:, i: i + t] * weight[:, i] for i in range(width))
    return out, full[:, full.shape[1] - (width - 1):]


class TestLinearAttention(nn.Module):
    """o_t = q_t^T S_t, S_t = S_{t-1} + k_t v_t^T, with unit q, k after a short SiLU conv."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        layer_idx: int | None = None,
        conv_size: int = 4,
        chunk_size: int = 64,
        expand_v: float = 1.0,
        aux_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = num_heads
        self.head_k = hidden_size // num_heads
        self.head_v = int(hidden_size * expand_v) // num_heads
        self.chunk_size = chunk_size
        self.aux_weight = aux_weight
        dk, dv = num_heads * self.head_k, num_heads * self.head_v
        self.q_proj = nn.Linear(hidden_size, dk, bias=False)
        self.k_proj = nn.Linear(hidden_size, dk, bias=False)
        self.v_proj = nn.Linear(hidden_size, dv, bias=False)
        self.q_conv1d = nn.Conv1d(dk, dk, conv_size, groups=dk, bias=False)
        self.k_conv1d = nn.Conv1d(dk, dk, conv_size, groups=dk, bias=False)
        self.v_conv1d = nn.Conv1d(dv, dv, conv_size, groups=dv, bias=False)
        self.o_norm_weight = nn.Parameter(torch.ones(self.head_v))
        self.o_proj = nn.Linear(dv, hidden_size, bias=False)
        self.aux_loss = torch.zeros(())

    def forward(self, hidden_states, attention_mask=None, past_key_values=None, use_cache=False,
                **kwargs):
        b, t, _ = hidden_states.shape
        h, dk, dv = self.num_heads, self.head_k, self.head_v
        prev = None
        if past_key_values is not None and self.layer_idx is not None:
            prev = past_key_values.get_layer_state(self.layer_idx)
        x = hidden_states
        if attention_mask is not None:
            x = x * attention_mask[:, -t:, None].to(x.dtype)
        q, wq = _causal_conv(self.q_proj(x), self.q_conv1d, prev and prev["conv_q"])
        k, wk = _causal_conv(self.k_proj(x), self.k_conv1d, prev and prev["conv_k"])
        v, wv = _causal_conv(self.v_proj(x), self.v_conv1d, prev and prev["conv_v"])
        q = F.normalize(F.silu(q).view(b, t, h, dk), dim=-1).transpose(1, 2)
        k = F.normalize(F.silu(k).view(b, t, h, dk), dim=-1).transpose(1, 2)
        v = F.silu(v).view(b, t, h, dv).transpose(1, 2)
        if attention_mask is not None:
            keep = attention_mask[:, None, -t:, None].to(k.dtype)
            k, v = k * keep, v * keep
        state = prev["S"] if prev is not None else q.new_zeros(b, h, dk, dv, dtype=torch.float32)
        o, state = self._chunked(q.float(), k.float(), v.float(), state)
        o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + 1e-5) * self.o_norm_weight
        o = self.o_proj(o.transpose(1, 2).reshape(b, t, h * dv).to(hidden_states.dtype))
        self.aux_loss = self.aux_weight * o.float().pow(2).mean()
        if use_cache and past_key_values is not None and self.layer_idx is not None:
            past_key_values.set_layer_state(
                self.layer_idx, {"S": state, "conv_q": wq, "conv_k": wk, "conv_v": wv}, t
            )
        return o, None, past_key_values

    def _chunked(self, q, k, v, state):
        outputs = []
        for start in range(0, q.shape[2], self.chunk_size):
            qc, kc, vc = (z[:, :, start:start + self.chunk_size] for z in (q, k, v))
            scores = torch.tril(qc @ kc.transpose(-1, -2))
            outputs.append(qc @ state + scores @ vc)
            state = state + kc.transpose(-1, -2) @ vc
        return torch.cat(outputs, dim=2), state


class TestSoftmaxAttention(nn.Module):
    """Causal multi-head softmax attention with rotary positions and a KV cache."""

    def __init__(self, hidden_size: int, num_heads: int, layer_idx: int | None = None,
                 rope_theta: float = 10000.0) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        half = self.head_dim // 2
        inv_freq = 1.0 / rope_theta ** (torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.aux_loss = torch.zeros(())

    def _rotate(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        angles = pos[:, None, :, None].float() * self.inv_freq
        cos, sin = angles.cos(), angles.sin()
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)

    def forward(self, hidden_states, attention_mask=None, past_key_values=None, use_cache=False,
                **kwargs):
        b, t, d = hidden_states.shape
        h, hd = self.num_heads, self.head_dim
        prev = None
        if past_key_values is not None and self.layer_idx is not None:
            prev = past_key_values.get_layer_state(self.layer_idx)
        mask = hidden_states.new_ones(b, t, dtype=torch.long)
        if attention_mask is not None:
            mask = attention_mask[:, -t:].long()
        start = prev["next_pos"] if prev is not None else mask.new_zeros(b)
        pos = start[:, None] + mask.cumsum(1) - 1
        q, k, v = (p(hidden_states).view(b, t, h, hd).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        q, k = self._rotate(q, pos), self._rotate(k, pos)
        key_mask = mask
        if prev is not None:
            k = torch.cat([prev["k"], k], dim=2)
            v = torch.cat([prev["v"], v], dim=2)
            key_mask = torch.cat([prev["key_mask"], mask], dim=1)
        past = k.shape[2] - t
        qi = torch.arange(t, device=k.device)[:, None] + past
        kj = torch.arange(k.shape[2], device=k.device)[None, :]
        allowed = (kj <= qi)[None, None] & key_mask[:, None, None, :].bool()
        allowed = allowed | (kj == qi)[None, None]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        o = self.o_proj(o.transpose(1, 2).reshape(b, t, d))
        self.aux_loss = o.new_zeros((), dtype=torch.float32)
        if use_cache and past_key_values is not None and self.layer_idx is not None:
            state = {"k": k, "v": v, "key_mask": key_mask, "next_pos": pos[:, -1] + 1}
            past_key_values.set_layer_state(self.layer_idx, state, t)
        return o, None, past_key_values


MIXERS: dict[str, type[nn.Module]] = {
    "linear_attention": TestLinearAttention,
    "softmax_attention": TestSoftmaxAttention,
}


def source_of(name: str) -> str:
    """The pseudo-DSL text that stands for test mixer `name`."""
    return f"test-mixer {name}\n"


def resolve(source: str) -> type[nn.Module]:
    """Model resolver: pseudo-source -> layer class."""
    parts = source.split()
    if len(parts) != 2 or parts[0] != "test-mixer" or parts[1] not in MIXERS:
        raise ValueError(f"not a test mixer source: {source!r}")
    return MIXERS[parts[1]]


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _flops_per_token(name: str, hidden_size: int = 64, num_heads: int = 4) -> int:
    d = hidden_size
    if name == "linear_attention":
        dk = d // num_heads
        return 2 * 4 * d * d + 2 * 3 * 4 * d + num_heads * 4 * dk * dk
    return 2 * 4 * d * d


def spec(name: str) -> MixerSpec:
    """The MixerSpec the compiler's analysis would give for test mixer `name` (defaults)."""
    layer_cls = MIXERS[name]
    source = source_of(name)
    dk = 64 // 4
    state = 4 * 4 * dk * dk if name == "linear_attention" else 0
    return MixerSpec(
        name=name,
        source=source,
        layer_cls=layer_cls,
        flops_per_token=_flops_per_token(name),
        state_bytes=state,
        structural_hash=_hash(source),
        code_hash=_hash(inspect.getsource(layer_cls)),
    )


def load(path_or_source: str | Path) -> MixerSpec:
    """Evaluation loader: a test source, or a .lin file holding one -> MixerSpec."""
    text = str(path_or_source)
    path = Path(text)
    if "\n" not in text and path.suffix == ".lin" and path.exists():
        text = path.read_text()
    resolve(text)
    return spec(text.split()[1])


@contextmanager
def install() -> Iterator[None]:
    """Point the model resolver and the evaluation loader at the test mixers."""
    with use_layer_resolver(resolve), use_mixer_loader(load):
        yield


def tiny_config(name: str = "linear_attention", **overrides):
    """A small LinarchConfig around test mixer `name`."""
    from linarch.models.configuration import LinarchConfig

    base = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_heads=2,
                mixer_source=source_of(name), mixer_name=name)
    base.update(overrides)
    return LinarchConfig(**base)

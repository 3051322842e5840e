"""Shared cases for the PyTorch backend tests: every example at a tiny size, and helpers.

`EXAMPLES` maps each file in examples/ to constructor keywords that make it small (hidden 32,
two heads unless the family needs more) while keeping every head dimension different from the
others where the family allows it, so that a transposed state cannot pass by accident.
"""

from __future__ import annotations

from pathlib import Path

import torch

import linarch
from linarch.models.cache import LinarchCache

EXAMPLES_DIR = Path(linarch.__file__).resolve().parent.parent / "examples"
HIDDEN = 32

# example name -> keywords besides hidden_size (num_heads included)
EXAMPLES: dict[str, dict] = {
    "comba": dict(num_heads=2, head_dim=16),
    "content_sharp_router": dict(num_heads=2, fir_long_kernel=7),
    "deltanet": dict(num_heads=2),
    "deltaproduct": dict(num_heads=2, head_dim=16),
    "fusion_gated_fir": dict(num_heads=2, fir_long_kernel=7),
    "gated_deltanet": dict(num_heads=2, head_dim=16),
    "gla": dict(num_heads=2),
    "hgrn2": dict(num_heads=2),
    "kda": dict(num_heads=2, head_dim=16),
    "linear_attention": dict(num_heads=2),
    "mamba2": dict(num_heads=4, state_size=8),
    "retnet": dict(num_heads=2),
    "rwkv7": dict(num_heads=2, decay_low_rank_dim=8, a_low_rank_dim=8, gate_low_rank_dim=8),
    "simple_gla": dict(num_heads=2),
}

# keywords that set a head dimension of 60 (hidden 120, two heads) for the ragged-shape test
HEAD_DIM_60: dict[str, dict] = {
    name: ({**kw, "head_dim": 60} if "head_dim" in kw
           else {**kw, "num_heads": 4, "state_size": 12} if name == "mamba2"
           else kw)
    for name, kw in EXAMPLES.items()
}


def example_path(name: str) -> Path:
    return EXAMPLES_DIR / f"{name}.lin"


def layer_class(name: str, chunk_size: int = 64) -> type:
    return linarch.compile(example_path(name), chunk_size=chunk_size)


def randomise(layer: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    """Move every parameter off its initial value (zeros, ones, identity convolutions would
    otherwise hide whole terms), keeping matrices at their usual 1/sqrt(fan_in) size."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(layer.named_parameters()):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
            if p.dim() >= 2:
                fan_in = max(1, p[0].numel())
                p.add_(noise * (scale * 2 / fan_in ** 0.5))
            else:
                p.add_(noise * scale)
    return layer


def build(name: str, hidden: int = HIDDEN, dtype=torch.float64, seed: int = 0,
          chunk_size: int = 64, kwargs: dict | None = None, **extra) -> torch.nn.Module:
    """The example's layer, randomised, at `dtype`, with layer_idx 0 (so it uses a cache)."""
    kw = dict(EXAMPLES[name] if kwargs is None else kwargs)
    torch.manual_seed(seed)
    layer = layer_class(name, chunk_size)(hidden_size=hidden, layer_idx=0, **kw, **extra)
    return randomise(layer, seed).to(dtype)


def inputs(batch: int, length: int, hidden: int = HIDDEN, dtype=torch.float64, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, hidden, generator=gen, dtype=torch.float64).to(dtype)


def run(layer, x, mode: str = "chunk", cache=None, **kwargs) -> torch.Tensor:
    layer.mode = mode
    out, _, _ = layer(x, past_key_values=cache, use_cache=cache is not None, **kwargs)
    return out


def new_cache() -> LinarchCache:
    return LinarchCache(num_layers=1)


def copy_cache(cache: LinarchCache) -> LinarchCache:
    """An independent cache holding clones of `cache`'s layer-0 state."""
    out = new_cache()
    state = cache.get_layer_state(0)
    out.set_layer_state(0, {k: v.clone() for k, v in state.items()}, cache.get_seq_length(0))
    return out


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (normwise relative error; 0 when both vanish)."""
    scale = b.abs().max().item()
    diff = (a - b).abs().max().item()
    return diff / scale if scale > 0 else diff


def grads(layer, x, out, weight) -> dict[str, torch.Tensor]:
    """Gradients of sum(out * weight) with respect to the input and every parameter."""
    names = [n for n, p in layer.named_parameters() if p.requires_grad]
    params = [p for _, p in layer.named_parameters() if p.requires_grad]
    got = torch.autograd.grad((out * weight).sum(), [x, *params], allow_unused=True)
    result = {"input": got[0]}
    for name, p, g in zip(names, params, got[1:]):
        result[name] = torch.zeros_like(p) if g is None else g
    return result


def check_chunk_equals_recurrent(layer, x, tol, cache=None):
    """Outputs, final states and all gradients of the two forms agree to `tol` (relative)."""
    weight = inputs(*x.shape[:2], hidden=x.shape[-1], dtype=x.dtype, seed=7)
    results = {}
    for mode in ("chunk", "recurrent"):
        c = copy_cache(cache) if cache is not None else new_cache()
        xm = x.clone().requires_grad_()
        out = run(layer, xm, mode, cache=c)
        results[mode] = (out.detach(), c.get_layer_state(0), grads(layer, xm, out, weight))
    (out_c, state_c, grad_c), (out_r, state_r, grad_r) = results["chunk"], results["recurrent"]
    assert out_c.dtype == x.dtype
    assert rel_err(out_c, out_r) < tol
    assert state_c.keys() == state_r.keys()
    for key in state_c:
        assert rel_err(state_c[key].double(), state_r[key].double()) < tol, key
    for key in grad_r:
        assert rel_err(grad_c[key], grad_r[key]) < tol, key

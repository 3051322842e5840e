"""Parity of the PyTorch backend with fla 0.6.0, forward and backward, in fp64.

Two levels, for every family of LANDSCAPE section 2 that has an example (all but MesaNet and
log-linear attention, which have no .lin program yet):

1. Cores. ``chunk_dplr``, the one generic chunk algorithm every generated layer calls, is fed
   each family's transition written in its DPLR form S_t = S_{t-1}(Diag(exp g) + a c^T) + v k^T
   and compared with fla's own naive reference for that family (``fla/ops/*/naive.py``, plain
   PyTorch, run in fp64 through ``linarch_testing.oracles.fp64``): outputs, final states, and the
   gradients of
   every core input.
2. Layers. fla's layers need Triton and cannot run on this CPU, so the reference layer is
   assembled from fla's naive ops and fla's own module weights: ``tests/linarch_testing/oracles``
   ``reference_forward(fla_layer, x)`` calls the fla layer's nn.Linear / nn.Conv1d / LoRA /
   GroupNorm submodules and parameters, rewrites the Triton-only pieces (short conv, RMSNorm,
   gated norms, in-kernel l2norm) in torch, and runs the recurrence through fla's naive.py
   (``tests/test_oracles_layers.py`` checks those oracles against the real fla layers run under
   TRITON_INTERPRET=1). The compiled example layer loads the fla layer's state_dict with
   strict=True; its output, final state, and the gradients of the input and of every parameter
   must match.
"""

from __future__ import annotations

import fla.layers as fla_layers
import pytest
import torch
import torch.nn.functional as F
from fla.layers.simple_gla import SimpleGatedLinearAttention
from fla.ops.retention.naive import naive_retention

from linarch.codegen.runtime import chunk_dplr, interleave
from linarch_testing.oracles import (
    comba,
    deltanet,
    gated_deltanet,
    gated_deltaproduct,
    gla,
    hgrn2,
    kda,
    linear_attn,
    mamba2,
    reference_forward,
    rwkv7,
    simple_gla,
)
from linarch_testing.oracles.fp64 import precision_context
from linarch_testing.torch_cases import layer_class, randomise, rel_err

TOL = 1e-10
B, T, H, K, V = 2, 45, 2, 12, 10  # T spans three chunks of 16, the last one padded
CHUNK = 16


def _rand(*shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def _leaves(**tensors):
    return {n: t.detach().clone().requires_grad_() for n, t in tensors.items()}


def _core_inputs(seed=0):
    """Generic random core inputs: unit-norm keys, rates in (0, 1), log decays in (-1, 0)."""
    return dict(
        q=_rand(B, T, H, K, seed=seed),
        k=F.normalize(_rand(B, T, H, K, seed=seed + 1), dim=-1),
        v=_rand(B, T, H, V, seed=seed + 2),
        beta=torch.sigmoid(_rand(B, T, H, seed=seed + 3)),
        g=F.logsigmoid(_rand(B, T, H, seed=seed + 4)),
        gk=F.logsigmoid(_rand(B, T, H, K, seed=seed + 5)) / 4,
        h0=_rand(B, H, K, V, seed=seed + 6) * 0.5,  # fla's state layout [B, H, K, V]
    )


def _ours(q, k, v, g=None, a=None, c=None, h0=None):
    """chunk_dplr with fla's state layout: h = S^T in and out."""
    o, s = chunk_dplr(q, k, v, g=g, a=a, c=c,
                      initial_state=None if h0 is None else h0.transpose(-1, -2),
                      chunk_size=CHUNK)
    return o, s.transpose(-1, -2)


# family -> (names of the leaves it uses, fla naive reference, ours in DPLR form)
def _linear_attention(q, k, v, h0):
    ref = linear_attn.naive_core(q, k, v, scale=K**-0.5, initial_state=h0)
    return ref, _ours(q * K**-0.5, k, v, h0=h0)


def _retnet(q, k, v):
    with precision_context(q):
        o = naive_retention(*(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2)
    g = torch.log1p(-torch.exp2(-5.0 - torch.arange(H, dtype=q.dtype))).expand(B, T, H)
    ours, _ = _ours(q * K**-0.5, k, v, g=g)
    return (o, None), (ours, None)


def _simple_gla(q, k, v, g, h0):
    return simple_gla.naive_core(q, k, v, g, initial_state=h0), _ours(q * K**-0.5, k, v, g, h0=h0)


def _gla(q, k, v, gk, h0):
    return gla.naive_core(q, k, v, gk, initial_state=h0), _ours(q * K**-0.5, k, v, gk, h0=h0)


def _hgrn2(q, gk, v, h0):
    k = 1 - gk.exp()  # the input gate is tied to the forget gate
    return hgrn2.naive_core(q, k, v, gk, initial_state=h0), _ours(q * K**-0.5, k, v, gk, h0=h0)


def _mamba2(q, k, v, beta, h0):
    # x = v, dt = beta (positive), A < 0 per head, B = k, C = q, D per head
    A, D = -torch.linspace(0.5, 2.0, H, dtype=q.dtype), torch.linspace(-1, 1, H, dtype=q.dtype)
    ref = mamba2.naive_core(v, beta, A, k, q, D, initial_state=h0)
    o, s = _ours(q, k, v * beta[..., None], g=beta * A, h0=h0)
    return ref, (o + v * D[:, None], s)


def _deltanet(q, k, v, beta, h0):
    ref = deltanet.naive_core(q, k, v, beta, initial_state=h0)
    bk = beta[..., None]
    return ref, _ours(q * K**-0.5, k, v * bk, a=-bk * k, c=k, h0=h0)


def _gated_deltanet(q, k, v, g, beta, h0):
    ref = gated_deltanet.naive_core(q, k, v, g, beta, initial_state=h0)
    bk = beta[..., None]
    return ref, _ours(q * K**-0.5, k, v * bk, g, a=-bk * g.exp()[..., None] * k, c=k, h0=h0)


def _kda(q, k, v, gk, beta, h0):
    ref = kda.naive_core(q, k, v, gk, beta, initial_state=h0)
    bk = beta[..., None]
    return ref, _ours(q * K**-0.5, k, v * bk, gk, a=-bk * gk.exp() * k, c=k, h0=h0)


def _comba(q, k, v, g, beta, h0):
    p = F.normalize(k + 0.5 * q, dim=-1)  # Comba's second key
    ref = comba.naive_core(q, k, v, p, g, beta, initial_state=h0, chunk_size=CHUNK)
    bk = beta[..., None]
    return ref, _ours(q * K**-0.5, k, v * bk, g, a=-bk * p, c=k, h0=h0)


def _rwkv7(q, k, v, gk, beta, h0):
    # RWKV-7: a = -kk, b = kk * rate, w = per-channel log decay; kk is a second unit key
    kk = F.normalize(q.roll(1, dims=-1) + k, dim=-1)
    rate = beta[..., None].expand_as(kk)
    ref = rwkv7.naive_core(q, gk, k, v, -kk, kk * rate, initial_state=h0)
    return ref, _ours(q, k, v, gk, a=-kk, c=kk * rate, h0=h0)


def _deltaproduct(q, k, v, g, beta, h0):
    # two Householder micro-steps per token from rolled copies of k, v, beta
    k2, v2, b2 = F.normalize(k.roll(1, dims=-1) - k, dim=-1), v.flip(-1), 2 * beta.flip(-1)
    ks, vs, bs = interleave([k, k2]), interleave([v, v2]), interleave([2 * beta, b2])
    ref = gated_deltaproduct.naive_core(q, ks, vs, g, bs, 2, initial_state=h0)
    gi = interleave([g, torch.zeros_like(g)])
    decay = interleave([g.exp(), torch.ones_like(g)])[..., None]
    qi = interleave([torch.zeros_like(q), q * K**-0.5])
    o, s = _ours(qi, ks, vs * bs[..., None], gi, a=-bs[..., None] * decay * ks, c=ks, h0=h0)
    return ref, (o[:, 1::2], s)


CORES = {
    "linear_attention": _linear_attention,
    "retnet": _retnet,
    "simple_gla": _simple_gla,
    "gla": _gla,
    "mamba2": _mamba2,
    "hgrn2": _hgrn2,
    "deltanet": _deltanet,
    "gated_deltanet": _gated_deltanet,
    "kda": _kda,
    "rwkv7": _rwkv7,
    "deltaproduct": _deltaproduct,
    "comba": _comba,
}


@pytest.mark.parametrize("family", sorted(CORES))
def test_core_matches_fla_naive_reference(family):
    fn = CORES[family]
    names = fn.__code__.co_varnames[:fn.__code__.co_argcount]
    inputs = _core_inputs()
    leaves = _leaves(**{n: inputs[n] for n in names})
    (o_ref, s_ref), (o_ours, s_ours) = fn(**leaves)
    assert o_ours.dtype == torch.float64
    assert rel_err(o_ours, o_ref) < TOL
    if s_ref is not None:
        assert s_ours.shape == s_ref.shape
        assert rel_err(s_ours, s_ref) < TOL
    w_o = _rand(*o_ref.shape, seed=11)
    w_s = None if s_ref is None else _rand(*s_ref.shape, seed=12)

    def loss(o, s):
        return (o * w_o).sum() + (0.0 if s_ref is None else (s * w_s).sum())

    g_ref = torch.autograd.grad(loss(o_ref, s_ref), list(leaves.values()), retain_graph=True)
    g_ours = torch.autograd.grad(loss(o_ours, s_ours), list(leaves.values()))
    for name, a, b in zip(leaves, g_ours, g_ref):
        assert rel_err(a, b) < TOL, f"gradient of {name}"


# --------------------------------------------------------------------------------------- layers
# (example, fla layer class, fla constructor keywords, keywords fla takes that ours does not)
LAYERS = [
    ("deltanet", fla_layers.DeltaNet, dict(num_heads=2), ()),
    ("gated_deltanet", fla_layers.GatedDeltaNet, dict(num_heads=2, head_dim=16), ()),
    ("gla", fla_layers.GatedLinearAttention, dict(num_heads=2), ()),
    ("simple_gla", SimpleGatedLinearAttention, dict(num_heads=2), ()),
    ("retnet", fla_layers.MultiScaleRetention, dict(num_heads=2), ()),
    ("hgrn2", fla_layers.HGRN2Attention, dict(num_heads=2, expand_ratio=None), ()),
    ("mamba2", fla_layers.Mamba2, dict(num_heads=4, head_dim=16, state_size=8), ()),
    ("kda", fla_layers.KimiDeltaAttention, dict(num_heads=2, head_dim=16), ()),
    ("comba", fla_layers.Comba, dict(num_heads=2, head_dim=16), ()),
    ("deltaproduct", fla_layers.GatedDeltaProduct, dict(num_heads=2, head_dim=16), ()),
    ("linear_attention", fla_layers.LinearAttention, dict(num_heads=2), ()),
    # fuse_norm=True: fla then normalises kk with the in-kernel l2norm (eps 1e-6 under the
    # root), which is what examples/rwkv7.lin writes; the default F.normalize differs by ~1e-6
    ("rwkv7", fla_layers.RWKV7Attention,
     dict(num_heads=2, head_dim=None, num_hidden_layers=2, decay_low_rank_dim=8,
          a_low_rank_dim=8, gate_low_rank_dim=8, fuse_norm=True), ()),
]
LAYER_HIDDEN = 32


@pytest.mark.parametrize("example, cls, kwargs, fla_only", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_matches_fla_layer_with_copied_weights(example, cls, kwargs, fla_only):
    torch.manual_seed(0)
    ref = cls(hidden_size=LAYER_HIDDEN, layer_idx=0, **kwargs).double()
    randomise(ref, seed=3)
    ours_kwargs = {k: v for k, v in kwargs.items() if k not in fla_only}
    ours = layer_class(example, chunk_size=CHUNK)(hidden_size=LAYER_HIDDEN, layer_idx=0,
                                                  **ours_kwargs).double()
    ours.load_state_dict(ref.state_dict(), strict=True)

    x = _rand(B, T, LAYER_HIDDEN, seed=4)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref, state_ref = reference_forward(ref, x_ref)
    cache = _DictCache()
    out_ours, _, _ = ours(x_ours, past_key_values=cache, use_cache=True)
    assert rel_err(out_ours, out_ref) < TOL
    state_ours = cache.states[0]["S"]  # [B, H, V, K]; fla's oracles give [B, H, K, V]
    assert rel_err(state_ours.transpose(-1, -2), state_ref) < TOL

    weight = _rand(*out_ref.shape, seed=5)
    names = [n for n, _ in ref.named_parameters()]
    assert sorted(names) == sorted(n for n, _ in ours.named_parameters())
    params_ours = dict(ours.named_parameters())
    g_ref = torch.autograd.grad((out_ref * weight).sum(), [x_ref, *ref.parameters()],
                                allow_unused=True)
    g_ours = torch.autograd.grad((out_ours * weight).sum(),
                                 [x_ours, *(params_ours[n] for n in names)], allow_unused=True)
    for name, a, b in zip(["input", *names], g_ours, g_ref):
        assert (a is None) == (b is None), name
        if a is not None:
            assert rel_err(a, b) < TOL, f"gradient of {name}"


class _DictCache:
    """The smallest decoding cache a generated layer accepts."""

    def __init__(self):
        self.states = {}

    def get_layer_state(self, layer_idx):
        return self.states.get(layer_idx)

    def set_layer_state(self, layer_idx, state, num_new_tokens):
        self.states[layer_idx] = dict(state)


def test_every_family_is_covered():
    """Both levels cover the same 12 families (LANDSCAPE section 2 minus MesaNet, log-linear)."""
    assert sorted(CORES) == sorted(c[0] for c in LAYERS)

"""What every compiled example layer must satisfy, whatever its family (issue items 4, 5, 7).

Each property is checked on all 14 programs in examples/, compiled by the PyTorch backend, at tiny
sizes (hidden 32, T <= 100) with every parameter moved off its initial value:

- the chunkwise-parallel form (``mode="chunk"``) equals the token-by-token recurrent form
  generated from the update as written (``mode="recurrent"``), forward and backward, to 1e-10 in
  fp64 and 1e-5 (relative) in fp32, at ragged lengths T = 1, 63, 100 (chunk size 64), with a head
  dimension of 60, and from an arbitrary initial state (at T = 1 both modes take the token
  step, as decoding does; chunk_dplr itself at T = 1 is in test_torch_runtime.py);
- torch.autograd.gradcheck passes in fp64 (several chunks, a padded last one);
- causality: perturbing the input at t0 leaves every output before t0 bit-for-bit unchanged, and
  the gradient of those outputs with respect to inputs at t >= t0 is exactly zero;
- states carry over: a prefix then the rest with a cache equals one forward; a prompt then
  tokens one at a time equals one forward (decoding);
- padding masks ([B, T] attention_mask, left or right padding) and packed sequences
  (cu_seqlens) give what each sequence gives alone.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.func import functional_call

from linarch_testing.torch_cases import (
    EXAMPLES,
    HEAD_DIM_60,
    HIDDEN,
    build,
    check_chunk_equals_recurrent,
    inputs,
    layer_class,
    new_cache,
    rel_err,
    run,
)

NAMES = sorted(EXAMPLES)
FP64_TOL = 1e-10
FP32_TOL = 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_builds_from_hidden_size_and_num_heads_alone(name):
    layer = layer_class(name)(hidden_size=64, num_heads=4)
    x = torch.randn(1, 3, 64)
    out, attentions, cache = layer(x)
    assert out.shape == x.shape and attentions is None and cache is None
    assert torch.isfinite(out).all()
    assert torch.isfinite(layer.aux_loss.detach())  # zero, or the mixer's own loss


@pytest.mark.parametrize("length", [1, 63, 100])
@pytest.mark.parametrize("name", NAMES)
def test_chunked_equals_recurrent_fp64(name, length):
    check_chunk_equals_recurrent(build(name), inputs(2, length), FP64_TOL)


@pytest.mark.parametrize("name", NAMES)
def test_chunked_equals_recurrent_fp32(name):
    layer = build(name, dtype=torch.float32)
    check_chunk_equals_recurrent(layer, inputs(2, 100, dtype=torch.float32), FP32_TOL)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_layer_runs_in_bf16_and_stays_close_to_fp64(name):
    """A model cast to bf16 trains in bf16: the state runs in fp32 inside, what it reads comes
    back in bf16 before the output projection (a bf16 weight meeting an fp32 activation was an
    error), and the output is within 0.05 (about 13 bf16 roundings) of the same bf16-rounded
    weights and inputs run in fp64."""
    layer = build(name, dtype=torch.bfloat16)
    exact = copy.deepcopy(layer).double()
    xb = inputs(2, 70).to(torch.bfloat16).requires_grad_()
    out = run(layer, xb)
    out.float().square().sum().backward()
    assert out.dtype == xb.grad.dtype == torch.bfloat16
    assert rel_err(out.double(), run(exact, xb.detach().double())) < 0.05


@pytest.mark.parametrize("name", NAMES)
def test_chunked_equals_recurrent_head_dim_60(name):
    layer = build(name, hidden=120, kwargs=HEAD_DIM_60[name])
    check_chunk_equals_recurrent(layer, inputs(2, 70, hidden=120), FP64_TOL)


@pytest.mark.parametrize("name", NAMES)
def test_chunked_equals_recurrent_from_an_arbitrary_initial_state(name):
    """Random recurrent states and conv windows in the cache, as a caller could hand in."""
    layer = build(name, chunk_size=16)
    cache = new_cache()
    run(layer, inputs(2, 5), cache=cache)  # learn the state's names and shapes
    gen = torch.Generator().manual_seed(3)
    state = {key: (value if not value.is_floating_point()
                   else torch.randn(value.shape, generator=gen, dtype=value.dtype))
             for key, value in cache.get_layer_state(0).items()}
    cache.set_layer_state(0, state, 5)
    check_chunk_equals_recurrent(layer, inputs(2, 41), FP64_TOL, cache=cache)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_fp64(name):
    """Analytic gradients of the chunked form against finite differences, for the input and
    the per-head parameters (gate and decay constants), over three chunks of 4, the last
    padded."""
    kw = {k: (8 if k == "head_dim" else 4 if k.endswith("_dim") or k == "state_size" else v)
          for k, v in EXAMPLES[name].items()}
    layer = build(name, hidden=16, kwargs=kw, chunk_size=4)
    layer.mode = "chunk"
    small = {n: p.detach().clone() for n, p in layer.named_parameters() if p.numel() <= 8}
    x = inputs(1, 9, hidden=16)

    def f(x, *values):
        out, _, _ = functional_call(layer, dict(zip(small, values)), (x,))
        return out

    args = (x.requires_grad_(), *(v.requires_grad_() for v in small.values()))
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
@pytest.mark.parametrize("name", NAMES)
def test_causal_outputs_and_gradients(name, mode):
    layer = build(name, chunk_size=16)
    length, t0 = 40, 21  # t0 inside the second chunk
    x = inputs(2, length)
    moved = x.clone()
    moved[:, t0] += inputs(2, 1, seed=5)[:, 0]
    before, after = run(layer, x, mode), run(layer, moved, mode)
    assert torch.equal(before[:, :t0], after[:, :t0])
    assert not torch.allclose(before[:, t0], after[:, t0])  # the probe reaches the output
    xg = x.clone().requires_grad_()
    out = run(layer, xg, mode)
    (grad,) = torch.autograd.grad((out[:, :t0] * inputs(2, t0, seed=6)).sum(), xg)
    assert torch.count_nonzero(grad[:, t0:]) == 0
    assert torch.count_nonzero(grad[:, t0 - 1]) > 0


@pytest.mark.parametrize("name", NAMES)
def test_state_carries_across_calls(name):
    """Final state out, initial state in: a prefix then the rest equals one forward."""
    layer = build(name, chunk_size=16)
    x = inputs(2, 60)
    whole_cache, split_cache = new_cache(), new_cache()
    whole = run(layer, x, cache=whole_cache)
    first = run(layer, x[:, :37], cache=split_cache)
    second = run(layer, x[:, 37:], cache=split_cache)
    assert rel_err(torch.cat([first, second], 1), whole) < FP64_TOL
    for key, value in whole_cache.get_layer_state(0).items():
        assert rel_err(split_cache.get_layer_state(0)[key].double(), value.double()) < FP64_TOL
    assert split_cache.get_seq_length(0) == 60


@pytest.mark.parametrize("name", NAMES)
def test_decoding_token_by_token_equals_one_forward(name):
    layer = build(name, chunk_size=16).eval()
    x = inputs(2, 20)
    with torch.no_grad():
        full = run(layer, x)
        cache = new_cache()
        steps = [run(layer, x[:, :11], cache=cache)]
        for t in range(11, 20):
            steps.append(run(layer, x[:, t:t + 1], cache=cache))
    assert rel_err(torch.cat(steps, 1), full) < FP64_TOL


@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
@pytest.mark.parametrize("name", NAMES)
def test_left_padding_mask(name, mode):
    """Padded positions on the left: the real tokens' outputs equal the sequence alone."""
    layer = build(name, chunk_size=16)
    x = inputs(2, 30)
    mask = torch.ones(2, 30, dtype=torch.long)
    mask[1, :9] = 0
    out = run(layer, x, mode, attention_mask=mask)
    assert rel_err(out[1:, 9:], run(layer, x[1:, 9:], mode)) < FP64_TOL
    assert rel_err(out[:1], run(layer, x[:1], mode)) < FP64_TOL


@pytest.mark.parametrize("name", NAMES)
def test_right_padding_mask_keeps_the_final_state(name):
    """Padding at the end changes no recurrent state: the state after the batch equals the state
    after the real tokens."""
    layer = build(name, chunk_size=16)
    x = inputs(2, 30)
    mask = torch.ones(2, 30, dtype=torch.long)
    mask[0, 17:] = 0
    padded, alone = new_cache(), new_cache()
    run(layer, x, attention_mask=mask, cache=padded)
    run(layer, x[:1, :17], cache=alone)
    states = layer.STATES
    for key in states:
        assert rel_err(padded.get_layer_state(0)[key][:1], alone.get_layer_state(0)[key]) \
            < FP64_TOL


@pytest.mark.parametrize("name", NAMES)
def test_packed_sequences(name):
    layer = build(name, chunk_size=16)
    lengths = [23, 1, 16, 9]
    x = inputs(1, sum(lengths))
    bounds = torch.tensor([0, 23, 24, 40, 49])
    packed = run(layer, x, cu_seqlens=bounds)
    alone = torch.cat([run(layer, x[:, s:e]) for s, e in zip(bounds[:-1], bounds[1:])], 1)
    assert rel_err(packed, alone) < FP64_TOL
    assert packed.shape == (1, sum(lengths), HIDDEN)

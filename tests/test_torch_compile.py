"""Every compiled example layer traces whole under torch.compile, and the traced layer computes
what the eager one does.

A graph break splits a layer into separately compiled pieces with Python between them, which
costs the fusion torch.compile is used for: with the break that a generator inside ``math.prod``
caused in the shared runtime, a compiled proxy step of DeltaNet took 0.88x the eager one's time,
and without it 0.73x (benchmarks/bench_proxy_step.py, benchmarks/RESULTS.md). ``fullgraph=True``
turns any break into an error, so these tests name the line that breaks. Every example is
captured with the ``eager`` backend (dynamo's capture, run by the same kernels in the same
order, so the outputs and gradients are bit for bit the eager layer's, and no C++ is compiled);
DeltaNet also goes through inductor, the backend a user compiles with, forward and backward.
"""

from __future__ import annotations

import pytest
import torch

from linarch_testing.torch_cases import EXAMPLES, build, grads, inputs, rel_err

NAMES = sorted(EXAMPLES)


def output_and_grads(layer, run, x, weight):
    """The output of `run` (the layer or its compiled form), and the gradients of
    sum(output * weight) for the input and every parameter."""
    out = run(x)[0]
    return out, grads(layer, x, out, weight)


@pytest.mark.parametrize("name", NAMES)
def test_layer_traces_as_one_graph_and_matches_eager_forward_and_backward(name):
    torch._dynamo.reset()
    layer = build(name)
    x = inputs(2, 70).requires_grad_()  # two chunks of 64, the second padded
    weight = inputs(2, 70, seed=2)
    compiled = torch.compile(layer, fullgraph=True, backend="eager")

    eager_out, eager_grads = output_and_grads(layer, layer, x, weight)
    out, got = output_and_grads(layer, compiled, x, weight)

    assert torch.equal(out, eager_out)
    assert got.keys() == eager_grads.keys()
    for name, grad in got.items():
        assert torch.equal(grad, eager_grads[name]), name


def test_deltanet_compiles_with_inductor_forward_and_backward():
    """Inductor fuses and reorders fp32 arithmetic, so the comparison is to fp32 rounding."""
    torch._dynamo.reset()
    layer = build("deltanet", dtype=torch.float32)
    x = inputs(2, 70, dtype=torch.float32).requires_grad_()
    weight = inputs(2, 70, seed=2, dtype=torch.float32)
    compiled = torch.compile(layer, fullgraph=True, backend="inductor")

    eager_out, eager_grads = output_and_grads(layer, layer, x, weight)
    out, got = output_and_grads(layer, compiled, x, weight)

    assert rel_err(out, eager_out) < 1e-5
    assert got.keys() == eager_grads.keys()
    for name, grad in got.items():
        assert rel_err(grad, eager_grads[name]) < 1e-5, name

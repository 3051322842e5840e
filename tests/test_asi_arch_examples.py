"""The ASI-Arch gallery architectures in examples/asi_arch/ (issue 12, item 7: replication).

Each program is written from the released PyTorch code of one gallery entry. Whatever it
computes, it must be something the lead can train: it checks with no error, compiles to a
PyTorch layer, and that layer, at a small width (hidden 48, two heads, chunks of 16), runs
forward and backward on a ragged batch (37 tokens: two full chunks and a partial one) with
finite outputs, auxiliary loss and gradients; its chunked form equals its token-by-token
recurrent form, forward, final states and every gradient, to 1e-10 in fp64 (the check
test_torch_examples.py applies to examples/).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import linarch
from linarch_testing.torch_cases import (
    EXAMPLES_DIR,
    check_chunk_equals_recurrent,
    inputs,
    randomise,
)

ASI_DIR = EXAMPLES_DIR / "asi_arch"
HIDDEN, HEADS, CHUNK, LENGTH = 48, 2, 16, 37
FP64_TOL = 1e-10

# program -> keywords that keep it small besides hidden_size and num_heads (long FIRs shortened
# so the test stays fast; every path still present)
SMALL: dict[str, dict] = {
    "content_sharp_router": dict(long_kernel_size=7),
    "fusion_gated_fir": dict(fir_long_kernel=7),
    "gate_floored_resnet": dict(fir_kernel_size_long=9),
    "hier_gate_mem": {},
    "path_gated_fusion_net": dict(fir_kernel_size_long=9),
}
NAMES = sorted(SMALL)


def _path(name: str) -> Path:
    return ASI_DIR / f"{name}.lin"


def _layer(name: str, dtype=torch.float64) -> torch.nn.Module:
    layer_cls = linarch.compile(_path(name), chunk_size=CHUNK)
    torch.manual_seed(0)
    layer = layer_cls(hidden_size=HIDDEN, num_heads=HEADS, layer_idx=0, **SMALL[name])
    return randomise(layer).to(dtype)


def test_every_program_in_the_folder_is_tested_and_listed_in_the_readme():
    assert {p.stem for p in ASI_DIR.glob("*.lin")} == set(SMALL)
    readme = (ASI_DIR / "README.md").read_text()
    for name in NAMES:
        assert f"`{name}.lin`" in readme, name


@pytest.mark.parametrize("name", NAMES)
def test_checks_without_errors(name):
    errors = [d.render() for d in linarch.check(_path(name)) if d.is_error]
    assert errors == []


@pytest.mark.parametrize("name", NAMES)
def test_compiles_to_a_torch_layer_that_builds_at_its_defaults(name):
    compiled = linarch.build(_path(name), target="torch")
    assert "class " in compiled.text and compiled.layer is not None
    layer = compiled.layer(hidden_size=64, num_heads=4)  # every other keyword at its default
    out, _, _ = layer(torch.randn(1, 3, 64))
    assert out.shape == (1, 3, 64) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_backward_on_a_ragged_batch_are_finite(name):
    layer = _layer(name, torch.float32)
    x = inputs(2, LENGTH, hidden=HIDDEN, dtype=torch.float32).requires_grad_()
    out, _, _ = layer(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.isfinite(layer.aux_loss)
    (out.square().mean() + layer.aux_loss).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in layer.named_parameters():
        assert p.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", NAMES)
def test_chunked_form_equals_recurrent_form(name):
    check_chunk_equals_recurrent(_layer(name), inputs(2, LENGTH, hidden=HIDDEN), FP64_TOL)

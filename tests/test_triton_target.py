"""The Triton target: `linarch compile --target triton` writes one file that needs only torch and
triton, whose layer has the PyTorch target's constructor and state_dict and computes the same
outputs and gradients (checked under TRITON_INTERPRET=1, in fp32, in a subprocess where linarch
and fla cannot be imported). Every example's states run through fused kernels there: the runner
counts the calls of the kernels' entry points and fails if a forward pass made none."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

import linarch
from linarch_testing.torch_cases import EXAMPLES, HIDDEN

CHUNK = 16  # several chunks at the short lengths the interpreter can afford

RUNNER = textwrap.dedent('''
    import importlib.abc, importlib.util, os, sys
    os.environ["TRITON_INTERPRET"] = "1"

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("linarch", "fla"):
                raise ImportError(f"{name} is blocked: the generated file must stand alone")
            return None

    sys.meta_path.insert(0, Block())
    import torch
    torch.set_num_threads(1)

    def load(path, name):
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    triton_file, torch_file, cls_name = sys.argv[1], sys.argv[2], sys.argv[3]
    kwargs = eval(sys.argv[4])
    module = load(triton_file, "fused")
    calls = []
    for entry in [n for n in vars(module) if n.startswith("chunk_") and n != "chunk_dplr"]:
        def counted(*args, _f=getattr(module, entry), _n=entry, **kw):
            calls.append(_n)
            return _f(*args, **kw)
        setattr(module, entry, counted)
    torch.manual_seed(0)
    fused = getattr(module, cls_name)(**kwargs)
    with torch.no_grad():  # off the initial values (zeros and ones hide whole terms)
        for p in fused.parameters():
            p.add_(0.2 * torch.randn_like(p))
    plain = getattr(load(torch_file, "plain"), cls_name)(**kwargs)
    plain.load_state_dict(fused.state_dict(), strict=True)
    for T in (1, 37):
        x = torch.randn(2, T, kwargs["hidden_size"], requires_grad=True)
        calls.clear()
        a, _, _ = fused(x)
        assert (T == 1) == (not calls), (T, calls)
        b, _, _ = plain(x)
        ga, = torch.autograd.grad(a.square().sum(), x)
        gb, = torch.autograd.grad(b.square().sum(), x)
        fwd = ((a - b).abs().max() / b.abs().max()).item()
        bwd = ((ga - gb).abs().max() / gb.abs().max()).item()
        assert fwd < 1e-4 and bwd < 1e-4, (T, fwd, bwd)
    print("ok")
''')


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_example_runs_fused_kernels_that_match_the_torch_target(name, tmp_path):
    os.environ.pop("TRITON_INTERPRET", None)
    triton_text = linarch.generate(f"examples/{name}.lin", target="triton")
    header = triton_text.split("\nclass ")[0]
    assert "fused Triton kernels (" in header and "no fused kernel" not in header
    env = dict(os.environ, TRITON_INTERPRET="1")
    # the same file runs under the interpreter: its kernel dtype (auto) is fp32 there, chosen
    # at import, since the interpreter computes bf16 wrong
    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    # generated under the interpreter, the file still autotunes on a GPU (decided at import)
    gen = subprocess.run(
        [sys.executable, "-m", "linarch.cli", "compile", f"examples/{name}.lin", "--target",
         "triton", "--chunk-size", str(CHUNK), "-o", str(tmp_path / "fused.py")], env=env,
        capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    assert (tmp_path / "fused.py").read_text() == linarch.generate(
        f"examples/{name}.lin", target="triton", chunk_size=CHUNK)  # the environment is no input
    assert "# Target: triton (kernel dtype auto: bf16 on a GPU, fp32 interpreted, autotune " \
        "True)." in (tmp_path / "fused.py").read_text()
    (tmp_path / "plain.py").write_text(linarch.generate(f"examples/{name}.lin", target="torch",
                                                        chunk_size=CHUNK))
    cls = linarch.analyze(f"examples/{name}.lin").name
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "fused.py"),
                          str(tmp_path / "plain.py"), cls,
                          repr(dict(hidden_size=HIDDEN, **EXAMPLES[name]))],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]


KERNEL_FAMILY = {  # example -> the kernels its one state runs (linarch.kernels.spec.Transition)
    "comba": "iplr",
    "content_sharp_router": "delta",
    "deltanet": "delta",
    "deltaproduct": "gated_delta, 2 micro-steps",
    "fusion_gated_fir": "gated_delta",
    "gated_deltanet": "gated_delta",
    "gla": "diagonal_decay",
    "hgrn2": "diagonal_decay",
    "kda": "channel_gated_delta",
    "linear_attention": "identity",
    "mamba2": "scalar_decay",
    "retnet": "constant_decay",
    "rwkv7": "dplr",
    "simple_gla": "scalar_decay",
}


def test_the_plan_picks_the_most_specific_kernel_family_of_each_example():
    assert set(KERNEL_FAMILY) == set(EXAMPLES)
    for name, family in KERNEL_FAMILY.items():
        (state,) = linarch.build(f"examples/{name}.lin", target="triton").plan.states
        assert state.how.startswith(f"fused Triton kernels ({family}) on GPU"), (name, state.how)


TWO_READS = """mixer TwoReads(hidden_size = 32, num_heads = 2):
    H = num_heads
    d = hidden_size / H

    params:
        q_proj, k_proj, r_proj, v_proj : linear(hidden_size -> H * d)
        o_proj : linear(H * d -> hidden_size)

    q = q_proj(x) as [H, d]
    k = k_proj(x) as [H, d]
    r = r_proj(x) as [H, d]
    v = v_proj(x) as [H, d]

    state S : [H, d, d]
    S = S + outer(v, k)
    o = S @ q + S @ r
    return o_proj(o as [H * d])
"""


def test_states_without_a_fused_kernel_say_so_and_use_the_torch_chunk_form():
    # two readouts of one state: the kernels read S @ q once per token
    text = linarch.generate(TWO_READS, target="triton")
    header = text.split("\nclass ")[0]
    assert "no fused kernel (the kernels read S @ q once per token, after its update)" in \
        " ".join(line.lstrip("# ") for line in header.splitlines())
    assert "_use_kernels(" not in text and "chunk_dplr(" in text.split("\nclass ")[1]


def test_triton_file_is_reproducible_and_fast_to_generate():
    t0 = time.perf_counter()
    a = linarch.generate("examples/gated_deltanet.lin", target="triton")
    elapsed = time.perf_counter() - t0
    b = linarch.generate("examples/gated_deltanet.lin", target="triton")
    assert a == b
    assert elapsed < 0.5 * 4  # 0.5 s on an idle core; slack for a loaded CI machine


def test_triton_layer_has_the_torch_layers_state_dict():
    fused = linarch.compile("examples/gated_deltanet.lin", target="triton")(
        hidden_size=32, num_heads=2, head_dim=16)
    plain = linarch.compile("examples/gated_deltanet.lin")(hidden_size=32, num_heads=2,
                                                           head_dim=16)
    assert list(fused.state_dict()) == list(plain.state_dict())

"""Training, the search's evaluation and the HF model compile for linarch.default_target(): the
Triton target where its kernels run (a CUDA device, or anywhere under TRITON_INTERPRET=1), the
torch target on a CPU-only machine; the environment recorded with every run (environment.json
in a run directory) says which backend ran. Checked under the interpreter in a subprocess (the
variable must be set before triton is imported), and here without it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch

import linarch
from linarch.evaluation.environment import capture_environment
from linarch.evaluation.mixers import load_mixer

UNDER_INTERPRETER = textwrap.dedent('''
    import sys
    import torch
    torch.set_num_threads(1)
    import linarch
    from linarch.evaluation.environment import capture_environment
    from linarch.evaluation.mixers import load_mixer
    from linarch.models.resolver import compile_source

    assert linarch.default_target() == "triton"
    mixer = load_mixer("examples/gated_deltanet.lin")
    assert mixer.layer_cls.__linarch__.options.target.value == "triton"
    assert compile_source(mixer.source).__linarch__.options.target.value == "triton"
    assert capture_environment(torch.device("cpu")).to_json()["backend"] == "triton"
    module = sys.modules[mixer.layer_cls.__module__]
    entry = next(n for n in vars(module) if n.startswith("chunk_") and n != "chunk_dplr")
    calls = []
    kernels = getattr(module, entry)

    def counted(*args, **kw):
        calls.append(entry)
        return kernels(*args, **kw)

    setattr(module, entry, counted)
    layer = mixer.layer_cls(hidden_size=32, num_heads=2, head_dim=16)
    x = torch.randn(1, 20, 32, requires_grad=True)
    layer(x)[0].square().sum().backward()
    assert calls and x.grad is not None and torch.isfinite(x.grad).all()
    print("ok")
''')


def test_compiled_layers_run_the_fused_kernels_where_they_can():
    env = dict(os.environ, TRITON_INTERPRET="1")
    run = subprocess.run([sys.executable, "-c", UNDER_INTERPRETER], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]


def test_a_cpu_only_machine_compiles_for_the_torch_target():
    assert os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available()
    assert linarch.default_target() == "torch"
    assert linarch.backend("cpu") == "torch" and linarch.backend("cuda") == "triton"
    mixer = load_mixer("examples/gated_deltanet.lin")
    assert mixer.layer_cls.__linarch__.options.target.value == "torch"
    assert capture_environment(torch.device("cpu")).backend == "torch"

"""The CPU side of benchmarks/bench_kernels.py: FLOP and byte models, the table, the no-GPU exit,
that every benchmarked spec's generated entry point and fla's chunk function take the inputs the
script passes, and a dry run of the whole GPU path (agreement, profile, timing loop, result
files) under the Triton interpreter."""

import importlib.util
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from linarch.kernels.loader import load_kernels
from linarch.kernels.spec import KernelOptions, KernelSpec, Transition

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_kernels.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_kernels", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def spec(transition: str, **kwargs) -> KernelSpec:
    return KernelSpec("x", Transition(transition), **kwargs)


def test_flops_count_the_chunked_matmuls(bench):
    # one chunk of C=2 rows, K=3, V=5: Qh 60 + QK^T 24 + AV 40 + K^T V 60
    assert bench.chunk_flops(spec("identity"), 1, 2, 1, 3, 5, chunk=2) == 184
    # the delta rule adds KK^T 24 + inverse 16/3 + W 24 + U 40 + W h 60
    delta = 184 + 24 + 16 / 3 + 24 + 40 + 60
    assert bench.chunk_flops(spec("delta"), 1, 2, 1, 3, 5, chunk=2) == pytest.approx(delta)
    # micro rows: a product of two steps per token, and dplr's two rows, double the chunks
    for product in (spec("delta", micro_steps=2), spec("dplr")):
        assert bench.chunk_flops(product, 1, 2, 1, 3, 5, chunk=2) == pytest.approx(2 * delta)
    # B, H and the number of chunks (ceil) scale it
    one = bench.chunk_flops(spec("scalar_decay"), 1, 64, 1, 128, 128)
    full = bench.chunk_flops(spec("scalar_decay"), 8, 4096 - 1, 16, 128, 128)
    assert full == 8 * 16 * 64 * one


def test_bytes_count_inputs_and_outputs_once(bench):
    # q, k (K=4), v (V=2), a scalar gate and beta read, o written; 2 bytes each; 3 tokens
    fwd = bench.io_bytes(spec("gated_delta"), 1, 3, 1, 4, 2, backward=False)
    assert fwd == 3 * (4 + 4 + 2 + 1 + 1 + 2) * 2
    both = bench.io_bytes(spec("gated_delta"), 1, 3, 1, 4, 2, backward=True)
    assert both == fwd + 3 * 2 * 2 + 3 * (4 + 4 + 2 + 1 + 1) * 2
    diag = bench.io_bytes(spec("diagonal_decay"), 1, 3, 1, 4, 2, backward=False)
    assert diag == 3 * (4 + 4 + 2 + 4 + 2) * 2
    # two micro-steps: k, v and beta twice per token; dplr: a, b and a per-channel gate
    product = bench.io_bytes(spec("gated_delta", micro_steps=2), 1, 3, 1, 4, 2, backward=False)
    assert product == 3 * (4 + 8 + 4 + 1 + 2 + 2) * 2
    dplr = bench.io_bytes(spec("dplr"), 1, 3, 1, 4, 2, backward=False)
    assert dplr == 3 * (4 + 4 + 2 + 4 + 4 + 4 + 2) * 2


def test_table_reports_ratio_and_fractions_of_the_ceilings(bench):
    rows = [bench.Row("gated_delta_rule", 4096, "fwd", ours_ms=2.0, fla_ms=3.0, flops=4e12,
                      bytes=2e9)]
    table = bench.format_table(rows, bench.Ceilings(tflops=1000.0, gbps=2000.0))
    line = table.splitlines()[-1].split()
    assert line[:3] == ["gated_delta_rule", "4096", "fwd"]
    assert line[5] == "1.50"  # fla / ours
    assert line[6:8] == ["2000.0", "200.0%"]  # 4e12 flop / 2 ms = 2000 TFLOP/s
    assert line[8:] == ["1000", "50.0%"]  # 2e9 B / 2 ms = 1000 GB/s


def test_without_a_gpu_it_says_so_and_exits_cleanly(bench, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert bench.main(["--quick"]) == 0
    assert "no CUDA GPU" in capsys.readouterr().out


def test_every_family_of_the_issue_is_benchmarked(bench):
    families = {op.spec.transition for op in bench.OPS if op.name in bench.DEFAULT_OPS}
    assert families == set(Transition) - {Transition.IDENTITY, Transition.CONSTANT_DECAY,
                                          Transition.SCALAR_DECAY}
    assert any(op.spec.micro_steps > 1 for op in bench.OPS if op.name in bench.DEFAULT_OPS)


@pytest.mark.parametrize("name", [
    "delta_rule", "gated_delta_rule", "gla", "simple_gla", "kda", "gated_deltaproduct", "comba",
    "rwkv7", "gated_deltanet_layer"])
def test_benchmarked_specs_take_the_inputs_the_script_passes(bench, name):
    op = next(op for op in bench.OPS if op.name == name)
    module = load_kernels(op.spec, KernelOptions(chunk_size=bench.CHUNK, dtype="bf16"))
    params = list(inspect.signature(getattr(module, f"chunk_{op.spec.name}")).parameters)
    assert params[:3 + len(op.inputs)] == ["q", "k", "v", *op.inputs]
    inputs = bench.make_inputs(op, 70, torch.device("cpu"), dtype=torch.float32)
    assert list(inputs) == ["q", "k", "v", *op.inputs]
    bench._bind_fla(op, inputs)  # fla's chunk function takes the arguments the script passes
    # the generated entry point's own checks accept them (shapes, dtypes, micro rows)
    module = load_kernels(op.spec, KernelOptions(chunk_size=bench.CHUNK, dtype="fp32"))
    module._check_inputs(*inputs.values(), None, None)


def test_a_dry_run_under_the_interpreter_writes_every_result_file(tmp_path):
    """The GPU script's Python path end to end on CPU: the layer form of Gated DeltaNet (every
    prologue kernel), one chunk; fla's chunk kernels cannot run under the interpreter and are
    recorded as refused, ours are timed alone."""
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, str(BENCH), "--device", "cpu", "--ops",
                          "gated_deltanet_layer", "--lengths", "20", "--profile", "--out",
                          str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "kernels_bench.jsonl").open()]
    rows = [r for r in records if "mode" in r]
    assert [r["mode"] for r in rows] == ["fwd", "fwd+bwd"] and all(r["ours_ms"] > 0 for r in rows)
    assert any("fla_refused" in r for r in records)
    profile = (tmp_path / "profile_gated_deltanet_layer_T20.txt").read_text()
    assert "BenchGatedDeltanetFunction" in profile
    assert (tmp_path / "kernels_table.txt").exists()
    assert (tmp_path / "autotune_choices.json").exists()

"""The CPU side of benchmarks/bench_kernels.py: FLOP and byte models, the table, the no-GPU exit,
and that every benchmarked spec's generated entry point takes the inputs the script passes."""

import importlib.util
import inspect
import sys
from pathlib import Path

import pytest
import torch

from linarch.kernels.loader import load_kernels
from linarch.kernels.spec import KernelOptions, Transition

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_kernels.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_kernels", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_flops_count_the_chunked_matmuls(bench):
    # one chunk of C=2 rows, K=3, V=5: Qh 60 + QK^T 24 + AV 40 + K^T V 60
    assert bench.chunk_flops(Transition.IDENTITY, 1, 2, 1, 3, 5, chunk=2) == 184
    # the delta rule adds KK^T 24 + inverse 16/3 + W 24 + U 40 + W h 60
    assert bench.chunk_flops(Transition.DELTA, 1, 2, 1, 3, 5, chunk=2) == pytest.approx(
        184 + 24 + 16 / 3 + 24 + 40 + 60)
    # B, H and the number of chunks (ceil) scale it
    one = bench.chunk_flops(Transition.SCALAR_DECAY, 1, 64, 1, 128, 128)
    full = bench.chunk_flops(Transition.SCALAR_DECAY, 8, 4096 - 1, 16, 128, 128)
    assert full == 8 * 16 * 64 * one


def test_bytes_count_inputs_and_outputs_once(bench):
    # q, k (K=4), v (V=2), a scalar gate and beta read, o written; 2 bytes each; 3 tokens
    fwd = bench.io_bytes(Transition.GATED_DELTA, 1, 3, 1, 4, 2, backward=False)
    assert fwd == 3 * (4 + 4 + 2 + 1 + 1 + 2) * 2
    both = bench.io_bytes(Transition.GATED_DELTA, 1, 3, 1, 4, 2, backward=True)
    assert both == fwd + 3 * 2 * 2 + 3 * (4 + 4 + 2 + 1 + 1) * 2
    diag = bench.io_bytes(Transition.DIAGONAL_DECAY, 1, 3, 1, 4, 2, backward=False)
    assert diag == 3 * (4 + 4 + 2 + 4 + 2) * 2


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


@pytest.mark.parametrize("name", ["delta_rule", "gated_delta_rule", "gla", "simple_gla",
                                  "gated_deltanet_layer"])
def test_benchmarked_specs_take_the_inputs_the_script_passes(bench, name):
    op = next(op for op in bench.OPS if op.name == name)
    module = load_kernels(op.spec, KernelOptions(chunk_size=bench.CHUNK, dtype="bf16"))
    params = list(inspect.signature(getattr(module, f"chunk_{op.spec.name}")).parameters)
    assert params[:3 + len(op.inputs)] == ["q", "k", "v", *op.inputs]
    assert callable(bench._fla_fn(op))
    inputs = bench.make_inputs(op, 70, torch.device("cpu"))
    assert list(inputs) == ["q", "k", "v", *op.inputs]

"""The offline performance proxies: every generated kernel compiles for an NVIDIA H100/H200
(sm_90) without a GPU, and no config an autotuner may pick spills registers.

The full compile of every kernel and config of the benchmarked ops takes about an hour on this
machine, so it is a script (benchmarks/bench_offline_kernels.py --write) whose table lives in
benchmarks/RESULTS.md. These tests hold that table to the templates: its kernels digest must be
the one the templates render now (else regenerate it), it must show no spills, and a
representative subset is compiled here again and must match it (three kernels: the largest of
the scalar-decay delta rule, of the per-channel classes and of the micro-row / read-key form).
"""

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

from linarch.kernels.offline import compile_offline

triton = pytest.importorskip("triton")
TOOLS = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
ROW = re.compile(r"^\| (\w+) \| (\w+) \| ([^|]+) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+) "
                 r"\| (\d+) \|$")
SUBSET = [("gated_deltanet_layer", "dqkw"), ("kda", "wy_bwd"), ("rwkv7", "intra")]


@pytest.fixture(scope="module")
def offline():
    spec = importlib.util.spec_from_file_location("bench_offline_kernels",
                                                  BENCH / "bench_offline_kernels.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table(offline) -> dict:
    text = offline.RESULTS.read_text()
    assert offline.BEGIN in text, "no offline table in RESULTS.md: run " \
                                  "python benchmarks/bench_offline_kernels.py --write"
    section = text[text.index(offline.BEGIN):text.index(offline.END)]
    rows = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            op, kernel, config, regs, spills, stack, smem, blocks = match.groups()
            rows[(op, kernel, config.strip())] = dict(
                registers=int(regs), spills=int(spills), stack=int(stack), blocks=int(blocks))
    digest = re.search(r"kernels digest: (\w+)", section).group(1)
    return {"rows": rows, "digest": digest}


def test_offline_table_describes_the_kernels_the_templates_render(offline, table):
    ops = sorted({op for op, _, _ in table["rows"]})
    assert set(ops) == set(offline._ops()), "the table misses benchmarked ops"
    assert table["digest"] == offline.digest([op for op in offline._ops() if op in ops]), (
        "kernels changed since the offline table was made: run "
        "python benchmarks/bench_offline_kernels.py --write")


def test_no_config_an_autotuner_may_pick_spills(offline, table):
    kernels = {(op, kernel) for op, kernel, _ in table["rows"]}
    for op in offline._ops():
        assert {k for o, k in kernels if o == op} == {
            n.removeprefix("bench_") for n in offline.kernel_names(op)}
    spilling = {key: row for key, row in table["rows"].items() if row["spills"]}
    assert not spilling, f"configs that spill: {sorted(spilling)}"
    assert all(row["blocks"] >= 1 for row in table["rows"].values())


@pytest.mark.skipif(not os.path.exists(TOOLS), reason="triton without its NVIDIA tools")
@pytest.mark.parametrize("op, kernel", SUBSET, ids=lambda x: x)
def test_a_kernel_compiled_here_matches_the_table(offline, table, op, kernel):
    spec = offline._ops()[op].spec
    (report,) = compile_offline(spec, offline.OPTIONS, only=f"{spec.name}_{kernel}_kernel",
                                configs=1)
    row = table["rows"][(op, report.kernel.removeprefix("bench_"), report.config)]
    assert (report.registers, report.spills, report.stack) == (
        row["registers"], row["spills"], row["stack"])
    assert report.blocks_per_sm == row["blocks"]

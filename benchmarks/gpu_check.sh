#!/usr/bin/env bash
# The prepared GPU session: what a lent H100/H200 is spent on, in two short calls.
#
#   bash benchmarks/gpu_check.sh check   # kernel tests compiled on the card + layer agreement
#   bash benchmarks/gpu_check.sh bench   # benchmarks/bench_kernels.py (vs fla) + layer timings
#   bash benchmarks/gpu_check.sh quick   # both in one call, ~8 minutes: kernel tests, then
#                                        # the benchmark at T=4096 only, then layer timings
#
# The GPU machine has torch and triton but neither linarch nor its pure-Python needs, and no
# network: build the wheels here first (they travel in the ignored folder .whl):
#
#   pip wheel -q --no-deps --no-build-isolation -w .whl .
#   pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       lark==1.3.1 fla-core==0.6.0 flash-linear-attention==0.6.0
#
# Logs go to $OUT (the device tool's return folder) or ./gpu_out.
set -uo pipefail
stage=${1:-check}
out=${OUT:-gpu_out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$out/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
    | tee -a "$out/gpu.txt"

kernel_tests() {
    # the CPU suite's kernel tests, same cases and tolerances, compiled on the card (-P: the
    # repo root must not shadow the installed linarch package)
    LINARCH_KERNEL_DEVICE=cuda timeout 150 python3 -P -m pytest -q -p no:cacheprovider \
        -n 6 --dist loadfile tests/test_kernels_delta.py tests/test_kernels_decay.py \
        tests/test_kernels_diag.py tests/test_kernels_varlen.py tests/test_kernels_wrapper.py \
        2>&1 | tee "$out/kernel_tests.log"
}
ops="gated_delta_rule delta_rule gla simple_gla gated_deltanet_layer"
case "$stage" in
    check)
        kernel_tests
        timeout 100 python3 benchmarks/bench_triton_layers.py --check 2>&1 | tee "$out/layer_check.log" ;;
    bench)
        timeout 330 python3 benchmarks/bench_kernels.py --ops $ops 2>&1 | tee "$out/kernels_bench.log"
        timeout 120 python3 benchmarks/bench_triton_layers.py --lengths 1000 2>&1 \
            | tee "$out/layers_bench.log" ;;
    quick)
        kernel_tests
        timeout 230 python3 benchmarks/bench_kernels.py --quick --ops $ops 2>&1 \
            | tee "$out/kernels_bench.log"
        timeout 80 python3 benchmarks/bench_triton_layers.py --lengths 1000 2>&1 \
            | tee "$out/layers_bench.log" ;;
    *) echo "usage: bash benchmarks/gpu_check.sh check|bench|quick"; exit 2 ;;
esac

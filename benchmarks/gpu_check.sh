#!/usr/bin/env bash
# The prepared GPU session: what a lent H100/H200 is spent on, in short calls.
#
#   bash benchmarks/gpu_check.sh bench   # kernels vs fla: profiles, autotune choices, T=4096
#                                        # timings for DeltaNet, Gated DeltaNet, GLA, KDA,
#                                        # Gated DeltaProduct, Comba, RWKV-7 (~6 min)
#   bash benchmarks/gpu_check.sh check   # the CPU suite's kernel tests compiled on the card
#                                        # (every kernel, the new families included) + layers
#   bash benchmarks/gpu_check.sh quick   # bench, then check while time is left
#
# Time first, test second: the timing stage runs before the 50-odd kernel test cases. Every
# measurement is written to $OUT as it is made (kernels_bench.jsonl, profile_*.txt,
# autotune_choices.json, logs), so a call cut short still returns what it measured. Autotune
# results are kept between leases (TRITON_CACHE_AUTOTUNING=1): the json files of the last lease,
# committed under benchmarks/autotune_cache/, seed the cache, and this lease's come back in
# $OUT/autotune_cache/ (commit them there). A kernel cache compiled elsewhere would not carry
# (another Python and libtriton), so only the autotune results travel.
#
# The GPU machine has torch and triton but neither linarch nor its pure-Python needs, and no
# network: build the wheels here first (they travel in the ignored folder .whl):
#
#   pip wheel -q --no-deps --no-build-isolation -w .whl .
#   pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       lark==1.3.1 fla-core==0.6.0 flash-linear-attention==0.6.0
#
# Logs go to $OUT (the device tool's return folder) or ./gpu_out. Without a GPU the stages say
# so and stop (bench_kernels.py --device cpu under TRITON_INTERPRET=1 is the CPU dry run).
set -uo pipefail
stage=${1:-quick}
out=${OUT:-gpu_out}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check.sh: no NVIDIA GPU here; nothing to do" | tee "$out/gpu.txt"
    exit 0
fi
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/triton_cache}
mkdir -p "$TRITON_CACHE_DIR"
[ -d "$here/autotune_cache" ] && cp -r "$here/autotune_cache/." "$TRITON_CACHE_DIR/"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$out/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
    | tee -a "$out/gpu.txt"

keep_autotune() {
    # this lease's autotune results, with their cache folders, for benchmarks/autotune_cache/
    (cd "$TRITON_CACHE_DIR" && find . -name '*.autotune.json' -exec cp --parents {} "$out/autotune_cache/" \;) \
        2>/dev/null
}
mkdir -p "$out/autotune_cache"
trap keep_autotune EXIT

kernel_tests() {
    # the CPU suite's kernel tests, same cases and tolerances, compiled on the card (-P: the
    # repo root must not shadow the installed linarch package)
    LINARCH_KERNEL_DEVICE=cuda timeout "$1" python3 -P -m pytest -q -p no:cacheprovider \
        -n 6 --dist loadfile tests/test_kernels_delta.py tests/test_kernels_wy.py \
        tests/test_kernels_varlen.py tests/test_kernels_decay.py tests/test_kernels_diag.py \
        tests/test_kernels_wrapper.py 2>&1 | tee "$out/kernel_tests.log"
}
bench() {
    timeout "$1" python3 benchmarks/bench_kernels.py --profile --out "$out" \
        --ops delta_rule gated_delta_rule gla kda gated_deltaproduct comba rwkv7 2>&1 \
        | tee "$out/kernels_bench.log"
}
case "$stage" in
    bench)
        bench 540 ;;
    check)
        kernel_tests 300
        timeout 150 python3 benchmarks/bench_triton_layers.py --check 2>&1 | tee "$out/layer_check.log" ;;
    quick)
        bench 420
        kernel_tests 150 ;;
    *) echo "usage: bash benchmarks/gpu_check.sh bench|check|quick"; exit 2 ;;
esac

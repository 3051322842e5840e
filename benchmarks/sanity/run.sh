#!/usr/bin/env bash
# The design runs behind docs/evaluation.md ("How it was chosen", the Gated DeltaNet runs).
# Two worker processes, one torch thread each; JSON lines under runs/design/ (reruns skip what
# is already there).
#   bash benchmarks/sanity/run.sh           # the first sweep, steps x batch and learning rate
#   bash benchmarks/sanity/run.sh calibrate # linarch calibrate: the tables of docs/evaluation.md
#   bash benchmarks/sanity/run.sh gdn       # Gated DeltaNet against DeltaNet, three matchings
set -euo pipefail
out=${OUT:-runs/design}
store=${STORE:-runs/calib/proxy.sqlite}  # the calibration's store: DeltaNet's runs are cached
design() { python benchmarks/sanity/bench_mqar_design.py --evals 2 "$@"; }
if [ "${1:-design}" = calibrate ]; then
    linarch calibrate --seeds 4 --aa 10 --store "$store" --json runs/calib/table.json \
        --write docs/evaluation.md
    linarch calibrate --task lm --seeds 4 --aa 0 --store runs/calib/lm.sqlite \
        --json runs/calib/lm.json --write docs/evaluation.md
    exit 0
fi
if [ "${1:-design}" = gdn ]; then
    for match in state none; do
        for m in examples/gated_deltanet.lin benchmarks/sanity/gdn_nogate.lin; do
            linarch train "$m" --match "$match" --seeds 4 --store "$store" \
                --out "runs/calib/$(basename "$m" .lin)-$match"
        done
    done
    design --mixers examples/gated_deltanet.lin --lrs 3e-3 --seeds 0 1 --steps 4000 \
        --batch 16 --kwargs head_dim=16 --out "$out/gdn.jsonl"
    exit 0
fi
# a first sweep, unmatched widths, 2000 steps x 32, seed 0, both learning rates
design --mixers examples/reference/softmax_attention.lin examples/deltanet.lin \
    examples/gated_deltanet.lin benchmarks/sanity/gdn_nogate.lin examples/gla.lin \
    examples/mamba2.lin examples/retnet.lin --lrs 3e-3 1e-2 --seeds 0 --steps 2000 --batch 32 \
    --evals 8 --out "$out/a_2000.jsonl"
# steps x batch and learning rate for DeltaNet, 4 seeds
design --mixers examples/deltanet.lin --lrs 1e-2 3e-2 --seeds 0 1 2 3 --steps 1000 --batch 32 \
    --out "$out/c.jsonl"
design --mixers examples/deltanet.lin --lrs 1e-2 --seeds 0 1 2 3 --steps 2000 --batch 16 \
    --out "$out/c.jsonl"

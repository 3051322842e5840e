#!/usr/bin/env bash
# The runs behind docs/evaluation.md's sanity table and its ablations (one thread each, quick MQAR).
#   bash benchmarks/sanity/run.sh            # the table: 5 mixers x 3 seeds
#   bash benchmarks/sanity/run.sh ablations  # seed 0: learning rates, gate and decay removed, 3000 steps
set -euo pipefail
out=${OUT:-runs/sanity}
train() { linarch train "$1" --task mqar --preset quick --no-baseline --threads 1 "${@:3}" --out "$out/$2"; }
if [ "${1:-table}" = ablations ]; then
    train examples/gated_deltanet.lin gdn-lr1e-3 --seeds 1 --lr 1e-3
    train examples/gated_deltanet.lin gdn-lr1e-2 --seeds 1 --lr 1e-2
    train benchmarks/sanity/gdn_nogate.lin gdn-nogate --seeds 1
    train benchmarks/sanity/gdn_nodecay.lin gdn-nodecay --seeds 1
    train benchmarks/sanity/gla_nogate.lin gla-nogate --seeds 1
    train examples/gated_deltanet.lin gdn-3000 --seeds 1 --steps 3000
else
    for m in examples/reference/softmax_attention.lin examples/deltanet.lin \
             examples/gated_deltanet.lin examples/gla.lin examples/linear_attention.lin; do
        train "$m" "$(basename "$m" .lin)" --seeds 3
    done
fi

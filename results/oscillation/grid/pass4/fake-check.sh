#!/bin/bash
# Fourth pass: the fake-backward variants' FGSM/PGD evaluations (through `bptt` and
# `surrogate:atan:2`, every seed) made again so that their true-gradient-not-stronger follows the
# new rule (the rerun through the true gradient at the largest eps where the check could fail,
# commit bf4dd0a). Their settings are unchanged, so the pipeline would reuse them: the replaced
# folders are moved (not deleted) to .cache/oscillation-replaced-pass4/ first. Everything else
# (`true`, `reliable`, the other variants) is reused as it is.
# Run from the repository root, niced, one thread:  bash results/oscillation/grid/pass4/fake-check.sh
set -u
export OMP_NUM_THREADS=1
G=results/oscillation/grid
R=runs/digits
OLD=.cache/oscillation-replaced-pass4
stamp() { echo "=== $1 $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"; }
move() {  # move one evaluation folder of a run aside: move RUN GLOB
  mkdir -p "$OLD/$1" && mv $G/$R/$1/evaluations/$2 "$OLD/$1/"
}
stamp "restore weights (fake variants; a run folder that holds its weights is left alone)"
/usr/bin/time -f "=== restore: %U s user, %S s system, %e s wall" \
  nice -n 19 python results/oscillation/restore_weights.py experiments/oscillation.toml $G \
    --scratch .cache/oscillation-retrain --data-root ../shared/data --neurons osc-fake osc-fake-mild || exit 1
for v in osc-fake osc-fake-mild; do for s in 0 1 2; do
  move cnn-$v-bptt-s$s 'bptt-*'; move cnn-$v-bptt-s$s 'surrogate-atan-2-*'
done; done
stamp "FGSM/PGD seeds 0 1 2"
/usr/bin/time -f "=== fgsm/pgd: %U s user, %S s system, %e s wall" \
  nice -n 19 spikeshield experiment experiments/oscillation.toml --data-root ../shared/data \
    --device cpu --out $G --neurons osc-fake osc-fake-mild || exit 1
stamp "tables (every cell reused: aggregation only)"
/usr/bin/time -f "=== aggregate: %U s user, %S s system, %e s wall" \
  nice -n 19 spikeshield experiment experiments/oscillation.toml --data-root ../shared/data \
    --device cpu --out $G || exit 1
/usr/bin/time -f "=== verdict: %U s user, %S s system, %e s wall" \
  nice -n 19 python results/oscillation/verdict.py $G --eps 0.2 0.1 --out $G/verdict.md || exit 1
stamp done

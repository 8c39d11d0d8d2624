#!/bin/bash
# Third pass, job 2 of 2: the fake-backward variants judged by the current suite and checks.
# Run from the repository root, niced, one thread:  bash results/oscillation/grid/pass3/fake.sh
# The replaced evaluation folders are moved (not deleted) to .cache/oscillation-replaced/.
set -u
export OMP_NUM_THREADS=1
G=results/oscillation/grid
R=runs/digits
OLD=.cache/oscillation-replaced
stamp() { echo "=== $1 $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"; }
move() {  # move one evaluation folder of a run aside: move RUN GLOB
  mkdir -p "$OLD/$1" && mv $G/$R/$1/evaluations/$2 "$OLD/$1/"
}
stamp "restore weights (fake variants)"
/usr/bin/time -f "=== restore: %U s user, %S s system, %e s wall" \
  nice -n 19 python results/oscillation/restore_weights.py experiments/oscillation.toml $G \
    --scratch .cache/oscillation-retrain --data-root ../shared/data --neurons osc-fake osc-fake-mild || exit 1
# 1. FGSM/PGD through the handed-out gradients at seeds 1, 2 (they predate true-gradient-not-stronger)
for v in osc-fake osc-fake-mild; do for s in 1 2; do
  move cnn-$v-bptt-s$s 'bptt-*'; move cnn-$v-bptt-s$s 'surrogate-atan-2-*'
done; done
stamp "FGSM/PGD seeds 1 2"
/usr/bin/time -f "=== fgsm/pgd: %U s user, %S s system, %e s wall" \
  nice -n 19 spikeshield experiment experiments/oscillation.toml --data-root ../shared/data \
    --device cpu --out $G --seeds 1 2 --neurons osc-fake osc-fake-mild || exit 1
# 2. the reliable suite (predates its APGD-CE/DLR members through the true gradient), every seed
for v in osc-fake osc-fake-mild; do for s in 0 1 2; do move cnn-$v-bptt-s$s 'reliable-*'; done; done
stamp "reliable"
/usr/bin/time -f "=== reliable: %U s user, %S s system, %e s wall" \
  nice -n 19 spikeshield experiment experiments/oscillation.toml --data-root ../shared/data \
    --device cpu --out $G --neurons osc-fake osc-fake-mild || exit 1
stamp "restore weights (lif, osc: for the table)"
/usr/bin/time -f "=== restore: %U s user, %S s system, %e s wall" \
  nice -n 19 python results/oscillation/restore_weights.py experiments/oscillation.toml $G \
    --scratch .cache/oscillation-retrain --data-root ../shared/data --neurons lif osc
stamp done

#!/bin/bash
# Third pass, extra: transfer to the random-phase model from deterministic models of the same
# seed (the fixed-phase oscillating LIF `osc` and LIF): PGD-20 crafted on the source, applied to
# osc-rand (never differentiated or queried while crafting), on the grid's 200 test samples.
# Run from the repository root:  bash results/oscillation/grid/pass3/transfer.sh
set -u
export OMP_NUM_THREADS=1
G=results/oscillation/grid
R=$G/runs/digits
for s in ${SEEDS:-0 1 2}; do for src in osc lif; do
  echo "=== transfer from $src seed $s start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "=== $src seed $s: %U s user, %S s system, %e s wall" \
    nice -n 19 spikeshield evaluate --run $R/cnn-osc-rand-bptt-s$s --attack transfer --source $R/cnn-$src-bptt-s$s \
      --steps 20 --eps 0 0.05 0.1 0.2 --limit 200 --check-samples 100 --seed 0 --device cpu \
      --data-root ../shared/data --out $G/transfer/cnn-osc-rand-bptt-s$s-from-$src
done; done

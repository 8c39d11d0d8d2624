#!/bin/bash
# Third pass, extra: PGD-10 on the random-phase model WITH EOT 10 over the phase (the grid's PGD
# attacks it without EOT, the paper's threat model), so that the effect of EOT is seen apart from
# the stronger attacks of the reliable suite. Same samples, budgets, steps and seed as the grid.
# Run from the repository root after rand.sh has trained the seed:  bash results/oscillation/grid/pass3/eot.sh
set -u
export OMP_NUM_THREADS=1
G=results/oscillation/grid
for s in ${SEEDS:-0 1 2}; do
  echo "=== pgd eot 10 seed $s start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "=== seed $s: %U s user, %S s system, %e s wall" \
    nice -n 19 spikeshield evaluate --run $G/runs/digits/cnn-osc-rand-bptt-s$s --attack pgd --eot 10 \
      --steps 10 --eps 0 0.05 0.1 0.2 --limit 200 --check-samples 100 --seed 0 --device cpu \
      --data-root ../shared/data --out $G/eot/cnn-osc-rand-bptt-s$s
done

#!/bin/bash
# Third pass, job 1 of 2: the random-phase variant osc-rand (3 seeds, one cell per command).
# Run from the repository root, niced, one thread:  bash results/oscillation/grid/pass3/rand.sh
set -u
export OMP_NUM_THREADS=1
G=results/oscillation/grid
for s in 0 1 2; do
  echo "=== osc-rand seed $s start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "=== seed $s: %U s user, %S s system, %e s wall" \
    nice -n 19 spikeshield experiment experiments/oscillation.toml --data-root ../shared/data \
      --device cpu --out $G --seeds $s --neurons osc-rand
  echo "=== osc-rand seed $s end $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
done

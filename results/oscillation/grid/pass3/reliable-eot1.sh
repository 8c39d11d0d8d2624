#!/bin/bash
# Third pass, extra: the reliable suite on the random-phase model WITHOUT EOT (--eot 1; the grid's
# reliable evaluation uses EOT 10 over the phase, its default for a stochastic model), so that
# what EOT adds is seen at equal attacks. Same samples, budgets, steps, queries and seed as the grid.
# Run from the repository root after rand.sh has trained the seed:  bash results/oscillation/grid/pass3/reliable-eot1.sh
set -u
export OMP_NUM_THREADS=1
G=results/oscillation/grid
for s in ${SEEDS:-0 1 2}; do
  echo "=== reliable eot 1 seed $s start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "=== seed $s: %U s user, %S s system, %e s wall" \
    nice -n 19 spikeshield evaluate --run $G/runs/digits/cnn-osc-rand-bptt-s$s --suite reliable --eot 1 \
      --steps 20 --queries 200 --eps 0 0.05 0.1 0.2 --limit 200 --check-samples 100 --seed 0 \
      --device cpu --data-root ../shared/data --out $G/eot1-reliable/cnn-osc-rand-bptt-s$s
done

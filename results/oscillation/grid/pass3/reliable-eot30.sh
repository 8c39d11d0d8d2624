#!/bin/bash
# Third pass, probe: the reliable suite on the random-phase model (seed 0) with EOT 30 instead of
# the grid's 10, at eps 0.1 only (where it leaves the most above LIF), without the checks (a
# probe of whether more EOT passes lower it further, not an evaluation of record).
# Run from the repository root:  bash results/oscillation/grid/pass3/reliable-eot30.sh
set -u
export OMP_NUM_THREADS=1
G=results/oscillation/grid
s=${SEED:-0}
echo "=== reliable eot 30 eps 0.1 seed $s start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "=== seed $s: %U s user, %S s system, %e s wall" \
  nice -n 19 spikeshield evaluate --run $G/runs/digits/cnn-osc-rand-bptt-s$s --suite reliable --eot 30 \
    --steps 20 --queries 200 --eps 0.1 --limit 200 --no-checks --seed 0 \
    --device cpu --data-root ../shared/data --out $G/eot30-reliable/cnn-osc-rand-bptt-s$s

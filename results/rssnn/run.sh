#!/bin/bash
# The RSSNN REDUCED (CPU budget) grid: training (reused where the runs are complete) and both
# evaluation suites of experiments/rssnn_cpu.toml on every cell, seed by seed (whole seeds are
# done first if it is stopped), one thread, lowest priority; then the aggregate and the claims.
# Resumable: run it again and finished training and evaluations are reused.
#     bash results/rssnn/run.sh >> results/rssnn/grid.log 2>&1
set -e
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
echo "=== $(date -u) rssnn grid, commit $(git rev-parse HEAD)"
uptime
first=--overwrite  # the summary of the grid before the suites were added is replaced (runs are kept)
for s in 0 1 2; do
  /usr/bin/time -f "seed $s: %U user %S sys %e wall" nice -n 19 \
    spikeshield experiment experiments/rssnn_cpu.toml --device cpu --out results/rssnn/grid --seeds $s $first
  first=
  uptime
done
/usr/bin/time -f "aggregate: %U user %S sys %e wall" nice -n 19 \
  spikeshield experiment experiments/rssnn_cpu.toml --device cpu --out results/rssnn/grid
nice -n 19 python results/rssnn/claims.py experiments/rssnn_cpu.toml results/rssnn/grid > results/rssnn/claims.md
uptime
echo "=== $(date -u) done"

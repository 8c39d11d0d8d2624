#!/usr/bin/env bash
# The measured MNIST robustness runs (issue 4), one after another, on the run folder
# runs/mnist-cnn-lif made by:
#   spikeshield train --dataset mnist --model cnn --neuron lif --time-steps 4 --epochs 1 --out runs/mnist-cnn-lif
# Usage: bash results/robustness/run_all.sh [DATA_ROOT]   (from the repository root)
# --overwrite: these commands exist to regenerate the committed folders below, on purpose.
set -u
cd "$(dirname "$0")/../.."
DATA_ROOT="${1:-${SPIKESHIELD_DATA:-../shared/data}}"
export SPIKESHIELD_PROGRESS=0
LOG=results/robustness/commands.log
run() {
  echo "## $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) load: $(cut -d' ' -f1-3 /proc/loadavg)" >> $LOG
  echo "\$ $*" >> $LOG
  /usr/bin/time -f "wall %e s, user %U s, sys %S s, max RSS %M KB" "$@" >> $LOG 2>&1
  echo "## done $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" >> $LOG
  echo >> $LOG
}
[ "${SKIP_TIMING:-0}" = 1 ] || run spikeshield evaluate --run runs/mnist-cnn-lif --attack pgd --eps 0.1 --steps 10 --no-checks \
  --data-root "$DATA_ROOT" --device cpu --out results/robustness/mnist-pgd10-timing --overwrite
[ "${SKIP_MAIN:-0}" = 1 ] || run spikeshield evaluate --run runs/mnist-cnn-lif --attack fgsm pgd --eps 0 0.1 0.2 0.3 --steps 20 \
  --noise gaussian --data-root "$DATA_ROOT" --device cpu --out results/robustness/mnist-cnn-lif --overwrite
run spikeshield evaluate --run runs/mnist-cnn-lif --attack fgsm pgd apgd-ce apgd-dlr square transfer ensemble \
  --eps 0.1 0.2 --steps 20 --queries 500 --limit 300 --data-root "$DATA_ROOT" --device cpu \
  --out results/robustness/mnist-cnn-lif-attacks-300 --overwrite
run spikeshield evaluate --run runs/mnist-cnn-lif --attack pgd --eps 0.05 0.1 0.2 --steps 20 --gradient adaptive \
  --limit 300 --data-root "$DATA_ROOT" --device cpu --out results/robustness/mnist-cnn-lif-adaptive-300 --overwrite

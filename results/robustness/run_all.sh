#!/usr/bin/env bash
# The measured MNIST robustness runs (issue 4), one after another.
set -u
cd /work/wt-issue-4-robustness
. .venv/bin/activate
export SPIKESHIELD_PROGRESS=0
LOG=results/robustness/commands.log
: > $LOG
run() {
  echo "## $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" >> $LOG
  echo "\$ $*" >> $LOG
  /usr/bin/time -f "wall %e s, user %U s, sys %S s, max RSS %M KB" "$@" >> $LOG 2>&1
  echo "## done $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" >> $LOG
  echo >> $LOG
}
run spikeshield evaluate --run runs/mnist-cnn-lif --attack pgd --eps 0.1 --steps 10 --no-checks \
  --data-root /work/shared/data --device cpu --out results/robustness/mnist-pgd10-timing
run spikeshield evaluate --run runs/mnist-cnn-lif --attack fgsm pgd --eps 0 0.1 0.2 0.3 --steps 20 \
  --noise gaussian --data-root /work/shared/data --device cpu --out results/robustness/mnist-cnn-lif
run spikeshield evaluate --run runs/mnist-cnn-lif --attack fgsm pgd apgd-ce apgd-dlr square transfer ensemble \
  --eps 0.1 0.2 --steps 20 --limit 1000 --data-root /work/shared/data --device cpu \
  --out results/robustness/mnist-cnn-lif-attacks-1k
run spikeshield evaluate --run runs/mnist-cnn-lif --attack pgd --eps 0.05 0.1 0.2 --steps 20 --gradient adaptive \
  --limit 1000 --data-root /work/shared/data --device cpu --out results/robustness/mnist-cnn-lif-adaptive-1k

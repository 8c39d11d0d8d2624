#!/usr/bin/env bash
# The digits grid's runs under the `adaptive` attacker gradient (per sample, the worst case of
# FGSM / PGD-10 through each member: the own surrogate, BPTR, a wide and a sharp sigmoid, a
# straight-through box -- surrogate:rectangle:2, BPDA-style -- and, for a fake backward, the
# true forward's gradient), at the grid's protocol (eps 0 0.05 0.1 0.2, 200 test images,
# 100 check samples, seed 0). The records go into each run's evaluations/ folder. REDUCED.
# Run from the repository root: bash results/oscillation/grid/pass6/adaptive.sh
set -euo pipefail
runs=results/oscillation/grid/runs/digits
ls -d "$runs"/cnn-{lif-bptt,lif-pgd-at,osc-bptt,osc-rand-bptt,osc-fake-bptt,osc-fake-mild-bptt}-s{0,1,2} |
  xargs -P 2 -I{} spikeshield evaluate --run {} --attack fgsm pgd --eps 0 0.05 0.1 0.2 --steps 10 \
    --limit 200 --check-samples 100 --seed 0 --batch-size 256 --gradient adaptive --device cpu --threads 1

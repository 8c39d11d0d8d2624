#!/usr/bin/env bash
# The MNIST mlp runs of the larger-datasets oscillation grid at eps = 0.1 (L-inf) as well: at the
# grid's MNIST budget (0.2) every plain mlp model falls to 0 % under FGSM already, which cannot
# tell LIF from the oscillating neurons. The same protocol as the grid's [evaluate] (FGSM and
# PGD-10 through bptt, true and surrogate:atan:2; the reliable suite at 20 steps and 200 Square
# queries; 100 test images, 50 check samples, seed 0); the records go into each run's
# evaluations/ beside the grid's (another settings hash). REDUCED (CPU budget).
# Run from the repository root: bash results/oscillation/datasets-eps01/run.sh
set -euo pipefail
runs=results/oscillation/datasets/runs/mnist
common=(--attack fgsm pgd --eps 0 0.1 --steps 10 --limit 100 --check-samples 50 --seed 0
        --batch-size 256 --data-root ../shared/data --device cpu --threads 1)
for run in "$runs"/mlp-*; do
  for gradient in bptt true surrogate:atan:2; do
    spikeshield evaluate --run "$run" "${common[@]}" --gradient "$gradient"
  done
  spikeshield evaluate --run "$run" --suite reliable --steps 20 --queries 200 --eps 0 0.1 \
    --limit 100 --check-samples 50 --seed 0 --batch-size 256 --data-root ../shared/data --device cpu --threads 1
done

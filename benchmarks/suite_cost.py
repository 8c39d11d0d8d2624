"""What the evaluation suites cost: wall time of ``reliable`` and ``rssnn-standard`` against one
100-step SA-PGD run, on the same images, in one run.

For each case ``NAME=RUN@EPS`` (a trained run folder and an L∞ budget) the script takes the same
fixed subset of the test set (``--limit``, default 1000 images) and times, one after another:

- ``sa-pgd-100``: one SA-PGD run of ``--steps`` steps through ASSG at the paper's default
  A = 0.425 (no search, no checks) — the unit of cost;
- ``reliable``: the suite as a user runs it (A searched, checks on unless ``--no-checks``), with
  its attack time (the members) and its check time reported apart;
- ``rssnn-standard``: the suite at the same budget (checks as above).

It prints and writes (``--json``) each wall time, its ratio to ``sa-pgd-100``, the robust
accuracies, and how many samples reached each member of ``reliable`` (the cost depends on how many
samples survive the early members: few for an undefended model at a budget it falls to, most
for a robust one). The issue's goals: ``reliable`` ≤ 4× one SA-PGD-100 run on a robust model and
≤ 1.5× on an undefended one.

A robust model when none is at hand: ``--fine-tune-robust SRC DST`` fine-tunes the run SRC for one
epoch with FGSM adversarial training from a random start (Wong, Rice & Kolter, "Fast is better
than free", ICLR 2020; ε = ``--train-eps``, step 1.25ε, Adam 1e-3) and writes the run folder DST::

    python benchmarks/suite_cost.py --fine-tune-robust runs/mnist-cnn-lif runs/mnist-cnn-lif-fastat \\
        --data-root ../shared/data
    python benchmarks/suite_cost.py --data-root ../shared/data --threads 2 --json suite_cost.json \\
        --case robust=runs/mnist-cnn-lif-fastat@0.1 --case undefended=runs/mnist-cnn-lif@0.1 \\
        --case undefended=runs/mnist-cnn-lif@0.2
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from spikeshield.attacks import SharpnessSearch, build_attack, evaluate_robustness, evaluate_suite
from spikeshield.data import load_dataset
from spikeshield.io import atomic_write_json
from spikeshield.runs import load_model, load_run, read_config
from spikeshield.runtime import positive_count
from spikeshield.training import accuracy, save_model
from spikeshield.training.trainer import CONFIG_FILE, MODEL_FILE, dataset_options_for

REFERENCE_A = 0.425


def fine_tune_robust(
    src: str, dst: str, data_root: str | None, eps: float, batch_size: int, limit: int | None
) -> None:
    """One epoch of FGSM adversarial training from a random start on the run ``src``."""
    config, model = read_config(src), load_model(src)
    out = Path(dst)
    if out.exists():
        raise SystemExit(f"{out} exists: choose a new folder")
    options = dataset_options_for(config)
    train_set = load_dataset(config.dataset, "train", data_root, limit=limit, **options)
    test_set = load_dataset(config.dataset, "test", data_root, **options)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    for x, y in train_set.batches(batch_size, shuffle=True, generator=gen):
        start_point = (
            (x + (2 * torch.rand(x.shape, generator=gen) - 1) * eps).clamp(0, 1).requires_grad_(True)
        )
        (grad,) = torch.autograd.grad(F.cross_entropy(model(start_point), y), start_point)
        delta = (start_point.detach() + 1.25 * eps * grad.sign() - x).clamp(-eps, eps)
        loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    out.mkdir(parents=True)
    shutil.copy(Path(src) / CONFIG_FILE, out / CONFIG_FILE)
    save_model(out / MODEL_FILE, model, model.spec)
    acc = accuracy(model, test_set)
    seconds = time.perf_counter() - start
    print(f"fine-tuned {src} -> {dst}: FGSM-RS eps {eps}, 1 epoch, {seconds:.0f}s; clean {acc:.4f}")


def _timed(fn: Any) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def measure(name: str, run: str, eps: float, args: argparse.Namespace) -> dict[str, Any]:
    model, _, data = load_run(run, limit=args.limit, data_root=args.data_root, device=args.device)
    common = {"seed": 0, "batch_size": args.batch_size, "device": args.device}
    sapgd = build_attack("sa-pgd", steps=args.steps)
    reference, ref_s = _timed(
        lambda: evaluate_robustness(
            model, data, attacks=[sapgd], eps=[eps], gradient=f"assg:{REFERENCE_A}", checks=False, **common
        )
    )
    search = SharpnessSearch(rounds=args.rounds, samples=args.search_samples)
    checks = {"checks": not args.no_checks, "check_samples": args.check_samples}
    reliable, rel_s = _timed(
        lambda: evaluate_suite(
            model,
            data,
            "reliable",
            eps=[eps],
            steps=args.steps,
            queries=args.queries,
            search=search,
            **checks,
            **common,
        )
    )
    standard, std_s = _timed(
        lambda: evaluate_suite(model, data, "rssnn-standard", eps=eps, **checks, **common)
    )
    record = next(r for r in reliable["records"] if r["eps"] == eps)
    out = {
        "case": name,
        "run": run,
        "eps": eps,
        "images": len(data),
        "clean_accuracy": reliable["clean_accuracy"],
        "sa_pgd_100": {"seconds": ref_s, "robust_accuracy": reference["records"][0]["accuracy"]},
        "reliable": {
            "seconds": rel_s,
            "ratio": rel_s / ref_s,
            "attack_seconds": reliable["suite"]["attack_seconds"],
            "attack_ratio": reliable["suite"]["attack_seconds"] / ref_s,
            "check_seconds": reliable.get("check_seconds"),
            "robust_accuracy": record["accuracy"],
            "members": [
                {k: m[k] for k in ("member", "attacked", "fooled", "seconds", "model_calls")}
                for m in record["members"]
            ],
            "assg_search": record.get("assg_search"),
        },
        "rssnn_standard": {
            "seconds": std_s,
            "ratio": std_s / ref_s,
            "lowest_accuracy_at_eps": min(r["accuracy"] for r in standard["records"] if r.get("eps") == eps),
        },
    }
    print(
        f"{name:12s} eps {eps:g}: clean {out['clean_accuracy']:.4f}; SA-PGD-{args.steps} {ref_s:7.1f}s "
        f"(robust {out['sa_pgd_100']['robust_accuracy']:.4f}); reliable {rel_s:7.1f}s = {rel_s / ref_s:.2f}x "
        f"(attacks {out['reliable']['attack_ratio']:.2f}x, robust {record['accuracy']:.4f}); "
        f"rssnn-standard {std_s:7.1f}s = {std_s / ref_s:.2f}x",
        flush=True,
    )
    for m in out["reliable"]["members"]:
        print(
            f"    {m['member']:12s} attacked {m['attacked']:5d}, fooled {m['fooled']:5d}, {m['seconds']:.1f}s"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", action="append", default=[], metavar="NAME=RUN@EPS", help="repeatable")
    parser.add_argument("--data-root", default=None)
    parser.add_argument(
        "--limit", type=int, default=1000, help="fixed random subset of the test set (default 1000)"
    )
    parser.add_argument("--steps", type=int, default=100, help="SA-PGD/APGD steps (default 100)")
    parser.add_argument("--queries", type=int, default=1000, help="Square's queries (default 1000)")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of the search over A (default 8)")
    parser.add_argument(
        "--search-samples", type=int, default=100, help="samples the search runs on (default 100)"
    )
    parser.add_argument("--check-samples", type=int, default=500)
    parser.add_argument("--no-checks", action="store_true", help="time the suites without their checks")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--threads", type=positive_count, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    parser.add_argument("--fine-tune-robust", nargs=2, metavar=("SRC", "DST"), default=None)
    parser.add_argument("--train-eps", type=float, default=0.1, help="--fine-tune-robust's eps (default 0.1)")
    parser.add_argument(
        "--train-limit", type=int, default=None, help="--fine-tune-robust on N training images"
    )
    args = parser.parse_args()
    from spikeshield.runtime import tune_allocator

    tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.fine_tune_robust:
        src, dst = args.fine_tune_robust
        fine_tune_robust(src, dst, args.data_root, args.train_eps, args.batch_size, args.train_limit)
        return
    if not args.case:
        raise SystemExit("give at least one --case NAME=RUN@EPS (or --fine-tune-robust SRC DST)")
    results = []
    for case in args.case:
        name, _, rest = case.partition("=")
        run, _, eps = rest.rpartition("@")
        results.append(measure(name, run, float(eps), args))
    if args.json:
        meta = {
            "threads": torch.get_num_threads(), "machine": platform.machine(), "torch": torch.__version__,
            "steps": args.steps, "queries": args.queries, "rounds": args.rounds,
            "search_samples": args.search_samples, "checks": not args.no_checks,
            "check_samples": args.check_samples,
            "reference": f"sa-pgd-{args.steps} through assg:{REFERENCE_A}",
            "command": " ".join(["python", *sys.argv]),
        }  # fmt: skip
        atomic_write_json(args.json, {"meta": meta, "cases": results})


if __name__ == "__main__":
    main()

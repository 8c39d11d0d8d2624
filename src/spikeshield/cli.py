"""The ``spikeshield`` command line.

Exit codes: 0 success; 2 usage error (bad name, value or option); 1 runtime problem (missing
or corrupt file, unwritable folder, missing dependency); 130 interrupted. Errors are one line,
no traceback (set ``SPIKESHIELD_DEBUG=1`` to see one); warnings are one line each.

Start-up is lazy: this module imports neither torch nor a registry. Each command is one entry
of :data:`COMMANDS`: its one-line help, a function adding its arguments, and its handler. Only
the command being run gets its arguments (:func:`build_parser`), so ``spikeshield --help`` and
``--version`` import nothing heavy and each command imports only what it needs: the arguments
function may import the registries whose names its help lists, the handler imports the rest.
A new command is a ``_NAME_arguments(p)`` function, a ``cmd_NAME(args)`` handler (heavy imports
inside both) and one line in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from spikeshield import __version__, runtime, validate
from spikeshield.errors import SpikeshieldError, UsageError


def parse_value(text: str) -> Any:
    """``KEY=VALUE`` values: JSON numbers/booleans/null/lists, ``none``, else the string."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_options(items: Sequence[str] | None, flag: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"{flag} takes KEY=VALUE, got {item!r}")
        options[key.strip().replace("-", "_")] = parse_value(value)
    return options


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"spikeshield: error: {message} (see '{self.prog} --help')\n")


def _add_common_data(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-root",
        metavar="PATH",
        default=None,
        help="folder holding the datasets (default: $SPIKESHIELD_DATA, then each dataset's own places)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to compute (default: cuda if available)",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        default=None,
        help=(
            "CPU threads (default: $SPIKESHIELD_THREADS, else $OMP_NUM_THREADS, else one per CPU this "
            "process may use; with --jobs, the total the workers split). Idle threads sleep rather than "
            "spin, so runs side by side share the CPUs without slowing each other down; see "
            "docs/performance.md"
        ),
    )


def _add_runner_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--jobs",
        type=runtime.positive_count,
        default=1,
        metavar="N",
        help="train and evaluate N cells at once in worker processes, the CPU cores split between them "
        "(default: 1)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the summary of another experiment in --out (its runs and evaluations are kept)",
    )


def _run_arguments(p: argparse.ArgumentParser) -> None:
    from spikeshield.experiments.plan import preset_data
    from spikeshield.models import MODELS

    preset, _ = preset_data("quick")
    train_defaults, eval_defaults = preset["train"], preset["evaluate"]
    p.description = (
        "Train IF, exponential LIF and linear-leak LIF (same net, budget and seeds) on the embedded "
        "8x8 digits set and compare clean accuracy with accuracy under Gaussian input noise and under "
        "FGSM and PGD attacks (with the gradient-masking checks). The grid is the preset experiment "
        "'quick' (spikeshield/experiments/presets/quick.toml) run by the experiment runner, so it is "
        "resumable: rerun the same command with the same --out to finish it. Prints two tables and "
        "writes summary.json, table.md, table.csv, a PNG and one run folder per neuron and seed "
        "(each with its evaluation) under --out."
    )
    p.add_argument(
        "--out", metavar="DIR", default=None, help="output folder (default: runs/quick-<date>-<time>)"
    )
    p.add_argument("--dataset", default=None, help="dataset (default: digits, embedded)")
    p.add_argument(
        "--model",
        default=None,
        help=f"architecture (default: {preset['models'][0]}; one of {', '.join(MODELS.names())})",
    )
    p.add_argument(
        "--neurons",
        nargs="+",
        default=None,
        metavar="NEURON",
        help=f"neurons to compare (default: {' '.join(preset['neurons'])})",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help=f"epochs per model (default: {train_defaults['epochs']})"
    )
    p.add_argument(
        "--time-steps",
        "-T",
        type=int,
        default=None,
        help=f"time steps T (default: {train_defaults['time_steps']})",
    )
    p.add_argument("--seeds", type=int, default=None, help="number of seeds per neuron (default: 1)")
    p.add_argument(
        "--sigmas",
        type=float,
        nargs="+",
        default=None,
        metavar="SIGMA",
        help="Gaussian noise levels on [0, 1] pixels (default: "
        + " ".join(f"{v:g}" for v in eval_defaults["corruptions"]["gaussian"])
        + ")",
    )
    p.add_argument("--surrogate", default=None, help="surrogate shared by all neurons (default: sigmoid:4)")
    p.add_argument(
        "--attacks",
        nargs="*",
        default=None,
        metavar="ATTACK",
        help="attacks next to the noise sweep, L-inf, BPTT (default: fgsm pgd; none to skip)",
    )
    p.add_argument(
        "--eps",
        type=float,
        nargs="+",
        default=None,
        metavar="EPS",
        help="attack budgets on [0, 1] pixels (default: "
        + " ".join(f"{v:g}" for v in eval_defaults["eps"])
        + ")",
    )
    p.add_argument("--steps", type=int, default=None, help=f"PGD steps (default: {eval_defaults['steps']})")
    p.add_argument(
        "--resume",
        action="store_true",
        help="accepted for old scripts: a run with the same --out always continues where it stopped",
    )
    _add_runner_options(p)
    _add_common_data(p)


def _train_arguments(p: argparse.ArgumentParser) -> None:
    from spikeshield.data import DATASETS
    from spikeshield.models import ENCODERS, MODELS, READOUTS
    from spikeshield.neurons import NEURONS
    from spikeshield.training.presets import PRESETS

    p.description = (
        "Train one network with backpropagation through time. Writes DIR/config.json, "
        "DIR/checkpoint.safetensors (after each epoch), DIR/metrics.json and DIR/model.safetensors."
    )
    p.add_argument(
        "--dataset", default="digits", help=f"dataset (default: digits; one of {', '.join(DATASETS.names())})"
    )
    p.add_argument(
        "--model", default=None, help=f"architecture (default: cnn; one of {', '.join(MODELS.names())})"
    )
    p.add_argument(
        "--neuron", default="lif", help=f"neuron (default: lif; one of {', '.join(NEURONS.names())})"
    )
    p.add_argument(
        "--preset",
        default=None,
        metavar="NAME[:ARG]",
        help="a published training protocol as defaults that the other flags override: "
        f"{', '.join(PRESETS.names())} (plif: the PLIF/KLIF protocol — plifnet, 10 voting neurons per class "
        "with MSE, Adam 1e-3 cosine, batch 16, T = 8 static / 10 N-MNIST / 20 DVS; plif:T sets T)",
    )
    p.add_argument(
        "--neuron-opt",
        action="append",
        metavar="KEY=VALUE",
        help="neuron option, repeatable (e.g. tau=2.0, surrogate=atan:2, reset=soft)",
    )
    p.add_argument(
        "--model-opt",
        action="append",
        metavar="KEY=VALUE",
        help="architecture option, repeatable (e.g. channels=64, hidden=[512])",
    )
    p.add_argument("--dataset-opt", action="append", metavar="KEY=VALUE", help="dataset option, repeatable")
    p.add_argument("--time-steps", "-T", type=int, default=None, help="time steps T (default: 4)")
    p.add_argument("--encoder", choices=ENCODERS, default="direct", help="input encoding (default: direct)")
    p.add_argument(
        "--readout",
        choices=READOUTS,
        default=None,
        help="mean logits over T with CE, or voting spike rates with MSE (default: mean)",
    )
    p.add_argument(
        "--loss", choices=("ce", "mse"), default=None, help="default: ce for mean readout, mse for voting"
    )
    p.add_argument("--no-normalize", action="store_true", help="do not normalise inputs inside the model")
    p.add_argument("--epochs", type=int, default=1, help="epochs (default: 1)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: 128)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default=None, help="default: adam")
    p.add_argument(
        "--lr", type=float, default=None, help="learning rate (default: 3e-3 for adam, 0.1 for sgd)"
    )
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="default: 0")
    p.add_argument(
        "--schedule",
        choices=("cosine", "constant"),
        default=None,
        help="learning-rate schedule (default: cosine)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--limit-train",
        type=int,
        default=None,
        metavar="N",
        help="use a fixed random subset of N training samples",
    )
    p.add_argument(
        "--limit-test",
        type=int,
        default=None,
        metavar="N",
        help="use a fixed random subset of N test samples",
    )
    p.add_argument("--amp", action="store_true", help="bfloat16 mixed precision (CUDA only)")
    p.add_argument(
        "--augment",
        nargs="+",
        default=None,
        metavar="SPEC",
        help="augment training batches on their device, in order: crop:PADDING, flip[:P], cutout:SIZE "
        "(e.g. --augment crop:4 flip cutout:16); none: no augmentation (also not a preset's)",
    )
    from spikeshield.training.modes import TRAINING_MODES

    p.add_argument(
        "--mode",
        default="bptt",
        help="training mode (default: bptt, plain BPTT; one of "
        f"{', '.join(TRAINING_MODES.names())}: gaussian / at / at-reg train on clean and perturbed "
        "batches with the MPPD regulariser of Ding et al., ICML 2024)",
    )
    p.add_argument(
        "--mode-opt",
        action="append",
        metavar="KEY=VALUE",
        help="training-mode option, repeatable (e.g. rho=1, step=0.05, mppd=l1, beta=0.001)",
    )
    p.add_argument("--out", metavar="DIR", required=True, help="run folder to write")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last complete epoch"
    )
    _add_common_data(p)


def _analyze_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "rate-vs-leak: firing rate of IF, exponential LIF (against tau) and linear-leak LIF (against "
        "the leak) for constant and random input currents, simulated beside the closed form; writes "
        "rate_vs_leak.json and rate_vs_leak.png and prints where the rate falls with the leak. "
        "perturbation: for each --run, per spiking layer, the measured gain max_t |eps[t]| / "
        "|input change| of the membrane-potential perturbation under Gaussian noise and PGD beside "
        "the stability bound sqrt(1/(1-lambda))*|W|_2 (Ding et al., ICML 2024); writes "
        "perturbation.json and perturbation.png. "
        "oscillation: for each --run with oscillating-lif neurons, membrane traces of a few neurons "
        "with and without the oscillation, and per test sample the cosine similarity between the "
        "input gradient the model hands out (a fake backward's) and the true forward's (Jiang & "
        "Zhang, arXiv 2211.02223); writes oscillation.json, oscillation_traces.png and "
        "oscillation_cosine.png."
    )
    p.add_argument("analysis", choices=("rate-vs-leak", "perturbation", "oscillation"), help="which analysis")
    p.add_argument(
        "--out", metavar="DIR", default=None, help="output folder (default: runs/<analysis>-<time>)"
    )
    p.add_argument(
        "--run",
        nargs="+",
        metavar="DIR",
        default=None,
        help="perturbation, oscillation: trained run folders to compare (e.g. one trained with MPPD, "
        "one without; a defence with a fake backward and one without)",
    )
    p.add_argument(
        "--samples", type=int, default=200, help="perturbation, oscillation: test samples (default: 200)"
    )
    p.add_argument(
        "--eps",
        type=float,
        default=None,
        help="perturbation: L-inf budget of the PGD perturbation (default: 0.1 for 1 channel, else 8/255)",
    )
    p.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="perturbation: std of the Gaussian noise (default: 0.1 for 1 channel, else 8/255)",
    )
    p.add_argument("--pgd-steps", type=int, default=10, help="perturbation: PGD steps (default: 10)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="perturbation: seed of the noise and PGD start; oscillation: of a random phase",
    )
    p.add_argument(
        "--note",
        default="",
        metavar="TEXT",
        help="perturbation, oscillation: a label for the figures' titles and the JSON, "
        "e.g. 'REDUCED (CPU budget)'",
    )
    _add_common_data(p)
    p.add_argument(
        "--time-steps",
        "-T",
        type=int,
        default=2000,
        help="simulated time steps per input level (default: 2000)",
    )
    p.add_argument("--steps", type=int, dest="old_steps", default=None, help=argparse.SUPPRESS)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier analysis in --out")
    p.add_argument(
        "--leaks",
        type=float,
        nargs="+",
        default=None,
        metavar="LAMBDA",
        help="linear leaks (default: 0 0.05 0.1 0.2 0.3 0.5)",
    )
    p.add_argument(
        "--taus",
        type=float,
        nargs="+",
        default=None,
        metavar="TAU",
        help="LIF time constants (default: 1.5 2 4 8 16)",
    )
    p.add_argument(
        "--noise-std",
        type=float,
        default=0.3,
        help="std of the random input around each level (default: 0.3)",
    )


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    from spikeshield.attacks import ATTACKS, CORRUPTIONS

    p.description = (
        "Evaluate a trained run (its config.json and model.safetensors) on its test set under "
        "adversarial attacks over an eps sweep and random corruptions over a level sweep, with the "
        "gradient-masking checks (eps = 0 equals clean; accuracy non-increasing in eps; more "
        "steps/restarts help neither the model nor, beyond noise, the attack; single-step, black-box "
        "and large-eps tests; paired tests on the same samples). When an attack had not converged, "
        "the stronger result is reported. Writes "
        "robustness.json (one record per attack and level, with every setting), robustness.csv and "
        "PNG curves into a folder of their own, RUN/evaluations/<gradient>-<settings hash>/ (or --out), "
        "so a second evaluation never replaces the first; the same settings on the same weights are "
        "reused, not redone. Default: FGSM and PGD-10 (L-inf) plus Gaussian noise."
    )
    p.add_argument("--run", metavar="DIR", required=True, help="run folder written by 'spikeshield train'")
    p.add_argument(
        "--attack",
        nargs="+",
        metavar="NAME",
        default=None,
        help=f"attacks ({', '.join(ATTACKS.names())}); default fgsm pgd unless only --corruption is given",
    )
    p.add_argument(
        "--eps",
        type=float,
        nargs="+",
        default=None,
        metavar="EPS",
        help="budgets on [0, 1] inputs (default L-inf: 0 .05 .1 .2 .3 for 1-channel inputs, "
        "0 2/255 4/255 8/255 16/255 otherwise; L2: 0 .5 1 1.5 2 3, or 0 .25 .5 1)",
    )
    p.add_argument("--norm", choices=("linf", "l2"), default="linf", help="threat model (default: linf)")
    p.add_argument("--steps", type=int, default=None, help="steps of iterative attacks (default: 10)")
    p.add_argument("--step-size", type=float, default=None, help="PGD step size > 0 (default 2.5*eps/steps)")
    p.add_argument(
        "--schedule", choices=("constant", "cosine", "step"), default=None, help="PGD step schedule"
    )
    p.add_argument("--restarts", type=int, default=None, help="random restarts (default: 1)")
    p.add_argument(
        "--gradient",
        default="bptt",
        metavar="NAME",
        help="the attacker's gradient: bptt (own surrogate, default), surrogate:NAME[:VALUE], bptr, "
        "true (true forward of fake-gradient neurons), assg[:A] (adaptive sharpness; A searched if not "
        "given), combinations like true+surrogate:atan:2, or adaptive[:M1,M2,...] (per-sample worst case "
        "over several)",
    )
    p.add_argument(
        "--eot",
        type=int,
        default=None,
        metavar="N",
        help="EOT samples per gradient (default: 1; --suite reliable: 10 for a stochastic model)",
    )
    p.add_argument(
        "--queries", type=int, default=None, help="query budget of the square attack (default: 1000)"
    )
    p.add_argument(
        "--corruption",
        "--noise",  # the old name, kept so that existing commands still run
        dest="noise",
        nargs="+",
        metavar="NAME",
        default=None,
        help=f"random corruptions ({', '.join(CORRUPTIONS.names())}); "
        "default gaussian unless --attack is given",
    )
    p.add_argument(
        "--levels",
        type=float,
        nargs="+",
        default=None,
        metavar="LEVEL",
        help="corruption levels (default per corruption)",
    )
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="a fixed random subset of N test samples"
    )
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size (default: 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    p.add_argument(
        "--source",
        metavar="DIR",
        default=None,
        help="transfer attack: craft on this run's model (default: the model's ANN twin, fine-tuned)",
    )
    p.add_argument(
        "--twin-epochs",
        type=int,
        default=None,
        help="transfer attack without --source: epochs to fine-tune the ANN twin on the training set "
        "(default: 1; 0 = weights as copied)",
    )
    p.add_argument(
        "--no-checks",
        action="store_true",
        help="skip the gradient-masking checks and their extra runs (not recommended)",
    )
    p.add_argument(
        "--check-samples",
        type=int,
        default=500,
        help="samples for the more-steps/restarts and large-eps checks (default: 500)",
    )
    from spikeshield.attacks import SUITES

    p.add_argument(
        "--suite",
        choices=SUITES.names(),
        default=None,
        help="a named evaluation suite instead of --attack/--corruption: "
        + "; ".join(f"{n}: {SUITES.describe(n)}" for n in SUITES.names())
        + " (--eps sets its budget(s), default 8/255)",
    )
    p.add_argument(
        "--assg-rounds",
        type=int,
        default=None,
        metavar="N",
        help="rounds of the search over ASSG's A (--suite reliable, --gradient assg; default 8)",
    )
    p.add_argument(
        "--assg-samples",
        type=int,
        default=None,
        metavar="N",
        help="samples each A of the search is tried on (--suite reliable, --gradient assg; default 100; "
        "the chosen A attacks the rest)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="where to write (default: RUN/evaluations/<gradient or suite>-<settings hash>/)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="redo an evaluation with the same settings, or replace another evaluation in --out",
    )
    _add_common_data(p)


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Find every evaluation (robustness.json) in the given run folders or folders of runs, and "
        "aggregate them as 'experiment' does: mean ± std over seeds per dataset, model, neuron, "
        "perturbation and level, the checks and the verdicts. Writes summary.json, table.md, "
        "table.csv and one PNG per dataset × model into --out."
    )
    p.add_argument("runs", nargs="+", metavar="DIR", help="run folders, or folders holding runs")
    p.add_argument("--out", metavar="DIR", default="report", help="output folder (default: report)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")


def _experiment_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Train every (dataset, model, neuron, training mode, seed) of an experiment file (TOML, e.g. "
        "experiments/linear_leak.toml), evaluate each under its noise sweeps and attacks (once per "
        "attacker gradient), and write table.md / table.csv / summary.json (mean ± std over seeds) and "
        "one PNG per dataset × model into --out. Resumable: rerun the same command to finish an "
        "interrupted experiment; complete runs and evaluations are kept. The summary covers every "
        "finished cell of the grid in --out. Shrink the grid to try it cheaply with --seeds, --models, "
        "--neurons, --limit-train, --limit-test and --epochs (recorded in the outputs)."
    )
    p.add_argument("file", metavar="FILE", help="experiment definition (.toml)")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (runs/ and the summary)")
    p.add_argument(
        "--dataset",
        nargs="+",
        metavar="NAME",
        default=None,
        help="run only these datasets of the file",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED", help="run only these seeds")
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="MODEL",
        help="run only these models (on a time_steps axis also rows as the tables name them, e.g. mlp-T2)",
    )
    p.add_argument(
        "--neurons",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="run only these neurons (the file's labels)",
    )
    p.add_argument(
        "--limit-train", type=int, default=None, metavar="N", help="train on a fixed subset of N samples"
    )
    p.add_argument(
        "--limit-test",
        type=int,
        default=None,
        metavar="N",
        help="a fixed subset of N test samples, for the clean accuracy and the evaluation",
    )
    p.add_argument("--epochs", type=int, default=None, help="train every run for this many epochs")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check the file, build each model of the runs once (so bad options fail now), list the runs; "
        "train nothing",
    )
    _add_runner_options(p)
    _add_common_data(p)


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Export a trained run (its config.json and model.safetensors) to the Neuromorphic Intermediate "
        "Representation. Parameters map exactly (README: 'Export to NIR'); layers or neurons NIR cannot "
        "express are refused with the reason. The file is read back and compared with the model."
    )
    p.add_argument("--run", metavar="DIR", required=True, help="run folder written by 'spikeshield train'")
    p.add_argument("--format", choices=("nir",), default="nir", help="output format (default: nir)")
    p.add_argument("--out", metavar="FILE", required=True, help="file to write, e.g. model.nir")
    p.add_argument(
        "--dt",
        type=float,
        default=1e-3,
        help="duration of one time step in NIR's time unit (default: 1e-3; snnTorch 1.0 reads with 1e-4)",
    )
    p.add_argument(
        "--overwrite", "--force", action="store_true", help="replace --out if it exists (--force: older name)"
    )


def _convert_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "multistep: a noisy-if run trained at T = 1 (noise-based training, Jiang & Zhang 2023) has its "
        "weights copied into soft-reset IF neurons run for --time-steps N. ann2snn: a relu run (the ANN "
        "twin, '--neuron relu --time-steps 1') is normalised layer by layer with a robust maximum (the "
        "--percentile of its activations on training images) and converted the same way. Writes a normal "
        "run folder (config.json, model.safetensors, metrics.json) that 'evaluate' reads, plus "
        "conversion.json (source, scales, accuracy at each --sweep N). The source run is only read."
    )
    p.add_argument("--run", metavar="DIR", required=True, help="trained source run folder")
    p.add_argument("--to", choices=("multistep", "ann2snn"), required=True, help="conversion (see above)")
    p.add_argument(
        "--time-steps", "-T", type=int, required=True, metavar="N", help="time steps N of the result"
    )
    p.add_argument("--out", metavar="DIR", required=True, help="run folder to write (must not hold a run)")
    p.add_argument(
        "--v-init", type=float, default=0.5, help="start potential V[0] as a fraction of V_th (default: 0.5)"
    )
    p.add_argument(
        "--threshold-scale",
        type=float,
        default=1.0,
        help="neurons act with threshold θ·V_th and spikes weighing θ (default: 1)",
    )
    p.add_argument(
        "--percentile",
        type=float,
        default=None,
        help="ann2snn: robust maximum, percentile of each layer's activations (default: 99.9; 100 = max)",
    )
    p.add_argument(
        "--calibration-samples", type=int, default=None, help="ann2snn: training images for λ (default: 1000)"
    )
    p.add_argument(
        "--sweep", type=int, nargs="+", default=None, metavar="N", help="also measure accuracy at these N"
    )
    _add_common_data(p)


def _neurons_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "List neurons, their options and defaults, and the surrogate gradients."


def _models_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "List the registered architectures and their options."


def _datasets_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "List every dataset, where its files were looked for, and whether it can be loaded."
    p.add_argument(
        "--data-root",
        metavar="PATH",
        default=None,
        help="data root to look in (default: $SPIKESHIELD_DATA, then defaults)",
    )


class Command(NamedTuple):
    """A subcommand: its one-line help, the function adding its arguments (and description) to its
    parser, and its handler. Both functions import what they need themselves."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The command-line parser. Every command is listed; ``command`` chooses which get their
    arguments: that one only (what :func:`main` does, so that nothing another command needs is
    imported), none (None: enough for ``--help`` and ``--version``), or all (``"*"``)."""
    parser = _Parser(
        prog="spikeshield",
        description=(
            "Train spiking neural networks that stay accurate under noise and attack, "
            "and measure it honestly."
        ),
        epilog="Run 'spikeshield COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"spikeshield {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, entry in COMMANDS.items():
        p = sub.add_parser(name, help=entry.help)
        if command in ("*", name):
            entry.arguments(p)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named in ``argv``: its first word that is not an option (the top level has
    only ``--help`` and ``--version``, which take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _wrote(paths: Sequence[str | Path], after: str, figures: str) -> None:
    """Print the files a command wrote (those it did write, no others) and, without matplotlib,
    that its ``figures`` were skipped and how to get them."""
    from spikeshield.analysis.plots import skipped_note

    print(f"wrote {', '.join(str(p) for p in paths)}{after}")
    note = skipped_note(figures)
    if note:
        print(note)


def _as_flag(error: UsageError, flags: dict[str, str]) -> UsageError:
    """``error`` with the setting it starts with (a key of ``flags``, e.g. ``time_steps``) renamed
    to the flag the user typed (``--time-steps``); unchanged when it names none of them."""
    text = str(error)
    for name in sorted(flags, key=len, reverse=True):
        if text.startswith(name + " "):
            return UsageError(flags[name] + text[len(name) :])
    return error


def _default_out(prefix: str) -> Path:
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_run(args: argparse.Namespace) -> int:
    from spikeshield.analysis.report import pivot, span
    from spikeshield.experiments.plan import quick_plan
    from spikeshield.experiments.runner import run_plan

    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    plan = quick_plan(
        **{k: getattr(args, k) for k in ("dataset", "model", "neurons", "epochs", "time_steps", "seeds")},
        **{k: getattr(args, k) for k in ("sigmas", "surrogate", "attacks", "eps", "steps")},
    )
    out = Path(args.out) if args.out else _default_out("quick")
    summary = run_plan(
        plan,
        out,
        data_root=args.data_root,
        device=args.device,
        jobs=args.jobs,
        overwrite=args.overwrite,
        command="spikeshield " + " ".join(getattr(args, "argv", [])),
    )
    dataset, model = plan.datasets[0].name, plan.models[0]
    m = {k: span(v) for k, v in summary["datasets"][0]["measured"].items()}
    print(
        f"\nAccuracy on {m['evaluated_samples']} {dataset} test samples under Gaussian noise "
        f"({model}, T={m['time_steps']}, seeds {m['seeds']}; mean±std over seeds):"
    )
    print(pivot(summary, dataset, model, "noise"))
    if any(r["kind"] == "attack" for r in summary["rows"]):
        print("\nAccuracy under attack (L∞, BPTT through each neuron's surrogate):")
        print(pivot(summary, dataset, model, "attack"))
        masked = [c["run"] for c in summary["checks"] if c["gradient_masking_suspected"]]
        print(
            f"gradient masking suspected for: {', '.join(masked)}"
            if masked
            else "gradient-masking checks: no sign of gradient masking (see table.md)"
        )
    print()
    _wrote(summary["written"], f" ({summary['seconds']:.0f}s)", "the figure (PNG)")
    return 0


def _augment_specs(items: list[str] | None) -> list[str] | None:
    """``--augment`` as specs; ``none`` turns a preset's augmentation off; None when not given."""
    if items is None:
        return None
    specs = [s.strip() for item in items for s in item.split(",") if s.strip()]
    return [] if specs == ["none"] else specs


def cmd_train(args: argparse.Namespace) -> int:
    from spikeshield.training import TrainConfig, train
    from spikeshield.training.presets import with_preset

    given = {
        "model": args.model,
        "model_options": parse_options(args.model_opt, "--model-opt") or None,
        "dataset_options": parse_options(args.dataset_opt, "--dataset-opt") or None,
        "time_steps": args.time_steps,
        "readout": args.readout,
        "loss": args.loss,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "schedule": args.schedule,
        "augment": _augment_specs(args.augment),
    }
    # flags not given fall to the preset's value, then to TrainConfig's default
    settings = with_preset(args.preset, args.dataset, {k: v for k, v in given.items() if v is not None})
    # TrainConfig names a bad number by its field; the flags are the same names with hyphens
    numbers = ("epochs", "batch_size", "limit_train", "limit_test", "seed", "lr", "momentum", "weight_decay")
    flags = {name: "--" + name.replace("_", "-") for name in numbers}
    flags["time_steps"] = "--time-steps (-T)"
    try:
        config = TrainConfig(
            dataset=args.dataset,
            neuron=args.neuron,
            neuron_options=parse_options(args.neuron_opt, "--neuron-opt"),
            encoder=args.encoder,
            normalize=not args.no_normalize,
            epochs=args.epochs,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            seed=args.seed,
            limit_train=args.limit_train,
            limit_test=args.limit_test,
            data_root=args.data_root,
            device=args.device,
            amp=args.amp,
            mode=args.mode,
            mode_options=parse_options(args.mode_opt, "--mode-opt"),
            **settings,
        )
    except UsageError as exc:
        raise _as_flag(exc, flags) from None
    out = Path(args.out)
    if args.resume and not (out.is_dir() and any(out.iterdir())):
        raise UsageError(f"--resume: {out} holds no run to continue (it is empty or missing); drop --resume")
    metrics = train(config, out, resume=args.resume)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun only rank 0 reports
    print(
        f"test accuracy {metrics['test_accuracy']:.4f} after {metrics['epochs']} epoch(s); "
        f"{metrics['train_seconds']:.1f}s training, {metrics['images_per_second']:.0f} images/s; "
        f"wrote {args.out}"
    )
    _note_unsettled_batch_norm(out)
    return 0


#: above this weight of batch norm's start values the test accuracy is flagged as understated
UNSETTLED_BATCH_NORM = 0.01


def _note_unsettled_batch_norm(out: Path) -> None:
    """One line on stderr when the run's batch norm had too few updates for its running
    statistics to have left their start values (the first 'train --dataset digits' at one
    epoch: 12 batches, start values still weigh 0.28, test accuracy near chance). Silent when
    the weights file cannot be read as expected (the note is advice, never an error)."""
    from spikeshield.training.run_files import MODEL_FILE, batch_norm_start_weight

    weights = out / MODEL_FILE
    if not weights.is_file():  # a regular file only: never open a FIFO or a device
        return
    try:
        found = batch_norm_start_weight(weights)
    except Exception:  # a damaged file is reported by the commands that load it
        return
    if found is None or found[1] <= UNSETTLED_BATCH_NORM:
        return
    updates, weight = found
    print(
        f"note: batch norm's running statistics were updated only {updates} times (once per "
        f"training forward pass), so they still weigh their start values (mean 0, variance 1) by "
        f"{weight:.2f} and the test accuracy may understate the trained model; train longer "
        "(--epochs) or on more data",
        file=sys.stderr,
    )


def _check_evaluate_flags(args: argparse.Namespace) -> None:
    """Every number and name of ``evaluate`` checked before any work (loading the run, fitting
    a transfer attack's ANN twin, the attacks): one line naming the flag."""
    from spikeshield.attacks.gradient import resolve_gradient

    for eps in args.eps or []:
        if not validate.is_finite_number(eps) or eps < 0:
            raise UsageError(f"--eps must be finite and >= 0, got {eps}")
    validate.positive_int("--check-samples", args.check_samples)
    counts = {"--steps": args.steps, "--restarts": args.restarts, "--queries": args.queries,
              "--eot": args.eot, "--limit": args.limit, "--batch-size": args.batch_size,
              "--assg-samples": args.assg_samples}  # fmt: skip
    for flag, value in counts.items():
        if value is not None:
            validate.int_at_least(flag, value, 1)
    if args.step_size is not None:
        validate.positive("--step-size", args.step_size)
    validate.non_negative_int("--seed", args.seed)
    if args.twin_epochs is not None:
        validate.non_negative_int("--twin-epochs", args.twin_epochs)
    if args.assg_rounds is not None:
        validate.int_at_least("--assg-rounds", args.assg_rounds, 0)
    try:
        resolve_gradient(args.gradient)
    except UsageError as exc:
        text, given = str(exc), repr(args.gradient)
        for prefix in (f"{given}: ", f"gradient {given}: ", f"gradient {given} "):
            text = text.removeprefix(prefix)
        raise UsageError(f"--gradient {args.gradient or repr(args.gradient)}: {text}") from None
    _check_evaluate_applies(args)
    # the defaults of the flags whose absence the check above had to see
    for name, default in (("twin_epochs", 1), ("assg_rounds", 8), ("assg_samples", 100)):
        if getattr(args, name) is None:
            setattr(args, name, default)


#: the flag of each attack option of ``evaluate``, for the error when no attack asked for takes it
_ATTACK_FLAGS = {
    "steps": "--steps",
    "step_size": "--step-size",
    "schedule": "--schedule",
    "restarts": "--restarts",
    "queries": "--queries",
}


def _check_evaluate_applies(args: argparse.Namespace) -> None:
    """An option of ``evaluate`` that nothing asked for would use is an error naming it, not
    silently dropped. An attack option taken by at least one of the attacks (``--attack fgsm pgd
    --steps 20``: PGD's) is passed to those that take it, as documented."""
    from spikeshield.attacks import ATTACKS
    from spikeshield.attacks.base import attack_options
    from spikeshield.attacks.gradient import resolve_gradient

    if args.suite is not None:  # the attack options a suite takes: EvalSettings.from_request
        transfer, what = args.suite == "reliable", f"--suite {args.suite}"
    else:
        attacks = args.attack if args.attack is not None else ([] if args.noise else ["fgsm", "pgd"])
        transfer = "transfer" in attacks
        what = f"--attack {' '.join(attacks)}"
        given = [flag for name, flag in _ATTACK_FLAGS.items() if getattr(args, name) is not None]
        if args.eps is not None:
            given.insert(0, "--eps")
        if given and not attacks:
            raise UsageError(
                f"{given[0]} is an attack setting and no attack runs (only --corruption "
                f"{' '.join(args.noise)}); drop {' '.join(given)} or add --attack NAME"
            )
        for name, flag in _ATTACK_FLAGS.items():
            if getattr(args, name) is None or any(name in attack_options(a) for a in attacks):
                continue
            own = ", ".join(dict.fromkeys(o for a in attacks for o in attack_options(a))) or "none"
            takes = ", ".join(a for a in ATTACKS.names() if name in attack_options(a))
            raise UsageError(
                f"{flag} does not apply to {what} (its options: {own}); {flag} is an option of "
                f"{takes}; drop {flag}"
            )
    if not transfer:
        for flag, value, does in (
            ("--source", args.source, "sets the transfer attack's source model"),
            ("--twin-epochs", args.twin_epochs, "fine-tunes the transfer attack's ANN twin"),
        ):
            if value is not None:
                raise UsageError(
                    f"{flag} {does} and {what} runs no transfer attack; drop {flag} (the transfer "
                    "attack: --attack transfer, or a member of --suite reliable)"
                )
    elif args.source is not None and args.twin_epochs is not None:
        raise UsageError("--twin-epochs fine-tunes the ANN twin, which --source replaces; drop one of them")
    searched = args.suite == "reliable" or resolve_gradient(args.gradient).needs_search
    if not searched:
        for flag, value in (("--assg-rounds", args.assg_rounds), ("--assg-samples", args.assg_samples)):
            if value is not None:
                raise UsageError(
                    f"{flag} sets the search over ASSG's A, which runs only with --gradient assg (no A "
                    f"given) or --suite reliable; drop {flag}"
                )


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from spikeshield.analysis.robustness import checks_text, summary_table
    from spikeshield.attacks import build_attack, corrupt
    from spikeshield.experiments.pipeline import EvalSettings, evaluate

    _check_evaluate_flags(args)
    settings = EvalSettings.from_request(
        suite=args.suite,
        attacks=args.attack,
        noises=args.noise,
        levels=args.levels,
        eps=args.eps,
        attack_options=dict(
            steps=args.steps,
            step_size=args.step_size,
            schedule=args.schedule,
            restarts=args.restarts,
            queries=args.queries,
        ),
        norm=args.norm,
        gradient=args.gradient,
        eot_samples=args.eot,
        assg_rounds=args.assg_rounds,
        assg_samples=args.assg_samples,
        limit=args.limit,
        batch_size=args.batch_size,
        seed=args.seed,
        source=args.source,
        twin_epochs=args.twin_epochs,
        checks=not args.no_checks,
        check_samples=args.check_samples,
    )
    # each attack's and corruption's own checks (norm, options, levels) before any work
    for name in settings.attacks:
        build_attack(name, strict=False, eps=0.0, norm=settings.norm, **settings.attack_options)
    probe = torch.zeros(1, 1, 2, 1, 1)  # one empty event frame: every corruption takes it
    for name, levels in settings.noises.items():
        for level in levels:
            corrupt(name, probe, level)
    evaluation = evaluate(
        args.run,
        settings,
        out_dir=args.out,
        overwrite=args.overwrite,
        data_root=args.data_root,
        device=args.device,
        command="spikeshield " + " ".join(getattr(args, "argv", [])),
        log=print,
    )
    result = evaluation.result
    if evaluation.reused:
        print(f"{evaluation.folder}: this evaluation exists (same settings and weights); shown, not redone")
        print("(pass --overwrite to redo it)")
    print(summary_table(result))
    print(checks_text(result))
    if evaluation.reused:
        print(f"found {', '.join(str(p) for p in evaluation.files)} ({result['seconds']:.0f}s)")
    else:
        _wrote(evaluation.files, f" ({result['seconds']:.0f}s)", "the accuracy curves (PNG)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from spikeshield.analysis.report import (
        CSV_FILE,
        SUMMARY_FILE,
        TABLE_FILE,
        aggregate,
        find_entries,
        markdown,
        write_report,
    )
    from spikeshield.io import refuse_to_replace

    out = Path(args.out)
    refuse_to_replace(
        [out / SUMMARY_FILE, out / TABLE_FILE, out / CSV_FILE], overwrite=args.overwrite, what="report"
    )
    entries, notes = find_entries(args.runs)
    sources = sorted({e.run for e in entries})
    summary = aggregate(entries, title="Robustness report", notes=notes, sources=sources)
    written = write_report(summary, out)
    print(markdown(summary))
    _wrote(written, f" ({len(entries)} evaluations of {len(sources)} runs)", "the figures (PNG)")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from spikeshield.analysis.report import markdown
    from spikeshield.experiments.plan import build_models, load_plan, shrink
    from spikeshield.experiments.runner import run_plan

    flags = ("seeds", "models", "neurons", "limit_train", "limit_test", "epochs")
    plan = shrink(load_plan(args.file), datasets=args.dataset, **{k: getattr(args, k) for k in flags})
    if args.dry_run:
        cells = plan.selected()
        for c in cells:
            print(f"{c.dataset:10s} {plan.model_label(c):8s} {c.neuron:12s} {c.mode:8s} seed {c.seed}")
        built = build_models(plan, cells)
        protocols = [plan.dataset(c.dataset).evaluate for c in cells]
        gradients = sorted({g for p in protocols for g in p["gradients"]})
        suites = sorted({s for p in protocols for s in p["suites"]})
        also = f"; suite(s): {', '.join(suites)}" if suites else ""
        print(f"{len(cells)} runs, each evaluated under gradient(s): {', '.join(gradients) or 'none'}{also}")
        held = sorted({g for p in protocols if p.get("validation") for g in p["validation"]["gradients"]})
        if held:
            print(f"validation on held-out training samples under gradient(s): {', '.join(held)}")
        print(f"checked: each of the {built} distinct model(s) was built once with its options")
        return 0
    summary = run_plan(
        plan,
        args.out,
        data_root=args.data_root,
        device=args.device,
        jobs=args.jobs,
        overwrite=args.overwrite,
        command="spikeshield " + " ".join(getattr(args, "argv", [])),
    )
    print(markdown(summary))
    _wrote(summary["written"], f" ({summary['seconds']:.0f}s)", "the figures (PNG)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from spikeshield.interop.nir_export import export_run

    validate.positive("--dt", args.dt)  # the flag's name in the error, before any work
    done = export_run(args.run, args.out, dt=args.dt, overwrite=args.overwrite)
    print(
        f"wrote {done['path']} (NIR, dt = {args.dt:g}); read back: {done['agree']}/{done['inputs']} random "
        f"inputs give the same class, logits differ by at most {done['max_logit_diff']:.2g}"
    )
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from spikeshield.training.conversion import convert_run

    validate.positive_int("--time-steps (-T)", args.time_steps)
    for steps in args.sweep or []:
        validate.positive_int("--sweep", steps)
    validate.in_range("--v-init", args.v_init, 0.0, 1.0, high_open=True)
    validate.positive("--threshold-scale", args.threshold_scale)
    if args.percentile is not None:
        validate.in_range("--percentile", args.percentile, 0.0, 100.0, low_open=True)
    if args.calibration_samples is not None:
        validate.positive_int("--calibration-samples", args.calibration_samples)
    options: dict[str, Any] = {"threshold_scale": args.threshold_scale, "sweep": args.sweep}
    ann_only = {"percentile": args.percentile, "calibration_samples": args.calibration_samples}
    given = {k: v for k, v in ann_only.items() if v is not None}
    if given and args.to != "ann2snn":
        flags = " and ".join("--" + k.replace("_", "-") for k in given)
        verb = "applies" if len(given) == 1 else "apply"
        raise UsageError(f"{flags} {verb} only to --to ann2snn (robust-max normalisation)")
    options.update(given)
    metrics = convert_run(
        args.run, args.out, args.to, args.time_steps, v_init=args.v_init, options=options,
        data_root=args.data_root, device=args.device,
    )  # fmt: skip
    print(f"test accuracy {metrics['test_accuracy']:.4f} at T = {args.time_steps}; wrote {args.out}")
    return 0


def cmd_neurons(args: argparse.Namespace) -> int:
    from spikeshield.neurons import NEURONS, SURROGATES
    from spikeshield.neurons.registry import neuron_options

    for name in NEURONS.names():
        cls = NEURONS.get(name)
        doc = (cls.__doc__ or "").strip().split("\n")[0]
        print(f"{name}: {doc}")
        opts = neuron_options(cls)
        parts = [f"{k}={'(required)' if p.default is p.empty else p.default!r}" for k, p in opts.items()]
        print(f"    options: {', '.join(parts)}")
    print("\nsurrogates (use NAME or NAME:VALUE):")
    for name in SURROGATES.names():
        print(f"  {name}: {SURROGATES.describe(name)}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import inspect

    from spikeshield.models import MODELS

    for name in MODELS.names():
        fn = MODELS.get(name)
        doc = " ".join((fn.__doc__ or "").split())
        params = inspect.signature(fn).parameters
        opts = [f"{k}={p.default!r}" for k, p in params.items() if k not in ("input_shape", "make_neuron")]
        print(f"{name}: {doc}\n    options: {', '.join(opts) or 'none'}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from spikeshield.data import DATASETS, data_root

    root = data_root(args.data_root)
    print(f"data root: {root if root else '(none: pass --data-root or set SPIKESHIELD_DATA)'}")
    for name in DATASETS.names():
        source = DATASETS.get(name)
        loc = source.locate(root)
        status = "ready" if loc.ready else "missing"
        shape = "×".join(str(s) for s in source.info.input_shape)
        where = f": {loc.path}" if loc.ready and loc.path else ""
        print(f"{name:14s} {status:8s} {source.info.kind:6s} {shape:10s} {loc.message}{where}")
        if not loc.ready and loc.searched:
            print(f"{'':16s}looked in: {', '.join(str(p) for p in loc.searched)}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from spikeshield.analysis.firing_rates import DEFAULT_LEAKS, DEFAULT_TAUS, run_rate_vs_leak

    if args.analysis == "perturbation":
        return _analyze_perturbation(args)
    if args.analysis == "oscillation":
        return _analyze_oscillation(args)
    if args.run:
        raise UsageError("--run belongs to 'analyze perturbation' and 'analyze oscillation'")

    validate.non_negative("--noise-std", args.noise_std)
    if args.old_steps is not None:
        print("spikeshield: warning: analyze --steps is deprecated, use --time-steps", file=sys.stderr)
        args.time_steps = args.old_steps
    out = Path(args.out) if args.out else _default_out("rate-vs-leak")
    result = run_rate_vs_leak(
        out,
        overwrite=args.overwrite,
        leaks=args.leaks or DEFAULT_LEAKS,
        taus=args.taus or DEFAULT_TAUS,
        steps=args.time_steps,
        noise_std=args.noise_std,
    )
    print("\n".join(result["findings"]["summary"]))
    gaps = result["findings"]["max_gap_simulated_vs_analytic"]
    print(
        "largest gap between simulated and closed-form rate: "
        + ", ".join(f"{k} {v:.4f}" for k, v in gaps.items())
    )
    _wrote(result["written"], "", "rate_vs_leak.png")
    return 0


def _analyze_perturbation(args: argparse.Namespace) -> int:
    from spikeshield.analysis.perturbation import run_perturbation_analysis

    if not args.run:
        raise UsageError("analyze perturbation needs --run DIR [DIR ...]")
    validate.positive_int("--samples", args.samples)
    validate.positive_int("--pgd-steps", args.pgd_steps)
    validate.non_negative_int("--seed", args.seed)
    for flag, value in (("--eps", args.eps), ("--sigma", args.sigma)):
        if value is not None:
            validate.in_range(flag, value, 0.0, 1.0, low_open=True)
    out = Path(args.out) if args.out else _default_out("perturbation")
    summary = run_perturbation_analysis(
        args.run,
        out,
        overwrite=args.overwrite,
        samples=args.samples,
        eps=args.eps,
        sigma=args.sigma,
        steps=args.pgd_steps,
        seed=args.seed,
        note=args.note,
        data_root=args.data_root,
        device=args.device,
    )
    print("\n".join(summary["findings"]))
    _wrote(summary["written"], "", "perturbation.png")
    return 0


def _analyze_oscillation(args: argparse.Namespace) -> int:
    from spikeshield.analysis.oscillation import run_oscillation_analysis

    if not args.run:
        raise UsageError("analyze oscillation needs --run DIR [DIR ...]")
    validate.positive_int("--samples", args.samples)
    validate.non_negative_int("--seed", args.seed)
    out = Path(args.out) if args.out else _default_out("oscillation")
    summary = run_oscillation_analysis(
        args.run,
        out,
        overwrite=args.overwrite,
        samples=args.samples,
        seed=args.seed,
        note=args.note,
        data_root=args.data_root,
        device=args.device,
    )
    print("\n".join(summary["findings"]))
    _wrote(summary["written"], "", "oscillation_traces.png and oscillation_cosine.png")
    return 0


def _sample_arguments(p: argparse.ArgumentParser) -> None:
    from spikeshield.sampling.cli import add_arguments

    add_arguments(p, _add_common_data)


def cmd_sample(args: argparse.Namespace) -> int:
    from spikeshield.sampling.cli import cmd_sample as run_sample

    return run_sample(args)


COMMANDS: dict[str, Command] = {
    "run": Command(
        "the quick default job: IF vs LIF vs linear-LIF on digits; clean, noisy, adversarial accuracy",
        _run_arguments,
        cmd_run,
    ),
    "train": Command("train one spiking network with BPTT", _train_arguments, cmd_train),
    "analyze": Command(
        "analyses of neuron dynamics (rate-vs-leak) and of trained runs (perturbation, oscillation)",
        _analyze_arguments,
        cmd_analyze,
    ),
    "evaluate": Command(
        "attack and corrupt a trained run; writes robustness.json, .csv and accuracy curves",
        _evaluate_arguments,
        cmd_evaluate,
    ),
    "report": Command(
        "aggregate the evaluations of runs (or of an experiment folder) into one table and figures",
        _report_arguments,
        cmd_report,
    ),
    "experiment": Command(
        "train and evaluate a grid of runs from an experiment file; table and figures",
        _experiment_arguments,
        cmd_experiment,
    ),
    "export": Command(
        "write a trained run as a NIR graph (for snnTorch, Norse, Sinabs, Lava, neuromorphic chips)",
        _export_arguments,
        cmd_export,
    ),
    "convert": Command(
        "convert a trained run into a multi-step soft-reset IF network (a new run folder)",
        _convert_arguments,
        cmd_convert,
    ),
    "neurons": Command(
        "list the registered neurons and surrogates with their options", _neurons_arguments, cmd_neurons
    ),
    "models": Command("list the registered architectures", _models_arguments, cmd_models),
    "datasets": Command(
        "list datasets, where they were looked for, and whether they are ready",
        _datasets_arguments,
        cmd_datasets,
    ),
    "sample": Command(
        "spiking sampling network: learn which pixels to keep, reconstruct, compress DVS events",
        _sample_arguments,
        cmd_sample,
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    threads_env: tuple[str, str | None] | None = None
    try:
        command = _command_in(argv)
        parser = build_parser(command)
        if command is not None and command not in COMMANDS:
            close = difflib.get_close_matches(command, COMMANDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            parser.error(
                f"argument COMMAND: invalid choice: {command!r} (choose from {', '.join(COMMANDS)}){hint}"
            )
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # named by the command's own parser, whose --help lists its options
            words = [w for w in (args.command, getattr(args, "sample_command", None)) if w]
            where = " ".join(["spikeshield", *words])
            _Parser(prog=where).error(f"unrecognized arguments: {' '.join(unknown)}")
        args.argv = argv
        if args.command is None:
            parser.print_help()
            return 2
        from spikeshield.runtime import THREADS_ENV, configure_threads, tune_allocator

        tune_allocator()
        threads = getattr(args, "threads", None)
        if threads is not None:
            validate.positive_int("--threads", threads)
        configure_threads(threads)
        if threads is not None:  # worker processes (--jobs) split this total
            threads_env = (THREADS_ENV, os.environ.get(THREADS_ENV))
            os.environ[THREADS_ENV] = str(threads)
        return COMMANDS[args.command].handler(args)
    except SpikeshieldError as exc:
        print(f"spikeshield: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("spikeshield: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        if os.environ.get("SPIKESHIELD_DEBUG") or not _is_dependency(exc.name):
            raise
        print(f"spikeshield: error: {_missing(exc.name or '')}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug or an unexpected environment problem: one line, not a traceback
        if os.environ.get("SPIKESHIELD_DEBUG"):
            raise
        print(
            f"spikeshield: internal error: {type(exc).__name__}: {exc} "
            "(set SPIKESHIELD_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        if threads_env is not None:
            _restore_env(*threads_env)


#: how to get a missing module: the core dependencies, then the extras that bring the others
_INSTALL = {
    "torch": "pip install torch (on a machine without a GPU, the CPU build; see the README's 'Set up')",
    "numpy": "pip install numpy",
    "safetensors": "pip install safetensors",
    "matplotlib": "pip install 'spikeshield[plot]'",
    "PIL": "pip install 'spikeshield[images]'",
    "lz4": "pip install 'spikeshield[events]'",
    "zstandard": "pip install 'spikeshield[events]'",
    "nir": "pip install 'spikeshield[nir]'",
}


def _is_dependency(name: str | None) -> bool:
    return bool(name) and name.split(".")[0] != "spikeshield"


def _missing(name: str) -> str:
    top = name.split(".")[0]
    how = _INSTALL.get(top, f"pip install {top}")
    return f"the Python package {top!r} is not installed in {sys.executable}; install it: {how}"


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Warnings on the command line: one line each, ``spikeshield: warning: ...``."""
    text = str(message).removeprefix("spikeshield: ")
    print(f"spikeshield: warning: {text}", file=sys.stderr if file is None else file)


def _exit(code: int) -> None:
    """Exit with ``code``; a torchrun worker skips the interpreter's teardown.

    Under ``torchrun`` a worker that had finished cleanly (files written, process group
    destroyed) was seen to abort in C++ static destruction at exit ("terminate called without
    an active exception", SIGABRT, about 1 run in 10 on a loaded 2-core machine), which made the
    launcher report a failed job. Its work is done by then, so it flushes and leaves directly.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def entry() -> None:
    """The ``spikeshield`` command: the console script, ``python -m spikeshield`` and
    ``python -m spikeshield.cli`` (also under ``torchrun -m``) all come here."""
    if not os.environ.get("SPIKESHIELD_DEBUG"):
        warnings.showwarning = _show_warning
    _exit(main())


if __name__ == "__main__":
    entry()

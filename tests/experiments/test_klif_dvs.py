"""The DVS parts of the KLIF reproduction run end to end on format-exact synthetic files.

No real DVS128 Gesture or CIFAR10-DVS recordings are available here, so the paper-scale
experiment file's DVS datasets are trained for one short epoch and evaluated on small files
written in the real formats (AEDAT 3.1 + labels CSV; AEDAT4), with the network narrowed and the
frames down-sampled so that it takes seconds. What is checked is the pipeline — the file, the
preset, down-sampling recorded in the run, the learned-k trace, the evaluation — not accuracy.
"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from spikeshield.data.cifar10_dvs import CLASSES
from spikeshield.experiments.plan import load_plan, shrink
from spikeshield.experiments.runner import run_plan
from tests.data.formats import aedat4_bytes, aedat31_bytes, labels_csv

ROOT = Path(__file__).parents[2]


def _write_gesture(root: Path, rng) -> None:
    folder = root / "DvsGesture"
    folder.mkdir(parents=True)
    for user in (1, 2, 24):  # users 1-23 train, 24-29 test
        gestures = [(c, 10**6 * c, 10**6 * c + 300_000) for c in range(1, 12)]
        parts = [
            (
                rng.integers(0, 128, 200),
                rng.integers((c - 1) * 11, c * 11, 200),
                np.sort(rng.integers(s, e, 200)),
            )
            for c, s, e in gestures
        ]
        x, y, t = (np.concatenate([p[i] for p in parts]) for i in range(3))
        p = rng.integers(0, 2, len(t))
        name = f"user{user:02d}_led"
        (folder / f"{name}.aedat").write_bytes(aedat31_bytes(x, y, t, p, per_packet=256))
        (folder / f"{name}_labels.csv").write_text(labels_csv(gestures))


def _write_cifar10_dvs(root: Path, rng) -> None:
    for label, name in enumerate(CLASSES):
        folder = root / "CIFAR10DVS" / name
        folder.mkdir(parents=True)
        for i in range(10):
            n = 150
            x, y = rng.integers(0, 128, n), rng.integers(label * 12, label * 12 + 12, n)
            t = np.sort(rng.integers(0, 1_000_000, n)) + 1_600_000_000_000_000
            data = aedat4_bytes(x, y, t, rng.integers(0, 2, n))
            (folder / f"cifar10_{name}_{i}.aedat4").write_bytes(data)


def test_paper_file_dvs_datasets_train_one_short_epoch_and_are_evaluated(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    _write_gesture(data, rng)
    _write_cifar10_dvs(data, rng)
    plan = load_plan(ROOT / "experiments" / "klif-paper.toml")
    plan = shrink(plan, datasets=["dvs-gesture", "cifar10-dvs"], seeds=[0], neurons=["klif"], epochs=1)
    small = {"steps": 2, "limit": 6, "check_samples": 4, "batch_size": 8}
    plan.datasets = [
        replace(
            d,
            time_steps=[3],
            train={**d.train, "batch_size": 8, "dataset_options": {"frame_size": 32, "frame_pool": "sum"}},
            evaluate={**d.evaluate, **small},
        )
        for d in plan.datasets
    ]
    plan.model_options = {"plifnet": {"channels": 4}}
    out = tmp_path / "out"
    summary = run_plan(plan, out, data_root=str(data), device="cpu", log=lambda _m: None)
    for dataset, blocks in (("dvs-gesture", 5), ("cifar10-dvs", None)):
        run = out / "runs" / dataset / "plifnet-T3-klif-s0"
        config = json.loads((run / "config.json").read_text())
        train = config["train"]
        assert (
            train["dataset_options"] == {"frame_size": 32, "frame_pool": "sum"} and train["time_steps"] == 3
        )
        assert config["model_spec"]["input_shape"] == [2, 32, 32]
        assert train["model_options"].get("blocks") == blocks  # the Gesture net of the paper
        assert (train["readout"], train["lr"], train["epochs"]) == ("voting", 1e-3, 1)
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["complete"] and metrics["epochs"] == 1
        assert all("k" in v for v in metrics["history"][0]["neuron_parameters"].values())
        (evaluation,) = run.glob("evaluations/bptt-*/robustness.json")
        assert json.loads(evaluation.read_text())["bounds"] == [0.0, float("inf")]  # counts, not pixels
    perturbations = {(r["dataset"], r["perturbation"]) for r in summary["rows"]}
    for dataset in ("dvs-gesture", "cifar10-dvs"):
        assert {(dataset, p) for p in ("event-drop", "event-insert", "fgsm", "pgd-2")} <= perturbations
    assert (out / "k_trajectory.png").is_file() and (out / "neuron_parameters.json").is_file()

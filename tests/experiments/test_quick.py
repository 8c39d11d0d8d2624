import json

import torch

from spikeshield.cli import main
from spikeshield.data import load_dataset
from spikeshield.experiments.quick import _gaussian


def test_quick_job_small(tmp_path, capsys):
    out = tmp_path / "quick"
    code = main(["run", "--out", str(out), "--epochs", "3", "--sigmas", "0", "0.3", "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "clean" in printed and "σ=0.3" in printed and "linear-lif" in printed
    record = json.loads((out / "results.json").read_text())
    assert {r["neuron"] for r in record["rows"]} == {"if", "lif", "linear-lif"}
    for neuron in ("if", "lif", "linear-lif"):
        clean = next(r for r in record["summary"] if r["neuron"] == neuron and r["sigma"] == 0)
        metrics = json.loads((out / f"{neuron}-seed0" / "metrics.json").read_text())
        assert clean["mean"] == metrics["test_accuracy"]  # σ = 0 is the clean accuracy, exactly
        assert clean["mean"] > 0.5
    assert (out / "results.csv").read_text().startswith("neuron,sigma,mean,std,seeds")
    assert (out / "noise.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # FGSM and PGD next to the noise sweep, with the gradient-masking checks
    assert "fgsm ε=0.1" in printed and "pgd ε=0.2" in printed and "gradient-masking checks" in printed
    attacks = record["attacks"]
    assert attacks["names"] == ["fgsm", "pgd"] and attacks["steps"] == 10
    for neuron in ("if", "lif", "linear-lif"):
        clean = next(r for r in record["summary"] if r["neuron"] == neuron and r["sigma"] == 0)["mean"]
        at = {(r["attack"], r["eps"]): r["mean"] for r in attacks["summary"] if r["neuron"] == neuron}
        assert at[("pgd", 0.0)] == clean and at[("pgd", 0.2)] < at[("pgd", 0.05)] <= clean
        assert attacks["gradient_masking_checks"][f"{neuron}-seed0"]["checks"]
        assert attacks["honesty"] == attacks["gradient_masking_checks"]  # deprecated alias, one release
        assert (out / f"{neuron}-seed0" / "robustness.json").exists()
    assert (out / "attacks.csv").read_text().startswith("neuron,attack,eps,mean,std,seeds")
    assert (out / "attacks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # resuming reuses the finished runs
    assert (
        main(
            [
                "run",
                "--out",
                str(out),
                "--epochs",
                "3",
                "--sigmas",
                "0",
                "0.3",
                "--device",
                "cpu",
                "--resume",
                "--attacks",
            ]
        )
        == 0
    )


def test_the_noise_sweep_does_not_depend_on_the_batch_size():
    """Each sample's Gaussian noise comes from its own stream (seed and index), not the batch's."""
    x, _ = load_dataset("digits", "test").subset(20).tensors()

    def noisy(size: int) -> torch.Tensor:
        transform = _gaussian(0.4, 3)  # as accuracy() calls it: the batches in order
        return torch.cat([transform(x[s : s + size]) for s in range(0, len(x), size)])

    whole = noisy(len(x))
    assert torch.equal(noisy(1), whole) and torch.equal(noisy(7), whole) and not torch.equal(whole, x)

import json

from spikeshield.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def test_quick_job_small(tmp_path, capsys):
    out = tmp_path / "quick"
    args = ["run", "--out", str(out), "--epochs", "3", "--sigmas", "0", "0.3", "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "clean" in printed and "gaussian 0.3" in printed and "linear-lif" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["title"] == "quick" and summary["variants"] == ["if", "lif", "linear-lif"]
    rows = {(r["variant"], r["perturbation"], r["level"]): r["mean"] for r in summary["rows"]}
    for neuron in ("if", "lif", "linear-lif"):
        run = out / "runs" / "digits" / f"cnn-{neuron}-s0"
        metrics = json.loads((run / "metrics.json").read_text())
        assert (
            rows[(neuron, "gaussian", 0.0)] == metrics["test_accuracy"]
        )  # σ = 0 is the clean accuracy, exactly
        assert metrics["test_accuracy"] > 0.5 and metrics["epochs"] == 3
        # FGSM and PGD next to the noise sweep, on the same evaluation path as `spikeshield evaluate`
        assert rows[(neuron, "pgd-10", 0.0)] == metrics["test_accuracy"]
        assert rows[(neuron, "pgd-10", 0.2)] < rows[(neuron, "pgd-10", 0.05)] <= metrics["test_accuracy"]
        (evaluation,) = run.glob("evaluations/bptt-*/robustness.json")
        result = json.loads(evaluation.read_text())
        assert result["checks"] and result["settings"]["check_samples"] == 200
    assert "fgsm ε=0.1" in printed and "pgd-10 ε=0.2" in printed and "gradient-masking checks" in printed
    assert (out / "table.csv").read_text().startswith("dataset,model,variant,kind,perturbation,level,mean")
    assert (out / "digits_cnn.png").read_bytes()[:8] == PNG
    assert "Trained 3 epoch(s) on 1438 training samples" in (out / "table.md").read_text()

    # the same command finishes or repeats without redoing anything; --resume is still accepted
    model = out / "runs" / "digits" / "cnn-if-s0" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    assert main([*args, "--resume"]) == 0
    assert model.stat().st_mtime_ns == stamp
    # one evaluation path: `evaluate` with the preset's settings finds the run's own evaluation
    capsys.readouterr()
    same = ["--attack", "fgsm", "pgd", "--eps", "0", "0.05", "0.1", "0.2", "--steps", "10", "--corruption",
            "gaussian", "--levels", "0", "0.3", "--batch-size", "512", "--check-samples", "200"]  # fmt: skip
    assert main(["evaluate", "--run", str(model.parent), *same]) == 0
    assert "shown, not redone" in capsys.readouterr().out
    # other flags into the same folder: the runs there were trained with other settings
    assert main(["run", "--out", str(out), "--epochs", "4", "--sigmas", "0", "0.3", "--device", "cpu"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err

import json

from spikeshield.cli import main


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
    # resuming reuses the finished runs
    assert (
        main(
            ["run", "--out", str(out), "--epochs", "3", "--sigmas", "0", "0.3", "--device", "cpu", "--resume"]
        )
        == 0
    )

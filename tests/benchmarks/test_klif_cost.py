"""benchmarks/klif_cost.py runs end to end at tiny sizes (a smoke test: no timing is judged here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "klif_cost.py"


@pytest.mark.parametrize(
    "extra", [[], ["--dataset", "dvs-gesture", "--frame-size", "16", "--kernels", "reference"]]
)
def test_klif_cost_reports_every_neuron_and_the_ratios(tmp_path, extra):
    out = tmp_path / "cost.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--json", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    records = {r["neuron"]: r for r in result["records"]}
    assert set(records) == {"lif", "plif", "klif"}
    for r in records.values():
        assert r["step_s"] > 0 and r["peak_mb"] > 0 and len(r["step_s_rounds"]) == 2
        assert r["epoch_s"] == pytest.approx(r["step_s"] * -(-r["epoch_samples"] // 16))
    # the same network: KLIF and PLIF add one learned scalar per neuron layer to LIF's weights
    layers = records["klif"]["parameters"] - records["lif"]["parameters"]
    assert layers == records["plif"]["parameters"] - records["lif"]["parameters"] > 0
    assert set(result["ratios"]) == {
        "klif/lif step_s",
        "klif/lif peak_mb",
        "plif/lif step_s",
        "plif/lif peak_mb",
    }
    assert result["meta"]["neuron_path"] == ("reference" if extra else "cpu")
    # every neuron layer of every network ran the path asked for (fused C kernels by default)
    for r in records.values():
        assert set(r["kernels"]) == {"reference" if extra else "fused-c"}, r["kernels"]
    assert "klif/lif step_s:" in done.stdout

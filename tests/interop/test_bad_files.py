"""Bad NIR files and graphs: each is one line naming the problem (NIRError, exit code 1), and the
export CLI refuses what NIR cannot express (exit code 2) without writing anything."""

from __future__ import annotations

import hashlib
import os
import sys

import h5py
import numpy as np
import pytest
import torch

from spikeshield.cli import main
from spikeshield.errors import SpikeshieldError
from spikeshield.interop import from_nir, read_nir, to_nir, write_nir
from spikeshield.models import build_model
from spikeshield.models.layers import SequenceDropout
from spikeshield.runs import load_model
from spikeshield.training import TrainConfig, train
from spikeshield.training.presets import with_preset

from .conftest import need

nir = need("nir")


def _lif(n: int):
    return nir.LIF(tau=np.full(n, 2e-3), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n))


def _graph(*nodes, type_check: bool = True, **metadata):
    graph = nir.NIRGraph.from_list(*nodes, type_check=type_check)
    graph.metadata = {"dt": 1e-3, "time_steps": 4, **metadata}
    return graph


def _affine(n_in: int, n_out: int):
    return nir.Affine(weight=np.ones((n_out, n_in), np.float32), bias=np.zeros(n_out, np.float32))


def write_truncated(path):
    write_nir(to_nir(build_model("mlp", input_shape=(1, 8, 8), hidden=[8], time_steps=2)), path)
    path.write_bytes(path.read_bytes()[:-400])


def write_plain_hdf5(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("weights", data=np.zeros(3))


# (id, setup(path) -> argument for from_nir, message)
CASES = [
    ("missing file", lambda p: p / "absent.nir", "NIR file not found"),
    ("not HDF5", lambda p: (p / "x.nir").write_text("hello") and p / "x.nir", "is not a NIR file"),
    ("HDF5 but not NIR", lambda p: write_plain_hdf5(p / "x.nir") or p / "x.nir", "is not a valid NIR graph"),
    ("truncated file", lambda p: write_truncated(p / "x.nir") or p / "x.nir", "is not a valid NIR graph"),
    ("unsupported node", lambda p: _graph(_affine(4, 3), nir.Delay(delay=np.ones(3)), _lif(3), _affine(3, 2)),
     r"node 'delay' \(Delay\) is not supported"),
    ("shape mismatch", lambda p: _graph(_affine(4, 3), _lif(3), _affine(5, 2), type_check=False),
     "node 'affine_1': shape mismatch"),
    ("neuron count mismatch", lambda p: _graph(_affine(4, 3), _lif(7), _affine(3, 2), type_check=False),
     "node 'lif': shape mismatch: 7 neurons"),
    ("no neuron", lambda p: _graph(_affine(4, 3), _affine(3, 2)), "not a spiking network"),
    ("no readout", lambda p: _graph(_affine(4, 3), _lif(3)), "must end with an Affine/Linear readout"),
    ("unsupported neuron", lambda p: _graph(_affine(4, 3), nir.CubaLIF(
        tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3)),
        _affine(3, 2)), r"\(CubaLIF\) is not supported"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_file_or_graph(case, tmp_path):
    _, setup, message = case
    with pytest.raises(SpikeshieldError, match=message) as info:
        from_nir(setup(tmp_path))
    assert "\n" not in str(info.value) and info.value.exit_code == 1


def test_a_branching_graph_is_refused():
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([4])), "a": _affine(4, 3), "b": _affine(4, 3), "lif": _lif(3),
               "output": nir.Output(np.array([3]))},
        edges=[("input", "a"), ("input", "b"), ("a", "lif"), ("b", "lif"), ("lif", "output")],
        metadata={"dt": 1e-3, "time_steps": 4},
    )  # fmt: skip
    with pytest.raises(SpikeshieldError, match="feed-forward chains only"):
        from_nir(graph)


def test_a_foreign_graph_needs_dt_and_time_steps():
    graph = nir.NIRGraph.from_list(_affine(4, 3), _lif(3), _affine(3, 2))
    with pytest.raises(SpikeshieldError, match="does not record its time step: pass dt="):
        from_nir(graph)
    with pytest.raises(SpikeshieldError, match="number of time steps: pass time_steps="):
        from_nir(graph, dt=1e-3)
    assert from_nir(graph, dt=1e-3, time_steps=3).time_steps == 3


def test_read_nir_reads_what_write_nir_wrote(tmp_path):
    graph = to_nir(build_model("mlp", input_shape=(1, 8, 8), hidden=[8], time_steps=2))
    path = write_nir(graph, tmp_path / "m.nir")
    assert sorted(read_nir(path).nodes) == sorted(graph.nodes)  # HDF5 keeps groups sorted
    with pytest.raises(SpikeshieldError, match="already exists"):
        write_nir(graph, path)


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-runs")
    for name, neuron in (("lif", "lif"), ("klif", "klif")):
        config = TrainConfig(dataset="digits", model="cnn", neuron=neuron, model_options={"channels": 4},
                             epochs=1, time_steps=2, device="cpu")  # fmt: skip
        train(config, root / name, progress=False, log=lambda _: None)
    # what 'spikeshield train --preset plif' trains: plifnet, voting readout, dropout shared over T
    plif = with_preset("plif", "digits", {"model_options": {"channels": 4}, "time_steps": 2})
    config = TrainConfig(dataset="digits", neuron="plif", epochs=1, limit_train=200, device="cpu", **plif)
    train(config, root / "plif", progress=False, log=lambda _: None)
    return root


def test_cli_export_writes_a_file_that_reads_back(digits_runs, tmp_path, capsys):
    before = _digest(digits_runs / "lif")
    out = tmp_path / "sub" / "model.nir"
    assert main(["export", "--run", str(digits_runs / "lif"), "--format", "nir", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "read back: 32/32 random inputs give the same class" in printed
    assert read_nir(out).metadata["source"] == "spikeshield"
    assert _digest(digits_runs / "lif") == before  # exporting changes nothing in the run
    capsys.readouterr()
    assert main(["export", "--run", str(digits_runs / "lif"), "--out", str(out), "--dt", "1e-4"]) == 2
    assert "already exists; pass --overwrite to replace it" in capsys.readouterr().err
    for flag, dt in (("--overwrite", "1e-4"), ("--force", "1e-2")):  # --force: the older name
        assert main(["export", "--run", str(digits_runs / "lif"), "--out", str(out), "--dt", dt, flag]) == 0
        assert float(read_nir(out).metadata["dt"]) == float(dt)
    capsys.readouterr()
    for dt in ("0", "nan"):  # the flag named, before any work
        bad = ["export", "--run", str(digits_runs / "lif"), "--out", str(tmp_path / "d.nir"), "--dt", dt]
        assert main(bad) == 2
        assert "--dt must be" in capsys.readouterr().err and not (tmp_path / "d.nir").exists()


def test_cli_export_refuses_a_folder_and_the_runs_own_files_with_overwrite(digits_runs, tmp_path, capsys):
    """--out naming a folder was 'Is a directory' after --overwrite, and --out naming the run's
    weights replaced them with the NIR file (found by a new-user trial)."""
    run = digits_runs / "lif"
    before = _digest(run)
    export = ["export", "--run", str(run), "--out"]
    for flags in ([], ["--overwrite"]):
        assert main([*export, str(tmp_path), *flags]) == 2
        err = capsys.readouterr().err.strip()
        hint = f"e.g. {tmp_path / 'model.nir'}"
        assert err == f"spikeshield: error: {tmp_path} is a folder; name the NIR file to write, {hint}"
        for name in ("model.safetensors", "config.json"):
            assert main([*export, str(run / name), *flags]) == 2
            err = capsys.readouterr().err.strip()
            assert f"is the exported run's own file {name}; replacing it would destroy the run" in err
            assert len(err.splitlines()) == 1
    link = tmp_path / "weights.safetensors"  # another path to the same file
    link.symlink_to(run / "model.safetensors")
    assert main([*export, str(link), "--overwrite"]) == 2
    assert "own file model.safetensors" in capsys.readouterr().err
    assert _digest(run) == before and not list(tmp_path.glob("*.nir"))
    fifo = tmp_path / "pipe.nir"  # not a regular file: refused without opening it (it would block)
    os.mkfifo(fifo)
    assert main([*export, str(fifo), "--overwrite"]) == 2
    assert "exists and is not a NIR file" in capsys.readouterr().err
    try:  # an earlier export kept in the run folder is replaced when asked
        assert main([*export, str(run / "model.nir")]) == 0
        assert main([*export, str(run / "model.nir"), "--dt", "1e-4", "--overwrite"]) == 0
        assert float(read_nir(run / "model.nir").metadata["dt"]) == 1e-4
    finally:
        (run / "model.nir").unlink(missing_ok=True)
    assert _digest(run) == before


def test_cli_export_never_replaces_another_runs_files_or_any_non_nir_file(digits_runs, tmp_path, capsys):
    """--out naming ANOTHER run's weights with --overwrite replaced them with the NIR file (new-user
    trial: only the exported run's own files were protected). An export replaces only a NIR file."""
    run, other = digits_runs / "lif", digits_runs / "plif"
    before = _digest(other)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    export = ["export", "--run", str(run), "--overwrite", "--out"]
    for name in ("model.safetensors", "checkpoint.safetensors", "config.json", "metrics.json"):
        assert main([*export, str(other / name)]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"spikeshield: error: {other / name} exists and is not a NIR file (a file of the run "
            f"{other.resolve()}: {name}); export replaces only an earlier NIR file, even with "
            "--overwrite: choose another --out\n"
        )
    assert main([*export, str(notes)]) == 2
    assert capsys.readouterr().err == (
        f"spikeshield: error: {notes} exists and is not a NIR file; export replaces only an earlier NIR "
        "file, even with --overwrite: choose another --out\n"
    )
    assert _digest(other) == before and notes.read_text() == "mine\n"
    # an HDF5 file that is not NIR's is not replaced either; a NIR file is
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = [1, 2, 3]
    assert main([*export, str(tmp_path / "data.h5")]) == 2
    assert "data.h5 exists and is not a NIR file" in capsys.readouterr().err
    assert main([*export, str(tmp_path / "m.nir")]) == 0
    assert main([*export, str(tmp_path / "m.nir"), "--dt", "1e-4"]) == 0
    assert float(read_nir(tmp_path / "m.nir").metadata["dt"]) == 1e-4


def test_cli_export_of_a_plif_preset_run_leaves_its_dropout_out(digits_runs, tmp_path, capsys):
    """plifnet's SequenceDropout is an identity in evaluation: written as nothing, not refused."""
    model = load_model(digits_runs / "plif")
    assert any(isinstance(m, SequenceDropout) for m in model.modules())
    out = tmp_path / "plif.nir"
    assert main(["export", "--run", str(digits_runs / "plif"), "--out", str(out)]) == 0
    assert "read back: 32/32 random inputs give the same class" in capsys.readouterr().out
    again = from_nir(out)
    assert not any(isinstance(m, (SequenceDropout, torch.nn.Dropout)) for m in again.modules())
    model, again = model.double().eval(), from_nir(to_nir(model.double())).eval()
    x = torch.rand(16, *model.input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), again(x))  # the same spikes, the same rates of the voters


def test_cli_export_refuses_a_neuron_nir_cannot_express(digits_runs, tmp_path, capsys):
    out = tmp_path / "model.nir"
    assert main(["export", "--run", str(digits_runs / "klif"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikeshield: error: layer body.0 (klif) cannot be exported to NIR:")
    assert len(err.splitlines()) == 1 and "ReLU(k·H)" in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_without_the_nir_package_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)  # as if it were not installed
    model = build_model("mlp", input_shape=(1, 8, 8), hidden=[8], time_steps=2)
    with pytest.raises(SpikeshieldError, match=r"needs the 'nir' package: pip install 'spikeshield\[nir\]'"):
        to_nir(model)

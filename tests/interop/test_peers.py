"""Cross-library checks with the NIR importers and exporters of Norse 1.1.0 and snnTorch 1.0.0.

Both peers simulate exactly the arithmetic :mod:`spikeshield.interop.neuron_map` maps onto, so
the comparisons are exact (torch.equal on spikes and logits), not within a tolerance:
Norse's LIFBox step is ``v + dt·(1/τ)·(i + v_leak − v)`` (our decay_input LIF when τ = τ_ours·dt:
dt·(1/τ) rounds to exactly 0.5 for τ_ours = 2 at dt = 1e-3), its IAF step ``v + i``, its SumPool2d
an LPPool2d with p = 1 (exact sums of 0/1 spikes); snnTorch's Leaky with reset to zero is
``β·mem + input`` (our multiplicative LIF, β = 1 − dt/τ at its fixed dt = 1e-4).

Two peer conventions need a word. Both peers build ``torch.nn.Flatten(start_dim, end_dim)`` from
NIR's Flatten unchanged, although NIR shapes have no batch axis (NIR's own type inference maps
[C, H, W] with start_dim 0 to [C·H·W], and Norse's newer exporter subtracts 1 for this reason); the
tests shift the peers' Flatten by one. snnTorch's exporter only writes a well-typed graph when β
and the threshold are per-neuron tensors (a scalar gives LIF nodes an empty input type).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import pytest
import torch
from torch import nn

from spikeshield.interop import from_nir, to_nir, write_nir
from spikeshield.training import TrainConfig, train

from .conftest import need, trained_model
from .helpers import normalised, run_recording


def _batch_flatten(net: nn.Module) -> None:
    """Shift the peers' Flatten past the batch axis (see the module docstring)."""
    for m in net.modules():
        if isinstance(m, nn.Flatten):
            m.start_dim += 1
            m.end_dim += 1 if m.end_dim >= 0 else 0


def _record(net: nn.Module, kinds: tuple[str, ...], pick) -> dict[str, list[torch.Tensor]]:
    spikes: dict[str, list[torch.Tensor]] = {}
    for name, m in net.named_modules():
        if type(m).__name__ in kinds:
            m.register_forward_hook(
                lambda _m, _i, out, name=name: spikes.setdefault(name, []).append(pick(out))
            )
    return spikes


@pytest.mark.parametrize("name", ["cnn-lif", "mlp-if"])
def test_norse_runs_our_export_exactly(name, trained, mnist_batch, tmp_path):
    nir = need("nir")
    norse_import = need("norse.torch.utils.import_nir")
    model = trained_model(trained, name)
    x = mnist_batch[0][:64]
    path = write_nir(to_nir(model, dt=1e-3), tmp_path / "model.nir")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # nirtorch.load, which Norse 1.1 calls
        net = norse_import.from_nir(nir.read(path), dt=1e-3)
    _batch_flatten(net)
    spikes = _record(net, ("LIFBoxCell", "IAFCell"), lambda out: out[0])
    state, outputs = None, []
    with torch.no_grad():
        for _ in range(model.time_steps):  # the direct encoder: the same image at every step
            out, state = net(normalised(model, x), state)
            outputs.append(out)
    logits, ours = run_recording(model, x)
    theirs = [torch.stack(v) for k, v in spikes.items() if not k.startswith("spike_or")]
    assert len(theirs) == len(ours) == 2
    for s, s2 in zip(ours, theirs):
        assert float(s.mean()) > 0.001 and torch.equal(s, s2)
    assert torch.equal(torch.stack(outputs).mean(0), logits)


@pytest.fixture(scope="module")
def digits_lif_mlp(tmp_path_factory):
    """An mlp of multiplicative LIF neurons (λ = 0.9, the form snnTorch's Leaky computes)."""
    config = TrainConfig(
        dataset="digits", model="mlp", neuron="lif", neuron_options={"decay": 0.9},
        model_options={"hidden": [64, 32]}, epochs=3, time_steps=6, device="cpu",
    )  # fmt: skip
    out = tmp_path_factory.mktemp("digits") / "run"
    train(config, out, progress=False, log=lambda _: None)
    from spikeshield.runs import load_model

    return load_model(out).eval()


def test_snntorch_runs_our_export_exactly(digits_lif_mlp, tmp_path):
    nir = need("nir")
    snn_import = need("snntorch.import_nir")
    from snntorch import utils as snn_utils

    from spikeshield.data import load_dataset

    model = digits_lif_mlp
    x = load_dataset("digits", "test").tensors()[0][:128]
    path = write_nir(to_nir(model, dt=1e-4), tmp_path / "model.nir")  # snnTorch assumes dt = 1e-4
    with contextlib.redirect_stdout(io.StringIO()):  # it prints progress
        net = snn_import.import_from_nir(nir.read(path))
    _batch_flatten(net)
    snn_utils.reset(net)
    spikes = _record(net, ("Leaky",), lambda out: out)
    outputs = []
    with torch.no_grad():
        for _ in range(model.time_steps):
            outputs.append(net(normalised(model, x))[0])
    logits, ours = run_recording(model, x)
    theirs = [torch.stack(v) for v in spikes.values()]
    assert len(theirs) == len(ours) == 2
    for s, s2 in zip(ours, theirs):
        assert float(s.mean()) > 0.001 and torch.equal(s, s2)
    assert torch.equal(torch.stack(outputs).mean(0), logits)


def test_a_model_snntorch_exports_imports_here_exactly(tmp_path):
    nir = need("nir")
    snn = need("snntorch")
    snn_export = need("snntorch.export_nir")
    from snntorch import utils as snn_utils

    def leaky(n: int, beta: float, threshold: float, **kw) -> nn.Module:
        return snn.Leaky(beta=torch.full((n,), beta), threshold=torch.full((n,), threshold), init_hidden=True,
                         reset_mechanism="zero", **kw)  # fmt: skip

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(64, 40), leaky(40, 0.9, 0.5), nn.Linear(40, 10), leaky(10, 0.8, 0.7, output=True)
    )
    with contextlib.redirect_stdout(io.StringIO()):
        graph = snn_export.export_to_nir(net, torch.rand(1, 64), ignore_dims=[0])
    path = tmp_path / "snntorch.nir"
    nir.write(path, graph)
    model = from_nir(path, dt=1e-4, time_steps=6, input_shape=(1, 8, 8))  # snnTorch writes with dt = 1e-4
    assert model.readout == "voting"  # the graph ends in neurons: their firing rates are the output
    x = torch.rand(128, 1, 8, 8) * 3
    snn_utils.reset(net)
    spikes = _record(net, ("Leaky",), lambda out: out[0] if isinstance(out, tuple) else out)
    with torch.no_grad():
        for _ in range(6):
            net(x.flatten(1))
    rates, ours = run_recording(model, x)
    theirs = [torch.stack(v) for v in spikes.values()]
    for s, s2 in zip(ours, theirs):
        assert float(s.mean()) > 0.01 and torch.equal(s, s2)
    assert torch.equal(rates, theirs[-1].mean(0))

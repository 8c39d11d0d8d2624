"""When the fused path runs, when the reference runs, and that attacks' tricks keep working."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from spikeshield import kernels
from spikeshield.kernels import cpu
from spikeshield.kernels.program import CHARGE_IF, NeuronProgram
from spikeshield.neurons import SpikingNeuron, build_neuron, smooth_spikes, true_gradient
from spikeshield.neurons.lif import LIFNode
from spikeshield.neurons.surrogates import ATan, Sigmoid, Triangle

from .helpers import assert_match, fresh_seed, run_both


def fused_used(spikes: torch.Tensor) -> bool:
    return spikes.grad_fn is not None and "NeuronFunction" in type(spikes.grad_fn).__name__


def x_like(*shape: int) -> torch.Tensor:
    return (torch.randn(*shape) + 0.5).requires_grad_()


def test_forward_uses_fused_path_on_cpu_float32() -> None:
    assert fused_used(build_neuron("lif")(x_like(4, 2, 9)))
    assert kernels.backend_for(torch.zeros(2, 2)) == "cpu"


def test_reference_only_context_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    neuron = build_neuron("klif")
    with kernels.reference_only():
        assert not kernels.enabled()
        assert not fused_used(neuron(x_like(3, 2, 5)))
    assert fused_used(neuron(x_like(3, 2, 5)))
    monkeypatch.setenv(kernels.ENV, "reference")
    assert not fused_used(neuron(x_like(3, 2, 5)))


def test_spec_and_state_dict_do_not_change() -> None:
    """The kernel choice is not a constructor option: specs and checkpoints are unaffected."""
    neuron = build_neuron("klif", scale_reset=True)
    spec, keys = neuron.spec(), set(neuron.state_dict())
    neuron(x_like(3, 2, 5))
    with kernels.reference_only():
        neuron(x_like(3, 2, 5))
    assert neuron.spec() == spec and set(neuron.state_dict()) == keys


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes_use_the_reference(dtype: torch.dtype) -> None:
    x = torch.randn(3, 2, 5, dtype=dtype, requires_grad=True)
    spikes = build_neuron("lif")(x)
    assert spikes.dtype == dtype and not fused_used(spikes)


def test_record_and_explicit_state_use_the_reference() -> None:
    neuron = build_neuron("lif")
    x = x_like(3, 2, 5)
    out = neuron.run(x, record=True)
    assert out.h is not None and not fused_used(out.spikes)
    assert torch.equal(out.spikes, neuron(x))


def test_smooth_spikes_uses_the_reference_and_gradchecks() -> None:
    neuron = build_neuron("klif").double()
    x = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)
    with smooth_spikes():
        assert torch.autograd.gradcheck(lambda v: neuron(v), (x,))
    neuron = build_neuron("lif")
    with smooth_spikes():
        assert not fused_used(neuron(x_like(3, 2, 4)))


def test_unknown_surrogate_subclass_falls_back() -> None:
    class Steeper(Sigmoid):
        def grad(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().grad(x)

    neuron = build_neuron("lif")
    neuron.surrogate = Steeper()
    assert neuron.surrogate.fused_code() is None and neuron.fused_program() is None
    x = x_like(3, 2, 5)
    spikes = neuron(x)
    assert not fused_used(spikes)
    spikes.sum().backward()
    assert x.grad is not None


def test_neuron_subclass_and_replaced_part_fall_back() -> None:
    class Custom(LIFNode):
        def charge(self, v, x_t, t, state):  # type: ignore[no-untyped-def]
            return 0.5 * v + x_t

    assert Custom().fused_program() is None
    neuron = build_neuron("if")
    neuron.prefire = lambda h: 2 * h  # type: ignore[method-assign]
    assert neuron.fused_program() is None and not fused_used(neuron(x_like(2, 2, 3)))


class HalfLeak(SpikingNeuron):
    """A neuron written outside the package: H = V/2 + X, nothing about kernels."""

    def charge(self, v, x_t, t, state):  # type: ignore[no-untyped-def]
        return 0.5 * v + x_t


class OptedInIF(SpikingNeuron):
    """A new neuron that opts into the fused path in its one place, ``kernel_program``."""

    def charge(self, v, x_t, t, state):  # type: ignore[no-untyped-def]
        return v + x_t

    def kernel_program(self, surrogate):  # type: ignore[no-untyped-def]
        return NeuronProgram(charge=CHARGE_IF, **self.kernel_fields(surrogate))


def test_a_new_neuron_runs_the_reference_without_any_kernel_edit() -> None:
    neuron = HalfLeak()
    x = x_like(4, 3, 6)
    assert neuron.fused_program() is None
    spikes = neuron(x)
    assert not fused_used(spikes)
    assert torch.equal(spikes, neuron.run(x).spikes)


def test_a_new_neuron_opts_into_the_fused_path_in_one_method() -> None:
    seed = fresh_seed()
    neuron = OptedInIF(reset="soft", surrogate="atan:3")
    x = torch.randn(5, 3, 33, generator=torch.Generator().manual_seed(seed)) + 0.4
    fused, reference = run_both(neuron, x, seed)
    assert fused_used(neuron(x_like(5, 3, 33)))
    assert_match(fused, reference, f"opted-in IF seed={seed}")


def test_kernels_import_nothing_from_neurons() -> None:
    """The kernel package knows no neuron: no module under kernels/ imports spikeshield.neurons."""
    import ast

    offenders = []
    for path in Path(kernels.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):  # "from ..neurons import x" is level 2
                names = [("spikeshield." if node.level >= 2 else "") + (node.module or "")]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("spikeshield.neurons")]
    assert not offenders, offenders


def test_surrogate_swapped_at_call_time_is_used() -> None:
    """Attacks swap ``neuron.surrogate`` temporarily; the fused path must follow the swap."""
    seed = fresh_seed()
    neuron = build_neuron("lif", surrogate="sigmoid:4")
    x = torch.randn(5, 3, 40, generator=torch.Generator().manual_seed(seed)) + 0.5
    base_fused, _ = run_both(neuron, x, seed)
    original = neuron.surrogate
    for swapped in (Triangle(0.5), ATan(7.0)):
        neuron.surrogate = swapped
        fused, reference = run_both(neuron, x, seed)
        assert_match(fused, reference, f"swapped to {swapped} seed={seed}")
        assert not torch.allclose(fused["x"], base_fused["x"])
    neuron.surrogate = original
    fused, _ = run_both(neuron, x, seed)
    assert torch.equal(fused["x"], base_fused["x"])


def test_fake_gradient_and_true_gradient_switch_match_reference() -> None:
    seed = fresh_seed()
    defended = build_neuron("oscillating-lif", backward_amplitude=0.8, backward_frequency=0.1)
    model = torch.nn.Sequential(defended)
    neuron = model[0]
    x = torch.randn(6, 3, 50, generator=torch.Generator().manual_seed(seed)) + 0.6
    fake, fake_ref = run_both(neuron, x, seed)
    assert_match(fake, fake_ref, f"fake seed={seed}")
    with true_gradient(model) as switched:
        assert switched == 1
        true, true_ref = run_both(neuron, x, seed)
    assert_match(true, true_ref, f"true seed={seed}")
    assert torch.equal(fake["spikes"], true["spikes"])
    assert not torch.allclose(fake["x"], true["x"])


def test_compiling_and_functorch_transforms_use_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torch.compile tracing the reference loop is what gets compiled (and fused by inductor)."""
    neuron = build_neuron("lif")
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert kernels.fused_forward(neuron, x_like(4, 2, 6)) is None
    monkeypatch.undo()
    monkeypatch.setattr(kernels, "_transforms_active", lambda: True)
    assert kernels.fused_forward(neuron, x_like(4, 2, 6)) is None


def test_dlif_checks_time_steps_before_the_kernel() -> None:
    from spikeshield.errors import UsageError

    with pytest.raises(UsageError, match="T = 4"):
        build_neuron("dlif", time_steps=4)(x_like(3, 2, 5))


def test_models_train_through_the_fused_path() -> None:
    from spikeshield.models import build_model

    model = build_model("cnn", neuron="plif", input_shape=(1, 8, 8), time_steps=3)
    images = torch.rand(4, 1, 8, 8)
    loss = model(images).logsumexp(1).sum()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.zero_grad(set_to_none=True)
    with kernels.reference_only():
        model(images).logsumexp(1).sum().backward()
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-5)


def test_without_a_compiler_the_reference_runs_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "_library", None)
    monkeypatch.setattr(cpu, "_failure", None)
    monkeypatch.setattr(cpu, "_compiler", lambda: None)
    neuron = build_neuron("lif")
    with pytest.warns(RuntimeWarning, match="no C compiler") as caught:
        spikes = neuron(x_like(3, 2, 5))
    assert not fused_used(spikes)
    assert [w.filename for w in caught] == [__file__]  # the caller's line, not spikeshield's or torch's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not fused_used(neuron(x_like(3, 2, 5)))  # no second warning
    assert "no C compiler" in (cpu.unavailable_reason() or "")


def test_build_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first use in this session built the library into a fresh cache; building again there is a hit."""
    assert cpu.library() is not None
    first = Path(cpu.BUILD_INFO["path"])
    assert first.is_file() and first.suffix == ".so"
    monkeypatch.setenv("SPIKESHIELD_CACHE", str(first.parent.parent))
    assert cpu.build() == first and cpu.BUILD_INFO["cached"] is True

"""An evaluation never leaves a mark on the model (issue 10, section 1).

Every entry point that runs an attack or a corruption — the evaluation functions, every
registered attack used directly, the attacker-gradient swaps, EOT, the transfer twin,
``check_fresh_state``, ``training.accuracy`` — must leave every module's ``training`` flag,
every buffer (batch-norm running statistics, ``num_batches_tracked``) and every parameter
(value, ``requires_grad``, gradient) bit for bit as they were, also when it raises half-way.
"""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from spikeshield.attacks import (
    ATTACKS,
    CORRUPTIONS,
    Oracle,
    SharpnessSearch,
    ann_twin,
    attack_options,
    build_attack,
    check_fresh_state,
    cross_entropy_loss,
    evaluate_robustness,
    evaluate_suite,
    fit_twin,
    resolve_gradient,
)
from spikeshield.attacks.gradient import attacker_gradient
from spikeshield.attacks.pgd import PGD
from spikeshield.models import build_model
from spikeshield.neurons import SpikingNeuron, build_surrogate
from spikeshield.training import accuracy

from ..model_state import assert_unchanged, model_state

GRADIENTS = ("bptt", "bptr", "surrogate:atan:2", "true", "true+surrogate:sigmoid:1")
IMAGE_NOISES = tuple(n for n in CORRUPTIONS.names() if not n.startswith(("event", "spatial")))


def _fine_tuning(neuron: str = "lif", **options) -> nn.Module:
    """The issue's case: a digits cnn (T = 2) in train mode whose first batch-norm layer was
    frozen on purpose (the second still trains), with non-trivial running statistics, a frozen
    readout bias and a gradient left on one weight."""
    torch.manual_seed(0)
    model = build_model(
        "cnn", neuron=neuron, neuron_options=options, input_shape=(1, 8, 8), time_steps=2, channels=8
    )
    model.train()
    model(torch.rand(16, 1, 8, 8)).sum().backward()
    model.stem[1].eval()
    model.head[0].bias.requires_grad_(False)
    model.head[0].bias.grad = None
    return model


@pytest.fixture
def data(digits_test):
    return digits_test.subset(24)


@pytest.fixture
def model() -> nn.Module:
    return _fine_tuning()


def test_the_issue_case_frozen_batch_norm_stays_frozen(model, data):
    before = model_state(model)
    evaluate_robustness(model, data, attacks=["fgsm"], eps=[0.1], checks=False)
    assert_unchanged(before, model)
    assert not model.stem[1].training and model.body[1][2].training


def _small(name: str, model: nn.Module, **extra) -> dict:
    options = {"steps": 2, "queries": 5, **extra}
    if name == "transfer":
        options["source"] = ann_twin(model)
    return {k: v for k, v in options.items() if k in attack_options(name)}


def test_a_full_evaluation_with_checks_adaptive_gradients_eot_and_every_perturbation(model, data):
    attacks = [build_attack(n, eps=0.0, **_small(n, model)) for n in ATTACKS.names()]
    before = model_state(model)
    evaluate_robustness(
        model,
        data,
        attacks=attacks,
        eps=[0.1, 0.3],
        noises={n: [0.0, 0.2] for n in IMAGE_NOISES},
        gradient="adaptive",
        eot_samples=2,
        check_samples=8,
    )
    assert_unchanged(before, model)


@pytest.mark.parametrize("name", ATTACKS.names())
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_every_attack_used_directly_on_a_model_in_train_mode(name, norm, model, data):
    if norm not in ATTACKS.get(name).norms:
        pytest.skip(f"{name} has no {norm}")
    attack = build_attack(name, eps=0.2, norm=norm, **_small(name, model, restarts=2))
    x, y = data.tensors()
    before = model_state(model)
    attack.perturb(Oracle(model, eot_samples=2), x, y, torch.Generator().manual_seed(0))
    assert_unchanged(before, model)


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_every_attacker_gradient_and_eot_on_a_stochastic_defended_model(gradient, data):
    """The fake-gradient oscillating neuron with a random phase (stochastic: EOT)."""
    model = _fine_tuning("oscillating-lif", random_phase=True, backward_amplitude=0.5)
    x, y = data.tensors()
    before = model_state(model)
    for spec in resolve_gradient(gradient, model).members:
        oracle = Oracle(model, spec, eot_samples=3)
        oracle.loss_and_grad(x, y, cross_entropy_loss)
        oracle.scores(x)
    assert_unchanged(before, model)


def test_the_swaps_restore_the_neurons_when_the_block_raises(model):
    neurons = [m for m in model.modules() if isinstance(m, SpikingNeuron)]
    surrogates = [n.surrogate for n in neurons]
    for spec in resolve_gradient("adaptive", model).members:
        with pytest.raises(RuntimeError, match="inside"), attacker_gradient(model, spec):
            model(torch.rand(4, 1, 8, 8)).sum().backward()
            raise RuntimeError("inside the swap")
        assert [n.surrogate for n in neurons] == surrogates
        assert all("forward" not in vars(n) for n in neurons)


def test_the_transfer_twin_check_fresh_state_and_clean_accuracy(model, data):
    before = model_state(model)
    twin = ann_twin(model)
    fit_twin(twin, data, epochs=1, batch_size=8)
    x, y = data.tensors()
    attack = build_attack("transfer", eps=0.2, steps=2, source=twin)
    attack.perturb(Oracle(model), x, y)
    check_fresh_state(model, x)
    accuracy(model, data)
    assert_unchanged(before, model)


@dataclass
class Vandal(PGD):
    """An attack that changes the model, then fails half-way."""

    def perturb_once(self, oracle, x, y, rng):
        oracle.loss_and_grad(x, y, cross_entropy_loss, rng)
        model = oracle.model
        model.train()
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        for m in model.modules():
            if isinstance(m, SpikingNeuron):
                m.surrogate = build_surrogate("atan")
        model(x)  # batch-norm running statistics move
        raise RuntimeError("attack failed half-way")


class FailsOnCall(nn.Module):
    """Raises on its ``fail_at``-th call (inside a gradient swap when the attack is running)."""

    def __init__(self, model: nn.Module, fail_at: int) -> None:
        super().__init__()
        self.model, self.calls, self.fail_at = model, 0, fail_at

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("model failed half-way")
        return self.model(x)


@pytest.mark.parametrize("where", ["attack directly", "attack in an evaluation", "model in an evaluation"])
def test_everything_is_restored_after_an_exception_half_way(where, model, data):
    x, y = data.tensors()
    before = model_state(model)
    with pytest.raises(RuntimeError, match="half-way"):
        if where == "attack directly":
            Vandal(eps=0.1, steps=2).perturb(Oracle(model), x, y)
        elif where == "attack in an evaluation":
            evaluate_robustness(model, data, attacks=[Vandal(steps=2)], eps=[0.1], checks=False)
        else:
            # a surrogate swap is active when the model fails (BPTR would now be refused up front:
            # the untrained second layer never fires, so BPTR passes no gradient to the input)
            wrapped = FailsOnCall(model, fail_at=8)
            evaluate_robustness(
                wrapped, data, attacks=["pgd"], eps=[0.1], gradient="surrogate:atan:2", checks=False
            )
    assert_unchanged(before, model)


@pytest.mark.parametrize("suite", ["rssnn-standard", "reliable"])
def test_the_evaluation_suites_leave_no_mark(suite, model, data):
    options: dict = {"eps": 0.1, "sigmas": [0.1]}
    if suite == "reliable":
        options = {"eps": [0.1], "steps": 2, "queries": 5, "search": SharpnessSearch(rounds=1, samples=8)}
    before = model_state(model)
    evaluate_suite(model, data, suite, check_samples=8, **options)
    assert_unchanged(before, model)

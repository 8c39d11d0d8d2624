"""The oscillation defence (Jiang & Zhang, arXiv 2211.02223) hands the attacker a fake
neuron's gradient: plain PGD through it fails, the masking checks say so, and the attacks that
do not trust the handed-out gradient (true gradient, the ``reliable`` suite) break it (issue 15)."""

import math

import torch
from torch import nn

from spikeshield.attacks import SharpnessSearch, build_attack, evaluate_robustness, evaluate_suite
from spikeshield.attacks.checks import ALPHA, binomial_tail
from spikeshield.attacks.gradient import has_fake_gradient
from spikeshield.attacks.oracle import Oracle
from spikeshield.neurons import OscillatingLIFNode, build_neuron
from spikeshield.neurons.surrogates import Sigmoid

EPS = 0.2
#: reliable's bar on the 48 images: 3 of them (measured 1 with one training thread, 2 with CI's two;
#: before APGD through the true gradient was a member: 4 and 6)
BAR = 3 / 48
FAST = {"steps": 10, "queries": 30, "search": SharpnessSearch(rounds=2, samples=16)}


def _pgd(model, data, gradient):
    result = evaluate_robustness(
        model, data, attacks=[build_attack("pgd", steps=10)], eps=[EPS], gradient=gradient, check_samples=48
    )
    (record,) = [r for r in result["records"] if r.get("eps") == EPS]
    failed = {c["check"] for c in result["checks"] if c["status"] == "fail"}
    return result, record["accuracy"], failed


def test_fake_gradient_pgd_fails_the_masking_checks_and_true_gradient_pgd_breaks_it(
    digits_oscillation, digits_test
):
    model, data = digits_oscillation, digits_test.subset(48)
    assert has_fake_gradient(model)
    fake, fake_accuracy, fake_failed = _pgd(model, data, "bptt")  # the paper's threat model
    true, true_accuracy, true_failed = _pgd(model, data, "true")  # the attacker who knows the defence
    assert fake["clean_accuracy"] == true["clean_accuracy"] > 0.9
    assert fake_accuracy > 0.8 > true_accuracy + 0.5  # the fake gradient misleads PGD ...
    assert fake["gradient_masking_suspected"] and "large-eps-reaches-zero" in fake_failed  # ... visibly
    assert not true["gradient_masking_suspected"] and not true_failed
    assert true_accuracy <= 0.2


def _with_backward(model: nn.Module, **backward) -> nn.Module:
    """The same network with another backward oscillation (the weights do not depend on it: the
    defender trains through the true gradient)."""
    for m in model.modules():
        if isinstance(m, OscillatingLIFNode):
            for key, value in backward.items():
                setattr(m, key, value)
    return model


def _check(result, name):
    return next(c for c in result["checks"] if c["check"] == name)


def test_a_mild_fake_backward_is_caught_by_the_attack_through_the_true_gradient(
    digits_oscillation, digits_test
):
    """A_b = 1, f_b = 0.1: the fake gradient still points roughly the right way (on the grid no
    other check fired), but the same PGD through the true gradient fools many more samples."""
    mild = {"backward_amplitude": 1.0, "backward_frequency": 0.1, "backward_phase": None}
    model = _with_backward(digits_oscillation, **mild)
    data = digits_test.subset(48)
    fake, fake_accuracy, fake_failed = _pgd(model, data, "bptt")
    true, _, _ = _pgd(model, data, "true")
    check = _check(fake, "true-gradient-not-stronger")
    assert check["status"] == "fail" and fake["gradient_masking_suspected"], check["detail"]
    assert "true-gradient-not-stronger" in fake_failed and check["accuracy"] < fake_accuracy - 0.2
    # the check's run is the true-gradient evaluation's PGD as configured: same samples and starts
    record = next(r for r in true["records"] if r.get("eps") == EPS)
    as_configured = record["strengthened"]["accuracy_as_configured"] if "strengthened" in record else None
    assert check["accuracy"] == (as_configured if as_configured is not None else record["accuracy"])
    assert _check(true, "true-gradient-not-stronger")["status"] == "skipped"  # already the true one


def test_a_flat_masked_attack_is_checked_at_the_largest_eps(digits_oscillation, digits_test):
    """The grid's defect (strong fake backward, seed 1): PGD-10 through the fake gradient leaves
    the clean accuracy at every ε, so the ε nearest half of it is the first one, 0.05, where the
    true gradient gains too little for the paired test to fire — the check passed there. It is
    now run at the largest ε, and fails."""
    data = digits_test.subset(48)
    pgd = build_attack("pgd", steps=10)
    fake = evaluate_robustness(digits_oscillation, data, attacks=[pgd], eps=[0.05, 0.1], check_samples=48)
    handed_out = {r["eps"]: r["accuracy"] for r in fake["records"] if r["eps"] > 0}
    reference = min(handed_out, key=lambda e: abs(handed_out[e] - fake["clean_accuracy"] / 2))
    assert reference == 0.05  # ... as the budget checks' reference ε (flat: ties to the first)
    true = evaluate_robustness(
        digits_oscillation, data, attacks=[pgd], eps=[0.05], gradient="true", checks=False
    )
    (at_005,) = [r["accuracy"] for r in true["records"] if r["eps"] == 0.05]
    net = round((handed_out[0.05] - at_005) * len(data))
    # at 0.05 the true gradient fools at most `net` more samples on balance: p >= 2^-net >= ALPHA
    assert binomial_tail(net, net) >= ALPHA, net
    check = _check(fake, "true-gradient-not-stronger")
    assert check["eps"] == 0.1 and check["status"] == "fail", check["detail"]
    assert check["accuracy"] < handed_out[0.1] - 0.1


def test_without_a_fake_backward_the_true_gradient_check_is_skipped(digits_oscillation, digits_test):
    none = {"backward_amplitude": None, "backward_frequency": None, "backward_phase": None}
    model = _with_backward(digits_oscillation, **none)
    assert not has_fake_gradient(model)
    result, _, _ = _pgd(model, digits_test.subset(24), "bptt")
    check = _check(result, "true-gradient-not-stronger")
    assert check["status"] == "skipped" and "no fake backward" in check["detail"]


def test_the_reliable_suite_sees_through_the_fake_gradient(digits_oscillation, digits_test):
    model, data = digits_oscillation, digits_test.subset(48)
    _, fake_accuracy, _ = _pgd(model, data, "bptt")
    apgd = evaluate_robustness(
        model,
        data,
        attacks=[build_attack("apgd-ce", steps=FAST["steps"])],
        eps=[EPS],
        gradient="true",
        checks=False,
    )
    apgd_accuracy = next(r for r in apgd["records"] if r.get("eps") == EPS)["accuracy"]
    result = evaluate_suite(model, data, "reliable", eps=[EPS], check_samples=48, **FAST)
    record = next(r for r in result["records"] if r.get("eps") == EPS)
    fooled = record["fooled_by_member"]
    accuracy = record["accuracy"]
    print(
        f"PGD, fake gradient {fake_accuracy:.3f}; APGD-CE, true {apgd_accuracy:.3f}; reliable {accuracy:.3f}"
    )
    # APGD-CE and APGD-DLR through the true gradient are members for such models (issue 13): the
    # suite leaves no more than APGD-CE through the true gradient alone (0.062), and less than
    # the 0.083 / 0.125 (1 / 2 training threads) it left when the true gradient entered through
    # its SA-PGD member only (now 0.021 / 0.042)
    assert accuracy <= apgd_accuracy
    assert accuracy <= BAR and accuracy < fake_accuracy - 0.5
    assert fooled["apgd-ce+true"] > 0  # the true gradient breaks what the fake one did not
    assert next(r for r in result["records"] if r.get("eps") == 0.0)["accuracy"] == result["clean_accuracy"]


class OneNeuron(nn.Module):
    """Scores ``[S, 1 − S]`` of one random-phase oscillating neuron over T = 1 step; x ``[B, 1]``."""

    def __init__(self, amplitude: float) -> None:
        super().__init__()
        self.neuron = build_neuron("oscillating-lif", amplitude=amplitude, random_phase=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.neuron(x.unsqueeze(0))[0]
        return torch.cat([s, 1 - s], dim=1)


def test_eot_over_the_random_phase_averages_the_gradients_by_hand():
    """At t = 0 from V = 0 (τ = 2): H = x/2 + A·sin φ and S = Θ(H − 1), so dS/dx = g(H − 1)/2
    with g the sigmoid surrogate (α = 4). EOT over n passes: the mean over the n phases drawn."""
    amplitude, n, x = 0.5, 4, torch.tensor([[1.6]])
    model = OneNeuron(amplitude).eval()
    torch.manual_seed(3)
    _, grad, _ = Oracle(model, eot_samples=n).loss_and_grad(
        x, torch.zeros(1, dtype=torch.long), lambda s, _y: s[:, 0]
    )
    torch.manual_seed(3)
    phases = [2 * math.pi * torch.rand(1, 1) for _ in range(n)]  # one draw per pass, as the neuron draws
    each = [Sigmoid(4.0).grad(x / 2 + amplitude * torch.sin(phi) - 1) / 2 for phi in phases]
    torch.testing.assert_close(grad, sum(each) / n)
    assert len({e.item() for e in each}) == n  # each pass drew its own phase: one pass would not do

"""ASSG, the adaptive-sharpness surrogate gradient (Wang et al., arXiv 2512.22522), attacker side."""

import math

import pytest
import torch
from torch import nn

from spikeshield.attacks import (
    Oracle,
    SharpnessSearch,
    cross_entropy_loss,
    resolve_gradient,
    search_sharpness,
)
from spikeshield.attacks.assg import sharpness_scale
from spikeshield.attacks.gradient import parse_gradient_spec
from spikeshield.errors import UsageError
from spikeshield.neurons import build_neuron
from spikeshield.streams import SampleStreams


class IFLayer(nn.Module):
    """One layer of IF neurons (V_th = 1, hard reset) driven by the input for T steps; the scores
    are the spike counts, so the statistics can be computed by hand."""

    def __init__(self, time_steps: int, surrogate: str = "atan") -> None:
        super().__init__()
        self.time_steps = time_steps
        self.neuron = build_neuron("if", surrogate=surrogate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(x.unsqueeze(0).expand(self.time_steps, *x.shape)).sum(0)


def _by_hand_one_update(x: torch.Tensor, m: torch.Tensor, d: torch.Tensor):
    size = x.abs()
    m = 0.9 * m + 0.1 * size
    d = 0.9 * d + 0.1 * (size - m).abs()  # with the M just updated (the official code)
    return m, d


def test_statistics_and_sharpness_on_a_hand_computed_layer():
    """Two IF steps on a constant drive c: x1 = c − 1; x2 = c − 1 after a spike (reset to 0),
    2c − 1 otherwise. Two attack iterations at different inputs, then a new run."""
    model = IFLayer(time_steps=2)
    oracle = Oracle(model, parse_gradient_spec("assg:0.4"))
    oracle.new_run()
    y = torch.zeros(1, dtype=torch.long)
    first, second = torch.tensor([[0.3, 0.8, 1.4]]), torch.tensor([[0.5, 1.1, 0.2]])
    m = [torch.ones(1, 3), torch.ones(1, 3)]
    d = [torch.zeros(1, 3), torch.zeros(1, 3)]
    for c in (first, second):
        oracle.loss_and_grad(c, y, cross_entropy_loss)
        fired = c >= 1
        xs = [c - 1, torch.where(fired, c - 1, 2 * c - 1)]
        for t in range(2):
            m[t], d[t] = _by_hand_one_update(xs[t], m[t], d[t])
            got_m, got_d = oracle.sharpness.moments[(0, t)]
            torch.testing.assert_close(got_m, m[t], rtol=0, atol=1e-7)
            torch.testing.assert_close(got_d, d[t], rtol=0, atol=1e-7)
    a = 2 / math.pi * math.tan(math.pi * 0.4)
    assert sharpness_scale("atan", 0.4) == pytest.approx(a)
    stats = oracle.sharpness
    stats.begin_pass(update=False)
    alpha = stats.sharpness(0, torch.zeros(1, 3), a)
    torch.testing.assert_close(alpha, a / (m[0] + 1.5 * d[0] + 1e-4))
    oracle.new_run()  # every run starts from M = 1, D = 0
    assert stats.moments == {}


def test_eot_updates_the_statistics_on_the_first_pass_only():
    model = IFLayer(time_steps=1)
    c = torch.tensor([[0.3, 0.8, 1.4]])
    y = torch.zeros(1, dtype=torch.long)
    once = Oracle(model, parse_gradient_spec("assg:0.4"))
    eot = Oracle(model, parse_gradient_spec("assg:0.4"), eot_samples=3)
    for oracle in (once, eot):
        oracle.new_run()
        oracle.loss_and_grad(c, y, cross_entropy_loss)
    assert torch.equal(once.sharpness.moments[(0, 0)][0], eot.sharpness.moments[(0, 0)][0])
    expected, _ = _by_hand_one_update(c - 1, torch.ones(1, 3), torch.zeros(1, 3))
    torch.testing.assert_close(eot.sharpness.moments[(0, 0)][0], expected)


# the paper's g(x; α) for each shape (its parameterisation), written out independently
PAPER_GRAD = {
    "atan": lambda x, a: (a / 2) / (1 + (math.pi / 2 * a * x) ** 2),
    "sigmoid": lambda x, a: a * torch.sigmoid(a * x) * (1 - torch.sigmoid(a * x)),
    "rectangle": lambda x, a: (x.abs() < 1 / a).float() * a / 2,
    "triangle": lambda x, a: (a - a * a * x.abs()).clamp(min=0),
    "gaussian": lambda x, a: a * torch.exp(-((a * x) ** 2) / 2) / math.sqrt(2 * math.pi),
}


@pytest.mark.parametrize("shape", list(PAPER_GRAD))
def test_the_sharpness_enters_each_surrogate_as_in_the_paper(shape):
    """One step (T = 1): ∂S/∂c = g(c − 1; α) with α = a / (M + 1.5·D + 1e-4) after one update,
    a = (2/π)·tan(πA) for atan and A otherwise, per element."""
    A = 0.42 if shape == "atan" else 1.3
    model = IFLayer(time_steps=1)
    oracle = Oracle(model, parse_gradient_spec(f"assg:{shape}:{A}"))
    oracle.new_run()
    c = torch.tensor([[0.2, 0.7, 0.95, 1.05, 1.6]])
    y = torch.zeros(1, dtype=torch.long)
    _, grad, scores = oracle.loss_and_grad(c, y, lambda out, _y: out.sum(1))
    assert torch.equal(scores, model(c))  # the forward is untouched
    x = c - 1
    m, d = _by_hand_one_update(x, torch.ones_like(x), torch.zeros_like(x))
    a = 2 / math.pi * math.tan(math.pi * A) if shape == "atan" else A
    alpha = a / (m + 1.5 * d + 1e-4)
    torch.testing.assert_close(grad, PAPER_GRAD[shape](x, alpha), rtol=1e-5, atol=1e-7)


def test_atan_puts_a_share_2A_of_its_mass_inside_plus_minus_M():
    """α = a/M with a = (2/π)·tan(πA): the atan surrogate's mass inside ±M is 2A."""
    for A in (0.35, 0.425, 0.49):
        for M in (0.05, 1.0, 3.0):
            alpha = sharpness_scale("atan", A) / M
            mass = 2 / math.pi * math.atan(math.pi * alpha * M / 2)
            assert mass == pytest.approx(2 * A)


def test_assg_specs_and_errors():
    assert parse_gradient_spec("assg").name == "assg" and parse_gradient_spec("assg").needs_search
    assert parse_gradient_spec("assg:0.425").name == "assg:0.425"
    assert parse_gradient_spec("true+assg:sigmoid:2").name == "true+assg:sigmoid:2"
    adaptive = resolve_gradient("adaptive:bptt,assg")
    assert adaptive.needs_search and [m.name for m in adaptive.with_sharpness(0.4).members] == [
        "bptt",
        "assg:0.4",
    ]
    for bad, message in [
        ("assg:0.5", "assg A"),
        ("assg:sigmoid", "needs A"),
        ("bptr+assg:0.4", "bptr uses no surrogate"),
        ("surrogate:atan+assg", "two surrogates"),
        ("assg:x", "must be a number"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_gradient_spec(bad)
    oracle = Oracle(IFLayer(1), parse_gradient_spec("assg"))
    with pytest.raises(UsageError, match="searches A"):
        oracle.loss_and_grad(torch.rand(2, 3), torch.zeros(2, dtype=torch.long), cross_entropy_loss)


def test_a_later_query_may_ask_about_a_subset_of_the_run():
    """An attack that stops querying fooled samples: their statistics stay, the others update."""
    oracle = Oracle(IFLayer(time_steps=1), parse_gradient_spec("assg:0.4"))
    oracle.new_run()
    rng = SampleStreams.keyed(0, range(3))
    c = torch.tensor([[0.3], [0.8], [1.4]])
    y = torch.zeros(3, dtype=torch.long)
    oracle.loss_and_grad(c, y, cross_entropy_loss, rng)
    m1, d1 = _by_hand_one_update(c - 1, torch.ones_like(c), torch.zeros_like(c))
    keep = torch.tensor([0, 2])
    oracle.loss_and_grad(c[keep] + 0.1, y[keep], cross_entropy_loss, rng[keep])
    m2, d2 = _by_hand_one_update(c[keep] + 0.1 - 1, m1[keep], d1[keep])
    m, d = oracle.sharpness.moments[(0, 0)]
    torch.testing.assert_close(m[keep], m2)
    torch.testing.assert_close(d[keep], d2)
    assert torch.equal(m[1], m1[1]) and torch.equal(d[1], d1[1])


def test_the_search_over_A_is_a_ternary_search_reusing_one_run_per_round():
    calls = []

    def robust(a: float) -> int:  # unimodal, lowest near 0.43
        calls.append(a)
        return round(1000 * (a - 0.43) ** 2) + 5

    found = search_sharpness(robust, SharpnessSearch())
    assert len(calls) == 9 and len(set(calls)) == 9  # 8 rounds: 2 + 7 runs, none repeated
    assert abs(found.best - 0.43) < 0.01 and not found.stopped_early
    assert found.record(SharpnessSearch(), 50)["robust_by_A"][f"{found.best:.6g}"] == 5


def test_the_search_stops_when_nothing_can_change():
    calls = []

    def robust(a: float) -> int:
        calls.append(a)
        return 0 if a > 0.44 else 3

    found = search_sharpness(robust, SharpnessSearch())
    # the first A that fools every sample ends it (here the third run)
    assert found.stopped_early and found.tried[found.best] == 0 and calls[-1] == found.best
    assert len(calls) == 3 and found.tried == {round(a, 6): (0 if a > 0.44 else 3) for a in calls}
    calls.clear()
    found = search_sharpness(
        lambda a: calls.append(a) or 4, SharpnessSearch(), settled=lambda: len(calls) >= 3
    )
    assert len(calls) == 3 and found.stopped_early
    with pytest.raises(UsageError):
        SharpnessSearch(low=0.4, high=0.3)


def test_evaluate_with_assg_searches_A_per_attack_and_budget(digits_lif, digits_test):
    """``--gradient assg``: A is searched on the first clean-correct samples for each gradient
    attack and ε > 0, recorded with the result; the main run then uses the chosen A (also as a
    member of ``adaptive``)."""
    from spikeshield.attacks import build_attack, evaluate_robustness

    search = SharpnessSearch(rounds=2, samples=12)
    result = evaluate_robustness(
        digits_lif,
        digits_test.subset(30),
        attacks=[build_attack("pgd", steps=5), build_attack("square", queries=10)],
        eps=[0.1, 0.2],
        gradient="adaptive:bptt,assg",
        sharpness_search=search,
        check_samples=20,
    )
    pgd = {r["eps"]: r for r in result["records"] if r["attack"] == "pgd"}
    for eps in (0.1, 0.2):
        found = pgd[eps]["assg_search"]
        assert found["search_samples"] == 12 and 1 <= len(found["robust_by_A"]) <= 3
        assert pgd[eps]["gradient"] == "adaptive:bptt,assg"
        assert pgd[eps]["gradient_members"] == ["bptt", f"assg:{found['chosen_A']:.6g}"]
    assert "assg_search" not in pgd[0.0] and pgd[0.0]["gradient_members"][1] == f"assg:{search.midpoint:g}"
    assert all("assg_search" not in r for r in result["records"] if r["attack"] == "square")
    assert pgd[0.0]["accuracy"] == result["clean_accuracy"]

import pytest
import torch
from torch import nn

from spikeshield.attacks import (
    InputGradientError,
    StateLeakError,
    build_attack,
    check_fresh_state,
    evaluate_robustness,
)
from spikeshield.errors import UsageError
from spikeshield.models import build_model
from spikeshield.training import accuracy

REQUIRED = ("gradient", "steps", "step_size", "eps", "norm", "restarts", "eot_samples", "seed")


def _by(result, attack):
    return {r["eps"]: r for r in result["records"] if r.get("attack") == attack}


def _check(result, name):
    return next(c for c in result["checks"] if c["check"] == name)


def test_undefended_lif_pgd_breaks_it_fgsm_is_weaker_and_eps_zero_is_clean(digits_lif, digits_test):
    """The issue's acceptance test, on the digits cnn/LIF: PGD-20 at ε = 0.3 < 5 %, FGSM weaker,
    ε = 0 reproduces clean accuracy exactly, and no gradient-masking check fails."""
    data = digits_test.subset(200)
    result = evaluate_robustness(
        digits_lif,
        data,
        attacks=[build_attack("fgsm"), build_attack("pgd", steps=20)],
        eps=[0.0, 0.1, 0.3],
        noises={"gaussian": [0.0, 0.3]},
        seed=0,
        check_samples=100,
    )
    clean = accuracy(digits_lif, data)
    assert result["clean_accuracy"] == clean > 0.9
    pgd, fgsm = _by(result, "pgd"), _by(result, "fgsm")
    assert pgd[0.0]["accuracy"] == fgsm[0.0]["accuracy"] == clean  # exactly
    assert pgd[0.3]["accuracy"] < 0.05
    assert fgsm[0.3]["accuracy"] > pgd[0.3]["accuracy"]
    assert pgd[0.3]["accuracy"] <= pgd[0.1]["accuracy"] <= pgd[0.0]["accuracy"]
    noise = {r["level"]: r["accuracy"] for r in result["records"] if r["kind"] == "noise"}
    assert noise[0.0] == clean and noise[0.3] < clean
    for record in result["records"]:
        if record["kind"] == "attack":
            assert all(key in record for key in REQUIRED), record
            assert record["gradient"] == "bptt" and record["total"] == len(data)
    assert pgd[0.3]["steps"] == 20 and pgd[0.3]["step_size"] == pytest.approx(2.5 * 0.3 / 20)
    statuses = {c["check"]: c["status"] for c in result["checks"]}
    assert statuses["zero-budget-equals-clean"] == "pass"
    assert statuses["single-step-not-better-than-iterative"] == "pass"
    assert statuses["accuracy-non-increasing-in-eps"] == "pass"
    assert statuses["large-eps-reaches-zero"] == "pass"
    probe = next(c for c in result["checks"] if c["check"] == "large-eps-reaches-zero")
    assert (probe["eps"], probe["norm"], probe["input_range"]) == (0.5, "linf", [0.0, 1.0])  # images
    assert statuses["more-steps-do-not-help-the-model"] == "pass"
    assert not result["gradient_masking_suspected"] and result["reasons"] == []


class ZeroGradient(nn.Module):
    """A gradient-masking 'defence': the model's forward, but no gradient reaches the input."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.detach() + 0.0 * x)


def test_a_zero_input_gradient_is_an_error_naming_where_it_is_lost(digits_lif, digits_test):
    """No gradient reaches the input: an error before any attack runs, not a robustness figure
    (issue 13). A masked but non-zero gradient is flagged by the checks instead
    (tests/attacks/test_suites.py)."""
    with pytest.raises(InputGradientError, match=r"zero for every sample .* before layer 'model\.stem\.0'"):
        evaluate_robustness(
            ZeroGradient(digits_lif),
            digits_test.subset(100),
            attacks=[build_attack("pgd", steps=5), build_attack("square", queries=50)],
            eps=[0.3],
            check_samples=50,
        )
    # the corruptions alone need no gradient
    result = evaluate_robustness(ZeroGradient(digits_lif), digits_test.subset(20), noises={"gaussian": [0.1]})
    assert result["records"][0]["noise"] == "gaussian"


class LeakyModel(nn.Module):
    """Keeps state from one call to the next (the bug peers' users hit)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.memory: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x.flatten(1))
        if self.memory is not None and self.memory.shape == out.shape:
            out = out + self.memory
        self.memory = out.detach()
        return out


def test_state_leaking_between_calls_is_caught_and_stochastic_models_are_recognised():
    with pytest.raises(StateLeakError, match="fresh neuron state"):
        check_fresh_state(LeakyModel(), torch.rand(2, 1, 2, 2))
    snn = build_model("mlp", neuron="lif", input_shape=(1, 4, 4), time_steps=3, hidden=[8]).eval()
    assert check_fresh_state(snn, torch.rand(5, 1, 4, 4)) == {"stochastic": False}
    # a low threshold so that the hidden layer fires and the Poisson draws reach the output
    # (an untrained LIF layer that never fires makes a Poisson model deterministic in effect)
    poisson = build_model(
        "mlp",
        neuron="if",
        neuron_options={"v_threshold": 0.2},
        input_shape=(1, 4, 4),
        time_steps=3,
        hidden=[8],
        encoder="poisson",
    ).eval()
    assert check_fresh_state(poisson, torch.rand(5, 1, 4, 4)) == {"stochastic": True}


def test_stochastic_model_eps_zero_is_exact_and_eot_is_recorded(digits_test):
    model = build_model(
        "cnn", neuron="noisy-if", input_shape=(1, 8, 8), time_steps=1, channels=8, normalize=None
    ).eval()
    data = digits_test.subset(64)
    result = evaluate_robustness(
        model, data, attacks=["pgd"], eps=[0.0, 0.1], eot_samples=2, seed=3, check_samples=32
    )
    assert result["stochastic_model"] and result["eot_samples"] == 2
    assert _by(result, "pgd")[0.0]["accuracy"] == result["clean_accuracy"]
    assert _by(result, "pgd")[0.1]["eot_samples"] == 2
    result = evaluate_robustness(model, data, attacks=["fgsm"], eps=[0.1], checks=False)
    assert any("without EOT" in w for w in result["warnings"])


def test_adaptive_gradient_is_the_per_sample_worst_case(digits_lif, digits_test):
    data = digits_test.subset(100)
    attack = build_attack("pgd", steps=5, random_start=False)
    runs = {
        g: evaluate_robustness(digits_lif, data, attacks=[attack], eps=[0.1], gradient=g, checks=False)
        for g in ("bptt", "bptr", "surrogate:atan:0.5", "adaptive:bptt,bptr,surrogate:atan:0.5")
    }
    worst = runs["adaptive:bptt,bptr,surrogate:atan:0.5"]
    record = _by(worst, "pgd")[0.1]
    assert record["gradient_members"] == ["bptt", "bptr", "surrogate:atan:0.5"]
    assert sum(record["fooled_by_gradient_member"].values()) == record["total"] - record["correct"] - (
        len(data) - worst["clean_correct"]
    )
    singles = [_by(runs[g], "pgd")[0.1]["accuracy"] for g in ("bptt", "bptr", "surrogate:atan:0.5")]
    assert record["accuracy"] <= min(singles) + 1 / len(data)
    assert _by(runs["bptr"], "pgd")[0.1]["gradient"] == "bptr"


def test_evaluation_arguments_are_checked(digits_lif, digits_test):
    with pytest.raises(UsageError, match="no eps"):
        evaluate_robustness(digits_lif, digits_test, attacks=["pgd"])
    with pytest.raises(UsageError, match="unknown corruption"):
        evaluate_robustness(digits_lif, digits_test, noises={"fog": [0.1]})
    with pytest.raises(UsageError, match="unknown gradient"):
        evaluate_robustness(digits_lif, digits_test, attacks=["pgd"], eps=[0.1], gradient="magic")

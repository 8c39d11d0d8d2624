"""Gradient-masking checks judge paired results with a paired test (issue 10, section 3)."""

import math
from types import SimpleNamespace

import pytest
import torch

from spikeshield.analysis.robustness import record_label
from spikeshield.attacks import build_attack, evaluate_robustness, resolve_gradient
from spikeshield.attacks.checks import (
    ALPHA,
    CHECKS,
    MORE_STEPS,
    TRUE_GRADIENT,
    Evidence,
    Paired,
    attack_converged,
    binomial_tail,
    gather_true_gradient,
    large_eps,
    more_steps_do_not_help_the_model,
    true_gradient_not_stronger,
    true_gradient_record,
)
from spikeshield.attacks.evaluate import input_range
from spikeshield.data.base import ArrayDataset


def _results(
    n: int, robust_in_both: int, only_first: int, only_second: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample robustness of two runs on ``n`` samples (True = still correct): ``only_first``
    samples fooled by the first run only, ``only_second`` by the second only."""
    first = torch.zeros(n, dtype=torch.bool)
    second = torch.zeros(n, dtype=torch.bool)
    first[:robust_in_both] = second[:robust_in_both] = True
    second[robust_in_both : robust_in_both + only_first] = True  # fooled by the first only
    first[robust_in_both + only_first : robust_in_both + only_first + only_second] = True
    return first, second


def _evidence(pgd10: torch.Tensor, pgd20: torch.Tensor) -> Evidence:
    """PGD-10 (the main record at ε = 0.1) and its doubled-steps run on the same samples."""
    record = SimpleNamespace(info={"eps": 0.1, "kind": "attack"}, correct=pgd10)
    pgd = build_attack("pgd", steps=10)
    clean = torch.ones(len(pgd10), dtype=torch.bool)
    evidence = Evidence(clean, [(pgd, [record])], [], resolve_gradient("bptt"), primary=(pgd, [record]))
    evidence.ref, evidence.samples = record, len(pgd10)
    evidence.extra = {MORE_STEPS: SimpleNamespace(correct=pgd20)}
    return evidence


def test_the_exact_binomial_tail():
    assert binomial_tail(0, 0) == 1.0 and binomial_tail(22, 22) == 2.0**-22
    assert binomial_tail(2, 3) == 0.5 and binomial_tail(60, 98) == pytest.approx(
        0.016680, abs=1e-6
    )  # scipy binom.sf(59, 98, .5)


def test_the_issue_case_fails_paired_where_the_unpaired_tolerance_let_it_pass():
    """PGD-10 50.7 % and PGD-20 43.3 % on the same 300 samples: 22 samples fooled by PGD-20
    only, none by PGD-10 only. The former unpaired tolerance (about two standard errors of the
    difference of two independent accuracies) called that noise."""
    n, a, b = 300, 152 / 300, 130 / 300
    assert round(a, 3) == 0.507 and round(b, 3) == 0.433
    unpaired_tolerance = 2 * math.sqrt((a * (1 - a) + b * (1 - b)) / n) + 1 / n
    assert a - b < unpaired_tolerance  # the old check: "attack converged: pass"
    pgd10, pgd20 = _results(n, robust_in_both=130, only_first=0, only_second=22)
    assert Paired(pgd10, pgd20).p_value("second") == 2.0**-22
    check = attack_converged(_evidence(pgd10, pgd20))
    assert check["status"] == "fail" and check["stronger_settings"] == {"steps": 20}
    assert check["paired"]["fooled_only_by_second"] == 22 and check["paired"]["fooled_only_by_first"] == 0
    assert more_steps_do_not_help_the_model(_evidence(pgd10, pgd20))["status"] == "pass"


def test_the_same_accuracy_drop_spread_over_many_disagreements_passes():
    """The same 50.7 % vs 43.3 %, but the runs disagree on 98 samples, 60 against 38: that split
    is what two equally strong attacks give with probability p = 0.017 > ALPHA."""
    pgd10, pgd20 = _results(300, robust_in_both=92, only_first=38, only_second=60)
    assert (int(pgd10.sum()), int(pgd20.sum())) == (152, 130)
    assert Paired(pgd10, pgd20).p_value("second") > ALPHA
    assert attack_converged(_evidence(pgd10, pgd20))["status"] == "pass"


def test_a_significant_but_immaterial_gain_passes():
    """One more restart can only add fooled samples, so 7 of them are 'significant' (2⁻⁷ <
    0.01) whatever n is; on 10 000 samples they move the accuracy by 0.07 %, far below its
    standard error (0.5 %): not a convergence failure."""
    pgd10, pgd20 = _results(10_000, robust_in_both=5_000, only_first=0, only_second=7)
    pair = Paired(pgd10, pgd20)
    assert pair.p_value("second") < ALPHA and not pair.stronger("second")
    assert attack_converged(_evidence(pgd10, pgd20))["status"] == "pass"


def test_an_attack_through_the_true_gradient_that_fools_more_is_masking():
    """The same PGD through the handed-out and the true forward's gradient, paired on 100 samples."""
    handed_out, true = _results(100, 40, 0, 30)  # 30 samples fooled by the true gradient only
    evidence = _evidence(handed_out, handed_out)
    assert true_gradient_not_stronger(evidence)["status"] == "skipped"  # no fake backward: no run
    evidence.extra[TRUE_GRADIENT] = SimpleNamespace(correct=true, info={"gradient": "true"})
    check = true_gradient_not_stronger(evidence)
    assert check["status"] == "fail" and check["category"] == "masking"
    assert check["accuracy"] == 0.4 and check["paired"]["fooled_only_by_second"] == 30
    assert "pgd-10 [true] 0.4000" in check["detail"]
    evidence.extra[TRUE_GRADIENT].correct = handed_out.clone()  # equally strong
    assert true_gradient_not_stronger(evidence)["status"] == "pass"
    handed_out, true = _results(100, 40, 0, 3)  # 3 more, all one way: p = 1/8, not < ALPHA
    evidence = _evidence(handed_out, handed_out)
    evidence.extra[TRUE_GRADIENT] = SimpleNamespace(correct=true, info={"gradient": "true"})
    assert true_gradient_not_stronger(evidence)["status"] == "pass"


def _robust(n: int, robust: int) -> torch.Tensor:
    """``robust`` of ``n`` samples still classified correctly (the first ones)."""
    return torch.arange(n) < robust


def _sweep_evidence(handed_out: dict[float, torch.Tensor], true: dict[float, torch.Tensor]):
    """PGD-10's main records at each ε (handed-out gradient; the samples are the check samples)
    and a check sweep that answers with the true-gradient results of the ε it is asked for."""
    pgd = build_attack("pgd", steps=10)
    records = [SimpleNamespace(info={"eps": e, "kind": "attack"}, correct=c) for e, c in handed_out.items()]
    n = len(records[0].correct)
    clean = torch.ones(n, dtype=torch.bool)
    evidence = Evidence(clean, [(pgd, records)], [], resolve_gradient("bptt"), primary=(pgd, records))
    evidence.key, evidence.samples = "pgd", n
    evidence.ref = min(records, key=lambda r: abs(r.correct.float().mean() - 0.5))  # as gather_evidence
    plans = []

    def sweep(subset, plan, tag):
        plans.append((len(subset), plan))
        ((_key, _attack, levels),) = plan
        return {"records": [SimpleNamespace(correct=true[levels[0]], info={"gradient": "true"})]}

    data = ArrayDataset(torch.zeros(n, 1, 2, 2), torch.zeros(n), scale=1.0)
    return evidence, sweep, data, plans


def test_the_true_gradient_rerun_is_at_the_largest_eps_and_paired_with_its_record():
    """One extra run, at the largest ε > 0, against the primary's own record at that ε on the
    same samples (the records at the other ε would give other counts)."""
    handed_out = {0.05: _robust(100, 90), 0.1: _robust(100, 70), 0.2: _robust(100, 25)}
    true = {e: _robust(100, 5) for e in handed_out}
    evidence, sweep, data, plans = _sweep_evidence(handed_out, true)
    assert evidence.ref.info["eps"] == 0.1  # the budget checks' reference ε is another one
    gather_true_gradient(evidence, data, sweep)
    ((samples, ((key, attack, levels),)),) = plans  # one run, on the check samples, at one ε
    assert samples == 100 and key == "pgd" and attack is evidence.primary[0] and levels == [0.2]
    check = true_gradient_not_stronger(evidence)
    assert check["eps"] == 0.2 and "pgd eps 0.2:" in check["detail"]
    assert check["paired"]["fooled_only_by_second"] == 20 and check["paired"]["fooled_only_by_first"] == 0
    assert check["status"] == "fail" and check["accuracy"] == 0.05


def test_a_masked_attack_flat_at_every_eps_is_still_caught():
    """The defect of issue 15's grid (strong fake backward, seed 1): through the handed-out
    gradient PGD-10 leaves ~95 % at every ε, so the ε nearest half the clean accuracy is the
    smallest, where the true gradient fools only 5 more of 100 (p = 1/32: the check passed);
    at the largest ε it fools 80 more."""
    handed_out = {0.05: _robust(100, 95), 0.1: _robust(100, 96), 0.2: _robust(100, 95)}
    true = {0.05: _robust(100, 90), 0.1: _robust(100, 70), 0.2: _robust(100, 15)}
    evidence, sweep, data, plans = _sweep_evidence(handed_out, true)
    assert evidence.ref.info["eps"] == 0.05
    at_reference = Paired(handed_out[0.05], true[0.05])
    assert at_reference.p_value("second") == 1 / 32 and not at_reference.stronger("second")
    gather_true_gradient(evidence, data, sweep)
    assert plans[0][1][0][2] == [0.2]
    check = true_gradient_not_stronger(evidence)
    assert check["status"] == "fail" and check["eps"] == 0.2
    assert check["paired"]["fooled_only_by_second"] == 80 and check["paired"]["p_second_stronger"] == 2.0**-80


def test_the_rerun_skips_a_largest_eps_where_the_check_could_not_fail():
    """At ε = 0.3 the handed-out attack leaves 6 of 100 robust: even fooling all six would give
    p = 2⁻⁶ > ALPHA, so the rerun is made at the largest ε where it could fail (0.2, 7 left)."""
    handed_out = {0.1: _robust(100, 60), 0.2: _robust(100, 7), 0.3: _robust(100, 6)}
    true = {e: _robust(100, 0) for e in handed_out}
    evidence, sweep, data, plans = _sweep_evidence(handed_out, true)
    assert true_gradient_record(evidence).info["eps"] == 0.2
    gather_true_gradient(evidence, data, sweep)
    assert plans[0][1][0][2] == [0.2] and true_gradient_not_stronger(evidence)["status"] == "fail"
    # nowhere enough left robust: the largest ε (the check then passes)
    handed_out = {0.1: _robust(100, 3), 0.2: _robust(100, 1)}
    evidence, sweep, data, plans = _sweep_evidence(handed_out, {e: _robust(100, 0) for e in handed_out})
    gather_true_gradient(evidence, data, sweep)
    assert plans[0][1][0][2] == [0.2] and true_gradient_not_stronger(evidence)["status"] == "pass"


def test_every_check_returns_one_uniform_record(digits_lif, digits_test):
    result = evaluate_robustness(
        digits_lif,
        digits_test.subset(60),
        attacks=["fgsm", build_attack("pgd", steps=5), build_attack("square", queries=20)],
        eps=[0.1, 0.2],
        noises={"gaussian": [0.0, 0.1]},
        check_samples=30,
    )
    assert [c["check"] for c in result["checks"]] == [f.__name__.replace("_", "-") for f in CHECKS]
    for check in result["checks"]:
        assert {"check", "category", "status", "detail"} <= set(check)
        assert check["status"] in ("pass", "fail", "skipped")
        assert check["category"] in ("consistency", "masking", "convergence")
    assert "strengthened" not in result["records"][0]


def _pgd(result, eps):
    return next(r for r in result["records"] if r.get("attack") == "pgd" and r["eps"] == eps)


def test_an_unconverged_attack_fails_and_the_stronger_result_is_reported(digits_lif, digits_test):
    """PGD-1 with a small step: doubling the steps fools many more of the same samples."""
    data = digits_test.subset(200)
    weak = build_attack("pgd", steps=1, step_size=0.05, random_start=False)
    result = evaluate_robustness(digits_lif, data, attacks=[weak], eps=[0.2], check_samples=200)
    check = next(c for c in result["checks"] if c["check"] == "attack-converged")
    assert check["status"] == "fail", check["detail"]
    record = _pgd(result, 0.2)
    strengthened = record["strengthened"]
    assert strengthened["because"] == ["attack-converged"] and strengthened["stronger_settings"] == {
        "steps": 2
    }
    as_configured = evaluate_robustness(digits_lif, data, attacks=[weak], eps=[0.2], checks=False)
    stronger = evaluate_robustness(
        digits_lif, data, attacks=[weak.with_options(steps=2)], eps=[0.2], checks=False
    )
    assert strengthened["accuracy_as_configured"] == _pgd(as_configured, 0.2)["accuracy"]
    assert strengthened["accuracy_stronger_run"] == _pgd(stronger, 0.2)["accuracy"]
    # the per-sample worst case: below both runs, by the samples only the stronger run fooled
    assert record["accuracy"] <= min(
        strengthened["accuracy_as_configured"], strengthened["accuracy_stronger_run"]
    )
    assert (
        record["correct"] == _pgd(as_configured, 0.2)["correct"] - strengthened["fooled_only_by_stronger_run"]
    )
    assert record["accuracy"] < _pgd(as_configured, 0.2)["accuracy"] - 0.05
    assert any("had not converged" in w for w in result["warnings"])
    assert record_label(record) == "pgd + rerun steps=2"  # tables and plots say so too
    assert not result["gradient_masking_suspected"]  # not converged is not masking


def test_a_converged_attack_passes_and_is_reported_as_run(digits_lif, digits_test):
    data = digits_test.subset(100)
    pgd = build_attack("pgd", steps=20, restarts=3)
    result = evaluate_robustness(digits_lif, data, attacks=[pgd], eps=[0.15], check_samples=100)
    statuses = {c["check"]: c["status"] for c in result["checks"]}
    assert statuses["attack-converged"] == statuses["restarts-converged"] == "pass"
    assert "strengthened" not in _pgd(result, 0.15)
    alone = evaluate_robustness(digits_lif, data, attacks=[pgd], eps=[0.15], checks=False)
    assert _pgd(result, 0.15)["accuracy"] == _pgd(alone, 0.15)["accuracy"]


def test_the_large_eps_probe_follows_the_input_range():
    """Images in [0, 1]: L∞ 0.5, L2 0.5·√d (as always). Event frames of counts are bounded
    below only ([0, ∞)): the probe takes half the largest count of the data, since 0.5 cannot
    flatten a frame whose cells hold several events."""
    images = ArrayDataset(torch.tensor([[[[0, 128], [255, 3]]]], dtype=torch.uint8), torch.zeros(1))
    assert input_range(images, (0.0, 1.0)) == (0.0, 1.0)
    assert large_eps("linf", 4, (0.0, 1.0)) == 0.5 and large_eps("l2", 4, (0.0, 1.0)) == 1.0
    counts = torch.zeros(3, 2, 2, 4, 4)  # [N, T, C, H, W] event counts
    counts[1, 0, 1, 2, 3], counts[2, 1, 0, 0, 0] = 7.0, 2.0
    frames = ArrayDataset(counts, torch.zeros(3), scale=1.0, meta={"event_values": "counts"})
    assert input_range(frames, (0.0, math.inf)) == (0.0, 7.0)
    assert large_eps("linf", 64, input_range(frames, (0.0, math.inf))) == 3.5
    assert large_eps("l2", 64, (0.0, 7.0)) == pytest.approx(3.5 * 8)

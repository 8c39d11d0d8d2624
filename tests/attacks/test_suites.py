"""The named evaluation suites ``rssnn-standard`` and ``reliable`` (issue 13)."""

import json

import pytest
import torch
from torch import nn

from spikeshield.attacks import (
    RELIABLE_MEMBERS,
    SharpnessSearch,
    build_attack,
    evaluate_robustness,
    evaluate_suite,
)
from spikeshield.errors import UsageError
from spikeshield.models import build_model
from spikeshield.neurons import SpikingNeuron, build_surrogate

FAST = {"steps": 10, "queries": 30, "search": SharpnessSearch(rounds=2, samples=16)}


def _by(result, attack):
    return {r["eps"]: r for r in result["records"] if r.get("attack") == attack}


def _check(result, name):
    return next(c for c in result["checks"] if c["check"] == name)


def masked(model: nn.Module, width: float = 0.02) -> nn.Module:
    """A "defence" that ships a deliberately masked gradient: the trained model with every
    neuron's own surrogate a rectangle of tiny width (most potentials get no gradient)."""
    for m in model.modules():
        if isinstance(m, SpikingNeuron):
            m.surrogate = build_surrogate(f"rectangle:{width}")
    return model


def test_both_suites_drive_large_eps_accuracy_to_zero_on_an_undefended_model(digits_lif, digits_test):
    data = digits_test.subset(40)
    result = evaluate_suite(digits_lif, data, "reliable", eps=[0.3], check_samples=30, **FAST)
    record = _by(result, "reliable")[0.3]
    assert result["clean_accuracy"] > 0.9 and record["accuracy"] <= 0.05
    assert _by(result, "reliable")[0.0]["accuracy"] == result["clean_accuracy"]  # ε = 0 equals clean
    assert not result["gradient_masking_suspected"]
    assert result["suite"]["name"] == "reliable" and result["suite"]["seconds"] > 0
    assert record["members"][0]["member"] == "apgd-ce" and record["seed"] == 0

    standard = evaluate_suite(digits_lif, data, "rssnn-standard", eps=0.3, check_samples=30)
    large = [
        r for r in standard["records"] if r["kind"] == "attack" and r["eps"] >= 0.3 and r["attack"] != "fgsm"
    ]
    assert len(large) >= 6 and all(r["accuracy"] <= 0.05 for r in large)
    pgd = {(r["steps"], r["eps"]): r for r in standard["records"] if r.get("attack") == "pgd"}
    assert pgd[7, 0.3]["step_size"] == pytest.approx(2.55 / 255 * 0.3 / (8 / 255))
    assert pgd[40, 0.3]["step_size"] == pytest.approx(0.5 / 255 * 0.3 / (8 / 255))
    assert {e for s, e in pgd if s == 10} >= {k / 255 for k in range(10, 101, 10)}
    assert {r["level"] for r in standard["records"] if r["kind"] == "noise"} >= {0.0, 0.1, 0.5}
    assert _check(standard, "zero-budget-equals-clean")["status"] == "pass"


def test_reliable_sees_through_a_masked_gradient_that_fools_pgd(digits_lif, digits_test):
    """PGD-10 through the model's own (masked) surrogate barely moves it, and the checks say so;
    the reliable suite (ASSG + SA-PGD among its members) breaks it."""
    model, data = masked(digits_lif), digits_test.subset(48)
    pgd = evaluate_robustness(
        model, data, attacks=[build_attack("pgd", steps=10)], eps=[0.2], check_samples=48
    )
    pgd_accuracy = _by(pgd, "pgd")[0.2]["accuracy"]
    assert pgd["gradient_masking_suspected"] and _check(pgd, "large-eps-reaches-zero")["status"] == "fail"
    result = evaluate_suite(model, data, "reliable", eps=[0.2], check_samples=48, **FAST)
    record = _by(result, "reliable")[0.2]
    assert pgd_accuracy > 0.8 and record["accuracy"] < pgd_accuracy - 0.5
    assert record["fooled_by_member"]["sa-pgd+assg"] > record["fooled_by_member"]["apgd-ce"]
    assert _check(result, "large-eps-reaches-zero")["status"] == "pass"  # through ASSG


def _reliable(model, data, **options):
    """The reliable suite's record at its one budget (0.1 unless given), without checks."""
    options = {**FAST, "eps": [0.1], "checks": False, **options}
    return _by(evaluate_suite(model, data, "reliable", **options), "reliable")[options["eps"][0]]


def test_reliable_is_at_most_every_single_attack_per_sample(digits_lif, digits_test):
    """By construction (a member's streams are keyed by its name and the sample, so it attacks a
    sample the same way alone or after others) and by test. Batch size 1: SA-PGD's continuous
    steps carry the input gradient's last bits, which BLAS sums in a batch-size-dependent order."""
    data = digits_test.subset(16)
    full = _reliable(digits_lif, data, batch_size=1)
    chosen = full["assg_search"]["chosen_A"]
    robust = torch.tensor([b is None for b in full["broken_by"]])
    assert int(robust.sum()) == full["correct"]
    for name in ("apgd-ce", "apgd-dlr", "sa-pgd+assg", "square"):
        alone = _reliable(digits_lif, data, members=[name], assg=chosen, batch_size=1)
        alone_robust = torch.tensor([b is None for b in alone["broken_by"]])
        assert not bool((robust & ~alone_robust).any()), name  # reliable ≤ the attack, sample by sample
        assert alone["correct"] >= full["correct"]


def test_each_member_attacks_only_survivors_and_says_what_it_broke(digits_lif, digits_test):
    data = digits_test.subset(40)
    record = _reliable(digits_lif, data)
    members = record["members"]
    assert [m["member"] for m in members] == [
        n for n in RELIABLE_MEMBERS if n in ("apgd-ce", "apgd-dlr", "sa-pgd+assg", "square")
    ]
    clean_correct = sum(b != "misclassified clean" for b in record["broken_by"])
    attacked = clean_correct
    for m in members:
        assert m["attacked"] == attacked  # nothing attacked twice
        assert m["fooled"] == sum(b == m["member"] for b in record["broken_by"])
        attacked -= m["fooled"]
    assert attacked == record["correct"] and record["model_calls_per_attacked_sample"] > 0
    search = record["assg_search"]
    assert len(search["robust_by_A"]) <= FAST["search"].rounds + 1
    assert search["search_samples"] == min(16, members[2]["attacked"])


def test_the_search_stops_once_nothing_can_change(digits_lif, digits_test):
    """At a large budget the first A tried fools every sample the search runs on: no other A can
    do better, so the search ends there (the rule that also stops it once every sample was
    fooled by some A and none waits for the chosen one: tests/attacks/test_assg.py)."""
    record = _reliable(
        digits_lif,
        digits_test.subset(40),
        eps=[0.3],
        members=["sa-pgd+assg"],
        search=SharpnessSearch(samples=64),
    )
    search = record["assg_search"]
    assert search["stopped_early"] and list(search["robust_by_A"].values()) == [0]
    assert record["correct"] == 0


def test_suite_arguments_are_checked(digits_lif, digits_test):
    data = digits_test.subset(8)
    with pytest.raises(UsageError, match="unknown evaluation suite"):
        evaluate_suite(digits_lif, data, "autoattack")
    with pytest.raises(UsageError, match="unknown reliable member"):
        evaluate_suite(digits_lif, data, "reliable", members=["fab"])
    with pytest.raises(UsageError, match="one budget"):
        evaluate_suite(digits_lif, data, "rssnn-standard", eps=[0.1, 0.2])


def test_a_fake_gradient_model_also_meets_the_true_gradient_and_a_transfer_attack(digits_test):
    """The oscillation defence's neurons hand the attacker a fake backward: ``reliable`` adds
    APGD-CE, APGD-DLR and SA-PGD through the true forward and a transfer attack from an
    undefended twin."""
    torch.manual_seed(0)
    model = build_model(
        "cnn",
        neuron="oscillating-lif",
        neuron_options={"backward_amplitude": 0.5},
        input_shape=(1, 8, 8),
        time_steps=2,
        channels=8,
    ).eval()
    result = evaluate_suite(model, digits_test.subset(24), "reliable", eps=[0.3], check_samples=16, **FAST)
    record = _by(result, "reliable")[0.3]
    names = [m["member"] for m in record["members"]]
    assert names == list(RELIABLE_MEMBERS)
    assert names == ["apgd-ce", "apgd-dlr", "apgd-ce+true", "apgd-dlr+true", "sa-pgd+assg", "sa-pgd+true",
                     "transfer", "square"]  # fmt: skip
    gradients = {m["member"]: m["gradient"] for m in record["members"]}
    assert gradients["apgd-ce"] == gradients["apgd-dlr"] == "bptt"  # the gradient the model hands out
    assert gradients["apgd-ce+true"] == gradients["apgd-dlr+true"] == gradients["sa-pgd+true"] == "true"
    assert "ANN twin" in " ".join(result["warnings"])
    # handed the true gradient already, the suite does not run APGD through it twice
    again = evaluate_suite(
        model, digits_test.subset(8), "reliable", eps=[0.3], gradient="true", checks=False, **FAST
    )
    assert "apgd-ce+true" not in again["suite"]["members"] and "sa-pgd+true" in again["suite"]["members"]


@pytest.mark.parametrize("suite", ["rssnn-standard", "reliable"])
def test_the_suites_keep_event_counts_unclipped(tmp_path, suite):
    """Event frames of counts are bounded below by 0 only: a suite on an N-MNIST run keeps that
    range (it once clipped counts to [0, 1] and stopped with 'broke its threat model')."""
    from spikeshield.cli import main
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / "NMNIST").is_dir():
        pytest.skip(f"real N-MNIST subset not found under {SHARED_DATA}")
    run, data = tmp_path / "nm", str(SHARED_DATA)
    tiny = ["--time-steps", "2", "--epochs", "1", "--limit-train", "60", "--limit-test", "20"]
    assert main(["train", "--dataset", "nmnist", "--data-root", data, "--model", "cnn", *tiny,
                 "--out", str(run)]) == 0  # fmt: skip
    small = ["--steps", "3", "--queries", "10"] if suite == "reliable" else []
    assert main(["evaluate", "--run", str(run), "--suite", suite, "--eps", "0.5", "--limit", "8",
                 "--data-root", data, *small]) == 0  # fmt: skip
    (folder,) = (run / "evaluations").glob(f"{suite}-*")
    result = json.loads((folder / "robustness.json").read_text())
    assert result["bounds"] == [0.0, float("inf")]
    # the large-eps probe follows the counts: half the largest count of the evaluated frames
    # (eps 0.5 cannot erase a frame whose cells hold several events)
    probe = _check(result, "large-eps-reaches-zero")
    low, high = probe["input_range"]
    assert low == 0.0 and high == round(high) >= 2 and probe["eps"] == high / 2
    assert f"eps {high / 2:g} (linf; from the input range [0, {high:g}])" in probe["detail"]


def _statuses(result):
    return {c["check"]: c["status"] for c in result["checks"]}


def test_one_more_restart_reuses_the_members_run_and_gives_the_replayed_runs_verdicts(
    digits_lif, digits_test, monkeypatch
):
    """The check's "one more restart" is SA-PGD's own run plus one restart from a fresh random
    start on the samples that run left robust (issue 13: the first restart is not replayed). It
    nests (no sample the member fooled is robust after it), attacks only the survivors, and the
    checks say what they say with the replayed run (restarts = runs + 1 from the member's own
    streams, the former way)."""
    from spikeshield.attacks import suites
    from spikeshield.attacks.evaluate import attack_subset

    data = digits_test.subset(48)
    options = {**FAST, "eps": [0.05], "check_samples": 40, "members": ["apgd-ce", "sa-pgd+assg"]}
    attacked: list[int] = []
    reused = suites._one_more_restart

    def counting(setup, dataset, member, attack, main, gradient):
        attacked.append(int(main.sum()))
        return reused(setup, dataset, member, attack, main, gradient)

    monkeypatch.setattr(suites, "_one_more_restart", counting)
    result = evaluate_suite(digits_lif, data, "reliable", **options)
    check = _check(result, "restarts-converged")
    assert check["paired"]["samples"] == 40 and check["paired"]["fooled_only_by_first"] == 0
    sa_pgd = next(m for m in _by(result, "reliable")[0.05]["members"] if m["member"] == "sa-pgd+assg")
    # the restart ran once, on the survivors of SA-PGD among the first 40 (not every sample it attacked)
    assert len(attacked) == 1 and attacked[0] < 40 and attacked[0] <= sa_pgd["attacked"]

    def replayed(setup, dataset, member, attack, main, gradient):
        survivors = main.nonzero().squeeze(1)
        again = attack.with_options(restarts=attack.runs + 1)
        rec = attack_subset(setup, dataset, survivors, member.name, again, "replayed", gradient)
        correct = main.clone()
        correct[survivors] = rec.correct
        return correct

    monkeypatch.setattr(suites, "_one_more_restart", replayed)
    former = evaluate_suite(digits_lif, data, "reliable", **options)
    assert _statuses(former) == _statuses(result)
    assert [r["correct"] for r in former["records"]] == [r["correct"] for r in result["records"]]


def test_the_checks_still_catch_an_unconverged_sa_pgd_in_the_suite(digits_lif, digits_test):
    """SA-PGD with one step has not converged: doubling its steps or one more restart fools
    significantly more of the same samples, the convergence checks fail, and the suite reruns it
    stronger on every survivor (with the reused restart and the early-stopping probe)."""
    data = digits_test.subset(120)
    result = evaluate_suite(
        digits_lif, data, "reliable", eps=[0.1], steps=1, members=["sa-pgd+assg"], assg=0.425,
        check_samples=120,
    )  # fmt: skip
    statuses = _statuses(result)
    assert "fail" in (statuses["attack-converged"], statuses["restarts-converged"]), result["checks"]
    record = _by(result, "reliable")[0.1]
    assert record["strengthened"]["fooled_only_by_stronger_run"] > 0
    as_run = _reliable(digits_lif, data, steps=1, members=["sa-pgd+assg"], assg=0.425)
    assert record["correct"] == as_run["correct"] - record["strengthened"]["fooled_only_by_stronger_run"]
    assert any("had not converged" in w for w in result["warnings"])
    assert statuses["large-eps-reaches-zero"] == "pass"


def test_the_masked_model_still_trips_the_early_stopping_large_eps_probe(digits_lif, digits_test):
    """The probe stops each sample at its first misclassified iterate (issue 13): through the
    masked model's own surrogate it still barely moves, and the check still fails."""
    model, data = masked(digits_lif), digits_test.subset(48)
    result = evaluate_robustness(
        model, data, attacks=[build_attack("pgd", steps=10)], eps=[0.2], check_samples=48
    )
    probe = _check(result, "large-eps-reaches-zero")
    assert probe["status"] == "fail" and probe["accuracy"] > 0.3  # far above the 5 % it must reach
    assert result["gradient_masking_suspected"]
    assert "first misclassified iterate" in probe["detail"]


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_check_samples_must_be_a_positive_integer(digits_lif, digits_test, bad):
    data = digits_test.subset(8)
    with pytest.raises(UsageError, match="check_samples must be a positive integer"):
        evaluate_robustness(digits_lif, data, attacks=["fgsm"], eps=[0.1], check_samples=bad)
    with pytest.raises(UsageError, match="check_samples must be a positive integer"):
        evaluate_suite(digits_lif, data, "reliable", eps=[0.1], check_samples=bad, **FAST)


def test_rssnn_standard_takes_one_budget_as_a_number_or_a_list_of_one(monkeypatch, digits_test):
    """``evaluate_suite(..., "rssnn-standard", eps=[0.1])`` was refused ("takes one budget eps in
    (0, 1), got [0.1]") though ``reliable`` and evaluate_robustness take lists: both forms now
    give the same list of attacks; an option the list does not use is named, not a TypeError."""
    calls = []

    def recorded(model, dataset, *, attacks, noises, **options):
        calls.append([(a.name, getattr(a, "steps", None), budgets) for a, budgets in attacks])
        return {"records": []}

    monkeypatch.setattr("spikeshield.attacks.suites.evaluate_robustness", recorded)
    data, model = digits_test.subset(4), nn.Identity()
    for eps in (0.1, [0.1], (0.1,)):
        assert evaluate_suite(model, data, "rssnn-standard", eps=eps)["suite"]["eps"] == 0.1
    assert calls[0] == calls[1] == calls[2] and calls[0][0] == ("fgsm", None, [0.1])
    for bad, message in (([0.1, 0.2], "one budget eps"), ([], "one budget eps"), (1.5, r"in \(0, 1\)")):
        with pytest.raises(UsageError, match=message):
            evaluate_suite(model, data, "rssnn-standard", eps=bad)
    with pytest.raises(UsageError, match="rssnn-standard does not take queries, source: its attacks"):
        evaluate_suite(model, data, "rssnn-standard", source=model, queries=10)
    # reliable takes a single number too (checked before any work)
    with pytest.raises(UsageError, match=r"reliable needs budgets eps in \[0, 1\), got \[1.5\]"):
        evaluate_suite(model, data, "reliable", eps=1.5)
    import numpy as np

    for one in (np.float32(1.5), torch.tensor(1.5)):  # NumPy and 0-d torch numbers are one budget
        with pytest.raises(UsageError, match=r"reliable needs budgets eps in \[0, 1\)"):
            evaluate_suite(model, data, "reliable", eps=one)
    with pytest.raises(UsageError, match="a number or a sequence of them, got 'x'"):
        evaluate_suite(model, data, "reliable", eps="x")
    with pytest.raises(UsageError, match=r"reliable does not take assg_round, bogus \(its options: eps, "):
        evaluate_suite(model, data, "reliable", eps=0.1, bogus=1, assg_round=2)

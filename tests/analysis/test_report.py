import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from spikeshield.analysis.report import (
    Entry,
    aggregate,
    csv_text,
    find_entries,
    markdown,
    pivot,
    write_report,
)
from spikeshield.cli import main

GRID = Path(__file__).parents[2] / "results" / "linear_leak" / "grid"


def old_name(perturbation: str) -> str:
    """The committed summary's names ("pgd (bptt)") in today's form ("pgd-10")."""
    name = perturbation.replace(" (bptt)", "").replace(" (surrogate:atan:2)", " [surrogate:atan:2]")
    return name.replace("pgd", "pgd-10")


def test_report_of_the_committed_grid_reproduces_its_summary():
    """The committed linear-leak grid (written by the experiment runner of 0.1, with its own
    aggregation) read back by today's one aggregation: every mean, std and seed count agrees."""
    entries, notes = find_entries([GRID])
    assert len(entries) == 108 and notes == []  # 54 runs × 2 attacker gradients, nothing collides
    summary = aggregate(entries, title="linear leak")
    committed = json.loads((GRID / "summary.json").read_text())
    want = {
        (r["dataset"], r["model"], r["neuron"], old_name(r["perturbation"]), r["level"]): r
        for r in committed["rows"]
    }
    got = {
        (r["dataset"], r["model"], r["variant"], r["perturbation"], r["level"]): r for r in summary["rows"]
    }
    assert set(got) == set(want)
    for key, row in want.items():
        assert got[key]["mean"] == pytest.approx(row["mean"], abs=1e-12)
        assert got[key]["std"] == pytest.approx(row["std"], abs=1e-12)
        assert got[key]["seeds"] == row["seeds"] == 3
    clean = {(r["dataset"], r["model"], r["variant"]): r["mean"] for r in summary["clean"]}
    assert clean == {
        (r["dataset"], r["model"], r["neuron"]): pytest.approx(r["mean"]) for r in committed["clean"]
    }
    verdicts = {(v["dataset"], v["model"], v["perturbation"]): v["best"] for v in summary["verdicts"]}
    assert verdicts == {
        (v["dataset"], v["model"], old_name(v["perturbation"])): v["best"] for v in committed["verdicts"]
    }
    # the caption states what the runs recorded
    mnist = next(d for d in summary["datasets"] if d["name"] == "mnist")["measured"]
    assert (
        mnist["train_samples"] == [6000]
        and mnist["evaluated_samples"] == [300]
        and mnist["seeds"] == [0, 1, 2]
    )
    assert "Trained 1 epoch(s) on 6000 training samples" in markdown(summary)


def test_markdown_csv_and_pivot_agree_with_the_rows(tmp_path):
    entries, _ = find_entries([GRID / "runs" / "mnist"])
    summary = aggregate(
        [e for e in entries if e.model == "mlp"], title="mlp only", variants=["linear-lif", "if", "lif"]
    )
    assert summary["variants"] == ["linear-lif", "if", "lif"]
    table = markdown(summary)
    row = next(
        r
        for r in summary["rows"]
        if r["variant"] == "if" and r["perturbation"] == "gaussian" and r["level"] == 0.5
    )
    by = {r["variant"]: r for r in summary["rows"] if r["perturbation"] == "gaussian" and r["level"] == 0.5}
    cells = " | ".join(f"{100 * by[v]['mean']:.1f} ± {100 * by[v]['std']:.1f}" for v in summary["variants"])
    assert f"| mlp | gaussian | 0.5 | {cells} |" in table
    lines = list(csv.DictReader(io.StringIO(csv_text(summary))))
    assert (
        float(
            next(
                r
                for r in lines
                if r["variant"] == "if" and r["perturbation"] == "gaussian" and r["level"] == "0.5"
            )["mean"]
        )
        == row["mean"]
    )
    assert f"{row['mean']:.3f}±{row['std']:.3f}" in pivot(summary, "mnist", "mlp", "noise")
    written = write_report(summary, tmp_path)
    assert [p.name for p in written] == ["summary.json", "table.md", "table.csv", "mnist_mlp.png"]


def test_report_cli_over_a_folder_of_runs(tmp_path, capsys):
    runs = [str(GRID / "runs" / "mnist" / f"mlp-if-s{s}") for s in (0, 1)]
    assert main(["report", *runs, "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    assert "| mlp | gaussian | 0.5 |" in printed and "4 evaluations of 2 runs" in printed
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert {r["seeds"] for r in summary["rows"]} == {2}


def test_report_refuses_two_evaluations_it_would_average_as_two_seeds(tmp_path, capsys):
    """The same run evaluated twice with the same settings (once more with --out) was averaged
    silently, its row counting 2 seeds (new-user trial)."""
    run = tmp_path / "mlp-if-s0"
    shutil.copytree(GRID / "runs" / "mnist" / "mlp-if-s0", run)
    shutil.copytree(run / "robustness-bptt", run / "again")
    assert main(["report", str(run), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip()
    run = run.resolve()  # as the report names it
    assert len(err.splitlines()) == 1 and str(run / "again" / "robustness.json") in err
    assert str(run / "robustness-bptt" / "robustness.json") in err
    assert "two evaluations with the same settings would be averaged as two seeds" in err
    assert "{" not in err  # no internal protocol tag such as {E1} (new-user trial)
    assert not (tmp_path / "r").exists()


def test_runs_of_one_seed_with_the_same_folder_name_keep_columns_of_their_own(tmp_path, capsys):
    """Two experiments' runs/mnist/mlp-if-s0 were both labelled 'mlp-if-s0', one column of 2 seeds."""
    for name in ("exp1", "exp2"):
        shutil.copytree(GRID / "runs" / "mnist" / "mlp-if-s0", tmp_path / name / "mlp-if-s0")
    assert main(["report", str(tmp_path / "exp1"), str(tmp_path / "exp2"), "--out", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["variants"] == ["exp1/mlp-if-s0", "exp2/mlp-if-s0"]
    assert {r["seeds"] for r in summary["rows"]} == {1}


def test_a_strengthened_record_is_averaged_in_its_attacks_row_and_marked():
    """An attack that had not converged in one seed is reported there as the worst case with a
    stronger rerun (issue 10); its seeds still share one row, marked †."""

    def result(accuracy, strengthened):
        record = {
            "kind": "attack",
            "attack": "pgd",
            "steps": 10,
            "norm": "linf",
            "eps": 0.1,
            "accuracy": accuracy,
        }
        if strengthened:
            record["strengthened"] = {"stronger_settings": {"steps": 20}}
        return {
            "records": [record],
            "samples": 100,
            "seed": 0,
            "gradient_masking_suspected": False,
            "checks": [],
        }

    entries = [Entry("mnist", "mlp", "lif", s, f"run{s}", result(a, s == 1)) for s, a in ((0, 0.5), (1, 0.3))]
    summary = aggregate(entries, title="t")
    (row,) = summary["rows"]
    assert (row["perturbation"], row["seeds"], row["strengthened"]) == ("pgd-10", 2, 1)
    assert row["mean"] == pytest.approx(0.4)
    assert "| mlp | pgd-10 | 0.1 | 40.0 ± 14.1 † |" in markdown(
        summary
    ) and "† The attack had not converged" in markdown(summary)


def test_without_a_level_0_the_fraction_kept_is_of_the_clean_accuracy_on_the_evaluated_samples():
    """An attack run at one ε only (no ε = 0 row): the verdict's fraction kept is its accuracy over
    the evaluation's clean accuracy on the same samples (mean over seeds), not nan; an evaluation
    that recorded no clean accuracy says n/a."""

    def entry(variant, seed, clean, pgd):
        record = {"kind": "attack", "attack": "pgd", "steps": 10, "norm": "linf", "eps": 0.1, "accuracy": pgd}
        result = {"records": [record], "samples": 100, "seed": 0, "checks": []}
        if clean is not None:
            result["clean_accuracy"] = clean
        return Entry("mnist", "mlp", variant, seed, f"{variant}-s{seed}", result)

    entries = [entry("a", 0, 0.8, 0.4), entry("a", 1, 0.6, 0.2)]
    entries += [entry("b", 0, 0.5, 0.28), entry("b", 1, 0.5, 0.28)]
    summary = aggregate(entries, title="t")
    (verdict,) = summary["verdicts"]
    assert verdict["retained_fraction"] == pytest.approx({"a": 0.3 / 0.7, "b": 0.56})
    assert verdict["best"] == "a" and verdict["best_retained"] == "b"
    assert "| mnist | mlp | pgd-10 | 30.0 (0.43) | 28.0 (0.56) | a | 2.0 | no | b |" in markdown(summary)
    unknown = aggregate([entry("a", 0, None, 0.4), entry("b", 0, None, 0.3)], title="t")
    (verdict,) = unknown["verdicts"]
    assert verdict["retained_fraction"] == {} and verdict["best_retained"] is None
    table = markdown(unknown)
    assert "| mnist | mlp | pgd-10 | 40.0 (n/a) | 30.0 (n/a) | a | 10.0 | n/a (1 seed) | n/a |" in table
    assert "nan" not in table and "None" not in table


def _rated(neuron, seed, rate, noise, pgd, clean=0.9):
    """An entry of one run with a recorded firing rate: Gaussian noise at σ = 0, 0.2, 0.4
    (accuracies ``noise``) and PGD at ε = 0.1 (``pgd``)."""
    records = [
        {"kind": "noise", "noise": "gaussian", "level": level, "accuracy": acc}
        for level, acc in zip((0.0, 0.2, 0.4), noise, strict=True)
    ]
    records.append(
        {"kind": "attack", "attack": "pgd", "steps": 10, "norm": "linf", "eps": 0.1, "accuracy": pgd}
    )
    result = {"records": records, "samples": 100, "seed": 0, "checks": [], "firing_rate": {"mean": rate}}
    variant = f"{neuron}-{rate}"
    return Entry(
        "mnist", "mlp", variant, seed, f"{variant}-s{seed}", result,
        config={"neuron": neuron}, metrics={"test_accuracy": clean},
    )  # fmt: skip


def test_columns_name_the_settings_runs_differ_in_without_python_reprs():
    """Runs of one neuron with other options (a report over an experiment folder): the column says
    ``leak=0.1``, not ``neuron_options={'leak': 0.1}``."""
    from spikeshield.analysis.report import _label_variants

    def entry(seed, **config):
        e = _rated("linear-lif", seed, 0.1, (0.9, 0.8, 0.6), 0.3)
        e.variant, e.run = "linear-lif", f"{len(config)}-{config}-s{seed}"
        e.config = {"neuron": "linear-lif", "seed": seed, **config}
        return e

    entries = [
        entry(0, neuron_options={"leak": 0.1}, augment=["crop:4", "flip"], amp=False),
        entry(1, neuron_options={"leak": 0.1}, augment=["crop:4", "flip"], amp=False),
        entry(0, neuron_options={"leak": 0.2}, augment=[], amp=True, mode_options={"rho": 1.0}),
    ]
    _label_variants(entries)
    assert [e.variant for e in entries] == [
        "linear-lif (amp=false, augment=crop:4,flip, leak=0.1)",
        "linear-lif (amp=false, augment=crop:4,flip, leak=0.1)",
        "linear-lif (amp=true, augment=none, rho=1.0, leak=0.2)",
    ]


def test_a_one_variant_verdict_shows_its_value_without_nan_or_a_margin():
    """One variant, accuracy 0 at level 0 (no fraction kept to show): it used to print '0.0 (nan)'
    and a margin of 0.0 over a runner-up that does not exist."""
    summary = aggregate([_rated("lif", 0, 0.1, (0.0, 0.0, 0.0), 0.0, clean=0.1)], title="one")
    table = markdown(summary)
    assert "nan" not in table
    assert "| mnist | mlp | gaussian | 0.0 (n/a) | lif-0.1 | – | n/a (one variant) | n/a |" in table
    entries = [_rated("lif", 0, 0.1, (0.9, 0.6, 0.3), 0.2), _rated("if", 0, 0.1, (0.8, 0.4, 0.4), 0.1)]
    two = markdown(aggregate(entries, title="two"))
    assert "| mnist | mlp | gaussian | 45.0 (0.50) | 40.0 (0.50) | lif-0.1 | 5.0 | n/a (1 seed) |" in two


def test_firing_rates_and_accuracy_against_rate_in_the_summary_table_and_figure(tmp_path):
    entries = [
        _rated("lif", 0, 0.10, (0.9, 0.8, 0.6), 0.3, clean=0.92),
        _rated("lif", 1, 0.12, (0.9, 0.6, 0.4), 0.1, clean=0.90),
        _rated("linear-lif", 0, 0.05, (0.8, 0.7, 0.7), 0.2),
    ]
    entries[2].variant = "linear-lif-0.05"
    for e in entries[:2]:
        e.variant = "lif-tau2"
    summary = aggregate(entries, title="rates")
    rates = {r["variant"]: r for r in summary["firing_rates"]}
    assert rates["lif-tau2"]["mean"] == pytest.approx(0.11) and rates["lif-tau2"]["seeds"] == 2
    assert rates["lif-tau2"]["std"] == pytest.approx(0.0141421356, rel=1e-6)
    assert rates["linear-lif-0.05"]["family"] == "linear-lif"
    points = {(p["variant"], p["perturbation"]): p for p in summary["points"]}
    gauss = points[("lif-tau2", "gaussian")]
    # each seed's mean over the non-zero levels (0.7 and 0.5), then mean ± std over the seeds
    assert gauss["accuracy"] == pytest.approx(0.6) and gauss["accuracy_std"] == pytest.approx(0.1414213562)
    assert gauss["rate"] == pytest.approx(0.11) and gauss["family"] == "lif"
    assert points[("lif-tau2", "clean")]["accuracy"] == pytest.approx(0.91)
    assert points[("lif-tau2", "pgd-10")]["accuracy"] == pytest.approx(0.2)
    assert points[("linear-lif-0.05", "gaussian")]["seeds"] == 1
    table = markdown(summary)
    assert "| mlp | firing rate (spikes/neuron/step) | | 0.110 ± 0.014 | 0.050 |" in table
    assert "### Accuracy against firing rate" in table
    assert "| lif-tau2 | lif | 0.110 ± 0.014 | 91.0 ± 1.4 | 60.0 ± 14.1 | 20.0 ± 14.1 |" in table
    written = write_report(summary, tmp_path)
    assert tmp_path / "mnist_mlp_rate.png" in written and (tmp_path / "mnist_mlp_rate.png").stat().st_size > 0


def test_evaluations_without_a_firing_rate_give_no_rate_rows():
    entries, _ = find_entries([GRID / "runs" / "mnist" / "mlp-if-s0"])
    summary = aggregate(entries, title="old")
    assert summary["firing_rates"] == [] and all(p["rate"] is None for p in summary["points"])
    assert "firing rate" not in markdown(summary).lower()


def test_each_neuron_models_setting_is_chosen_on_the_holdout_not_the_test_set():
    def entry(variant, neuron, seed, test, held):
        e = _rated(neuron, seed, 0.1, (0.9, test, test), 0.2)
        e.variant, e.run = variant, f"{variant}-s{seed}"
        h = _rated(neuron, seed, 0.3, (0.9, held, held), 0.2)  # another rate on other samples
        h.variant, h.run, h.tag = variant, e.run, "holdout"
        h.result["split"] = "holdout"
        return [e, h]

    entries = [
        *entry("lin-a", "linear-lif", 0, test=0.5, held=0.8),  # best on the holdout
        *entry("lin-b", "linear-lif", 0, test=0.7, held=0.6),  # best on the test set
        *entry("exp", "lif", 0, test=0.6, held=0.6),
    ]
    summary = aggregate(entries, title="choice")
    chosen = {(c["family"], c["perturbation"]): c for c in summary["selections"]}
    lin = chosen[("linear-lif", "gaussian")]
    assert (lin["chosen"], lin["candidates"], lin["best_on_test"]) == ("lin-a", 2, "lin-b")
    assert lin["test_accuracy"] == pytest.approx(0.5) and lin["holdout_accuracy"] == pytest.approx(0.8)
    assert chosen[("lif", "gaussian")]["chosen"] == "exp"
    # firing rates are the ones measured on the test samples, never on the held-out ones
    assert {r["mean"] for r in summary["firing_rates"]} == {0.1}
    assert {p["rate"] for p in summary["points"] if "holdout" not in p["perturbation"]} == {0.1}
    # holdout rows are kept apart from the test rows, and out of the rate figure's points
    assert {r["perturbation"] for r in summary["rows"]} >= {"gaussian", "gaussian {holdout}"}
    table = markdown(summary)
    assert (
        "| mnist | mlp | gaussian | linear-lif | lin-a (of 2) | 80.0 | 50.0 | 0.100 | 90.0 | lin-b (70.0) |"
        in table
    )
    assert "gaussian {holdout}" not in table.split("### Accuracy against firing rate")[1].split("###")[0]
    # validation evaluations skip the checks by design: one line for them, not one per evaluation
    checks = table.split("### Gradient-masking checks")[1].split("###")[0]
    assert "- 3 evaluation(s) on held-out training samples (validation, for choosing settings) ran " in checks
    assert checks.count("not checked (the checks were skipped)") == 3  # the test evaluations, unchecked here


def test_variants_are_compared_at_matched_rate_and_clean_accuracy_within_range_only():
    def entry(variant, neuron, rate, gauss, clean):
        e = _rated(neuron, 0, rate, (0.9, gauss, gauss), 0.2, clean=clean)
        e.variant, e.run = variant, f"{variant}-s0"
        return e

    entries = [
        entry("exp-a", "lif", 0.10, gauss=0.6, clean=0.80),
        entry("exp-b", "lif", 0.20, gauss=0.8, clean=0.90),
        entry("lin-in", "linear-lif", 0.15, gauss=0.75, clean=0.95),  # rate within lif's, clean above
        entry("lin-out", "linear-lif", 0.30, gauss=0.5, clean=0.85),  # rate above lif's, clean within
    ]
    summary = aggregate(entries, title="matched")
    rows = {(r["axis"], r["variant"], r["other"], r["perturbation"]): r for r in summary["matched"]}
    at_rate = rows[("rate", "lin-in", "lif", "gaussian")]
    # lif's line through (0.10, 0.6) and (0.20, 0.8) at rate 0.15 is 0.7
    assert at_rate["other_accuracy"] == pytest.approx(0.7) and at_rate["difference"] == pytest.approx(0.05)
    assert ("rate", "lin-out", "lif", "gaussian") not in rows  # no extrapolation
    assert ("clean", "lin-in", "lif", "gaussian") not in rows
    at_clean = rows[("clean", "lin-out", "lif", "gaussian")]  # clean 0.85: lif's line gives 0.7
    assert at_clean["x"] == pytest.approx(0.85) and at_clean["difference"] == pytest.approx(-0.2)
    # lif against linear-lif: exp-b (rate 0.2) lies on linear's line from (0.15, 0.75) to (0.3, 0.5)
    back = rows[("rate", "exp-b", "linear-lif", "gaussian")]
    assert back["other_accuracy"] == pytest.approx(0.75 - 0.25 / 3)
    assert ("rate", "exp-a", "linear-lif", "gaussian") not in rows
    ranges = {r["family"]: r for r in summary["match_ranges"]}
    assert (ranges["lif"]["rate_min"], ranges["lif"]["rate_max"]) == (0.10, 0.20)
    assert ranges["linear-lif"]["clean_max"] == pytest.approx(0.95)
    table = markdown(summary)
    assert "### At matched firing rate and at matched clean accuracy" in table
    assert "- mnist / mlp / lif (2 variant(s)): rate 0.100–0.200; clean 80.0–90.0" in table
    assert "| mnist | mlp | lin-in | 0.150 | lif | +5.0 | " in table
    assert "| mnist | mlp | lin-out | 85.0 | lif | -20.0 | " in table


def test_without_overlapping_ranges_nothing_is_compared_and_the_table_says_so():
    entries = [
        _rated("lif", 0, 0.05, (0.9, 0.6, 0.6), 0.2),
        _rated("linear-lif", 0, 0.25, (0.9, 0.8, 0.8), 0.2, clean=0.5),
    ]
    summary = aggregate(entries, title="apart")
    assert summary["matched"] == []
    assert "No variant lies within another neuron model's range" in markdown(summary)

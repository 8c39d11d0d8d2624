import hashlib
import json
from dataclasses import asdict, replace

import pytest
import torch

import spikeshield
from spikeshield.cli import main
from spikeshield.errors import CheckpointError, UsageError
from spikeshield.experiments.pipeline import EvalSettings, evaluate
from spikeshield.runs import weights_digest
from spikeshield.training import save_model

FIRST = ["--attack", "fgsm", "pgd", "--steps", "3", "--eps", "0", "0.1", "0.2", "--corruption", "gaussian",
         "--levels", "0", "0.3", "--limit", "80", "--check-samples", "40"]  # fmt: skip
SECOND = ["--attack", "fgsm", "--eps", "0", "0.1", "--limit", "40", "--no-checks"]


def folders(run):
    return sorted(p.name for p in (run / "evaluations").iterdir())


def test_two_evaluations_of_one_run_both_survive_and_report_finds_both(run_dir, tmp_path, capsys):
    assert main(["evaluate", "--run", str(run_dir), *FIRST]) == 0
    (first,) = (run_dir / "evaluations").iterdir()
    kept = {p.name: p.read_bytes() for p in first.iterdir()}
    assert {"robustness.json", "robustness.csv", "robustness_attacks.png", "robustness_noise.png"} <= set(
        kept
    )

    assert main(["evaluate", "--run", str(run_dir), *SECOND]) == 0
    assert len(folders(run_dir)) == 2
    # the first evaluation's files are all still there, byte for byte
    assert {p.name: p.read_bytes() for p in first.iterdir()} == kept
    (second,) = [run_dir / "evaluations" / n for n in folders(run_dir) if n != first.name]
    assert not (second / "robustness_noise.png").exists()  # no stale plot of another evaluation beside it
    results = [json.loads((f / "robustness.json").read_text()) for f in (first, second)]
    assert [r["samples"] for r in results] == [80, 40]

    capsys.readouterr()
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "table.md").read_text()
    # both evaluations hold FGSM at ε = 0.1: they are kept apart (E1, E2), never averaged
    fgsm = {
        r["samples"]: next(
            x["accuracy"] for x in r["records"] if x.get("attack") == "fgsm" and x["eps"] == 0.1
        )
        for r in results
    }
    assert f"| mlp | fgsm {{E1}} | 0.1 | {100 * fgsm[80]:.1f} |" in table
    assert f"| mlp | fgsm {{E2}} | 0.1 | {100 * fgsm[40]:.1f} |" in table
    assert "{E2}: 40 test samples" in table and "checks skipped" in table


def test_same_settings_are_reused_and_overwrite_redoes(run_dir, capsys):
    assert main(["evaluate", "--run", str(run_dir), *SECOND]) == 0
    (folder,) = (run_dir / "evaluations").iterdir()
    stamp = (folder / "robustness.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run_dir), *SECOND]) == 0
    assert "shown, not redone" in capsys.readouterr().out
    assert (folder / "robustness.json").stat().st_mtime_ns == stamp and len(folders(run_dir)) == 1
    assert main(["evaluate", "--run", str(run_dir), *SECOND, "--overwrite"]) == 0
    assert (folder / "robustness.json").stat().st_mtime_ns != stamp


def test_out_folder_of_another_evaluation_is_refused_unless_overwrite(run_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--run", str(run_dir), *FIRST, "--out", str(out)]) == 0
    before = (out / "robustness.json").read_bytes()
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run_dir), *SECOND, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds an evaluation" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert (out / "robustness.json").read_bytes() == before
    assert main(["evaluate", "--run", str(run_dir), *SECOND, "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "robustness.json").read_text())["samples"] == 40
    assert not (out / "robustness_noise.png").exists()  # the old set is gone, not half-kept


def rewrite_header(path):
    """The same tensors and metadata, with the header's keys (metadata first) in reverse order:
    what writing the file again may give (safetensors orders the metadata by a hash map)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__")
    text = json.dumps({"__metadata__": dict(reversed(meta.items())), **dict(reversed(header.items()))})
    text += " " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text.encode() + raw[8 + n :])
    assert path.read_bytes() != raw


def test_retrained_weights_are_not_taken_for_the_same_evaluation(run_dir):
    settings = EvalSettings(attacks=("fgsm",), eps=(0.0, 0.1), limit=30, checks=False)
    first = evaluate(run_dir, settings, log=lambda _m: None)
    assert evaluate(run_dir, settings, log=lambda _m: None).reused
    saved = (first.folder / "robustness.json").read_bytes()
    model = spikeshield.load_run(run_dir).model
    with torch.no_grad():
        next(model.parameters())[0, 0] += 0.5  # one weight changed: another model as far as reuse goes
    save_model(run_dir / "model.safetensors", model, model.spec)
    with pytest.raises(UsageError, match="other settings or weights"):
        evaluate(run_dir, settings, log=lambda _m: None)
    assert (first.folder / "robustness.json").read_bytes() == saved


def test_the_same_tensors_written_again_are_the_same_weights(run_dir):
    """The digest is of the tensors, not of the file's bytes, which differ when the header's keys
    come in another order (as when a run is finished again from its checkpoint)."""
    settings = EvalSettings(attacks=("fgsm",), eps=(0.0, 0.1), limit=30, checks=False)
    first = evaluate(run_dir, settings, log=lambda _m: None)
    digest = first.result["inputs"]["weights_sha256"]
    rewrite_header(run_dir / "model.safetensors")
    assert weights_digest(run_dir) == digest
    assert evaluate(run_dir, settings, log=lambda _m: None).reused


def test_an_evaluation_that_recorded_the_file_bytes_digest_is_still_reused(run_dir):
    """Evaluations written before the tensor digest recorded SHA-256 of the file: still theirs
    while the file is unchanged; once it is rewritten, they count as made from other weights."""
    settings = EvalSettings(attacks=("fgsm",), eps=(0.0, 0.1), limit=30, checks=False)
    first = evaluate(run_dir, settings, log=lambda _m: None)
    path = first.folder / "robustness.json"
    result = json.loads(path.read_text())
    weights = run_dir / "model.safetensors"
    result["inputs"]["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    path.write_text(json.dumps(result))
    assert result["inputs"]["weights_sha256"] != weights_digest(run_dir)
    assert evaluate(run_dir, settings, log=lambda _m: None).reused
    rewrite_header(weights)
    with pytest.raises(UsageError, match="other settings or weights"):
        evaluate(run_dir, settings, log=lambda _m: None)


def test_damaged_weights_beside_an_earlier_evaluation_are_named(run_dir, capsys):
    assert main(["evaluate", "--run", str(run_dir), *SECOND]) == 0
    weights = run_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run_dir), *SECOND]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "other settings" not in err
    assert f"{weights}: the run's weights file is damaged or unreadable (not a safetensors file" in err
    assert "train the run again" in err
    with pytest.raises(CheckpointError, match="damaged or unreadable"):
        weights_digest(run_dir)


def test_load_run_gives_model_config_and_test_set(run_dir):
    model, config, test_set = spikeshield.load_run(run_dir, limit=50)
    assert config.model == "mlp" and config.neuron == "lif" and len(test_set) == 50
    assert not model.training
    x, y = test_set.tensors()
    acc = (model(x).argmax(1) == y).float().mean().item()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    full = spikeshield.load_run(run_dir).test_set
    assert len(full) == metrics["test_samples"]
    assert 0.5 < acc <= 1.0
    with pytest.raises(UsageError, match="does not exist"):
        spikeshield.load_run(run_dir / "nope")


def test_an_evaluation_records_the_models_firing_rate_on_its_clean_samples(run_dir):
    from spikeshield.analysis.firing_rates import model_firing_rates

    settings = EvalSettings(noises={"gaussian": (0.0, 0.2)}, limit=40, batch_size=16, checks=False)
    result = evaluate(run_dir, settings, log=lambda _m: None).result
    model, _, test_set = spikeshield.load_run(run_dir, limit=40)
    assert result["firing_rate"] == model_firing_rates(model, test_set)
    assert result["firing_rate"]["samples"] == result["samples"] == 40
    assert 0 < result["firing_rate"]["mean"] < 1
    saved = json.loads(
        (evaluate(run_dir, settings, log=lambda _m: None).folder / "robustness.json").read_text()
    )
    assert saved["firing_rate"] == result["firing_rate"]


@pytest.fixture(scope="module")
def subset_run(tmp_path_factory):
    """A run trained on a 300-sample subset of the digits training split (the rest is held out)."""
    from spikeshield.training import TrainConfig, train

    out = tmp_path_factory.mktemp("subset") / "run"
    config = TrainConfig(dataset="digits", model="mlp", neuron="if", model_options={"hidden": [32]},
                         time_steps=2, epochs=1, limit_train=300, seed=0, device="cpu")  # fmt: skip
    train(config, out, log=lambda _m: None)
    return out


def test_a_holdout_evaluation_runs_on_the_training_samples_the_run_never_saw(subset_run):
    from spikeshield.data import load_dataset

    _, _, unseen = spikeshield.load_run(subset_run, split="holdout")
    full = load_dataset("digits", "train")
    assert len(unseen) == len(full) - 300 and torch.equal(unseen.images, full.holdout(300).images)
    settings = EvalSettings(noises={"gaussian": (0.0, 0.3)}, attacks=("fgsm",), eps=(0.0, 0.1), limit=60)
    holdout = replace(settings, split="holdout")
    result = evaluate(subset_run, holdout, log=lambda _m: None)
    assert result.result["split"] == "holdout" and result.result["samples"] == 60
    assert "holdout" in result.folder.name and holdout.digest() != settings.digest()
    on_test = evaluate(subset_run, settings, log=lambda _m: None)
    assert on_test.result["split"] == "test" and on_test.folder != result.folder


def test_the_default_split_leaves_the_settings_hash_as_it_was():
    """Evaluations made before 'split' (and the suite settings) existed keep their hash, so they
    are found and reused."""

    settings = EvalSettings(attacks=("pgd",), eps=(0.0, 0.1), noises={"uniform": (0.0, 0.2)}, limit=300)
    later = ("split", "suite", "assg_rounds", "assg_samples")
    before = {k: v for k, v in asdict(settings).items() if k not in later}
    assert settings.digest() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert settings.folder_name() == f"bptt-{settings.digest()[:12]}"


def test_holdout_is_refused_for_a_run_trained_on_the_whole_split_and_unknown_splits(run_dir):
    with pytest.raises(UsageError, match="whole training split"):
        spikeshield.load_run(run_dir, split="holdout")
    with pytest.raises(UsageError, match="split must be one of test, holdout"):
        spikeshield.load_run(run_dir, split="validation")


def test_a_corruption_that_does_not_fit_the_data_is_refused_before_the_twin_is_fitted(
    run_dir, monkeypatch, capsys
):
    """`--attack transfer --corruption spatial-jitter` on images fitted the ANN twin (~30 s) and
    only then said spatial-jitter needs event frames (new-user trial)."""

    def no_twin(*args, **kwargs):
        raise AssertionError("the ANN twin was fitted before the corruptions were checked")

    monkeypatch.setattr("spikeshield.experiments.pipeline.fit_twin", no_twin)
    args = ["evaluate", "--run", str(run_dir), "--attack", "transfer", "--eps", "0.1",
            "--corruption", "spatial-jitter", "--limit", "20"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "spatial-jitter works on event frames" in err
    assert not (run_dir / "evaluations").exists()

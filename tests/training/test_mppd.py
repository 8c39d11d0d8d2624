"""MPPD regulariser and the RSSNN training modes: gaussian, at, at-reg (Ding et al., ICML 2024)."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeshield.errors import UsageError
from spikeshield.models import build_model
from spikeshield.neurons import build_neuron
from spikeshield.training import TrainConfig, train
from spikeshield.training.checkpoint import load_tensors
from spikeshield.training.modes import build_training_mode
from spikeshield.training.modes.at_reg import parseval_step
from spikeshield.training.mppd import (
    membrane_decay,
    mppd_loss,
    perturbation_dynamics,
    recorded_inputs,
    spiking_layers,
)

# δX = X_clean − X_pert over T = 2 steps and 3 neurons, λ = 0.5
DELTA = torch.tensor([[[1.0, -2.0, 0.5]], [[0.5, 1.0, -1.0]]])


def test_mppd_equals_a_hand_computation_on_two_steps_and_three_neurons():
    # ε[1] = δX[1] = (1, −2, 0.5); ε[2] = 0.5·ε[1] + δX[2] = (1, 0, −0.75)
    eps = perturbation_dynamics(DELTA, 0.5)
    assert torch.equal(eps, torch.tensor([[[1.0, -2.0, 0.5]], [[1.0, 0.0, -0.75]]]))
    clean, pert = torch.zeros_like(DELTA), -DELTA
    l2 = (1 + 4 + 0.25 + 1 + 0 + 0.5625) / 6
    l1 = (1 + 2 + 0.5 + 1 + 0 + 0.75) / 6
    assert mppd_loss(clean, pert, 0.5, "l2").item() == pytest.approx(l2, abs=1e-7)
    assert mppd_loss(clean, pert, 0.5, "l1").item() == pytest.approx(l1, abs=1e-7)
    # no leak (λ = 1) sums the differences; λ → 0 forgets them
    assert torch.equal(perturbation_dynamics(DELTA, 1.0)[1], DELTA.sum(0))


def test_gradient_reaches_the_perturbed_branch_only():
    clean = torch.randn(3, 4, 5, requires_grad=True)
    pert = torch.randn(3, 4, 5, requires_grad=True)
    mppd_loss(clean, pert, 0.99).backward()
    assert clean.grad is None
    assert pert.grad is not None and pert.grad.abs().sum() > 0
    # d mean(ε²)/d X_pert[t] = −(2/N)·Σ_{s≥t} λ^(s−t)·ε[s]
    eps = perturbation_dynamics(clean.detach() - pert.detach(), 0.99)
    expected = torch.stack([sum(0.99 ** (s - t) * eps[s] for s in range(t, 3)) for t in range(3)])
    assert torch.allclose(pert.grad, -2 * expected / eps.numel(), atol=1e-6)


def test_the_recorded_current_is_the_layer_input_before_the_dlif_gain():
    neuron = build_neuron("dlif", time_steps=3)
    with torch.no_grad():
        neuron.gain.fill_(2.0)
    x = torch.rand(3, 2, 4)
    with recorded_inputs(neuron) as seen:
        neuron(x)
    assert len(seen) == 1 and torch.equal(seen[0], x)
    neuron(x)
    assert len(seen) == 1  # the hook is gone


def test_membrane_decay_of_each_neuron_kind():
    assert membrane_decay(build_neuron("dlif", time_steps=2)) == 0.99
    assert membrane_decay(build_neuron("lif", decay=0.9)) == 0.9
    assert membrane_decay(build_neuron("lif", tau=4.0)) == 0.75
    assert membrane_decay(build_neuron("if")) == 1.0
    with pytest.raises(UsageError, match="give the training mode option decay"):
        membrane_decay(build_neuron("linear-lif"))


def _tiny_model(neuron: str = "dlif") -> nn.Module:
    return build_model("mlp", neuron=neuron, input_shape=(1, 8, 8), time_steps=3, hidden=[16, 12]).train()


def test_the_loss_is_kappa_clean_plus_perturbed_plus_rho_mppd():
    model = _tiny_model()
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    mode = build_training_mode("gaussian", {"rho": 0.7, "kappa": 0.3, "sigma": 0.2})
    torch.manual_seed(5)
    logits, loss = mode.batch_loss(model, x, y, F.cross_entropy)
    # by hand, with the same noise
    torch.manual_seed(5)
    x_pert = x + 0.2 * torch.randn_like(x)
    last = spiking_layers(model)[-1]
    with recorded_inputs(last) as seen:
        clean, pert = model(x), model(x_pert)
    expected = 0.3 * F.cross_entropy(clean, y) + 0.7 * F.cross_entropy(pert, y)
    expected = expected + 0.7 * mppd_loss(seen[0], seen[1], 0.99, "l2")
    assert torch.equal(logits, clean)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert (x_pert < 0).any() or (x_pert > 1).any()  # Gaussian training noise is not clipped
    # ρ = 0: no regulariser at all
    torch.manual_seed(5)
    _, plain = build_training_mode("gaussian", {"rho": 0.0, "kappa": 0.3, "sigma": 0.2}).batch_loss(
        model, x, y, F.cross_entropy
    )
    assert plain.item() == pytest.approx(
        (expected - 0.7 * mppd_loss(seen[0], seen[1], 0.99)).item(), rel=1e-6
    )


def test_the_mppd_term_trains_the_perturbed_branch_only():
    """Through a whole model: with κ irrelevant (the CE terms removed), the regulariser's gradient
    equals the gradient of the perturbed forward alone, the clean one held fixed."""
    model = _tiny_model()
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    mode = build_training_mode("gaussian", {"rho": 1.0})
    torch.manual_seed(1)
    _, loss = mode.batch_loss(model, x, y, lambda out, _y: out.sum() * 0)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    torch.manual_seed(1)
    x_pert = mode.perturb(model, x, y, F.cross_entropy)
    last = spiking_layers(model)[-1]
    with recorded_inputs(last) as seen:
        with torch.no_grad():
            model(x)
        model(x_pert)
    ref = torch.autograd.grad(mppd_loss(seen[0], seen[1], 0.99), list(model.parameters()), allow_unused=True)
    params = list(model.parameters())
    zero = [torch.zeros_like(p) for p in params]
    grads = [z if g is None else g for g, z in zip(grads, zero, strict=True)]
    ref = [z if r is None else r for r, z in zip(ref, zero, strict=True)]
    assert all(torch.allclose(g, r, atol=1e-7) for g, r in zip(grads, ref, strict=True))
    assert any(g.abs().sum() > 0 for g in grads)


def test_fgsm_example_is_crafted_in_eval_mode_and_leaves_the_model_alone():
    model = _tiny_model()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    running = bn.running_mean.clone()
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    mode = build_training_mode("at", {"step": 0.05})
    torch.manual_seed(3)
    adv = mode.perturb(model, x, y, F.cross_entropy)
    assert model.training and torch.equal(bn.running_mean, running)
    assert all(p.grad is None for p in model.parameters())
    assert adv.min() >= 0 and adv.max() <= 1
    # by hand: x0 = x + 0.001·N(0, 1); one signed step of the eval-mode gradient; clip
    torch.manual_seed(3)
    start = (x + 0.001 * torch.randn_like(x)).requires_grad_(True)
    model.eval()
    (grad,) = torch.autograd.grad(F.cross_entropy(model(start), y), [start])
    model.train()
    assert torch.equal(adv, (start.detach() + 0.05 * grad.sign()).clamp(0, 1))


def test_pgd_example_is_k_projected_signed_steps_in_eval_mode():
    model = _tiny_model()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    running = bn.running_mean.clone()
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    mode = build_training_mode("at", {"steps": 3, "step": 0.05, "eps": 0.08})
    torch.manual_seed(3)
    adv = mode.perturb(model, x, y, F.cross_entropy)
    assert model.training and torch.equal(bn.running_mean, running)
    assert all(p.grad is None for p in model.parameters())
    assert (adv - x).abs().max() <= 0.08 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    # by hand: the same start, three signed eval-mode gradient steps, each projected and clipped
    torch.manual_seed(3)
    ref = x + 0.001 * torch.randn_like(x)
    model.eval()
    for _ in range(3):
        ref = ref.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(ref), y), [ref])
        ref = (x + (ref.detach() + 0.05 * grad.sign() - x).clamp(-0.08, 0.08)).clamp(0, 1)
    model.train()
    assert torch.equal(adv, ref)
    one = build_training_mode("at", {"step": 0.05})
    torch.manual_seed(3)
    assert not torch.equal(one.perturb(model, x, y, F.cross_entropy), adv)  # more than one step


def test_parseval_step_brings_w_transpose_w_closer_to_identity():
    torch.manual_seed(0)
    w = torch.eye(16) + 0.2 * torch.randn(16, 16)
    distance = lambda m: torch.linalg.matrix_norm(m.T @ m - torch.eye(16)).item()  # noqa: E731
    stepped = parseval_step(w, 0.05)
    assert distance(stepped) < distance(w)
    for _ in range(200):
        stepped = parseval_step(stepped, 0.05)
    assert distance(stepped) < 1e-3
    conv = 0.3 * torch.randn(8, 2, 3, 3)  # rows = output channels, viewed as [8, 18]
    rows = lambda m: m.reshape(8, -1) @ m.reshape(8, -1).T - torch.eye(8)  # noqa: E731
    assert torch.linalg.matrix_norm(rows(parseval_step(conv, 0.05))) < torch.linalg.matrix_norm(rows(conv))


def test_at_reg_updates_every_conv_row_and_a_random_30_percent_of_large_linear_layers():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Linear(10, 300), nn.Linear(10, 20))
    before = [m.weight.detach().clone() for m in model]
    mode = build_training_mode("at-reg", {"beta": 0.01})
    mode.setup(model)
    mode.after_step(model, torch.Generator().manual_seed(0))
    changed = [(m.weight != b).flatten(1).any(1) for m, b in zip(model, before, strict=True)]
    assert changed[0].all() and changed[2].all()
    assert changed[1].sum() == 90  # 30 % of 300 rows
    picked = changed[1].nonzero().flatten()
    assert torch.allclose(model[1].weight[picked], parseval_step(before[1][picked], 0.01))


@pytest.mark.parametrize(
    ("mode", "options", "message"),
    [
        ("at", {"rho": -1.0}, "rho must be >= 0"),
        ("gaussian", {"kappa": 1.5}, r"kappa must be in \[0, 1\]"),
        ("at", {"kappa": -0.1}, r"kappa must be in \[0, 1\]"),
        ("at", {"mppd": "l3"}, "mppd must be one of l2, l1"),
        ("at", {"step": 0.0}, "step must be > 0"),
        ("at-reg", {"beta": -0.1}, "beta must be > 0"),
        ("at-reg", {"row_fraction": 0.0}, r"row_fraction must be in \(0, 1\]"),
        ("at", {"epsilon": 0.1}, "unexpected keyword argument 'epsilon'"),
        ("at", {"steps": 5}, r"steps = 5 \(PGD\) needs eps"),
        ("at", {"steps": 0, "eps": 0.1}, "steps must be a positive integer"),
        ("at", {"steps": 2, "eps": 0.0}, "eps must be > 0"),
    ],
)
def test_bad_settings_are_one_line_errors(mode, options, message):
    with pytest.raises(UsageError, match=message) as info:
        build_training_mode(mode, options)
    assert "\n" not in str(info.value)


def test_at_reg_on_a_model_without_conv_or_linear_layers_is_a_one_line_error():
    mode = build_training_mode("at-reg")
    with pytest.raises(UsageError, match="at-reg.*has none") as info:
        mode.setup(nn.Sequential(build_neuron("lif")))
    assert "\n" not in str(info.value)


def test_a_bad_mode_option_in_an_experiment_file_is_one_line_at_the_command_line(tmp_path, capsys):
    from spikeshield.cli import main

    path = tmp_path / "x.toml"
    path.write_text(
        'name = "x"\nseeds = [0]\nmodels = ["mlp"]\n[neurons.dlif]\nneuron = "dlif"\n'
        '[modes.at]\nmode = "at"\noptions = { rho = -1.0 }\n[datasets.digits]\n'
    )
    assert main(["experiment", str(path), "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "modes.at.options: rho must be >= 0" in err


def _config(mode: str, **overrides) -> TrainConfig:
    base = dict(dataset="digits", model="cnn", neuron="dlif", epochs=5, mode=mode, batch_size=128)
    return TrainConfig(**{**base, **overrides})


@pytest.mark.parametrize("mode", ["gaussian", "at", "at-reg"])
def test_each_mode_trains_a_digits_model_above_80_percent(tmp_path, mode):
    metrics = train(_config(mode), tmp_path / mode, log=lambda m: None)
    assert metrics["test_accuracy"] > 0.80  # chance is 0.10


def test_at_reg_runs_without_weight_decay_and_records_it(tmp_path):
    config = _config("at-reg", weight_decay=5e-4, epochs=1)
    assert config.weight_decay == 0.0
    train(config, tmp_path / "run", log=lambda m: None)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert saved["weight_decay"] == 0.0 and saved["mode"] == "at-reg"
    assert TrainConfig(mode="at", weight_decay=5e-4).weight_decay == 5e-4


class _Stop(Exception):
    pass


def test_a_resumed_at_reg_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch):
    config = _config("at-reg", model="mlp", epochs=2, model_options={"hidden": [300]}, time_steps=2)
    train(config, tmp_path / "straight", log=lambda m: None)

    def stop_after_first_epoch(message: str) -> None:
        if message.startswith("epoch 1/2"):
            raise _Stop

    with pytest.raises(_Stop):
        train(config, tmp_path / "resumed", log=stop_after_first_epoch)
    train(config, tmp_path / "resumed", resume=True, log=lambda m: None)
    a, _ = load_tensors(tmp_path / "straight" / "model.safetensors")
    b, _ = load_tensors(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_command_takes_a_mode_and_its_options(tmp_path, capsys):
    from spikeshield.cli import main

    out = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--neuron",
        "dlif",
        "--epochs",
        "1",
        "--out",
        str(out),
    ]
    assert main([*args, "--mode", "at", "--mode-opt", "rho=0.5", "--mode-opt", "mppd=l1"]) == 0
    saved = json.loads((out / "config.json").read_text())["train"]
    assert saved["mode"] == "at" and saved["mode_options"] == {"rho": 0.5, "mppd": "l1"}
    capsys.readouterr()
    assert main([*args[:-1], str(tmp_path / "bad"), "--mode", "at", "--mode-opt", "kappa=2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("neuron, mode", [("noisy-if", "gaussian"), ("relu", "at"), ("noisy-if", "at")])
def test_a_mode_that_does_not_fit_the_neuron_fails_before_writing_anything(tmp_path, capsys, neuron, mode):
    """The missing leak was found at the first batch, after config.json was written: the folder
    stayed and blocked the retry ("already holds a run; pass --resume") (new-user trial)."""
    from spikeshield.cli import main

    out = tmp_path / "t6" / "a" / "b"
    args = ["train", "--dataset", "digits", "--model", "mlp", "--neuron", neuron, "-T", "1", "--mode", mode,
            "--limit-train", "64", "--limit-test", "32", "--epochs", "1", "--out", str(out)]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MPPD needs the membrane leak" in err
    assert not (tmp_path / "t6").exists()
    assert main([*args, "--mode-opt", "decay=1.0"]) == 0  # the retry is not blocked
    assert (out / "model.safetensors").exists()


def test_at_reg_trains_data_parallel_under_torchrun(tmp_path):
    """Two gloo processes: the FGSM step runs outside DDP, two forwards share one backward, and
    the Parseval rows come from the generator every rank seeds alike."""
    import os
    import subprocess
    import sys

    args = ["train", "--dataset", "digits", "--model", "mlp", "--model-opt", "hidden=[256]", "--neuron",
            "dlif", "--time-steps", "2", "--epochs", "2", "--device", "cpu", "--mode", "at-reg"]  # fmt: skip
    args += ["--out", str(tmp_path / "ddp")]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "spikeshield.cli",
    ]
    done = subprocess.run(
        [*cmd, *args],
        env=dict(os.environ, SPIKESHIELD_PROGRESS="0"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["environment"]["world_size"] == 2 and metrics["test_accuracy"] > 0.7

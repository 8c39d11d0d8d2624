import gc
import itertools
import os
import warnings

import pytest
import torch
from torch import nn

from spikeshield.attacks import (
    ATTACKS,
    Oracle,
    ann_twin,
    attack_options,
    build_attack,
    dlr_loss,
)
from spikeshield.attacks.apgd import apgd_checkpoints
from spikeshield.attacks.base import per_sample_norm, random_start
from spikeshield.attacks.pgd import step_size_at
from spikeshield.errors import UsageError
from spikeshield.neurons import SpikingNeuron
from spikeshield.streams import SampleStreams


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _budget(x_adv, x, norm):
    d = x_adv - x
    return float(d.abs().max()) if norm == "linf" else float(per_sample_norm(d).max())


@pytest.mark.parametrize("name", ["fgsm", "pgd", "apgd-ce", "apgd-dlr", "square", "ensemble"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_attacks_stay_in_the_ball_and_the_box_and_eps_zero_is_the_identity(
    name, norm, digits_ann, digits_test
):
    if norm not in ATTACKS.get(name).norms:
        with pytest.raises(UsageError, match="supports norm"):
            build_attack(name, eps=0.1, norm=norm)
        return
    x, y = digits_test.tensors()
    x, y = x[:48], y[:48]
    options = {"steps": 5} if "steps" in attack_options(name) else {}
    if "queries" in attack_options(name):
        options["queries"] = 30
    eps = 0.2 if norm == "linf" else 1.0
    x_adv = build_attack(name, eps=eps, norm=norm, **options).perturb(Oracle(digits_ann), x, y, _gen())
    assert x_adv.shape == x.shape and float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    assert _budget(x_adv, x, norm) <= eps * (1 + 1e-5)
    with torch.no_grad():
        assert (digits_ann(x_adv).argmax(1) == y).float().mean() < (
            digits_ann(x).argmax(1) == y
        ).float().mean()
    same = build_attack(name, eps=0.0, norm=norm, **options).perturb(Oracle(digits_ann), x, y, _gen())
    assert torch.equal(same, x)


def test_torchattacks_cross_check_fgsm_and_pgd(digits_ann, digits_test):
    """Our FGSM / PGD (L∞ and L2) reproduce torchattacks' to numerical noise.

    PGD is compared from the clean point: torchattacks draws its random start for the whole
    batch from the global RNG, ours draws each sample's from its own stream (so that it does not
    depend on the batch), so the two random starts cannot be the same numbers. The random start
    itself is checked in test_random_start_fills_the_ball.
    """
    if os.environ.get("SPIKESHIELD_REQUIRE_TORCHATTACKS"):
        import torchattacks
    else:
        torchattacks = pytest.importorskip("torchattacks", reason="pip install --no-deps torchattacks==3.5.1")
    x, y = digits_test.tensors()
    oracle = Oracle(digits_ann)

    ours = build_attack("fgsm", eps=0.1).perturb(oracle, x, y, _gen())
    theirs = torchattacks.FGSM(digits_ann, eps=0.1)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)

    theirs = torchattacks.PGD(digits_ann, eps=0.1, alpha=0.02, steps=10, random_start=False)(x, y)
    ours = build_attack("pgd", eps=0.1, step_size=0.02, steps=10, random_start=False).perturb(oracle, x, y)
    assert float((ours - theirs).abs().max()) < 1e-5
    # torchattacks adds eps_for_division (default 1e-10) to the norm of the gradient of the
    # batch-*mean* loss; for confidently classified samples that norm is ~1e-9, so the default
    # shortens their steps by ~10 %. Compare the algorithm itself with a negligible epsilon.
    theirs = torchattacks.PGDL2(
        digits_ann, eps=1.0, alpha=0.2, steps=10, random_start=False, eps_for_division=1e-30
    )(x, y)
    pgd_l2 = build_attack("pgd", norm="l2", eps=1.0, step_size=0.2, steps=10, random_start=False)
    ours = pgd_l2.perturb(oracle, x, y)
    assert float((ours - theirs).abs().max()) < 1e-5
    with torch.no_grad():
        acc = (digits_ann(ours).argmax(1) == y).float().mean()
        assert acc == (digits_ann(theirs).argmax(1) == y).float().mean() and acc < 0.9


def test_random_start_fills_the_ball():
    """L∞: δ ~ U(−ε, ε) per element; L2: a uniform direction at radius U(0, 1)·ε (unclipped box)."""
    x = torch.zeros(400, 1, 8, 8)
    oracle = Oracle(nn.Flatten(), bounds=(-10.0, 10.0))
    delta = random_start(x, 0.3, "linf", SampleStreams.of(_gen(), len(x)), oracle)
    assert float(delta.abs().max()) <= 0.3 and float(delta.abs().max()) > 0.299
    assert float(delta.mean()) == pytest.approx(0.0, abs=0.005)
    assert float(delta.var()) == pytest.approx(0.3**2 / 3, rel=0.02)
    delta = random_start(x, 2.0, "l2", SampleStreams.of(_gen(), len(x)), oracle)
    radius = per_sample_norm(delta).flatten()
    assert float(radius.max()) <= 2.0 + 1e-6 and float(radius.mean()) == pytest.approx(1.0, abs=0.06)


def test_pgd_step_schedules_and_apgd_checkpoints():
    assert [step_size_at(1.0, k, 8, "constant") for k in (0, 7)] == [1.0, 1.0]
    assert [step_size_at(1.0, k, 8, "step") for k in (0, 3, 4, 5, 6, 7)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    cosine = [step_size_at(1.0, k, 4, "cosine") for k in range(4)]
    assert cosine[0] == 1.0 and all(a > b for a, b in itertools.pairwise(cosine))
    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (Croce & Hein 2020)
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert build_attack("pgd", eps=0.3, steps=10).settings()["step_size"] == pytest.approx(0.075)


def test_dlr_loss_is_shift_and_scale_invariant():
    z = torch.randn(6, 10)
    y = torch.randint(0, 10, (6,))
    torch.testing.assert_close(dlr_loss(3.0 * z + 2.0, y), dlr_loss(z, y))
    with pytest.raises(UsageError, match="3 classes"):
        dlr_loss(torch.randn(2, 2), torch.tensor([0, 1]))


def test_attack_registry_errors_are_clear():
    with pytest.raises(UsageError, match="Did you mean 'pgd'"):
        build_attack("pgdd")
    with pytest.raises(UsageError, match="does not take option"):
        build_attack("fgsm", steps=3)
    assert build_attack("fgsm", strict=False, steps=3).settings()["steps"] == 1
    with pytest.raises(UsageError, match="fixes loss"):
        build_attack("apgd-dlr", strict=False, eps=0.1).with_options(loss="ce")
    with pytest.raises(UsageError, match="eps must be >= 0"):
        build_attack("pgd", eps=-0.1)
    with pytest.raises(UsageError, match="steps must be an integer"):
        build_attack("pgd", steps=0)
    # a zero step never moves: PGD reported clean accuracy as robust and every check passed
    with pytest.raises(UsageError, match="pgd step_size must be > 0, got 0"):
        build_attack("pgd", step_size=0)
    with pytest.raises(UsageError, match="pgd step_size must be > 0"):
        build_attack("pgd", step_size=-0.01)
    with pytest.raises(UsageError, match="schedule"):
        build_attack("pgd", schedule="exp")
    with pytest.raises(UsageError, match="source model"):
        build_attack("transfer", eps=0.1).perturb(
            Oracle(nn.Flatten()), torch.rand(1, 1, 2, 2), torch.tensor([0]), _gen()
        )


def test_settings_record_everything_needed_to_reproduce():
    settings = build_attack("pgd", eps=0.1, steps=7, restarts=2, schedule="cosine").settings()
    for key in (
        "attack",
        "eps",
        "norm",
        "steps",
        "step_size",
        "schedule",
        "restarts",
        "random_start",
        "loss",
    ):
        assert key in settings
    assert settings["steps"] == 7 and settings["restarts"] == 2


def test_model_state_is_fresh_on_every_call_and_attacks_leave_nothing_behind(digits_lif, digits_test):
    x, y = digits_test.tensors()
    x, y = x[:32], y[:32]
    with torch.no_grad():
        first = digits_lif(x)
        assert all(torch.equal(first, digits_lif(x)) for _ in range(3))
    attack = build_attack("pgd", eps=0.1, steps=3)
    counts = []
    for _ in range(4):
        attack.perturb(Oracle(digits_lif), x, y, _gen())
        gc.collect()
        with warnings.catch_warnings():  # isinstance() on some torch.distributed objects warns
            warnings.simplefilter("ignore")
            counts.append(sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor)))
    assert counts[1] == counts[2] == counts[3]  # no tensor (graph, state) survives an attack
    assert all(p.grad is None for p in digits_lif.parameters())  # no weight gradients accumulate
    with torch.no_grad():
        assert torch.equal(first, digits_lif(x))  # nothing changed in the model


def test_square_respects_its_query_budget_and_finds_adversarials(digits_lif, digits_test):
    x, y = digits_test.tensors()
    x, y = x[:64], y[:64]
    oracle = Oracle(digits_lif)
    x_adv = build_attack("square", eps=0.3, queries=100).perturb(oracle, x, y, _gen())
    assert oracle.forward_calls <= 100 * len(x) and oracle.gradient_calls == 0
    with torch.no_grad():
        assert (digits_lif(x_adv).argmax(1) == y).float().mean() < 0.5


def test_pgd_stop_when_fooled_keeps_the_first_misclassified_iterate_and_changes_nothing_else(
    digits_lif, digits_test
):
    """The large-ε probe's PGD (issue 13): a sample stops at its first misclassified iterate and
    is not queried again; a sample never fooled takes exactly the plain run's steps, and every
    sample the plain run's last iterate fools is fooled. One sample at a time, so the two runs'
    gradients are bit for bit the same (BLAS sums depend on the batch size)."""
    x, y = digits_test.tensors()
    x, y = x[:24], y[:24]
    plain = build_attack("pgd", eps=0.3, steps=10, random_start=False)
    early = plain.with_options(stop_when_fooled=True)
    assert early.settings()["stop_when_fooled"] and not plain.settings()["stop_when_fooled"]
    calls = {"plain": 0, "early": 0}
    fooled_plain = fooled_early = 0
    for i in range(len(x)):
        xi, yi = x[i : i + 1], y[i : i + 1]
        runs = {}
        for name, attack in (("plain", plain), ("early", early)):
            oracle = Oracle(digits_lif)
            runs[name] = attack.perturb(oracle, xi, yi, _gen(i))
            calls[name] += oracle.gradient_calls
        with torch.no_grad():
            wrong = {k: bool(digits_lif(v).argmax(1) != yi) for k, v in runs.items()}
        fooled_plain += wrong["plain"]
        fooled_early += wrong["early"]
        assert wrong["early"] or not wrong["plain"], i  # the plain run's success is the early one's
        if not wrong["early"]:
            assert torch.equal(runs["early"], runs["plain"]), i  # never fooled: the same steps
    assert fooled_early >= fooled_plain > len(x) // 2
    assert calls["early"] < calls["plain"] == 10 * len(x)  # fooled samples stopped being queried
    with pytest.raises(UsageError, match="stop_when_fooled"):
        build_attack("pgd", stop_when_fooled="yes")


def test_ann_twin_replaces_every_neuron_and_leaves_the_model_alone(digits_lif, digits_test):
    twin = ann_twin(digits_lif)
    assert not any(isinstance(m, SpikingNeuron) for m in twin.modules())
    assert any(isinstance(m, SpikingNeuron) for m in digits_lif.modules())
    x, y = digits_test.tensors()
    with torch.no_grad():
        out = twin(x)
    assert out.shape == (len(x), 10) and (out.argmax(1) == y).float().mean() > 0.3  # shares the weights
    attack = build_attack("transfer", eps=0.2, steps=5, source=twin, source_name="twin")
    oracle = Oracle(digits_lif)
    x_adv = attack.perturb(oracle, x[:32], y[:32], _gen())
    assert oracle.forward_calls == oracle.gradient_calls == 0  # the target was never touched
    assert _budget(x_adv, x[:32], "linf") <= 0.2 + 1e-6
    assert "source" not in attack.settings() and attack.settings()["source_name"] == "twin"

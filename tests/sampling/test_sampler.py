import pytest
import torch

from spikeshield.data import load_dataset
from spikeshield.errors import UsageError
from spikeshield.sampling import (
    Reconstructor,
    SampleConfig,
    SpikingSampler,
    load_sampling_model,
    measured_rate,
    train_sampling,
)


def test_topk_rule_keeps_the_target_rate_exactly_and_passes_surrogate_gradients():
    sampler = SpikingSampler(1, time_steps=4)
    x = torch.rand(5, 1, 8, 8, requires_grad=True)
    out = sampler(x, 0.25)
    assert out.mask.shape == (5, 1, 8, 8)
    assert set(out.mask.detach().unique().tolist()) <= {0.0, 1.0}
    assert out.mask.detach().flatten(1).sum(1).tolist() == [16.0] * 5
    (out.mask * torch.rand_like(out.mask)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sampler.body[0].parameters())


def test_event_sampler_keeps_about_the_rate_of_the_events_per_time_bin():
    sampler = SpikingSampler(2, events=True)
    x = torch.randint(0, 3, (4, 6, 2, 10, 10)).float()
    out = sampler(x, 0.3)
    assert out.mask.shape == (4, 6, 1, 10, 10)
    rate = measured_rate(out.mask, x, events=True)
    assert ((rate >= 0.3) & (rate < 0.3 + 6 / x[0].sum())).all()


def test_the_penalty_rule_trains_one_rate():
    with pytest.raises(UsageError, match="penalty rule trains for one rate"):
        SampleConfig(rule="penalty", rates=[0.1, 0.2])
    with pytest.raises(UsageError, match="rule must be one of"):
        SampleConfig(rule="random")


@pytest.mark.parametrize("rule", ["topk", "penalty"])
def test_measured_rate_tracks_the_target_on_digits(tmp_path, rule):
    """Train on the 8×8 digits; on the held-out digits the kept fraction must be near 0.2."""
    # 4 epochs of 45 steps at Adam 3e-3 (the penalty needs more steps at the default 1e-3)
    config = SampleConfig(
        dataset="digits", rule=rule, rates=[0.2], epochs=4, batch_size=32, lr=3e-3, penalty_weight=50.0
    )
    metrics = train_sampling(config, tmp_path / rule)
    model, _ = load_sampling_model(tmp_path / rule)
    x, _ = load_dataset("digits", "test").tensors()
    with torch.no_grad():
        rate = model.masks(x, 0.2).flatten(1).mean(1)
    # top-k: round(0.2 · 64) = 13 pixels of every image; penalty: within 0.05 on average
    tolerance = 0.5 / 64 if rule == "topk" else 0.05
    assert abs(rate.mean().item() - 0.2) <= tolerance
    if rule == "topk":
        assert (rate == 13 / 64).all()
    assert metrics["history"][-1]["mse"] < metrics["history"][0]["mse"]


def test_the_reconstructor_copies_kept_pixels_and_an_identity_at_rate_one_is_exact():
    from spikeshield.sampling import psnr, ssim

    for kind in ("cnn", "snn"):
        rec = Reconstructor(1, kind=kind)
        x = torch.rand(3, 1, 12, 12)
        mask = (torch.rand(3, 1, 12, 12) < 0.3).float()
        out = rec(x, mask)
        assert torch.equal(out[mask.expand_as(out) > 0], x[mask.expand_as(x) > 0])
        full = rec(x, torch.ones_like(mask))
        assert torch.equal(full, x)
        assert torch.isinf(psnr(full, x)).all() and (psnr(full, x) > 0).all()
        assert torch.allclose(ssim(full, x), torch.ones(3))
    assert psnr(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.1)).item() == pytest.approx(20.0)

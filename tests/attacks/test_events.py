import pytest
import torch

from spikeshield.attacks import CORRUPTIONS, corrupt
from spikeshield.errors import UsageError

EVENT_NOISES = ("event-drop", "event-insert", "spatial-jitter")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def counts(shape=(4, 5, 2, 16, 16), rate=0.8, seed=0) -> torch.Tensor:
    """Synthetic event frames [B, T, C, H, W] holding event counts."""
    return torch.poisson(torch.full(shape, rate), generator=_gen(seed))


@pytest.mark.parametrize("name", EVENT_NOISES)
def test_event_corruptions_are_registered_reproducible_and_identity_at_zero(name):
    assert name in CORRUPTIONS
    x = counts()
    assert corrupt(name, x, 0.0) is x
    level = 0.3
    a, b = corrupt(name, x, level, _gen(1)), corrupt(name, x, level, _gen(1))
    assert torch.equal(a, b) and not torch.equal(a, x) and a.shape == x.shape
    assert float(a.min()) >= 0


@pytest.mark.parametrize("name", EVENT_NOISES)
def test_event_corruptions_reject_images_and_bad_levels(name):
    with pytest.raises(UsageError, match=r"event frames \[B, T, C, H, W\]"):
        corrupt(name, torch.rand(2, 1, 8, 8), 0.1)
    with pytest.raises(UsageError, match="non-negative"):
        corrupt(name, -counts(), 0.1)
    with pytest.raises(UsageError, match=">= 0"):
        corrupt(name, counts(), -1.0)


def test_event_drop_thins_each_event_independently():
    x = counts(shape=(8, 10, 2, 32, 32), rate=2.0)
    dropped = corrupt("event-drop", x, 0.25, _gen())
    assert bool((dropped <= x).all()) and torch.equal(dropped, dropped.round())
    assert float(dropped.sum() / x.sum()) == pytest.approx(0.75, abs=0.01)
    assert float(corrupt("event-drop", x, 1.0, _gen()).sum()) == 0
    binary = (x > 0).float()
    kept = corrupt("event-drop", binary, 0.5, _gen(), values="binary")
    assert set(kept.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(UsageError, match=r"event-drop probability must be in \[0, 1\]"):
        corrupt("event-drop", x, 1.5)


def test_event_insert_adds_background_activity_at_the_given_rate():
    x = counts(shape=(8, 10, 2, 32, 32), rate=0.5)
    noisy = corrupt("event-insert", x, 0.1, _gen())
    added = noisy - x
    assert bool((added >= 0).all()) and float(added.mean()) == pytest.approx(0.1, abs=0.005)
    binary = (x > 0).float()
    out = corrupt("event-insert", binary, 0.1, _gen(), values="binary")
    assert set(out.unique().tolist()) <= {0.0, 1.0} and out.sum() > binary.sum()
    normalised = x / 4.0  # one event = 0.25 under this normalisation
    more = corrupt("event-insert", normalised, 0.1, _gen(), values="normalised")
    assert torch.equal((more - normalised) * 4, (more - normalised).mul(4).round())


def test_spatial_jitter_moves_events_and_keeps_those_that_stay_on_the_sensor():
    x = torch.zeros(2, 3, 2, 32, 32)
    x[..., 12:20, 12:20] = torch.poisson(torch.full((2, 3, 2, 8, 8), 1.5), generator=_gen())
    moved = corrupt("spatial-jitter", x, 1.0, _gen())
    assert not torch.equal(moved, x)
    assert float(moved.sum()) == float(x.sum())  # nothing near the border: all events stay
    assert torch.equal(moved.sum(dim=(-1, -2)), x.sum(dim=(-1, -2)))  # per frame and polarity
    edge = torch.zeros(1, 1, 1, 8, 8)
    edge[..., 0, :] = 1.0
    assert float(corrupt("spatial-jitter", edge, 3.0, _gen()).sum()) < 8  # some fall off the sensor
    binary = (x > 0).float()
    assert set(corrupt("spatial-jitter", binary, 1.0, _gen(), values="binary").unique().tolist()) <= {
        0.0,
        1.0,
    }


@pytest.mark.parametrize("name", EVENT_NOISES)
def test_the_meaning_of_a_frame_value_is_stated_never_guessed(name):
    """``values`` says what a cell holds; frames that do not fit it are a clear error."""
    with pytest.raises(UsageError, match="integer event counts"):
        corrupt(name, counts() / 4.0, 0.1, _gen())
    with pytest.raises(UsageError, match="0s and 1s"):
        corrupt(name, counts(rate=3.0), 0.1, _gen(), values="binary")
    with pytest.raises(UsageError, match="values must be one of"):
        corrupt(name, counts(), 0.1, _gen(), values="spikes")
    with pytest.raises(UsageError, match="no corruption takes option"):
        corrupt(name, counts(), 0.1, _gen(), value="binary")

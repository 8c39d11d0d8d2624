"""Per-sample random streams: a sample's draws depend on the seed, the tags and its index only."""

import pytest
import torch

from spikeshield.streams import SampleStreams, derive_seed, rand_like, randint, randn_like, sample_streams


def _batched(n: int, size: int, draw) -> torch.Tensor:
    """``draw(streams)`` over ``n`` samples in batches of ``size``, concatenated."""
    return torch.cat(
        [draw(SampleStreams.keyed(7, range(s, min(n, s + size)), "t")) for s in range(0, n, size)]
    )


@pytest.mark.parametrize("kind", ["uniform", "normal"])
def test_a_samples_draws_do_not_depend_on_the_batch(kind):
    n = 23
    whole = _batched(n, n, lambda st: getattr(st, kind)((3, 4)))
    for size in (1, 7):
        assert torch.equal(_batched(n, size, lambda st: getattr(st, kind)((3, 4))), whole)
    assert whole.shape == (n, 3, 4) and not torch.equal(whole[0], whole[1])
    other = SampleStreams.keyed(7, range(n), "u")  # other tags: other numbers
    assert not torch.equal(getattr(other, kind)((3, 4)), whole)


def test_a_subset_shares_the_streams_and_advances_only_its_own():
    a = SampleStreams.keyed(0, range(5))
    b = SampleStreams.keyed(0, range(5))
    a[torch.tensor([1, 3])].uniform((2,))  # samples 1 and 3 draw once more
    first, second = a.uniform((2,)), b.uniform((2,))
    assert torch.equal(first[[0, 2, 4]], second[[0, 2, 4]])
    assert not torch.equal(first[1], second[1]) and not torch.equal(first[3], second[3])


def test_streams_from_a_generator_and_their_errors():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(SampleStreams.of(g1, 4).normal((5,)), SampleStreams.of(g2, 4).normal((5,)))
    streams = SampleStreams.keyed(0, range(4))
    assert SampleStreams.of(streams, 4) is streams
    with pytest.raises(ValueError, match="4 random streams for a batch of 3"):
        SampleStreams.of(streams, 3)
    assert SampleStreams.keyed(0, []).uniform((2, 3)).shape == (0, 2, 3)
    assert derive_seed(1, "a", 2) == derive_seed(1, "a", 2) != derive_seed(1, "a", 3)


def test_stochastic_modules_draw_per_sample_only_inside_sample_streams():
    x = torch.zeros(2, 6, 3)  # [T, B, ...]: batch dimension 1
    torch.manual_seed(0)
    plain = rand_like(x, batch_dim=1)
    torch.manual_seed(0)
    assert torch.equal(plain, torch.rand_like(x))  # outside: exactly torch.rand_like
    with sample_streams(SampleStreams.keyed(1, range(6))):
        whole = randn_like(x, batch_dim=1)
    with sample_streams(SampleStreams.keyed(1, range(4, 6))):
        tail = randn_like(x[:, 4:], batch_dim=1)
    assert torch.equal(whole[:, 4:], tail)
    with (
        sample_streams(SampleStreams.keyed(1, range(5))),
        pytest.raises(RuntimeError, match="batch dimension 1"),
    ):
        rand_like(x, batch_dim=1)


def test_randint_keys_one_per_call_or_one_per_sample():
    x = torch.zeros(6, 3)  # one step [B, ...]
    torch.manual_seed(0)
    plain = randint(x, 2**63 - 1)
    torch.manual_seed(0)
    assert plain.shape == (1,) and torch.equal(plain, torch.randint(0, 2**63 - 1, (1,)))
    with sample_streams(SampleStreams.keyed(1, range(6))):
        whole = randint(x, 2**63 - 1)
    with sample_streams(SampleStreams.keyed(1, range(4, 6))):
        tail = randint(x[4:], 2**63 - 1)
    assert whole.shape == (6,) and torch.equal(whole[4:], tail) and len(set(whole.tolist())) == 6
    with (
        sample_streams(SampleStreams.keyed(1, range(5))),
        pytest.raises(RuntimeError, match="batch dimension 0"),
    ):
        randint(x, 10)

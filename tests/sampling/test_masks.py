import pytest
import torch

from spikeshield.errors import UsageError
from spikeshield.sampling import (
    check_rate,
    event_budget_mask,
    grid_mask,
    keep_counts,
    magnitude_mask,
    random_mask,
    topk_mask,
)
from spikeshield.sampling.masks import bayer_ranks
from spikeshield.streams import SampleStreams


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.5, float("nan"), float("inf"), True, "0.3"])
def test_rates_outside_the_unit_interval_are_refused(rate):
    with pytest.raises(UsageError, match=r"^rate must be"):
        check_rate(rate)


def test_keep_counts_round_and_keep_at_least_one_pixel():
    assert keep_counts(0.1, 784, 3).tolist() == [78, 78, 78]
    assert keep_counts(1e-6, 784, 1).tolist() == [1]
    assert keep_counts(1.0, 784, 1).tolist() == [784]


def test_topk_keeps_exactly_the_largest_scores_with_ties_by_position():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.5, 0.2], [1.0, 1.0, 1.0, 1.0, 1.0]])
    mask = topk_mask(scores, torch.tensor([3, 2]))
    assert mask.tolist() == [[0, 1, 1, 1, 0], [1, 1, 0, 0, 0]]


def test_random_masks_have_exact_counts_and_do_not_depend_on_the_batch():
    counts = torch.tensor([5, 9, 13])
    masks = random_mask((3, 1, 6, 6), counts, SampleStreams.keyed(0, range(3), "t"))
    assert masks.flatten(1).sum(1).tolist() == [5, 9, 13]
    alone = random_mask((1, 1, 6, 6), counts[1:2], SampleStreams.keyed(0, [1], "t"))
    assert torch.equal(alone[0], masks[1])
    other = random_mask((3, 1, 6, 6), counts, SampleStreams.keyed(1, range(3), "t"))
    assert not torch.equal(other, masks)


def test_grid_at_a_quarter_is_every_other_row_and_column():
    mask = grid_mask((2, 1, 8, 8), torch.tensor([16, 16]))[0, 0]
    expected = torch.zeros(8, 8)
    expected[::2, ::2] = 1
    assert torch.equal(mask, expected)
    ranks = bayer_ranks(28, 28)
    assert sorted(ranks.flatten().tolist()) == list(range(784))
    mnist = grid_mask((1, 1, 28, 28), torch.tensor([196]))[0, 0]
    assert torch.equal(
        mnist,
        torch.zeros(28, 28).index_put_(
            (torch.arange(0, 28, 2).view(-1, 1), torch.arange(0, 28, 2)), torch.tensor(1.0)
        ),
    )
    # any count is spread evenly: the four 8×8 quarters of a 16×16 image hold a quarter of 40 each
    quarter = grid_mask((1, 1, 16, 16), torch.tensor([40]))[0, 0]
    assert [quarter[i : i + 8, j : j + 8].sum().item() for i in (0, 8) for j in (0, 8)] == [10.0] * 4


def test_magnitude_keeps_the_brightest_pixels():
    x = torch.zeros(1, 3, 4, 4)
    x[0, :, 1, 2] = 1.0
    x[0, 0, 3, 3] = 0.5
    mask = magnitude_mask(x, torch.tensor([2]))
    assert mask.shape == (1, 1, 4, 4)
    assert mask[0, 0].nonzero().tolist() == [[1, 2], [3, 3]]


def test_event_budget_keeps_just_enough_whole_cells_and_never_empty_ones():
    events = torch.tensor([[4.0, 0.0, 3.0, 2.0, 1.0]]).view(1, 5, 1, 1, 1)
    scores = torch.tensor([[0.0, 9.0, 5.0, 1.0, 3.0]]).view(1, 5, 1, 1, 1)
    mask = event_budget_mask(scores, events, 0.4).flatten().tolist()
    # order by score: cell 1 (empty, skipped), 2 (3 events), 4 (1), 3 (2), 0 (4); 40 % of 10 = 4 events
    assert mask == [0, 0, 1, 0, 1]
    assert event_budget_mask(scores, events, 1.0).flatten().tolist() == [1, 0, 1, 1, 1]

import numpy as np
import pytest
import torch

from spikeshield.data import load_dataset
from spikeshield.data.base import ArrayDataset
from spikeshield.errors import UsageError


def test_embedded_digits_equal_scikit_learn():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    ref = sklearn_datasets.load_digits()
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    ours = torch.cat([train.images, test.images]).view(-1, 64).numpy().astype(np.float64)
    labels = torch.cat([train.labels, test.labels]).numpy()
    # same multiset of (image, label) rows
    key = lambda a, b: sorted(map(tuple, np.column_stack([a, b]).tolist()))  # noqa: E731
    assert key(ours, labels) == key(ref.data, ref.target)


def test_fixed_stratified_split():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1438, 359)
    counts = torch.bincount(test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # ≈20 % of every class
    again = load_dataset("digits", "test")
    assert torch.equal(again.images, test.images)
    x, _y = train.tensors()
    assert x.dtype == torch.float32 and x.min() == 0 and x.max() == 1 and x.shape == (1438, 1, 8, 8)


def test_limit_takes_a_fixed_subset_and_bad_split_is_clear():
    sub = load_dataset("digits", "train", limit=100)
    assert len(sub) == 100 and torch.equal(sub.labels, load_dataset("digits", "train", limit=100).labels)
    with pytest.raises(UsageError, match="split must be"):
        load_dataset("digits", "validation")
    with pytest.raises(UsageError, match="Did you mean 'digits'"):
        load_dataset("digit", "train")
    with pytest.raises(UsageError, match="does not take option"):
        load_dataset("digits", "train", crop=4)


def test_batches_cover_everything_once_in_seeded_order():
    ds = load_dataset("digits", "test")
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    b1 = [y for _, y in ds.batches(64, shuffle=True, generator=g1)]
    b2 = [y for _, y in ds.batches(64, shuffle=True, generator=g2)]
    assert all(torch.equal(a, b) for a, b in zip(b1, b2))
    assert sorted(torch.cat(b1).tolist()) == sorted(ds.labels.tolist())


def test_holdout_is_exactly_what_the_subset_leaves_out():
    full = load_dataset("digits", "train")
    tagged = ArrayDataset(torch.arange(len(full)), full.labels)  # each sample's "image" is its index
    sub, rest = tagged.subset(300), tagged.holdout(300)
    assert sorted(sub.images.tolist() + rest.images.tolist()) == list(range(len(full)))
    assert torch.equal(full.subset(300).images, full.images[sub.images])  # the same 300 as subset's
    assert torch.equal(full.holdout(300).images, full.images[rest.images])
    assert rest.meta["holdout_of"] == 300 and len(rest) == len(full) - 300 == 1138
    assert rest.images.tolist() == sorted(rest.images.tolist())  # in the split's order
    assert len(full.holdout(5000)) == 0

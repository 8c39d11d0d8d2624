"""Spatial down-sampling of event frames (``frame_size`` / ``frame_pool`` dataset options)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikeshield.data import dataset_info, load_dataset
from spikeshield.data.downsample import downsample_frames, frame_shape
from spikeshield.data.events import events_to_frames, make_events
from spikeshield.errors import UsageError

from .formats import aedat31_bytes, labels_csv


def _random_events(rng, n, sensor):
    x = rng.integers(0, sensor[1], n)
    y = rng.integers(0, sensor[0], n)
    return make_events(x, y, np.sort(rng.integers(0, 10**6, n)), rng.integers(0, 2, n))


@pytest.mark.parametrize("size", [(64, 64), (48, 48), (32, 32), (48, 32), (128, 128)])
def test_sum_equals_scaling_each_events_coordinates(size):
    """Summing is binning the events themselves on the coarser grid: x' = ⌊x·W'/W⌋, y' = ⌊y·H'/H⌋
    (tonic's spatial down-sampling); every event is kept, so each frame's count is preserved."""
    rng = np.random.default_rng(1)
    events = _random_events(rng, 5000, (128, 128))
    frames = torch.from_numpy(events_to_frames(events, 4, (128, 128)))
    scaled = make_events(events.x * size[1] // 128, events.y * size[0] // 128, events.t, events.p)
    expected = torch.from_numpy(events_to_frames(scaled, 4, size))
    got = downsample_frames(frames, size, "sum")
    assert torch.equal(got, expected)
    assert torch.equal(got.sum((-1, -2)), frames.sum((-1, -2)))  # per frame and polarity


@pytest.mark.parametrize("factor", [2, 4])
def test_max_pools_the_counts(factor):
    counts = torch.randint(0, 9, (3, 5, 2, 128, 128), dtype=torch.int16)
    got = downsample_frames(counts, (128 // factor, 128 // factor), "max")
    expected = F.max_pool2d(counts.flatten(0, 1).float(), factor).view_as(got)
    assert torch.equal(got.float(), expected)


def test_bad_calls_are_clear():
    counts = torch.zeros(1, 2, 2, 8, 8, dtype=torch.uint8)
    with pytest.raises(UsageError, match="integer event counts"):
        downsample_frames(counts.float(), (4, 4))
    with pytest.raises(UsageError, match="frame_pool must be one of sum, max"):
        downsample_frames(counts, (4, 4), "mean")
    with pytest.raises(UsageError, match="cannot down-sample 8×8 frames to 16×4"):
        downsample_frames(counts, (16, 4))


def test_frame_shape_follows_the_options():
    gesture = dataset_info("dvs-gesture")
    assert frame_shape(gesture, {}) == (2, 128, 128)
    assert frame_shape(gesture, {"frame_size": 48}) == (2, 48, 48)
    assert frame_shape(gesture, {"frame_size": [64, 32], "frame_pool": "max"}) == (2, 64, 32)
    for options, message in (
        ({"frame_size": 200}, "larger than dvs-gesture's 128×128 sensor"),
        ({"frame_size": 0}, "frame_size must be"),
        ({"frame_size": [1, 2, 3]}, r"one number or \[height, width\]"),
        ({"frame_pool": "avg"}, "frame_pool must be one of sum, max"),
    ):
        with pytest.raises(UsageError, match=message):
            frame_shape(gesture, options)
    with pytest.raises(UsageError, match="frame_size: mnist holds images, not event frames"):
        frame_shape(dataset_info("mnist"), {"frame_size": 14})


def _gesture_root(tmp_path, events_per_gesture=400):
    """Format-exact DVS128 Gesture files (AEDAT 3.1 + labels CSV): users 1-2 train, 24 test."""
    folder = tmp_path / "DvsGesture"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for user in (1, 2, 24):
        gestures = [(c, 10**6 * c, 10**6 * c + 400_000) for c in (1, 4, 11)]
        parts = []
        for c, start, end in gestures:
            n = events_per_gesture
            x = rng.integers((c - 1) * 11, (c - 1) * 11 + 11, n)
            parts.append(
                (x, rng.integers(0, 128, n), np.sort(rng.integers(start, end, n)), rng.integers(0, 2, n))
            )
        x, y, t, p = (np.concatenate([part[i] for part in parts]) for i in range(4))
        name = f"user{user:02d}_fluorescent"
        (folder / f"{name}.aedat").write_bytes(aedat31_bytes(x, y, t, p, per_packet=128))
        (folder / f"{name}_labels.csv").write_text(labels_csv(gestures))
    return tmp_path


@pytest.mark.parametrize("size", [64, 48, 32])
def test_load_dataset_down_samples_and_keeps_every_event(tmp_path, size):
    root = _gesture_root(tmp_path)
    full = load_dataset("dvs-gesture", "train", root, frames=5)
    small = load_dataset("dvs-gesture", "train", root, frames=5, frame_size=size)
    assert small.images.shape == (6, 5, 2, size, size)
    assert not small.images.is_floating_point()
    sums = (1, 2, 3, 4)
    assert small.images.sum(sums, dtype=torch.int64).tolist() == [400] * 6
    assert torch.equal(
        small.images.sum((-1, -2), dtype=torch.int64), full.images.sum((-1, -2), dtype=torch.int64)
    )
    assert small.meta["frame_size"] == [size, size] and small.meta["frame_pool"] == "sum"
    assert small.info.input_shape == (2, size, size)
    peak = load_dataset("dvs-gesture", "test", root, frames=5, frame_size=size, frame_pool="max", limit=2)
    assert len(peak) == 2 and int(peak.images.max()) <= int(full.images.max())


def test_real_nmnist_counts_are_preserved(shared_data):
    full = load_dataset("nmnist", "test", shared_data, frames=4, limit=20)
    half = load_dataset("nmnist", "test", shared_data, frames=4, limit=20, frame_size=17)
    assert half.images.shape == (20, 4, 2, 17, 17)
    assert torch.equal(
        half.images.sum((-1, -2), dtype=torch.int64), full.images.sum((-1, -2), dtype=torch.int64)
    )
    assert torch.equal(half.labels, full.labels)

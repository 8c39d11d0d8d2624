import numpy as np
import pytest

from spikeshield.data.events import (
    Events,
    check_sensor,
    compact_frames,
    events_to_frames,
    make_events,
    stack_samples,
)
from spikeshield.errors import DataError, UsageError


def _events(x, y, t, p) -> Events:
    return make_events(x, y, t, p)


def test_split_by_count_gives_equal_event_counts_per_frame():
    # 6 events, 3 frames: two events each, whatever their times
    ev = _events([0, 1, 2, 0, 1, 2], [0, 0, 0, 1, 1, 1], [0, 1, 2, 100, 1000, 5000], [1, 0, 1, 1, 0, 0])
    frames = events_to_frames(ev, 3, (2, 3), "count")
    assert frames.shape == (3, 2, 2, 3)
    assert frames.sum(axis=(1, 2, 3)).tolist() == [2, 2, 2]
    assert frames[0, 1, 0, 0] == 1 and frames[0, 0, 0, 1] == 1  # ON to channel 1, OFF to channel 0
    assert frames[2, 0, 1, 1] == 1 and frames[2, 0, 1, 2] == 1


def test_split_by_time_gives_equal_durations():
    # times 0..99 µs: frame k covers [25k, 25k+25)
    ev = _events([0] * 5, [0] * 5, [0, 10, 30, 74, 99], [1] * 5)
    frames = events_to_frames(ev, 4, (1, 1), "time")
    assert frames[:, 1, 0, 0].tolist() == [2, 1, 1, 1]
    unsorted = _events([0] * 3, [0] * 3, [99, 0, 50], [1, 0, 1])
    assert events_to_frames(unsorted, 2, (1, 1), "time")[:, :, 0, 0].tolist() == [[1, 0], [0, 2]]
    with pytest.raises(UsageError, match="split_by must be one of count, time"):
        events_to_frames(ev, 2, (1, 1), "space")


def test_counts_add_up_and_empty_recordings_give_zero_frames():
    rng = np.random.default_rng(0)
    n = 1000
    ev = _events(
        rng.integers(0, 34, n),
        rng.integers(0, 34, n),
        np.sort(rng.integers(0, 10**5, n)),
        rng.integers(0, 2, n),
    )
    for split_by in ("count", "time"):
        assert events_to_frames(ev, 7, (34, 34), split_by).sum() == n
    empty = _events([], [], [], [])
    assert events_to_frames(empty, 3, (4, 4)).sum() == 0


def test_compact_frames_switches_to_int16_when_counts_exceed_255():
    small = np.full((2, 2, 3, 3), 255, np.int32)
    big = small.copy()
    big[0, 0, 0, 0] = 300
    assert compact_frames(small).dtype == np.uint8
    assert compact_frames(big).dtype == np.int16 and compact_frames(big)[0, 0, 0, 0] == 300
    images, labels = stack_samples([(1, 4, compact_frames(big)), (0, 3, compact_frames(small))], 2, (3, 3))
    assert images.dtype == np.int16 and labels.tolist() == [3, 4] and images[1, 0, 0, 0, 0] == 300


def test_events_outside_the_sensor_are_a_clear_error():
    ev = _events([1, 40], [0, 0], [0, 1], [1, 1])
    with pytest.raises(DataError, match=r"rec.bin: event 1 at x=40, y=0 lies outside the 34×34 sensor"):
        check_sensor(ev, (34, 34), "rec.bin")

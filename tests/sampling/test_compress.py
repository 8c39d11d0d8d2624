"""DVS compression on real N-MNIST recordings: the written file reads back to exactly the kept events."""

import numpy as np
import pytest
import torch

from spikeshield.data import load_dataset
from spikeshield.data.events import events_to_frames, make_events
from spikeshield.data.nmnist import SENSOR, read_nmnist_bin
from spikeshield.errors import UsageError
from spikeshield.sampling import (
    SampleConfig,
    SamplingModel,
    random_keep,
    read_back,
    read_recordings,
    sampler_keep,
    write_compressed,
    write_nmnist_bin,
)
from spikeshield.sampling.compress import COMPRESSORS, archive_bytes, compressor_of, encode

T = 6


@pytest.fixture(scope="module")
def event_model():
    """An untrained spiking sampler: its random weights drawn from a fixed seed (a module fixture is
    built before the per-test seed of conftest.py, so it would otherwise depend on the tests before)."""
    config = SampleConfig(dataset="nmnist", time_steps=T, rates=[0.2])
    torch.manual_seed(0)
    return SamplingModel(config, config_info()).eval()


def config_info():
    from spikeshield.data import dataset_info

    return dataset_info("nmnist")


def test_the_writer_reproduces_real_nmnist_files_byte_for_byte(nmnist_members):
    for name, data in list(nmnist_members.items())[:10]:
        assert write_nmnist_bin(read_nmnist_bin(data, name)) == data


def test_the_writer_refuses_what_the_format_cannot_hold():
    with pytest.raises(UsageError, match="at least one event"):
        write_nmnist_bin(make_events([], [], [], []))
    with pytest.raises(UsageError, match="does not fit the N-MNIST format"):
        write_nmnist_bin(make_events([1], [2], [1 << 23], [1]))
    with pytest.raises(UsageError, match="does not fit"):
        write_nmnist_bin(make_events([1], [240], [5], [0]))  # y = 240 marks a timestamp overflow


def test_compressed_file_reads_back_to_exactly_the_kept_events(small_nmnist, event_model, tmp_path):
    recordings = read_recordings(small_nmnist)
    assert len(recordings) == 60 and {r.split for r in recordings} == {"train", "test"}
    keeps = sampler_keep(event_model, recordings, 0.2, T)
    info = write_compressed(tmp_path / "kept.tar.gz", recordings, keeps)
    back = dict(read_back(tmp_path / "kept.tar.gz"))
    assert sorted(back) == sorted(r.name for r in recordings)
    for r, keep in zip(recordings, keeps):
        kept, got = r.events.select(keep), back[r.name]
        for field in "xytp":
            assert np.array_equal(getattr(got, field), getattr(kept, field)), (r.name, field)
        assert keep[0] and keep[-1]  # the time span is kept
    assert info["events_after"] == sum(int(k.sum()) for k in keeps)
    assert 0.2 <= info["events_kept"] < 0.3
    assert info["bin_bytes_after"] == 5 * info["events_after"]
    assert info["bin_ratio"] == pytest.approx(info["events_before"] / info["events_after"])
    assert info["archive_bytes"] == (tmp_path / "kept.tar.gz").stat().st_size
    assert info["archive_ratio"] == pytest.approx(info["bin_bytes_before"] / info["archive_bytes"])
    assert info["lossless_bytes"] == len(archive_bytes(encode(recordings)))


@pytest.mark.parametrize("compressor", list(COMPRESSORS))
def test_the_lossless_baseline_and_the_kept_events_round_trip_with_every_compressor(
    compressor, small_nmnist, nmnist_members, event_model, tmp_path
):
    recordings = read_recordings(small_nmnist)
    every = [np.ones(len(r.events), dtype=bool) for r in recordings]
    full = write_compressed(tmp_path / f"full.tar.{compressor}", recordings, every)
    back = dict(read_back(tmp_path / f"full.tar.{compressor}"))
    assert {name: write_nmnist_bin(e) for name, e in back.items()} == nmnist_members  # lossless: every byte
    assert full["archive_bytes"] == full["lossless_bytes"] < full["bin_bytes_before"]
    assert full["over_lossless"] == 1 and full["lossless_ratio"] == full["archive_ratio"] > 1
    keeps = sampler_keep(event_model, recordings, 0.2, T)
    kept = write_compressed(tmp_path / f"kept.tar.{compressor}", recordings, keeps, full["lossless_bytes"])
    back = dict(read_back(tmp_path / f"kept.tar.{compressor}"))
    for r, keep in zip(recordings, keeps):
        expected = r.events.select(keep)
        assert all(np.array_equal(getattr(back[r.name], a), getattr(expected, a)) for a in "xytp")
    assert kept["compressor"] == compressor and kept["archive_ratio"] > 3 * full["lossless_ratio"]
    assert kept["over_lossless"] == pytest.approx(full["archive_bytes"] / kept["archive_bytes"])


def test_the_file_name_names_the_compressor():
    names = ("a.tar.gz", "a.tgz", "A.TAR.BZ2", "d/a.tar.xz")
    assert [compressor_of(n) for n in names] == ["gz", "gz", "bz2", "xz"]
    with pytest.raises(UsageError, match=r"\*\.tar\.gz, \*\.tar\.bz2 or \*\.tar\.xz"):
        compressor_of("kept.zip")


def test_the_nmnist_dataset_reads_a_compressed_file_with_the_original_time_bins(
    small_nmnist, event_model, tmp_path
):
    recordings = read_recordings(small_nmnist)
    keeps = sampler_keep(event_model, recordings, 0.1, T)
    (tmp_path / "NMNIST").mkdir()
    write_compressed(tmp_path / "NMNIST" / "nmnist-compressed.tar.gz", recordings, keeps)
    test = load_dataset("nmnist", "test", tmp_path, frames=T, split_by="time")
    tests = [(r, k) for r, k in zip(recordings, keeps) if r.split == "test"]
    order = sorted(range(len(tests)), key=lambda i: (tests[i][0].label, tests[i][0].name.rsplit("/", 1)[1]))
    expected = torch.stack(
        [
            torch.from_numpy(events_to_frames(tests[i][0].events.select(tests[i][1]), T, SENSOR, "time"))
            for i in order
        ]
    )
    assert torch.equal(test.images.long(), expected.long())
    # the same bins as the original: a kept event lands in the frame its original bin said
    full = torch.from_numpy(events_to_frames(tests[order[0]][0].events, T, SENSOR, "time"))
    assert (test.images[0].long() <= full.long()).all()


def test_random_dropping_keeps_the_same_counts(small_nmnist, event_model):
    recordings = read_recordings(small_nmnist, ["test"])
    keeps = sampler_keep(event_model, recordings, 0.3, T)
    drops = random_keep(keeps, seed=0)
    assert [int(k.sum()) for k in keeps] == [int(d.sum()) for d in drops]
    assert all(d[0] and d[-1] for d in drops)
    assert any(not np.array_equal(k, d) for k, d in zip(keeps, drops))
    assert [np.flatnonzero(d).tolist() for d in random_keep(keeps, seed=0)] == [
        np.flatnonzero(d).tolist() for d in drops
    ]


def test_rate_one_keeps_every_event_and_rewrites_the_originals(small_nmnist, event_model, nmnist_members):
    recordings = read_recordings(small_nmnist, ["test"])
    keeps = sampler_keep(event_model, recordings, 1.0, T)
    assert all(k.all() for k in keeps)
    members = dict(encode(recordings, keeps))
    assert all(members[name] == data for name, data in nmnist_members.items() if name in members)
    assert archive_bytes(list(members.items())) == archive_bytes(encode(recordings))

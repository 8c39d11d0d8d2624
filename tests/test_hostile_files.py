"""Every example of issue 19 ("hostile files") with its outcome: one clear spikeshield error
naming the file (and the field), within bounded memory and time, or a warning with a count
where the format allows the data but it looks wrong.

§1 structured files without a schema, §2 small files forcing huge allocations, §3 arithmetic
on header fields, §4 files that are not plain files, §5 bad data accepted in silence. The
seeded fuzz tests of the same readers are in ``test_fuzz_files.py``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import TypedDict

import numpy as np
import pytest
import torch

from spikeshield.cli import main
from spikeshield.data import load_dataset
from spikeshield.data.aedat import read_aedat4, read_aedat31
from spikeshield.data.cifar10 import decode_jpeg_archive, read_cifar_batch
from spikeshield.data.dvs_gesture import read_tonic_npy
from spikeshield.data.events import check_events, events_to_frames, frame_index, make_events
from spikeshield.data.idx import read_idx
from spikeshield.errors import CheckpointError, DataError, DataWarning, SpikeshieldError
from spikeshield.schema import decode_toml
from spikeshield.training.checkpoint import load_model_weights, load_tensors, save_tensors
from spikeshield.training.run_files import read_metrics, read_train_config
from spikeshield.training.trainer import build_model_for, load_checkpoint, make_optimizer

from .conftest import write_idx
from .data.formats import (
    aedat4_bytes,
    aedat4_event_packet,
    aedat4_file,
    aedat31_bytes,
    cifar_batch_bytes,
    nmnist_bytes,
    tonic_npy_bytes,
)
from .limits import MiB, gzip_bomb, lz4_bomb, no_hang, peak_memory, tar_gz, tar_gz_bomb, zstd_bomb

BASE = ["train", "--dataset", "digits", "--model", "mlp", "--model-opt", "hidden=[16]", "--epochs", "2"]
BASE += ["--time-steps", "2", "--limit-train", "64", "--limit-test", "32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A complete two-epoch run (config.json, metrics.json, checkpoint and model)."""
    run = tmp_path_factory.mktemp("hostile") / "run"
    assert main([*BASE, "--out", str(run)]) == 0
    return run


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def one_line_error(argv, capsys, code=1) -> str:
    with no_hang(20):
        assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("spikeshield: error:"), err
    return err


def safetensors_bytes(header: bytes | dict, body: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def with_metadata(path: Path, **changes: str) -> None:
    """Rewrite a safetensors file with some metadata entries replaced."""
    tensors, metadata = load_tensors(path)
    save_tensors(path, tensors, {**metadata, **changes})


def checkpoint_parts(run: Path):
    config = read_train_config(run)
    model = build_model_for(config)
    return model, make_optimizer(config, model), config


DEEP = "[" * 100_000 + "]" * 100_000
HUGE_INT = "1" + "0" * 5000

# ============================================================================ §1 schemas

F32 = {"dtype": "F32", "data_offsets": [0, 4]}


@pytest.mark.parametrize(
    "header",
    [
        b'{"w":{"dtype":"F32","shape":[Infinity],"data_offsets":[0,4]}}',
        json.dumps({"w": {**F32, "shape": [-1, -2]}}).encode(),
        json.dumps({"w": {"dtype": "F32", "shape": [0, 2**70], "data_offsets": [0, 0]}}).encode(),
        json.dumps({"__metadata__": [1], "w": {**F32, "shape": [1]}}).encode(),
        json.dumps({"__metadata__": {"format": 5}, "w": {**F32, "shape": [1]}}).encode(),
        b'{"__metadata__":' + DEEP.encode() + b"}",
        ('{"w":{"dtype":"F32","shape":[' + HUGE_INT + '],"data_offsets":[0,4]}}').encode(),
    ],
    ids=[
        "shape Infinity",
        "shape -1,-2",
        "shape 0,2**70",
        "metadata a list",
        "metadata value 5",
        "deep",
        "5000 digits",
    ],
)
def test_safetensors_headers(tmp_path, header):
    path = tmp_path / "model.safetensors"
    path.write_bytes(safetensors_bytes(header, bytes(4)))
    with pytest.raises(CheckpointError, match=r"model.safetensors: not a safetensors file") as info:
        load_tensors(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{not json", r"model_spec: not valid JSON"),
        ("[1]", r"model_spec: expected `object`, got `array`"),
        ('{"name": ' + DEEP + "}", r"model_spec: not usable JSON \(nested too deeply\)"),
        (
            '{"width": ' + HUGE_INT + "}",
            r"model_spec: not valid JSON \(line 1: an integer of more than 4300 digits\)",
        ),
    ],
    ids=["invalid JSON", "a list", "deep", "5000 digits"],
)
def test_model_spec(run, spec, message):
    with_metadata(run / "model.safetensors", model_spec=spec)
    model, _, _ = checkpoint_parts(run)
    with pytest.raises(CheckpointError, match=r"model.safetensors: " + message):
        load_model_weights(run / "model.safetensors", model, model.spec)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: "{broken", r"run_state: not valid JSON"),
        (lambda s: {**s, "epoch": "1"}, r"run_state: epoch: expected `int`, got `str`"),
        (lambda s: {**s, "epoch": -1}, r"run_state: epoch: expected `int` >= 0"),
        (lambda s: {**s, "history": [{"epoch": "x"}]}, r"run_state: history\[0\]\.epoch: expected `int`"),
        (
            lambda s: {**s, "history": s["history"][:1]},
            r"run_state: history holds epochs \[1\], expected 1..2",
        ),
        (lambda s: {**s, "train_seconds": float("nan")}, r"run_state: train_seconds: expected `float` >= 0"),
        (lambda s: {**s, "param_groups": 5}, r"run_state: param_groups: expected `array`"),
        (
            lambda s: {**s, "optim_scalars": {"0": {"step": "x"}}},
            r"optim_scalars\[\.\.\.\]\[\.\.\.\]: expected `int \| float \| null`, got `str`",
        ),
        (lambda s: {**s, "optim_scalars": {"99": {}}}, r"optim_scalars names parameter '99'"),
        (lambda s: {**s, "config": [1]}, r"run_state: config: expected `object`"),
        (lambda s: {**s, "config": {**s["config"], "lr": "fast"}}, r"other settings \(lr\)"),
        (lambda s: '{"history": ' + DEEP + "}", r"run_state: not usable JSON \(nested too deeply\)"),
    ],
    ids=[
        "invalid JSON",
        "epoch a string",
        "negative epoch",
        "history entry",
        "history short",
        "NaN seconds",
        "param_groups",
        "scalar state",
        "parameter index",
        "config a list",
        "config value",
        "deep",
    ],
)
def test_checkpoint_run_state(run, change, message):
    path = run / "checkpoint.safetensors"
    _, metadata = load_tensors(path)
    new = change(json.loads(metadata["run_state"]))
    text = new if isinstance(new, str) else json.dumps(new)
    if isinstance(new, dict) and new.get("history") == DEEP:
        text = json.dumps({**new, "history": []}).replace('"history": []', f'"history": {DEEP}')
    with_metadata(path, run_state=text)
    model, optimizer, config = checkpoint_parts(run)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"checkpoint.safetensors: .*" + message) as info:
        load_checkpoint(path, model, optimizer, config)
    assert "\n" not in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing loaded


def test_checkpoint_tensors_that_do_not_fit(run):
    path = run / "checkpoint.safetensors"
    tensors, metadata = load_tensors(path)
    model, optimizer, config = checkpoint_parts(run)
    cases = [
        ({**tensors, "optim.0.exp_avg": torch.zeros(3)}, r"exp_avg of parameter 0 has shape \[3\]"),
        ({**tensors, "optim.x.exp_avg": torch.zeros(3)}, r"tensor optim.x.exp_avg names parameter 'x'"),
        (
            {k: v for k, v in tensors.items() if k != "optim.0.step"},
            r"parameter 0 holds \['exp_avg', 'exp_avg_sq'\]",
        ),
        ({k: (v.long() if k.startswith("model.") else v) for k, v in tensors.items()}, r"holds torch.int64"),
    ]
    for changed, message in cases:
        save_tensors(path, changed, metadata)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(path, model, optimizer, config)


def test_config_json_that_is_a_list(run, capsys):
    (run / "config.json").write_text("[1]")
    err = one_line_error([*BASE, "--out", str(run), "--resume"], capsys)
    assert re.search(r"config.json: expected `object`, got `array`", err), err
    with pytest.raises(SpikeshieldError, match=r"config.json: expected `object`"):
        read_train_config(run)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"format_version": 1, "train": ' + DEEP + "}",
            r"config.json: not usable JSON \(nested too deeply\)",
        ),
        (
            '{"format_version": ' + HUGE_INT + "}",
            r"config.json: not valid JSON \(line 1: an integer of more than 4300 digits\)",
        ),
        (
            '{"format_version": 1, "train": {}, "model_spec": {}}',
            r"config.json: object missing required field `environment`",
        ),
        (b"\xff\xfe{}", r"config.json: not (valid JSON|UTF-8)"),
    ],
    ids=["deep", "5000 digits", "missing field", "not UTF-8"],
)
def test_config_json_damaged(run, capsys, text, message):
    path = run / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert re.search(message, one_line_error([*BASE, "--out", str(run), "--resume"], capsys))


def test_config_json_settings_are_typed(run):
    saved = json.loads((run / "config.json").read_text())
    for key, value, message in [
        ("time_steps", "2", r"train: time_steps: expected `int`, got `str`"),
        ("augment", "flip", r"train: augment: expected `array`, got `str`"),
        ("dataset", 5, r"train: dataset: expected `str`, got `int`"),
        ("lr", None, None),
        ("epochs", 0, r"train: epochs must be a positive integer"),
        ("bogus", 1, r"train: unknown setting\(s\) bogus"),
    ]:
        (run / "config.json").write_text(json.dumps({**saved, "train": {**saved["train"], key: value}}))
        if message is None:
            read_train_config(run)
            continue
        with pytest.raises(DataError, match=r"config.json: " + message):
            read_train_config(run)


def test_metrics_json_complete_with_a_string_accuracy(run, capsys):
    """The issue's example: `--resume` on it used to crash formatting the accuracy."""
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "complete": True, "test_accuracy": "high"}))
    err = one_line_error([*BASE, "--out", str(run), "--resume"], capsys)
    assert re.search(r"metrics.json: test_accuracy: expected `float \| null`, got `str`", err), err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: {**m, "test_accuracy": None}, r"test_accuracy: a complete run needs a number"),
        (lambda m: {**m, "test_accuracy": 1.5}, r"test_accuracy: expected `float` <= 1.0"),
        (lambda m: {**m, "complete": "yes"}, r"complete: expected `bool`, got `str`"),
        (lambda m: {**m, "history": [{"epoch": 2}]}, r"history holds epochs \[2\], expected 1..2"),
        (lambda m: {**m, "history": 5}, r"history: expected `array`, got `int`"),
        (lambda m: [m], r"expected `object`, got `array`"),
    ],
)
def test_metrics_json_damaged(run, change, message):
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps(change(metrics)))
    with pytest.raises(DataError, match=r"metrics.json: " + message):
        read_metrics(run / "metrics.json")


class Experiment(TypedDict):
    a: list[int]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'name = "x\xff"\n', r"exp.toml: not UTF-8 text \(byte 9: invalid start byte\)"),
        (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", r"exp.toml: not (usable|valid) TOML"),
        (b"a = " + HUGE_INT.encode() + b"\n", r"exp.toml: not valid TOML \(line 1: an integer of more"),
        (b"a = [1, 'x']\n", r"exp.toml: a\[1\]: expected `int`, got `str`"),
    ],
    ids=["non-UTF-8 byte", "deep", "5000 digits", "wrong type"],
)
def test_toml_decoding_for_the_experiment_layer(raw, message):
    with pytest.raises(DataError, match=message) as info:
        decode_toml(raw, Experiment, "exp.toml")
    assert "\n" not in str(info.value)


# ============================================================================ §2 allocations


def test_idx_gz_bomb_stops_at_the_declared_size(tmp_path):
    """1.2 MB of gzip holding one declared 28×28 image, then 1.2 GB of zeros."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    header = struct.pack(">I3I", 0x0803, 1, 28, 28)
    path.write_bytes(gzip_bomb(header + bytes(784), 1200 * MiB))
    assert path.stat().st_size < 2 * MiB
    with no_hang(10), peak_memory() as peak, pytest.raises(DataError, match=r"holds more than 784 bytes"):
        read_idx(path, expected_dims=3)
    assert peak.bytes < 4 * MiB


def test_idx_header_larger_than_any_gzip_can_hold(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(path, bytes(100), (10_000_000, 28, 28))
    with peak_memory() as peak, pytest.raises(DataError, match=r"more than the file can hold"):
        read_idx(path, expected_dims=3)
    assert peak.bytes < MiB


@pytest.mark.parametrize("dataset", ["cifar10", "nmnist"])
def test_tar_gz_holding_a_huge_member(tmp_path, dataset):
    """A 1.2 MB tar.gz whose member is 1.2 GB: refused from its tar header, before reading."""
    if dataset == "cifar10":
        path = tmp_path / "CIFAR10" / "cifar10-jpeg.tar.gz"
        member, message = "train/cat/0001.jpg", r"member train/cat/0001.jpg is 1258291200 bytes"
    else:
        path = tmp_path / "NMNIST" / "nmnist-train.tar.gz"
        member, message = "Train/3/00001.bin", r"member Train/3/00001.bin is 1258291200 bytes"
    path.parent.mkdir()
    path.write_bytes(tar_gz_bomb(member, 1200 * MiB))
    with no_hang(10), peak_memory() as peak, pytest.raises(DataError, match=message):
        load_dataset(dataset, "train", tmp_path)
    assert peak.bytes < 4 * MiB


def test_npy_header_declaring_a_huge_shape():
    header = b"{'descr': '<i8', 'fortran_order': False, 'shape': (100000000000, 4), }"
    header += b" " * (117 - len(header)) + b"\n"
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(64)
    assert len(data) < 200
    with (
        peak_memory() as peak,
        pytest.raises(DataError, match=r"x.npy: .npy header declares int64 \(100000000000, 4\)"),
    ):
        read_tonic_npy(data, "x.npy")
    assert peak.bytes < MiB


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
@pytest.mark.parametrize("declared", ["small", "huge"])
def test_aedat4_packet_bombs(compression, declared):
    """A packet inflating to 1.2 GB: read only as far as its size prefix says, which is either
    a real packet's (the zeros after it are never inflated) or more than any packet holds."""
    packet = aedat4_event_packet([1], [2], [3], [1])
    if declared == "huge":
        packet = struct.pack("<I", 2**31) + packet[4:]
    bomb = (lz4_bomb if compression == "lz4" else zstd_bomb)(packet, 1200 * MiB)
    data = aedat4_file([bomb], compression)
    assert len(data) < 6 * MiB
    with no_hang(10), peak_memory() as peak:
        if declared == "small":
            events = read_aedat4(data, "x.aedat4")
            assert events.x.tolist() == [1] and events.t.tolist() == [3]
        else:
            with pytest.raises(
                DataError, match=r"x.aedat4: event packet 0 is malformed \(size prefix says 2147483648"
            ):
                read_aedat4(data, "x.aedat4")
    assert peak.bytes < len(data) + 4 * MiB  # the compressed packet is copied once, nothing inflated


def _jpeg(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")  # baseline start of frame: length, precision, height, width
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


@pytest.mark.parametrize(
    ("size", "message"), [(65500, r"decompression bomb"), (1000, r"is 1000×1000, expected 32×32")]
)
def test_jpeg_dimension_bombs(tmp_path, size, message):
    path = tmp_path / "cifar10-jpeg.tar.gz"
    path.write_bytes(tar_gz({"train/cat/1.jpg": _jpeg(size, size), "test/dog/2.jpg": _jpeg(32, 32)}))
    with peak_memory() as peak, pytest.raises(DataError, match=r"member train/cat/1.jpg .*" + message):
        decode_jpeg_archive(path)
    assert peak.bytes < 4 * MiB


# ============================================================================ §3 arithmetic


def test_idx_dimensions_whose_product_wraps(tmp_path):
    """2³¹ × 2³¹ × 4 is 0 in int64; with Python ints it is far more than the file holds."""
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(struct.pack(">I3I", 0x0803, 2**31, 2**31, 4))
    with pytest.raises(DataError, match=r"shape \(2147483648, 2147483648, 4\) \(18446744073709551616 bytes"):
        read_idx(path)


def test_cifar_label_too_large_for_int64(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(cifar_batch_bytes(np.zeros((2, 3, 32, 32), np.uint8), [0, 10**30]))
    with pytest.raises(DataError, match=r"data_batch_1: labels outside 0..9 \(10{30} found\)"):
        read_cifar_batch(path)


def test_time_split_over_a_span_of_2_63_or_more():
    t = np.array([0, 2**63 - 1], dtype=np.int64)
    with pytest.raises(DataError, match=r"cannot be split into 4 frames by time"):
        frame_index(t, 4, "time")
    events = make_events([0, 1], [0, 1], t, [0, 1])
    with pytest.raises(DataError, match=r"x.bin: timestamp 9223372036854775807 µs is impossible"):
        check_events(events, (34, 34), "x.bin")
    events = make_events([0, 1], [0, 1], [2**50, 2**50 + 2**41], [0, 1])
    with pytest.raises(DataError, match=r"x.bin: timestamps span 2199023255552 µs \(more than 12 days\)"):
        check_events(events, (34, 34), "x.bin")


def test_huge_spans_no_longer_put_events_in_wrong_frames():
    """Spans whose product with the frame count passed 2⁶³ wrapped silently before."""
    frames = 16
    t = np.array([0, 2**59, 2**60, 2**61 - 1], dtype=np.int64)
    with pytest.raises(DataError, match="cannot be split into 16 frames"):
        frame_index(t, frames, "time")
    t = np.array([0, 2**38, 2**39, 2**40 - 2], dtype=np.int64)  # the longest span allowed
    span = int(t[-1]) + 1
    assert frame_index(t, frames, "time").tolist() == [int(v) * frames // span for v in t]


# ============================================================================ §4 not plain files


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_fifo_in_a_run_folder(run, capsys, name):
    (run / name).unlink()
    os.mkfifo(run / name)
    argv = ["evaluate", "--run", str(run), "--limit", "8", "--out", str(run / "eval")]
    if name == "config.json":
        argv = [*BASE, "--out", str(run), "--resume"]
    err = one_line_error(argv, capsys)
    assert f"{name}: " in err and "is a FIFO (named pipe), not a regular file" in err, err


def test_fifo_checkpoint_and_model_in_the_api(run):
    for name in ("model.safetensors", "checkpoint.safetensors"):
        (run / name).unlink()
        os.mkfifo(run / name)
    model, optimizer, config = checkpoint_parts(run)
    with no_hang(10), pytest.raises(CheckpointError, match=r"checkpoint.safetensors: checkpoint is a FIFO"):
        load_checkpoint(run / "checkpoint.safetensors", model, optimizer, config)
    with no_hang(10), pytest.raises(CheckpointError, match=r"model.safetensors: checkpoint is a FIFO"):
        load_model_weights(run / "model.safetensors", model)


def _gesture_folder(tmp_path) -> Path:
    folder = tmp_path / "DvsGesture"
    folder.mkdir()
    for user in (1, 24):
        rng = np.random.default_rng(user)
        t = np.sort(rng.integers(0, 2000, 100))
        data = aedat31_bytes(rng.integers(0, 128, 100), rng.integers(0, 128, 100), t, rng.integers(0, 2, 100))
        (folder / f"user{user:02d}_led.aedat").write_bytes(data)
        (folder / f"user{user:02d}_led_labels.csv").write_text(
            "class,startTime_usec,endTime_usec\n1,0,2000\n"
        )
    return folder


def test_fifo_in_place_of_a_gesture_recording(tmp_path):
    folder = _gesture_folder(tmp_path)
    (folder / "user24_led.aedat").unlink()
    os.mkfifo(folder / "user24_led.aedat")
    with no_hang(10), pytest.raises(DataError, match=r"user24_led.aedat: data file is a FIFO"):
        load_dataset("dvs-gesture", "train", tmp_path, frames=2)


def _nmnist_tree(tmp_path) -> Path:
    for split, digit in (("Train", 1), ("Test", 2)):
        folder = tmp_path / "NMNIST" / split / str(digit)
        folder.mkdir(parents=True)
        (folder / "00001.bin").write_bytes(nmnist_bytes([1, 2], [3, 4], [10, 20], [0, 1]))
    return tmp_path / "NMNIST" / "Train" / "1"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda f: (f / "00002.bin").symlink_to(f / "missing.bin"),
            r"00002.bin: data file is a dangling symbolic link",
        ),
        (
            lambda f: (f / "00002.bin").symlink_to(f / "00002.bin"),
            r"00002.bin: data file is a symbolic-link loop",
        ),
    ],
    ids=["dangling", "loop"],
)
def test_broken_links_in_an_extracted_dataset(tmp_path, make, message):
    make(_nmnist_tree(tmp_path))
    with no_hang(10), pytest.raises(DataError, match=message):
        load_dataset("nmnist", "train", tmp_path, frames=2)


def _zip_with(flag: int = 0, method: int | None = None) -> bytes:
    """An N-MNIST zip whose member's header says encrypted (``flag`` bit 0) or ``method``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("Train/1/00001.bin", nmnist_bytes([1], [2], [3], [1]))
        archive.writestr("Test/1/00001.bin", nmnist_bytes([1], [2], [3], [1]))
    data = bytearray(buffer.getvalue())
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature)
        struct.pack_into("<H", data, at + flag_at, flag)
        if method is not None:
            struct.pack_into("<H", data, at + flag_at + 2, method)
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_zip_with(flag=1), r"member Train/1/00001.bin is encrypted"),
        (_zip_with(method=99), r"a zip member cannot be read"),
    ],
    ids=["encrypted", "unsupported method"],
)
def test_nmnist_zip_members_that_cannot_be_read(tmp_path, data, message):
    (tmp_path / "NMNIST").mkdir()
    (tmp_path / "NMNIST" / "nmnist.zip").write_bytes(data)
    with pytest.raises(DataError, match=r"nmnist.zip: " + message):
        load_dataset("nmnist", "train", tmp_path, frames=2)


def test_fifo_archive_does_not_block(tmp_path):
    (tmp_path / "NMNIST").mkdir()
    os.mkfifo(tmp_path / "NMNIST" / "nmnist.tar.gz")
    with no_hang(10), pytest.raises(DataError, match=r"nmnist.tar.gz: (data file|archive) is a FIFO"):
        load_dataset("nmnist", "train", tmp_path, frames=2)


# ============================================================================ §5 silent bad data


@pytest.mark.parametrize(("code", "name"), [(0x0D, "float32"), (0x0C, "int32")])
def test_idx_with_non_byte_elements(tiny_mnist, code, name):
    path = tiny_mnist / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    values = np.array([0, 1, np.nan, 3, 4, 5], dtype=">f4") if code == 0x0D else np.arange(6, dtype=">i4")
    write_idx(path, values.tobytes(), (6,), magic=code << 8 | 1)
    with pytest.raises(DataError, match=rf"train-labels-idx1-ubyte.gz: IDX elements are {name}"):
        load_dataset("mnist", "train", tiny_mnist)


def test_aedat31_negative_timestamps_are_an_error():
    data = bytearray(aedat31_bytes([1, 2, 3], [1, 2, 3], [10, 20, 30], [1, 0, 1]))
    last = len(data) - 4  # the timestamp of the last event
    struct.pack_into("<i", data, last, -5)
    with pytest.raises(DataError, match=r"x.aedat: polarity packet 1 has a negative timestamp"):
        read_aedat31(bytes(data), "x.aedat")


def test_aedat31_decreasing_timestamps_are_a_warning_with_a_count():
    events = read_aedat31(aedat31_bytes([1, 2, 3, 4], [1, 2, 3, 4], [10, 40, 20, 5], [1, 0, 1, 0]), "x.aedat")
    with pytest.warns(DataWarning, match=r"x.aedat: 2 of 4 events go back in time; sorted by time"):
        check_events(events, (128, 128), "x.aedat")
    frames = events_to_frames(events, 4, (128, 128))
    assert frames[0, 0, 4, 4] == 1 and frames[3, 0, 2, 2] == 1  # sorted: t=5 first, t=40 last


@pytest.mark.parametrize("position", [0, 20])
def test_aedat4_data_table_position_inside_the_header(position):
    data = aedat4_bytes(
        np.array([1, 2]), np.array([1, 2]), np.array([5, 6]), np.array([1, 0]), data_table_position=position
    )
    with pytest.raises(
        DataError, match=rf"x.aedat4: the AEDAT4 header puts the data table at byte {position}, before"
    ):
        read_aedat4(data, "x.aedat4")


def test_empty_event_samples_are_a_warning_with_a_count(tmp_path):
    _nmnist_tree(tmp_path)
    only_markers = tmp_path / "NMNIST" / "Train" / "1" / "00002.bin"  # y = 240: overflow markers
    only_markers.write_bytes(nmnist_bytes([0, 0], [240, 240], [0, 0], [0, 0]))
    with pytest.warns(DataWarning, match=r"nmnist train: 1 of 2 samples hold no events"):
        train = load_dataset("nmnist", "train", tmp_path, frames=2)
    assert len(train) == 2 and int(train.images[1].sum()) == 0


def test_npy_with_non_finite_or_wrapping_values():
    array = tonic_npy_bytes([1, 2], [3, 4], [10_000, 20_000], [1, 0])
    bad_t = np.array([[1, 3, 1, np.nan], [2, 4, 0, 20.0]])
    buffer = io.BytesIO()
    np.save(buffer, bad_t)
    with pytest.raises(DataError, match=r"x.npy: 1 timestamps are not finite"):
        read_tonic_npy(buffer.getvalue(), "x.npy")
    wrap_x = np.array([[2**32 + 5, 3, 1, 10], [2, 4, 0, 20]], dtype=np.int64)
    buffer = io.BytesIO()
    np.save(buffer, wrap_x)
    with pytest.raises(DataError, match=r"x.npy: x or y holds values no sensor has"):
        read_tonic_npy(buffer.getvalue(), "x.npy")
    assert len(read_tonic_npy(array, "ok.npy")) == 2


def test_tar_members_are_read_whole_only_when_small(tmp_path):
    """The cap is per format: a normal-sized member still loads."""
    path = tmp_path / "NMNIST" / "nmnist.tar.gz"
    path.parent.mkdir()
    members = {f"{s}/1/00001.bin": nmnist_bytes([1, 2], [3, 4], [10, 20], [0, 1]) for s in ("Train", "Test")}
    path.write_bytes(tar_gz(members))
    assert len(load_dataset("nmnist", "train", tmp_path, frames=2)) == 1
    with tarfile.open(path) as archive:
        assert [m.size for m in archive.getmembers()] == [10, 10]


def test_pickled_checkpoint_is_still_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"w": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_tensors(path)

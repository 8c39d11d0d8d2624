"""Seeded fuzz tests: every file reader, fed mutations of a valid file of its format, ends in a
spikeshield error or a result, within bounded memory and time.

One test per format (the dataset readers, checkpoints, the run folder's JSON). Each starts from
a valid file written byte for byte as the real software writes it (``data/formats.py``) and
applies a few mutations drawn by `hypothesis` (derandomized: the same cases on every run, no
example database): bytes set or copied, integers of 1-8 bytes set to boundary values, cuts and
insertions; for compressed formats the content is mutated before it is compressed as often as
the compressed bytes themselves; for JSON documents values anywhere in the tree are replaced by
hostile ones (wrong types, NaN, 10³⁰, deep nesting, 5,000-digit integers) or removed.

Each case must return or raise a :class:`SpikeshieldError` (``DataWarning`` is allowed), must
allocate at most :data:`MEMORY_LIMIT` (tracemalloc's peak; the seeds are a few kB) and must
finish within :data:`TIME_LIMIT_S`. ``SPIKESHIELD_FUZZ_CASES`` sets the cases per format
(default 100; a long local run: 2000). ``pytest --hypothesis-show-statistics`` shows how many
cases of each format were read and how many refused, by error class.
"""

from __future__ import annotations

import copy
import io
import json
import os
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from spikeshield.data.aedat import read_aedat2_dvs128, read_aedat4, read_aedat31
from spikeshield.data.base import Location
from spikeshield.data.cifar10 import decode_jpeg_archive, read_cifar_batch
from spikeshield.data.dvs_gesture import read_labels_csv, read_tonic_npy
from spikeshield.data.events import check_events, events_to_frames
from spikeshield.data.idx import UNSIGNED_BYTE, read_idx
from spikeshield.data.nmnist import NMNIST, read_nmnist_bin
from spikeshield.errors import DataWarning, SpikeshieldError
from spikeshield.training.checkpoint import load_model_weights, load_tensors, save_model, save_tensors
from spikeshield.training.run_files import read_metrics, read_run_config, read_train_config
from spikeshield.training.trainer import (
    RunState,
    build_model_for,
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
    settings_differences,
)

from .data.formats import (
    aedat2_bytes,
    aedat4_bytes,
    aedat31_bytes,
    cifar_batch_bytes,
    labels_csv,
    nmnist_bytes,
    tonic_npy_bytes,
)
from .limits import MiB, gz, memory_cap, no_hang, peak_memory, tar_gz
from .training import v1_checkpoints as v1

CASES = int(os.environ.get("SPIKESHIELD_FUZZ_CASES", "100"))
MEMORY_LIMIT = 64 * MiB
TIME_LIMIT_S = 20.0
FUZZ = settings(
    max_examples=CASES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
"""The cases of a fuzz test: the same on every run, no example database, no per-case deadline."""
SENSOR128, SENSOR34 = (128, 128), (34, 34)


# ------------------------------------------------------------------------------- mutations

BOUNDARIES = [0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1]
BOUNDARIES += [2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 10**9]

byte_ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, 1 << 20), st.integers(0, 255)),
        st.tuples(
            st.just("int"),
            st.integers(0, 1 << 20),
            st.sampled_from([1, 2, 4, 8]),
            st.sampled_from(BOUNDARIES),
            st.sampled_from(["<", ">"]),
        ),
        st.tuples(st.just("cut"), st.integers(0, 1 << 20)),
        st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("copy"), st.integers(0, 1 << 20), st.integers(0, 1 << 20), st.integers(1, 64)),
    ),
    min_size=1,
    max_size=4,
)

DEEP = json.loads("[" * 200 + "]" * 200)  # deep enough for any schema, shallow enough to write
HOSTILE_VALUES = [None, True, -1, 0, 2**31, 10**30, 1.5, float("nan"), float("inf"), "x", "", [], {}, [1]]
HOSTILE_VALUES += [{"a": 1}, DEEP]
tree_ops = st.lists(
    st.tuples(st.integers(0, 1 << 16), st.sampled_from(range(len(HOSTILE_VALUES) + 2))),
    min_size=1,
    max_size=3,
)


def mutate_bytes(data: bytes, ops: list[tuple]) -> bytes:
    out = bytearray(data)
    for op in ops:
        at = op[1] % (len(out) + 1)
        if op[0] == "set" and out:
            out[at % len(out)] = op[2]
        elif op[0] == "int":
            width, value, order = op[2], op[3], op[4]
            raw = (value % (1 << (8 * width))).to_bytes(width, "little" if order == "<" else "big")
            out[at : at + width] = raw
        elif op[0] == "cut":
            del out[at:]
        elif op[0] == "insert":
            out[at:at] = op[2]
        elif op[0] == "copy" and out:
            start = op[2] % len(out)
            out[at : at + op[3]] = out[start : start + op[3]]
    return bytes(out)


def _slots(tree: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every value in a JSON tree, in a fixed order."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop(0)
        keys = list(node) if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else []
        for key in keys:
            found.append((node, key))
            todo.append(node[key])
    return found


def mutate_tree(tree: Any, ops: list[tuple[int, int]]) -> str:
    tree = json.loads(json.dumps(tree))
    text_values = {len(HOSTILE_VALUES): "digits", len(HOSTILE_VALUES) + 1: "delete"}
    huge = "7" * 5000
    for where, what in ops:
        slots = _slots(tree)
        if not slots:
            break
        node, key = slots[where % len(slots)]
        kind = text_values.get(what)
        if kind == "delete":
            del node[key]
        else:
            node[key] = huge if kind == "digits" else copy.deepcopy(HOSTILE_VALUES[what])  # never shared
    return json.dumps(tree).replace(f'"{huge}"', huge)  # the 5,000 digits as a JSON number


# ------------------------------------------------------------------------------- formats


@dataclass(repr=False)
class Format:
    """A valid file of one format and the spikeshield reader of it."""

    file: str
    read: Callable[[Path], Any]
    seed: bytes
    inner: bytes | None = None
    """The content before compression (mutated, then ``wrap``-ped), if the file is compressed."""
    wrap: Callable[[bytes], bytes] | None = None
    tree: Any = None
    """A JSON document inside the file, mutated structurally and written with ``encode``."""
    encode: Callable[[str], bytes] | None = None


def frames(events, sensor) -> np.ndarray:
    """What a dataset does with a decoded recording: checks, then frames split by count and time."""
    check_events(events, sensor, "fuzz")
    events_to_frames(events, 3, sensor, "count")
    return events_to_frames(events, 3, sensor, "time")


def _events(n: int, size: int, seed: int = 0, t_max: int = 300_000):
    rng = np.random.default_rng(seed)
    x, y, p = rng.integers(0, size, n), rng.integers(0, size, n), rng.integers(0, 2, n)
    return x, y, np.sort(rng.integers(0, t_max, n)), p


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def _nmnist_members() -> dict[str, bytes]:
    splits, digits = ("Train", "Test"), (1, 2)
    return {f"{s}/{d}/0000{d}.bin": nmnist_bytes(*_events(20, 34, d)) for s in splits for d in digits}


def _zip(members: dict[str, bytes]) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _nmnist_archive(path: Path) -> Any:
    location = Location(True, path.parent, [], "archive")
    return NMNIST().build(location, {"frames": 3, "split_by": "time", "first_saccade": False})


def _aedat4(compression: str) -> Format:
    x, y, t, p = _events(40, 128)
    data = aedat4_bytes(x, y, t + 1_700_000_000_000_000, p, compression=compression, per_packet=16)
    read = lambda path: frames(read_aedat4(path.read_bytes(), str(path), SENSOR128), SENSOR128)  # noqa: E731
    return Format("x.aedat4", read, data)


class Seeds(dict):
    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing case
        return "<seed files>"


def formats(folder: Path) -> dict[str, Format]:
    """Every format, its seed file written by the same code or writer as real files."""
    found: dict[str, Format] = Seeds()
    images = bytes(np.random.default_rng(0).integers(0, 256, 3 * 784, dtype=np.uint8))
    idx = struct.pack(">I3I", 0x0803, 3, 28, 28) + images
    read_images = lambda path: read_idx(path, expected_dims=3, element_type=UNSIGNED_BYTE)  # noqa: E731
    found["idx"] = Format("images-idx3-ubyte", read_images, idx)
    found["idx.gz"] = Format("images-idx3-ubyte.gz", read_images, gz(idx), inner=idx, wrap=gz)
    batch = cifar_batch_bytes(np.zeros((2, 3, 32, 32), np.uint8), [3, 9])
    found["cifar10 pickle"] = Format("data_batch_1", read_cifar_batch, batch)
    jpegs = {"train/cat/0001.jpg": _jpeg((200, 10, 10)), "test/dog/0002.jpg": _jpeg((10, 200, 10))}
    found["cifar10 jpeg tar.gz"] = Format("cifar10-jpeg.tar.gz", decode_jpeg_archive, tar_gz(jpegs))
    found["nmnist bin"] = Format(
        "00001.bin",
        lambda path: frames(read_nmnist_bin(path.read_bytes(), str(path)), SENSOR34),
        nmnist_bytes(*_events(40, 34)),
    )
    members = _nmnist_members()
    raw_tar = tar_gz(members)
    found["nmnist tar.gz"] = Format("nmnist.tar.gz", _nmnist_archive, raw_tar)
    found["nmnist zip"] = Format("nmnist.zip", _nmnist_archive, _zip(members))
    x, y, t, p = _events(40, 128)
    found["aedat2"] = Format(
        "x.aedat",
        lambda path: frames(read_aedat2_dvs128(path.read_bytes(), str(path)), SENSOR128),
        aedat2_bytes(x, y, t, p, special_at=5),
    )
    found["aedat3.1"] = Format(
        "user01_led.aedat",
        lambda path: frames(read_aedat31(path.read_bytes(), str(path)), SENSOR128),
        aedat31_bytes(x, y, t, p, per_packet=16),
    )
    for compression in ("none", "lz4", "zstd"):
        found[f"aedat4 {compression}"] = _aedat4(compression)
    found["tonic npy"] = Format(
        "0.npy",
        lambda path: frames(read_tonic_npy(path.read_bytes(), str(path)), SENSOR128),
        tonic_npy_bytes(x, y, t, p),
    )
    rows = [(1, 100, 2000), (11, 3000, 9000)]
    found["labels csv"] = Format("user01_led_labels.csv", read_labels_csv, labels_csv(rows).encode())

    config = v1.config()
    model = v1.patterned_model()
    save_model(folder / "model-seed.safetensors", model, model.spec)
    fresh = build_model_for(config)
    found["model safetensors"] = Format(
        "model.safetensors",
        lambda path: load_model_weights(path, fresh, fresh.spec),
        (folder / "model-seed.safetensors").read_bytes(),
    )
    found["model spec"] = Format(
        "model.safetensors",
        lambda path: load_model_weights(path, fresh, fresh.spec),
        b"",
        tree=model.spec,
        encode=lambda text: _with_metadata(folder / "model-seed.safetensors", "model_spec", text),
    )
    trained, optimizer = v1.after_one_step()
    state = RunState(1, [{"epoch": 1, "train_loss": 0.5, "test_accuracy": 0.25}], 1.5)
    save_checkpoint(folder / "checkpoint-seed.safetensors", trained, optimizer, state, config)

    def resume(path: Path) -> RunState:
        target = build_model_for(config)
        return load_checkpoint(path, target, make_optimizer(config, target), config)

    found["checkpoint safetensors"] = Format(
        "checkpoint.safetensors", resume, (folder / "checkpoint-seed.safetensors").read_bytes()
    )
    _, metadata = load_tensors(folder / "checkpoint-seed.safetensors")
    found["checkpoint run_state"] = Format(
        "checkpoint.safetensors",
        resume,
        b"",
        tree=json.loads(metadata["run_state"]),
        encode=lambda text: _with_metadata(folder / "checkpoint-seed.safetensors", "run_state", text),
    )
    run_config = {"format_version": 1, "train": config.to_dict(), "model_spec": model.spec}
    run_config["environment"] = {"torch": torch.__version__, "threads": 1}

    def read_config(path: Path) -> Any:
        settings_differences(read_run_config(path.parent)["train"], config)
        return read_train_config(path.parent)

    found["config.json"] = Format("config.json", read_config, b"", tree=run_config, encode=str.encode)
    history = [{"epoch": 1, "train_loss": 0.4, "train_accuracy": 0.8, "test_accuracy": 0.75, "lr_end": 0.0}]
    metrics = {"complete": True, "test_accuracy": 0.75, "epochs": 1, "history": history, "dataset": "digits"}
    found["metrics.json"] = Format("metrics.json", read_metrics, b"", tree=metrics, encode=str.encode)
    for fmt in found.values():
        if fmt.tree is not None:
            fmt.seed = fmt.encode(json.dumps(fmt.tree))
    return found


def _with_metadata(seed: Path, key: str, text: str) -> bytes:
    tensors, metadata = load_tensors(seed)
    buffer_path = seed.with_suffix(".mutated")
    save_tensors(buffer_path, tensors, {**metadata, key: text})
    return buffer_path.read_bytes()


FORMAT_NAMES = [
    "idx",
    "idx.gz",
    "cifar10 pickle",
    "cifar10 jpeg tar.gz",
    "nmnist bin",
    "nmnist tar.gz",
    "nmnist zip",
    "aedat2",
    "aedat3.1",
    "aedat4 none",
    "aedat4 lz4",
    "aedat4 zstd",
    "tonic npy",
    "labels csv",
    "model safetensors",
    "model spec",
    "checkpoint safetensors",
    "checkpoint run_state",
    "config.json",
    "metrics.json",
]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Format]:
    return formats(tmp_path_factory.mktemp("fuzz-seeds"))


def test_every_seed_reads_cleanly(seeds, tmp_path):
    """The fuzzing starts from files the readers accept (else it would test nothing)."""
    assert sorted(seeds) == sorted(FORMAT_NAMES)
    for name, fmt in seeds.items():
        path = tmp_path / name.replace(" ", "_") / fmt.file
        path.parent.mkdir()
        path.write_bytes(fmt.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataWarning)
            fmt.read(path)


@pytest.mark.parametrize("name", FORMAT_NAMES)
@FUZZ
@given(layer=st.sampled_from(["outer", "inner", "tree"]), ops=byte_ops, tree_changes=tree_ops)
def test_fuzz(seeds, tmp_path, name, layer, ops, tree_changes):
    fmt = seeds[name]
    if fmt.tree is not None and layer != "outer":
        data = fmt.encode(mutate_tree(fmt.tree, tree_changes))
    elif fmt.inner is not None and layer == "inner":
        data = fmt.wrap(mutate_bytes(fmt.inner, ops))
    else:
        data = mutate_bytes(fmt.seed, ops)
    path = tmp_path / name.replace(" ", "_") / fmt.file
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    check_case(fmt.read, path, name)


def check_case(read: Callable[[Path], Any], path: Path, name: str) -> None:
    """One fuzz case: ``read(path)`` returns or raises a one-line :class:`SpikeshieldError`
    (``DataWarning`` allowed), within :data:`TIME_LIMIT_S` and :data:`MEMORY_LIMIT`."""
    with (
        no_hang(TIME_LIMIT_S),
        memory_cap(4 * MEMORY_LIMIT),
        peak_memory() as peak,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", DataWarning)
        try:
            read(path)
            event("read")
        except SpikeshieldError as exc:
            assert "\n" not in str(exc), str(exc)
            event(type(exc).__name__)
    size = path.stat().st_size
    assert peak.bytes < MEMORY_LIMIT, f"{name}: {peak.bytes / MiB:.0f} MiB for a {size}-byte file"


def test_json_mutations_reach_every_value():
    """The tree mutation can replace any value, the 5,000-digit number is a JSON number."""
    tree = {"a": [1, {"b": 2}]}
    assert len(_slots(tree)) == 4
    text = mutate_tree(tree, [(3, len(HOSTILE_VALUES))])
    assert text == '{"a": [1, {"b": ' + "7" * 5000 + "}]}"
    assert json.loads(mutate_tree(tree, [(0, len(HOSTILE_VALUES) + 1)])) == {}

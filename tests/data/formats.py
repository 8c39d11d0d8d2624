"""Writers of small synthetic files in the exact real formats, headers included.

No real DVS128 Gesture or CIFAR10-DVS files exist on these machines, so the readers are tested
on files written here byte for byte as the recording software writes them: AEDAT 2.0 (jAER),
AEDAT 3.1 (cAER) with IBM's ``_labels.csv``, AEDAT 4.0 (DV: FlatBuffers, optional LZ4/Zstd),
tonic's ``.npy`` layout, N-MNIST's 40-bit ``.bin`` and CIFAR-10's Python 2 pickles.
"""

from __future__ import annotations

import csv
import io
import pickle
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np

# ----------------------------------------------------------------------------- N-MNIST


def nmnist_bytes(x, y, t, p) -> bytes:
    """40-bit big-endian events: x, y, polarity bit 7 + 23-bit timestamp."""
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (x, y, t, p))
    raw = np.zeros((len(t), 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    return raw.tobytes()


# ----------------------------------------------------------------------------- AEDAT 2.0

AEDAT2_HEADER = (
    b"#!AER-DAT2.0\r\n"
    b"# This is a raw AE data file - do not edit\r\n"
    b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
    b"# Timestamps tick is 1 us\r\n"
    b"# created Thu Jan 01 00:00:00 CET 2015\r\n"
)


def aedat2_bytes(x, y, t, p, special_at: int | None = None) -> bytes:
    """DVS128 events as jAER writes them (x mirrored, raw bit 0 = OFF); optionally one sync
    (special) event inserted before event ``special_at``."""
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (x, y, t, p))
    address = (y << 8) | ((127 - x) << 1) | (1 - p)
    pairs = np.stack([address, t], axis=1).astype(">u4")
    if special_at is not None:
        pairs = np.insert(pairs, special_at, np.array([0x8000, 0], dtype=">u4"), axis=0)
    return AEDAT2_HEADER + pairs.tobytes()


# ----------------------------------------------------------------------------- AEDAT 3.1

AEDAT31_HEADER = (
    b"#!AER-DAT3.1\r\n"
    b"#Format: RAW\r\n"
    b"#Source 1: DVS128\r\n"
    b"#Start-Time: 2017-05-30 13:08:43 (TZ+0200)\r\n"
    b"#!END-HEADER\r\n"
)


def aedat31_bytes(x, y, t, p, per_packet: int = 64, invalid_at: int | None = None) -> bytes:
    """Polarity packets (type 1, 8-byte events) plus one special-event packet (type 0) first;
    timestamps above 2³¹ go through the packet's eventTSOverflow. The event at ``invalid_at``
    (if given) is written with its valid bit cleared."""
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (x, y, t, p))
    out = [AEDAT31_HEADER]
    special = struct.pack("<Ii", (0 << 1) | 1, 0)  # a timestamp-reset special event
    out.append(struct.pack("<hhiiiiii", 0, 1, 8, 4, 0, 1, 1, 1) + special)
    for start in range(0, len(t), per_packet):
        sl = slice(start, start + per_packet)
        n = len(t[sl])
        overflow = int(t[sl][0] >> 31)
        assert np.all((t[sl] >> 31) == overflow), "one packet per timestamp-overflow epoch"
        valid = np.ones(n, dtype=np.int64)
        if invalid_at is not None and start <= invalid_at < start + n:
            valid[invalid_at - start] = 0
        data = (x[sl] << 17) | (y[sl] << 2) | (p[sl] << 1) | valid
        events = np.zeros(n, dtype=[("data", "<u4"), ("t", "<i4")])
        events["data"] = data
        events["t"] = t[sl] & 0x7FFFFFFF
        out.append(struct.pack("<hhiiiiii", 1, 1, 8, 4, overflow, n, n, int(valid.sum())))
        out.append(events.tobytes())
    return b"".join(out)


def labels_csv(rows) -> str:
    """IBM's ``_labels.csv``: a header, then class, start and end per gesture (CRLF lines)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["class", "startTime_usec", "endTime_usec"])
    writer.writerows(rows)
    return buf.getvalue()


# ----------------------------------------------------------------------------- AEDAT 4.0


class _FlatBuilder:
    """Front-to-back FlatBuffers writer for the few fixed layouts below (little-endian)."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def align(self, n: int, remainder: int = 0) -> None:
        while len(self.buf) % n != remainder:
            self.buf += b"\0"

    def here(self) -> int:
        return len(self.buf)


def _event_packet(t, x, y, on) -> bytes:
    """A size-prefixed ``EventPacket`` FlatBuffer (identifier EVTS) of 16-byte Event structs."""
    b = _FlatBuilder()
    b.buf += struct.pack("<I", 0)  # root offset, patched below
    b.buf += b"EVTS"
    vtable = b.here()
    b.buf += struct.pack("<HHH", 6, 8, 4)  # vtable: its size, table size, field 0 at +4
    b.align(4)
    table = b.here()
    b.buf += struct.pack("<i", table - vtable)
    field = b.here()
    b.buf += struct.pack("<I", 0)  # offset to the vector, patched below
    b.align(8, 4)  # elements (after the 4-byte length) 8-aligned
    vector = b.here()
    b.buf += struct.pack("<I", len(t))
    events = np.zeros(len(t), dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"), ("pad", "V3")])
    events["t"], events["x"], events["y"], events["on"] = t, x, y, on
    b.buf += events.tobytes()
    struct.pack_into("<I", b.buf, 0, table)
    struct.pack_into("<I", b.buf, field, vector - field)
    return struct.pack("<I", len(b.buf)) + bytes(b.buf)


def _ioheader(compression: int, data_table_position: int, description: str) -> bytes:
    b = _FlatBuilder()
    b.buf += struct.pack("<I", 0)
    b.buf += b"IOHE"
    vtable = b.here()
    # fields: 0 compression (int32) at +4, 1 file_data_position (int64) at +8, 2 description at +16
    b.buf += struct.pack("<HHHHH", 10, 20, 4, 8, 16)
    b.align(8)
    table = b.here()
    b.buf += struct.pack("<iiqI", table - vtable, compression, data_table_position, 0)
    field = table + 16
    b.align(4)
    string = b.here()
    text = description.encode()
    b.buf += struct.pack("<I", len(text)) + text + b"\0"
    struct.pack_into("<I", b.buf, 0, table)
    struct.pack_into("<I", b.buf, field, string - field)
    return bytes(b.buf)


def aedat4_description(width: int = 128, height: int = 128, compression: str = "NONE") -> str:
    return (
        '<dv version="2.0"><node name="outInfo" path="/mainloop/output_file/outInfo/">'
        '<node name="0" path="/mainloop/output_file/outInfo/0/">'
        f'<attr key="compression" type="string">{compression}</attr>'
        '<attr key="originalModuleName" type="string">capture</attr>'
        '<attr key="originalOutputName" type="string">events</attr>'
        '<attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>'
        '<attr key="typeIdentifier" type="string">EVTS</attr>'
        '<node name="info" path="/mainloop/output_file/outInfo/0/info/">'
        f'<attr key="sizeX" type="int">{width}</attr><attr key="sizeY" type="int">{height}</attr>'
        '<attr key="source" type="string">DVS128</attr></node></node></node></dv>\n'
    )


COMPRESSION_CODES = {"none": 0, "lz4": 1, "zstd": 3}


def compress_packet(body: bytes, compression: str) -> bytes:
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.compress(body)
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(body)
    return body


def aedat4_bytes(
    x,
    y,
    t,
    p,
    compression: str = "none",
    per_packet: int = 50,
    width: int = 128,
    height: int = 128,
    data_table_position: int | None = None,
) -> bytes:
    """An AEDAT 4.0 file: magic, IOHeader, event packets, then a trailing data table that the
    header's file_data_position points at (readers must stop before it); a
    ``data_table_position`` given here is written instead of the true one."""
    bodies = [
        compress_packet(_event_packet(t[sl], x[sl], y[sl], p[sl]), compression)
        for sl in (slice(start, start + per_packet) for start in range(0, len(t), per_packet))
    ]
    return aedat4_file(bodies, compression, width, height, data_table_position)


def aedat4_file(
    bodies: list[bytes],
    compression: str = "none",
    width: int = 128,
    height: int = 128,
    data_table_position: int | None = None,
) -> bytes:
    """An AEDAT 4.0 file of already (compressed) packet bodies on stream 0, and a data table."""
    code = COMPRESSION_CODES[compression]
    packets = b"".join(struct.pack("<iI", 0, len(body)) + body for body in bodies)
    description = aedat4_description(width, height, compression.upper())
    header_len = len(_ioheader(code, 0, description))
    magic = b"#!AER-DAT4.0\r\n"
    data_table = len(magic) + 4 + header_len + len(packets)
    if data_table_position is not None:
        data_table = data_table_position
    header = _ioheader(code, data_table, description)
    table = b"\x10\x00\x00\x00FTAB" + bytes(24)  # stands in for the FileDataTable FlatBuffer
    return magic + struct.pack("<I", len(header)) + header + packets + table


def aedat4_event_packet(x, y, t, p) -> bytes:
    """One uncompressed size-prefixed ``EventPacket`` FlatBuffer."""
    return _event_packet(t, x, y, p)


# ----------------------------------------------------------------------------- tonic .npy


def tonic_npy_bytes(x, y, t_us, p) -> bytes:
    array = np.stack([x, y, p, np.asarray(t_us) // 1000], axis=1).astype(np.int64)
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- CIFAR-10 pickles


class Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote: str and bytes as BINSTRING (CIFAR-10's batches)."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def cifar_batch_bytes(images: np.ndarray, labels, batch_label: str = "training batch 1 of 5") -> bytes:
    """A ``cifar-10-batches-py`` file: {batch_label, labels, data [N, 3072] uint8, filenames}."""
    record = {
        "batch_label": batch_label,
        "labels": [int(v) for v in labels],
        "data": np.ascontiguousarray(images.reshape(len(images), 3072), dtype=np.uint8),
        "filenames": [f"image_{i:05d}.png" for i in range(len(images))],
    }
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(record)
    # numpy 2 names its reconstructor numpy._core; the real (2009) files say numpy.core
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_cifar_batches(
    folder: Path, per_batch: int = 4, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A tiny ``cifar-10-batches-py`` folder; returns the images/labels written per file."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        images = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch)
        (folder / name).write_bytes(cifar_batch_bytes(images, labels))
        written[name] = (images, labels)
    meta = {
        "label_names": [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ]
    }
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(meta)
    (folder / "batches.meta").write_bytes(buffer.getvalue())
    return written

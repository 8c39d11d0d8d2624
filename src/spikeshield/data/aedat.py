"""Readers for the AEDAT event-camera file formats (iniVation / jAER), without dependencies.

- **AEDAT 2.0** (jAER, ``#!AER-DAT2.0``): ASCII header lines starting with ``#``, then
  big-endian pairs (uint32 address, uint32 timestamp µs). For the DVS128 the address holds
  ``y = bits 8-14``, ``x = 127 − bits 1-7`` and ``polarity = 1 − bit 0``, exactly as jAER's
  ``DVS128.Extractor`` decodes it (x mirrored, raw bit 0 = OFF); addresses with the sync bit
  (15) or bit 31 set are special events and are dropped. Used by the original CIFAR10-DVS.
- **AEDAT 3.1** (cAER / libcaer, ``#!AER-DAT3.1``): header lines up to ``#!END-HEADER``, then
  packets, each a 28-byte little-endian header (int16 eventType, int16 eventSource,
  int32 eventSize, eventTSOffset, eventTSOverflow, eventCapacity, eventNumber, eventValid) and
  ``eventCapacity × eventSize`` bytes of events. Polarity events (type 1, 8 bytes) are
  uint32 data (bit 0 valid, bit 1 polarity, bits 2-16 y, bits 17-31 x) and int32 timestamp;
  the full timestamp is ``eventTSOverflow << 31 | timestamp``. Used by DVS128 Gesture.
- **AEDAT 4.0** (DV, ``#!AER-DAT4.0\\r\\n``): a uint32 length and an ``IOHeader`` FlatBuffer
  (compression, position of the trailing data table, XML description of the streams), then
  packets: int32 stream id, int32 size, and a (possibly LZ4- or Zstd-compressed) size-prefixed
  ``EventPacket`` FlatBuffer (identifier ``EVTS``) whose elements are 16-byte structs
  ``{int64 t; int16 x; int16 y; bool on}``. Used by the CIFAR10-DVS AEDAT4 conversion.
  LZ4 needs the ``lz4`` package and Zstd the ``zstandard`` package (``pip install
  spikeshield[events]``); uncompressed files need nothing.

Every reader takes the file's bytes and a name for errors, and returns :class:`Events`; a
truncated or malformed file raises one :class:`DataError` naming it and the problem.
"""

from __future__ import annotations

import io
import struct
import xml.etree.ElementTree as ET
from typing import Any, BinaryIO

import numpy as np

from spikeshield.data.events import Events
from spikeshield.errors import DataError

AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
AEDAT4_EVENT = np.dtype(
    {
        "names": ["t", "x", "y", "on"],
        "formats": ["<i8", "<i2", "<i2", "u1"],
        "offsets": [0, 8, 10, 12],
        "itemsize": 16,
    }
)
AEDAT31_PACKET_HEADER = struct.Struct("<hhiiiiii")
POLARITY_EVENT = 1
COMPRESSIONS = {0: "none", 1: "lz4", 2: "lz4-high", 3: "zstd", 4: "zstd-high"}
MAX_PACKET_BYTES = 1 << 28
"""The largest uncompressed AEDAT4 packet read (16 M events; DV writes a few thousand per packet)."""


def _header_lines(data: bytes, where: str, end_marker: bytes | None) -> tuple[list[bytes], int]:
    """The ``#`` header lines and the offset of the first binary byte after them."""
    lines: list[bytes] = []
    pos = 0
    while pos < len(data) and data[pos : pos + 1] == b"#":
        end = data.find(b"\n", pos)
        if end < 0:
            raise DataError(f"{where}: header line never ends; the file is truncated or not AEDAT")
        line = data[pos : end + 1]
        lines.append(line.rstrip(b"\r\n"))
        pos = end + 1
        if end_marker is not None and line.rstrip(b"\r\n") == end_marker:
            return lines, pos
    if end_marker is not None:
        raise DataError(f"{where}: no {end_marker.decode()} line; the header is truncated or not AEDAT 3")
    return lines, pos


def _version(lines: list[bytes], where: str) -> str:
    if not lines or not lines[0].startswith(b"#!AER-DAT"):
        first = lines[0][:40] if lines else b""
        raise DataError(f"{where}: not an AEDAT file (first line {first!r}, expected '#!AER-DAT<version>')")
    return lines[0][len(b"#!AER-DAT") :].decode("ascii", "replace").strip()


def read_aedat2_dvs128(data: bytes, where: str) -> Events:
    """Decode an AEDAT 2.0 recording of a DVS128 (see the module docstring)."""
    lines, start = _header_lines(data, where, None)
    version = _version(lines, where)
    if not version.startswith("2"):
        raise DataError(f"{where}: AEDAT version {version}, expected 2.0 (jAER) for this reader")
    body = len(data) - start
    if body % 8:
        raise DataError(
            f"{where}: {body} bytes of events is not a whole number of 8-byte (address, timestamp) "
            "pairs; the file is truncated or corrupt"
        )
    raw = np.frombuffer(data, dtype=">u4", offset=start).reshape(-1, 2)
    address, timestamp = raw[:, 0], raw[:, 1]
    real = (address & np.uint32(0x80008000)) == 0
    address, timestamp = address[real], timestamp[real]
    x = 127 - ((address >> 1) & 0x7F).astype(np.int32)
    y = ((address >> 8) & 0x7F).astype(np.int32)
    p = (1 - (address & 1)).astype(np.uint8)
    return Events(x, y, timestamp.astype(np.int64), p)


def read_aedat31(data: bytes, where: str) -> Events:
    """Decode the polarity events of an AEDAT 3.1 recording (see the module docstring)."""
    lines, pos = _header_lines(data, where, b"#!END-HEADER")
    version = _version(lines, where)
    if not version.startswith("3"):
        raise DataError(f"{where}: AEDAT version {version}, expected 3.x for this reader")
    chunks: list[tuple[np.ndarray, np.ndarray]] = []
    packet = 0
    size = AEDAT31_PACKET_HEADER.size
    while pos < len(data):
        if len(data) - pos < size:
            raise DataError(f"{where}: packet {packet} header cut short; the file is truncated")
        kind, _source, event_size, ts_offset, overflow, capacity, number, _valid = (
            AEDAT31_PACKET_HEADER.unpack_from(data, pos)
        )
        pos += size
        if event_size <= 0 or capacity < 0 or not 0 <= number <= capacity:
            raise DataError(
                f"{where}: packet {packet} has a bad header (eventSize {event_size}, eventCapacity "
                f"{capacity}, eventNumber {number}); the file is corrupt"
            )
        length = capacity * event_size
        if len(data) - pos < length:
            raise DataError(
                f"{where}: packet {packet} needs {length} bytes of events but only {len(data) - pos} "
                "remain; the file is truncated"
            )
        if kind == POLARITY_EVENT:
            if event_size != 8 or ts_offset != 4:
                raise DataError(
                    f"{where}: polarity packet {packet} has eventSize {event_size} and eventTSOffset "
                    f"{ts_offset}, expected 8 and 4"
                )
            raw = np.frombuffer(
                data, dtype=np.dtype([("data", "<u4"), ("t", "<i4")]), count=number, offset=pos
            )
            valid = (raw["data"] & 1) == 1
            if overflow < 0 or (raw["t"][valid] < 0).any():
                raise DataError(
                    f"{where}: polarity packet {packet} has a negative timestamp (overflow {overflow}); "
                    "AEDAT 3.1 timestamps are 31-bit counts, the file is corrupt"
                )
            chunks.append((raw["data"], (np.int64(overflow) << 31) | raw["t"].astype(np.int64)))
        pos += length
        packet += 1
    if not chunks:
        return Events(*(np.zeros(0, dtype=d) for d in (np.int32, np.int32, np.int64, np.uint8)))
    word = np.concatenate([c[0] for c in chunks])
    t = np.concatenate([c[1] for c in chunks])
    valid = (word & 1) == 1
    word, t = word[valid], t[valid]
    x = ((word >> 17) & 0x7FFF).astype(np.int32)
    y = ((word >> 2) & 0x7FFF).astype(np.int32)
    p = ((word >> 1) & 1).astype(np.uint8)
    return Events(x, y, t, p)


class _FlatBufferError(Exception):
    pass


class _Table:
    """Bounds-checked access to one FlatBuffers table (little-endian; offsets per the spec)."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        self.vtable = pos - self._read("<i", pos)
        self.vtable_size = self._read("<H", self.vtable)

    def _read(self, fmt: str, offset: int) -> Any:
        if offset < 0 or offset + struct.calcsize(fmt) > len(self.buf):
            raise _FlatBufferError(f"offset {offset} lies outside the {len(self.buf)}-byte buffer")
        return struct.unpack_from(fmt, self.buf, offset)[0]

    def field(self, index: int) -> int:
        """Absolute position of field ``index``, or 0 when it is absent (default value)."""
        entry = 4 + 2 * index
        if entry >= self.vtable_size:
            return 0
        rel = self._read("<H", self.vtable + entry)
        return self.pos + rel if rel else 0

    def scalar(self, index: int, fmt: str, default: Any) -> Any:
        at = self.field(index)
        return self._read(fmt, at) if at else default

    def vector(self, index: int) -> tuple[int, int]:
        """``(position of the first element, element count)`` of a vector field (0, 0 if absent)."""
        at = self.field(index)
        if not at:
            return 0, 0
        start = at + self._read("<I", at)
        return start + 4, self._read("<I", start)

    def string(self, index: int) -> bytes:
        start, length = self.vector(index)
        if start + length > len(self.buf):
            raise _FlatBufferError("string runs past the end of the buffer")
        return self.buf[start : start + length]


def _root(buf: bytes) -> _Table:
    if len(buf) < 8:
        raise _FlatBufferError(f"{len(buf)}-byte buffer is too short")
    return _Table(buf, struct.unpack_from("<I", buf, 0)[0])


def _packet_reader(payload: bytes, compression: int, where: str) -> BinaryIO:
    """A file-like reader of a packet's uncompressed bytes (decompressing as it is read)."""
    if compression == 0:
        return io.BytesIO(payload)
    if compression in (1, 2):
        try:
            import lz4.frame
        except ImportError:
            raise DataError(
                f"{where}: packets are LZ4-compressed; install the 'lz4' package "
                "(pip install 'spikeshield[events]') to read it"
            ) from None
        return lz4.frame.LZ4FrameFile(io.BytesIO(payload))
    if compression in (3, 4):
        try:
            import zstandard
        except ImportError:
            raise DataError(
                f"{where}: packets are Zstd-compressed; install the 'zstandard' package "
                "(pip install 'spikeshield[events]') to read it"
            ) from None
        return zstandard.ZstdDecompressor().stream_reader(payload)
    raise DataError(f"{where}: unknown AEDAT4 compression code {compression}")


def _read_up_to(reader: BinaryIO, count: int) -> bytes:
    parts, got = [], 0
    while got < count:
        chunk = reader.read(count - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _packet_flatbuffer(payload: bytes, compression: int, where: str, packet: int) -> bytes:
    """The size-prefixed FlatBuffer of one packet, inflated no further than its size prefix says
    (and never past :data:`MAX_PACKET_BYTES`): a compressed bomb stops after a few bytes."""
    reader = _packet_reader(payload, compression, where)
    try:
        head = _read_up_to(reader, 4)
        if len(head) < 4:
            raise _FlatBufferError(f"{len(head)} bytes, too short for its size prefix")
        (prefix,) = struct.unpack("<I", head)
        if prefix > MAX_PACKET_BYTES:
            raise _FlatBufferError(f"size prefix says {prefix} bytes, more than any packet holds")
        flat = _read_up_to(reader, prefix)
    except _FlatBufferError as exc:
        raise DataError(f"{where}: event packet {packet} is malformed ({exc})") from None
    except Exception as exc:  # lz4 / zstandard raise their own error types
        raise DataError(f"{where}: packet {packet} does not decompress ({exc})") from None
    if len(flat) != prefix:
        raise DataError(
            f"{where}: event packet {packet} is malformed "
            f"(size prefix says {prefix} bytes, {len(flat)} present)"
        )
    return flat


def _event_streams(description: bytes, where: str) -> dict[int, tuple[int, int]]:
    """Stream id → (sizeX, sizeY) of every ``EVTS`` stream in the header's XML description."""
    try:
        root = ET.fromstring(description.decode("utf-8"))
    except (ET.ParseError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: the AEDAT4 header's stream description is not valid XML ({exc})") from None
    streams: dict[int, tuple[int, int]] = {}
    for out in root.iter("node"):
        if out.get("name") != "outInfo":
            continue
        for stream in out.findall("node"):
            attrs = {a.get("key"): (a.text or "").strip() for a in stream.findall("attr")}
            if attrs.get("typeIdentifier") != "EVTS":
                continue
            info = {
                a.get("key"): (a.text or "").strip()
                for n in stream.findall("node")
                for a in n.findall("attr")
            }
            try:
                streams[int(stream.get("name", ""))] = (int(info.get("sizeX", 0)), int(info.get("sizeY", 0)))
            except ValueError:
                raise DataError(
                    f"{where}: AEDAT4 stream {stream.get('name')!r} has a bad id or size"
                ) from None
    return streams


def read_aedat4(data: bytes, where: str, sensor: tuple[int, int] | None = None) -> Events:
    """Decode the polarity events of an AEDAT 4.0 recording (see the module docstring).

    ``sensor`` (H, W), if given, must match the event stream's declared sizeY × sizeX.
    """
    if not data.startswith(AEDAT4_MAGIC):
        raise DataError(
            f"{where}: not an AEDAT 4.0 file (first bytes {data[:14]!r}, expected {AEDAT4_MAGIC!r})"
        )
    pos = len(AEDAT4_MAGIC)
    try:
        (header_size,) = struct.unpack_from("<I", data, pos)
        header = data[pos + 4 : pos + 4 + header_size]
        if len(header) != header_size:
            raise _FlatBufferError(f"header needs {header_size} bytes, {len(header)} remain")
        table = _root(header)
        compression = table.scalar(0, "<i", 0)
        data_table = table.scalar(1, "<q", -1)
        description = table.string(2)
    except (struct.error, _FlatBufferError) as exc:
        raise DataError(
            f"{where}: unreadable AEDAT4 header ({exc}); the file is truncated or corrupt"
        ) from None
    streams = _event_streams(description, where)
    if not streams:
        raise DataError(f"{where}: the AEDAT4 header declares no event (EVTS) stream")
    if sensor is not None:
        for stream_id, (size_x, size_y) in streams.items():
            if (size_y, size_x) != sensor:
                raise DataError(
                    f"{where}: event stream {stream_id} is {size_x}×{size_y}, "
                    f"expected {sensor[1]}×{sensor[0]}"
                )
    pos += 4 + header_size
    if data_table == -1 or data_table > len(data):  # no table, or cut off (an error below)
        end = len(data)
    elif data_table >= pos:
        end = data_table
    else:
        raise DataError(
            f"{where}: the AEDAT4 header puts the data table at byte {data_table}, before the "
            f"first packet (byte {pos}; -1 means no table); the file is corrupt"
        )
    chunks: list[np.ndarray] = []
    packet = 0
    while pos < end:
        if end - pos < 8:
            raise DataError(f"{where}: packet {packet} header cut short; the file is truncated")
        stream_id, size = struct.unpack_from("<iI", data, pos)
        pos += 8
        if end - pos < size:
            raise DataError(
                f"{where}: packet {packet} needs {size} bytes but only {end - pos} remain; "
                "the file is truncated"
            )
        if stream_id in streams:
            flat = _packet_flatbuffer(data[pos : pos + size], compression, where, packet)
            try:
                if flat[4:8] != b"EVTS":
                    raise _FlatBufferError(f"identifier {flat[4:8]!r}, expected b'EVTS'")
                start, count = _root(flat).vector(0)
                if count and start + 16 * count > len(flat):
                    raise _FlatBufferError(f"{count} events run past the end of the packet")
            except (struct.error, _FlatBufferError) as exc:
                raise DataError(f"{where}: event packet {packet} is malformed ({exc})") from None
            if count:
                chunks.append(np.frombuffer(flat, dtype=AEDAT4_EVENT, count=count, offset=start))
        pos += size
        packet += 1
    if data_table > len(data):
        raise DataError(
            f"{where}: the AEDAT4 header puts the data table at byte {data_table}, past the end of "
            f"the file ({len(data)} bytes); the file is truncated"
        )
    if not chunks:
        return Events(*(np.zeros(0, dtype=d) for d in (np.int32, np.int32, np.int64, np.uint8)))
    events = np.concatenate(chunks)
    return Events(
        events["x"].astype(np.int32),
        events["y"].astype(np.int32),
        events["t"].astype(np.int64),
        (events["on"] != 0).astype(np.uint8),
    )

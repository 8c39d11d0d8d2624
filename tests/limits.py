"""Bounds for tests of hostile files: no hang (a timer), bounded memory (tracemalloc's peak),
and small files that inflate hugely (gzip, tar.gz, LZ4 and Zstd bombs built in streaming mode,
so a test never holds the inflated bytes itself)."""

from __future__ import annotations

import contextlib
import gzip
import io
import resource
import signal
import struct
import tarfile
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

MiB = 1 << 20


class Hang(Exception):
    """A call did not return within its time limit."""


@contextlib.contextmanager
def no_hang(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` if the block runs longer than ``seconds`` (SIGALRM; interrupts
    blocking system calls such as opening a FIFO)."""

    def alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def memory_cap(extra: int) -> Iterator[None]:
    """Let the process's data segment grow by at most ``extra`` bytes inside the block
    (``RLIMIT_DATA``): a runaway allocation is a ``MemoryError`` there, not the machine's OOM
    killer ending the whole test run."""
    status = Path("/proc/self/status")
    if not status.exists():  # not Linux: tracemalloc's peak still bounds what it can see
        yield
        return
    data_kb = next(
        int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmData:")
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = data_kb * 1024 + extra
    resource.setrlimit(
        resource.RLIMIT_DATA, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard)
    )
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


class Peak:
    bytes: int = 0


@contextlib.contextmanager
def peak_memory() -> Iterator[Peak]:
    """The peak of Python and numpy allocations (tracemalloc) inside the block."""
    peak = Peak()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield peak
    finally:
        peak.bytes = tracemalloc.get_traced_memory()[1] - base
        if started:
            tracemalloc.stop()


def gzip_bomb(prefix: bytes, zeros: int) -> bytes:
    """A gzip file of ``prefix`` followed by ``zeros`` zero bytes, built without ever holding
    them: after a full flush deflate forgets its window, so every 1 MiB block of zeros compresses
    to the same bytes, which are repeated. (The trailer's CRC is not that of the content: a
    reader that stops where the format says never gets there; one that inflates all fails.)"""
    assert zeros % MiB == 0
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = z.compress(prefix) + z.flush(zlib.Z_FULL_FLUSH)
    block = z.compress(bytes(MiB)) + z.flush(zlib.Z_FULL_FLUSH)
    again = z.compress(bytes(MiB)) + z.flush(zlib.Z_FULL_FLUSH)
    assert block == again
    tail = z.flush(zlib.Z_FINISH)
    size = (len(prefix) + zeros) & 0xFFFFFFFF
    body = head + block * (zeros // MiB) + tail
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body + struct.pack("<II", 0, size)


def tar_gz_bomb(name: str, size: int) -> bytes:
    """A .tar.gz whose member ``name`` is ``size`` zero bytes (a few kB per GiB)."""
    info = tarfile.TarInfo(name)
    info.size = size
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    return gzip_bomb(header, size)


def lz4_bomb(prefix: bytes, zeros: int) -> bytes:
    """An LZ4 frame of ``prefix`` and ``zeros`` zero bytes, compressed 1 MiB at a time."""
    import lz4.frame

    compressor = lz4.frame.LZ4FrameCompressor()
    out = [compressor.begin(), compressor.compress(prefix)]
    chunk = bytes(MiB)
    out += [compressor.compress(chunk) for _ in range(zeros // MiB)]
    out.append(compressor.flush())
    return b"".join(out)


def zstd_bomb(prefix: bytes, zeros: int) -> bytes:
    """A Zstd frame of ``prefix`` and ``zeros`` zero bytes, compressed 1 MiB at a time."""
    import zstandard

    compressor = zstandard.ZstdCompressor().compressobj()
    out = [compressor.compress(prefix)]
    chunk = bytes(MiB)
    out += [compressor.compress(chunk) for _ in range(zeros // MiB)]
    out.append(compressor.flush())
    return b"".join(out)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()

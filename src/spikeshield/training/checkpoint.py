"""Checkpoints in the safetensors format, read and written without executing any code.

The safetensors layout is: 8-byte little-endian header length N, N bytes of JSON header
(``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}``), then the raw
little-endian tensor bytes. Reading it parses JSON and copies bytes, nothing else, so a
crafted file (a pickle renamed ``.safetensors``, say) is rejected with a clear error instead
of running code. It is written here directly so the core depends only on torch and numpy;
files are interchangeable with the ``safetensors`` package (checked in the tests).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spikeshield.errors import CheckpointError
from spikeshield.io import atomic_write_bytes

FORMAT_VERSION = 1
MAX_HEADER = 100 * 1024 * 1024

_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_FROM_NAME = {v: k for k, v in _DTYPES.items()}


def encode_safetensors(tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """Serialise ``tensors`` (and string ``metadata``) to safetensors bytes."""
    header: dict[str, Any] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors metadata must map str to str")
        header["__metadata__"] = metadata
    blobs: list[bytes] = []
    offset = 0
    for name, tensor in tensors.items():
        if tensor.dtype not in _DTYPES:
            raise TypeError(f"cannot save tensor {name!r} of dtype {tensor.dtype}")
        t = tensor.detach().to("cpu").contiguous()
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {
            "dtype": _DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # align the data section to 8 bytes
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def decode_safetensors(raw: bytes, source: str = "checkpoint") -> tuple[dict[str, Tensor], dict[str, str]]:
    """Parse safetensors bytes into tensors and metadata, validating every offset."""
    if len(raw) < 8:
        raise CheckpointError(f"{source}: too short to be a safetensors file ({len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER or 8 + n > len(raw):
        raise CheckpointError(
            f"{source}: not a safetensors file (header length {n} does not fit the {len(raw)}-byte file); "
            "it may be a pickle or another format, which spikeshield never loads"
        )
    try:
        header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{source}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{source}: safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    data = memoryview(raw)[8 + n :]
    tensors: dict[str, Tensor] = {}
    for name, entry in header.items():
        try:
            dtype = _FROM_NAME[entry["dtype"]]
            shape = [int(s) for s in entry["shape"]]
            start, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{source}: malformed safetensors entry for {name!r}") from None
        itemsize = torch.empty((), dtype=dtype).element_size()
        count = 1
        for s in shape:
            count *= s
        if not 0 <= start <= end <= len(data) or end - start != count * itemsize:
            raise CheckpointError(f"{source}: tensor {name!r} has inconsistent offsets (truncated file?)")
        buf = bytearray(data[start:end])
        flat = torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.empty(0, dtype=torch.uint8)
        tensors[name] = flat.view(dtype).reshape(shape) if count else torch.empty(shape, dtype=dtype)
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def save_tensors(
    path: str | os.PathLike[str], tensors: dict[str, Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write a safetensors file atomically."""
    atomic_write_bytes(path, encode_safetensors(tensors, metadata))


def load_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file; a missing or malformed file raises :class:`CheckpointError`."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {p}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {p}: {exc.strerror or exc}") from None
    return decode_safetensors(raw, source=str(p))


def save_model(path: str | os.PathLike[str], model: torch.nn.Module, spec: dict[str, Any]) -> None:
    """Save a model's weights with its spec and the format version in the metadata."""
    metadata = {
        "format": "spikeshield-model",
        "format_version": str(FORMAT_VERSION),
        "model_spec": json.dumps(spec),
    }
    save_tensors(path, dict(model.state_dict()), metadata)


def load_model_weights(
    path: str | os.PathLike[str], model: torch.nn.Module, spec: dict[str, Any] | None = None
) -> None:
    """Load weights saved by :func:`save_model` into ``model``, checking they belong to it."""
    tensors, metadata = load_tensors(path)
    check_metadata(path, metadata, "spikeshield-model", spec)
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if extra:
            parts.append(f"unexpected {extra[:3]}")
        if wrong:
            parts.append(f"shape mismatch for {wrong[:3]}")
        raise CheckpointError(f"{path}: weights do not fit this model ({'; '.join(parts)})")
    model.load_state_dict(tensors)


def check_metadata(
    path: str | os.PathLike[str], metadata: dict[str, str], kind: str, spec: dict[str, Any] | None
) -> None:
    """Check a checkpoint's format, version and (if given) model spec."""
    if metadata.get("format") != kind:
        raise CheckpointError(f"{path}: not a {kind} file (format {metadata.get('format')!r})")
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path}: format version {version}, this spikeshield reads version {FORMAT_VERSION}"
        )
    if spec is not None and "model_spec" in metadata:
        saved = json.loads(metadata["model_spec"])
        if saved != json.loads(json.dumps(spec)):
            diffs = sorted(k for k in set(saved) | set(spec) if saved.get(k) != spec.get(k))
            detail = ", ".join(f"{k}: saved {saved.get(k)!r} vs requested {spec.get(k)!r}" for k in diffs[:3])
            raise CheckpointError(f"{path}: checkpoint is for a different model ({detail})")

"""Checkpoints in the safetensors format, read and written without executing any code.

The ``safetensors`` package (the format's reference implementation) encodes and decodes: an
8-byte little-endian header length N, N bytes of JSON header (``{name: {"dtype", "shape",
"data_offsets"}, "__metadata__": {str: str}}``), then the raw tensor bytes. Reading parses JSON
and copies bytes, nothing else, so a crafted file (a pickle renamed ``.safetensors``, say) is
refused with one clear line instead of running code. The package checks the header (dtypes,
shapes, offsets against the file); spikeshield checks the rest against schemas (metadata: string
values; ``model_spec`` and ``run_state``: typed JSON, :mod:`spikeshield.schema`) and checks that
every tensor fits the model it is loaded into (names, shapes, kind of dtype) before changing
anything. spikeshield adds its metadata (format, format version, model spec, run state), atomic
writes (:mod:`spikeshield.io`) and its errors. Files written by spikeshield's earlier
hand-written encoder load unchanged (tested).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import Tensor

from spikeshield.errors import CheckpointError
from spikeshield.io import atomic_write_bytes, read_regular
from spikeshield.schema import convert, decode_json

FORMAT_VERSION = 1


def save_tensors(
    path: str | os.PathLike[str], tensors: dict[str, Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` (and string ``metadata``) as a safetensors file, atomically.

    Each tensor is copied to a contiguous CPU tensor of its own first, so views and tensors
    that share storage (which the format cannot express) are saved as plain values."""
    own = {k: v.detach().to("cpu").clone(memory_format=torch.contiguous_format) for k, v in tensors.items()}
    try:
        raw = safetensors.torch.save(own, metadata)
    except KeyError as exc:  # the package's dtype table
        raise TypeError(f"safetensors cannot store tensors of dtype {exc.args[0]}") from None
    atomic_write_bytes(path, raw)


def load_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file into tensors and metadata.

    Raises:
        CheckpointError: the file is missing, unreadable, truncated or not safetensors.
    """
    p = Path(path)
    raw = read_regular(p, "checkpoint", error=CheckpointError)
    if len(raw) < 8:
        raise CheckpointError(f"{p}: too short to be a safetensors file ({len(raw)} bytes)")
    try:
        tensors = safetensors.torch.load(raw)
    except (SafetensorError, KeyError, ValueError, OverflowError) as exc:
        reason = str(exc).partition(": ")[2] or str(exc)
        raise CheckpointError(
            f"{p}: not a safetensors file ({reason}): truncated, or a pickle or another format, "
            "which spikeshield never loads"
        ) from None
    # the package validated the header but returns no metadata: read it again, checked
    header = decode_json(
        raw[8 : 8 + int.from_bytes(raw[:8], "little")], dict[str, Any], f"{p}: header", error=CheckpointError
    )
    metadata = convert(
        header.get("__metadata__") or {}, dict[str, str], f"{p}: __metadata__", error=CheckpointError
    )
    return tensors, metadata


def tensors_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the tensors of a safetensors file: each tensor's name, dtype, shape and bytes,
    in name order. Equal tensors give equal digests whatever the order of the file's header
    (the ``safetensors`` package writes its metadata keys in another order in each process) and
    whatever its metadata; which weights an evaluation was made from (``weights_sha256``).

    Raises:
        CheckpointError: as :func:`load_tensors` (the file is missing, truncated or not safetensors).
    """
    tensors, _ = load_tensors(path)
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode() + b"\0")
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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
    check_fits(path, tensors, model.state_dict())
    model.load_state_dict(tensors)


def _kind(t: Tensor) -> str:
    if t.dtype == torch.bool:
        return "bool"
    return "floating-point" if t.is_floating_point() or t.is_complex() else "integer"


def check_fits(
    path: str | os.PathLike[str], tensors: Mapping[str, Tensor], own: Mapping[str, Tensor]
) -> None:
    """Raise a :class:`CheckpointError` unless ``tensors`` has exactly the names of ``own`` (a
    ``state_dict``), each with the same shape and the same kind of dtype (floating-point,
    integer or bool; a float16 copy of float32 weights fits, integer weights do not)."""
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    common = sorted(set(own) & set(tensors))
    wrong = [k for k in common if own[k].shape != tensors[k].shape]
    kinds = [k for k in common if _kind(own[k]) != _kind(tensors[k])]
    if missing or extra or wrong or kinds:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if extra:
            parts.append(f"unexpected {extra[:3]}")
        if wrong:
            parts.append(f"shape mismatch for {wrong[:3]}")
        if kinds:
            k = kinds[0]
            parts.append(f"{k} holds {tensors[k].dtype}, the model {own[k].dtype}")
        raise CheckpointError(f"{path}: weights do not fit this model ({'; '.join(parts)})")


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
        saved = decode_json(
            metadata["model_spec"], dict[str, Any], f"{path}: model_spec", error=CheckpointError
        )
        if saved != json.loads(json.dumps(spec)):
            diffs = sorted(k for k in set(saved) | set(spec) if saved.get(k) != spec.get(k))
            detail = ", ".join(f"{k}: saved {saved.get(k)!r} vs requested {spec.get(k)!r}" for k in diffs[:3])
            raise CheckpointError(f"{path}: checkpoint is for a different model ({detail})")

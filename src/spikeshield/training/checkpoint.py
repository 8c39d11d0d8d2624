"""Checkpoints in the safetensors format, read and written without executing any code.

The ``safetensors`` package (the format's reference implementation) encodes and decodes: an
8-byte little-endian header length N, N bytes of JSON header (``{name: {"dtype", "shape",
"data_offsets"}, "__metadata__": {str: str}}``), then the raw tensor bytes. Reading parses JSON
and copies bytes, nothing else, so a crafted file (a pickle renamed ``.safetensors``, say) is
refused with one clear line instead of running code. spikeshield adds its metadata (format,
format version, model spec, run state), atomic writes (:mod:`spikeshield.io`) and its errors.
Files written by spikeshield's earlier hand-written encoder load unchanged (tested).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import Tensor

from spikeshield.errors import CheckpointError
from spikeshield.io import atomic_write_bytes

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
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {p}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {p}: {exc.strerror or exc}") from None
    if len(raw) < 8:
        raise CheckpointError(f"{p}: too short to be a safetensors file ({len(raw)} bytes)")
    try:
        tensors = safetensors.torch.load(raw)
    except (SafetensorError, KeyError, ValueError) as exc:
        reason = str(exc).partition(": ")[2] or str(exc)
        raise CheckpointError(
            f"{p}: not a safetensors file ({reason}): truncated, or a pickle or another format, "
            "which spikeshield never loads"
        ) from None
    # the package validated the header (metadata included: str to str) but returns no metadata
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    return tensors, header.get("__metadata__") or {}


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

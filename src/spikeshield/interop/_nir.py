"""What export and import share: the optional ``nir`` import, the error type, the tolerances."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from spikeshield.errors import SpikeshieldError

#: relative tolerance when a parameter read from a file is compared with an exact form (1, 1/τ, a
#: shared per-layer value): float32 storage rounds to 6e-8 relative, so 1e-6 separates rounding
#: from a real difference
RTOL = 1e-6
#: graph metadata key naming the writer; its other keys are documented in :func:`to_nir`
SOURCE = "spikeshield"


class NIRError(SpikeshieldError):
    """A NIR file or graph cannot be read or mapped onto spikeshield layers (exit code 1)."""

    exit_code = 1


def require_nir() -> ModuleType:
    """The ``nir`` package, or a one-line error saying how to install it."""
    try:
        import nir
    except ImportError:
        raise SpikeshieldError(
            "NIR support needs the 'nir' package: pip install 'spikeshield[nir]'"
        ) from None
    return nir


def uniform(values: Any, what: str, where: str) -> float:
    """The one value shared by every neuron of a layer (NIR stores one per neuron)."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    if flat.size == 0 or not np.all(np.isfinite(flat)):
        raise NIRError(f"node {where!r}: {what} is empty or not finite")
    if not np.allclose(flat, flat[0], rtol=RTOL, atol=0.0):
        raise NIRError(
            f"node {where!r}: {what} differs between neurons ({flat.min():g} .. {flat.max():g}); "
            "spikeshield neurons share one value per layer"
        )
    return float(flat[0])


def close(a: float, b: float) -> bool:
    return bool(np.isclose(a, b, rtol=RTOL, atol=0.0))

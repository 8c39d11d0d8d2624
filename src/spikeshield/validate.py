"""Checks of user-given settings: each failure is one :class:`UsageError` line naming the setting.

Counts: :func:`positive_int`, :func:`non_negative_int`, :func:`int_at_least`. Real numbers
(finite; ``True`` is never a number here): :func:`finite`, :func:`positive`,
:func:`non_negative`, :func:`at_least`, :func:`in_range`, :func:`probability`. Switches:
:func:`boolean`. Options a component does not take: :func:`reject_unknown`. Each returns the
checked value, so a constructor can write ``self.tau = validate.finite("tau", tau)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from spikeshield.errors import UsageError


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """An ``int`` or ``float`` (not a ``bool``) that is neither infinite nor NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(name: str, value: Any) -> int:
    if not is_int(value) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
    return value


def non_negative_int(name: str, value: Any) -> int:
    if not is_int(value) or value < 0:
        raise UsageError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def int_at_least(name: str, value: Any, minimum: int) -> int:
    if not is_int(value) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def finite(name: str, value: Any) -> float:
    if not is_finite_number(value):
        raise UsageError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def positive(name: str, value: Any) -> float:
    if finite(name, value) <= 0:
        raise UsageError(f"{name} must be > 0, got {value!r}")
    return float(value)


def at_least(name: str, value: Any, minimum: float) -> float:
    if finite(name, value) < minimum:
        raise UsageError(f"{name} must be >= {minimum:g}, got {value!r}")
    return float(value)


def non_negative(name: str, value: Any) -> float:
    return at_least(name, value, 0.0)


def in_range(
    name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> float:
    """``value`` in the interval from ``low`` to ``high``; ``*_open`` excludes that end."""
    v = finite(name, value)
    if (v <= low if low_open else v < low) or (v >= high if high_open else v > high):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise UsageError(f"{name} must be in {interval}, got {value!r}")
    return v


def probability(name: str, value: Any) -> float:
    return in_range(name, value, 0.0, 1.0)


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{name} must be true or false, got {value!r}")
    return value


def reject_unknown(owner: str, given: Iterable[str], accepted: Iterable[str]) -> None:
    """Refuse options that do not apply to ``owner`` (e.g. ``"neuron 'if'"``), listing those it takes."""
    accepted = sorted(accepted)
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise UsageError(
            f"{owner} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(accepted) or 'none'}"
        )

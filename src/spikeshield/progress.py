"""A small progress bar for long loops (no dependency), shown when stderr is a terminal or
``SPIKESHIELD_PROGRESS=1``; ``SPIKESHIELD_PROGRESS=0`` hides it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    flag = os.environ.get("SPIKESHIELD_PROGRESS")
    if flag is not None:
        return flag not in ("0", "", "false", "no")
    return sys.stderr.isatty()


class Progress:
    """``for batch in Progress(batches, total=n, desc="epoch 1"): ...; bar.set(loss=0.3)``."""

    def __init__(
        self,
        iterable: Iterable[T],
        total: int | None = None,
        desc: str = "",
        enabled: bool | None = None,
        unit: str = "it",
    ) -> None:
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.enabled = progress_enabled() if enabled is None else enabled
        self.unit = unit
        self.count = 0
        self.fields: dict[str, str] = {}
        self.start = time.perf_counter()
        self._last = 0.0

    def set(self, **fields: float | str) -> None:
        for k, v in fields.items():
            self.fields[k] = f"{v:.4g}" if isinstance(v, float) else str(v)

    def _render(self, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self._last < 0.2:
            return
        self._last = now
        elapsed = now - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        if self.total:
            frac = min(self.count / self.total, 1.0)
            bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
            eta = (self.total - self.count) / rate if rate > 0 else 0.0
            head = f"{self.desc} [{bar}] {self.count}/{self.total} {elapsed:.0f}s<{eta:.0f}s"
        else:
            head = f"{self.desc} {self.count} {elapsed:.0f}s"
        extra = " ".join(f"{k}={v}" for k, v in self.fields.items())
        sys.stderr.write(f"\r{head} {rate:.1f}{self.unit}/s {extra}\x1b[K")
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def __iter__(self) -> Iterator[T]:
        for item in self.iterable:
            yield item
            self.count += 1
            if self.enabled:
                self._render()
        if self.enabled:
            self._render(final=True)

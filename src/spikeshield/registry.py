"""A named registry with helpful errors, one instance each for neurons, surrogates, models,
datasets and attacks, so that a new variant is one decorated function or class in one file."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from spikeshield.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to entries (classes or factories).

    >>> animals = Registry("animal")
    >>> @animals.register("cat")
    ... def make_cat(): return "meow"
    >>> animals.get("cat")()
    'meow'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, *, help: str = "") -> Callable[[T], T]:
        def decorator(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            doc = help or (getattr(entry, "__doc__", None) or "").strip().split("\n")[0]
            self._help[name] = doc
            return entry

        return decorator

    def get(self, name: str) -> T:
        if not isinstance(name, str):
            raise UsageError(f"{self.kind} name must be a string, got {type(name).__name__}")
        key = name.strip().lower().replace("_", "-")
        if key in self._entries:
            return self._entries[key]
        raise UsageError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name.lower(), list(self._entries), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def describe(self, name: str) -> str:
        return self._help.get(name, "")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

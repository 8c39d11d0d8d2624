"""Typed schemas for the structured files spikeshield reads, checked on load.

Every structured file (a run's ``config.json`` and ``metrics.json``, a checkpoint's metadata
and run state, an experiment file) is parsed here and checked against one typed schema, so a
malformed file is one line naming the file and the field (``run/metrics.json: test_accuracy:
expected float | null, got str``) instead of an exception from wherever the value is first
used. A schema is an ordinary type: a ``TypedDict``, a dataclass, a ``msgspec.Struct``,
``list[...]`` / ``dict[str, ...]``, ``Literal[...]``, ``X | None`` and numbers with bounds
(``Annotated[int, msgspec.Meta(ge=0)]``; :data:`NonNegativeInt` and friends below). Checking is
strict: a string is never turned into a number, nor ``true`` into ``1``.

The checking is done by `msgspec <https://jcristharif.com/msgspec/>`_ (``msgspec.convert``), a
small dependency-free library: it reports the path of the offending field and checks bounds.
Parsing is done by the standard library (JSON as Python's ``json`` writes it, ``NaN``
included; TOML by ``tomllib``), with the failures a hostile file can cause (invalid UTF-8,
nesting deep enough to exhaust the stack, integers of thousands of digits) turned into the same
one-line error.

Use: ``decode_json(raw, Schema, "path/to/file")``, ``decode_toml(raw, Schema, where)``, or
``convert(already_parsed, Schema, where)`` (e.g. one table of a TOML file, with ``where``
naming the file and table). Each takes ``error=``, the :class:`SpikeshieldError` subclass to
raise (default :class:`DataError`; a user-written experiment file would pass ``UsageError``).
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from typing import Annotated, Any, TypeVar

import msgspec

from spikeshield.errors import DataError, SpikeshieldError

T = TypeVar("T")

_BIG = 1.7976931348623157e308  # the largest finite float: a bound that refuses inf and NaN
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
FiniteFloat = Annotated[float, msgspec.Meta(ge=-_BIG, le=_BIG)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0, le=_BIG)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
"""A number in [0, 1] (an accuracy, a rate)."""

_AT = re.compile(r" - at `\$(.*)`$")


def _describe(exc: msgspec.ValidationError, at: str = "") -> str:
    """``field: problem`` from msgspec's ``Problem - at `$.field` `` (``$`` is the file itself,
    or the part of it named ``at``: then the field is ``at.field``)."""
    text = str(exc)
    match = _AT.search(text)
    problem = text[: match.start()] if match else text
    problem = problem[:1].lower() + problem[1:]
    field = match.group(1) if match else ""
    field = at + field if at else field.lstrip(".")
    return f"{field}: {problem}" if field else problem


def convert(
    obj: Any, schema: Any, where: str, *, error: type[SpikeshieldError] = DataError, at: str = ""
) -> Any:
    """``obj`` (parsed JSON/TOML data) checked against ``schema`` and converted to it.

    ``at`` names where ``obj`` is inside the file (``datasets.mnist``, say): fields are then
    named from the file's root (``datasets.mnist.eps[0]``).

    Raises:
        error: ``"<where>: <field>: <problem>"`` on the first field that does not fit.
    """
    try:
        return msgspec.convert(obj, schema)
    except msgspec.ValidationError as exc:
        raise error(f"{where}: {_describe(exc, at)}") from None
    except RecursionError:
        raise error(f"{where}: {at + ': ' if at else ''}nested too deeply") from None


def check(obj: T, schema: Any, where: str, *, error: type[SpikeshieldError] = DataError) -> T:
    """Like :func:`convert`, but returns ``obj`` itself (keeping fields the schema does not name)."""
    convert(obj, schema, where, error=error)
    return obj


def _parse_problem(exc: ValueError, text: str | bytes) -> str:
    """The parser's message; for an integer longer than Python converts (``int`` refuses more
    than ``sys.get_int_max_str_digits()`` digits and does not say where), its line."""
    if "integer string conversion" not in str(exc):
        return str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    limit = sys.get_int_max_str_digits()
    match = re.search(rf"(?<!\d)\d{{{limit + 1}}}", text)  # tried at the start of each run only
    line = f"line {text.count(chr(10), 0, match.start()) + 1}: " if match else ""
    return f"{line}an integer of more than {limit} digits"


def decode_json(
    raw: bytes | str, schema: Any, where: str, *, error: type[SpikeshieldError] = DataError
) -> Any:
    """Parse JSON text and check it against ``schema`` (``Any``: parse only).

    Raises:
        error: the text is not UTF-8, not JSON, nested too deeply, holds an integer too long
            to convert, or does not fit ``schema``; the message names ``where``.
    """
    try:
        obj = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise error(f"{where}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except RecursionError:
        raise error(f"{where}: not usable JSON (nested too deeply)") from None
    except ValueError as exc:  # json.JSONDecodeError, or an integer beyond the digit limit
        raise error(f"{where}: not valid JSON ({_parse_problem(exc, raw)})") from None
    return obj if schema is Any else convert(obj, schema, where, error=error)


def decode_toml(raw: bytes, schema: Any, where: str, *, error: type[SpikeshieldError] = DataError) -> Any:
    """Parse TOML (UTF-8 bytes) and check it against ``schema`` (``Any``: parse only).

    Raises:
        error: as :func:`decode_json`, for TOML.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{where}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        obj = tomllib.loads(text)
    except RecursionError:
        raise error(f"{where}: not usable TOML (nested too deeply)") from None
    except ValueError as exc:  # tomllib.TOMLDecodeError, or an integer beyond the digit limit
        raise error(f"{where}: not valid TOML ({_parse_problem(exc, text)})") from None
    return obj if schema is Any else convert(obj, schema, where, error=error)

"""The one rule for text and numbers the API stores: no U+0000 (PostgreSQL's ``text`` and ``jsonb``
cannot hold it), no lone UTF-16 surrogate (UTF-8 cannot encode it), and only finite numbers of a
sane size (JSON has no NaN or Infinity; Python's parser accepts them and overflows ``1e999`` to
infinity). Pure functions: the request guard (:mod:`app.guard`) and the schemas both use them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
# Ceilings of any one string (characters) and any one list or object (entries) in a request: far
# above every operator limit (Settings.max_*), so they only stop absurd bodies, and early.
MAX_TEXT = 1_000_000
MAX_ITEMS = 100_000
MAX_INT_DIGITS = 30  # beyond any count or seed the API takes; far below Python's 4300-digit limit
MAX_DEPTH = 32  # nesting of lists and objects; requests need 5, Python's recursion gives out near 1000


class _HugeInt:
    """An integer literal too long to be meaningful, kept as text so the walk can name its field."""

    def __init__(self, text: str) -> None:
        self.text = text


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored, or None."""
    found = _BAD_TEXT.search(value)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return "must not contain NUL (U+0000) characters"
    return f"must not contain a lone UTF-16 surrogate (U+{ord(char):04X}); send valid Unicode"


def _number_problem(value: Any) -> str | None:
    if isinstance(value, _HugeInt):
        return f"integer with {len(value.text.lstrip('-'))} digits is out of range"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number (NaN, Infinity and overflowing values are not JSON numbers)"
    return None


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _walk(value: Any, path: str, depth: int = 0) -> Iterator[tuple[str, str]]:
    """(field, problem) of every bad string, key or number in a parsed JSON value; an oversized
    or too deeply nested list, object or string is reported without looking inside it."""
    size = len(value) if isinstance(value, str | list | dict) else 0
    if isinstance(value, list | dict) and depth >= MAX_DEPTH:
        yield path or "body", f"nested more than {MAX_DEPTH} levels deep"
    elif isinstance(value, str) and size > MAX_TEXT:
        yield path or "body", f"a string of {size} characters; at most {MAX_TEXT}"
    elif not isinstance(value, str) and size > MAX_ITEMS:
        yield path or "body", f"{size} entries; at most {MAX_ITEMS}"
    elif isinstance(value, str):
        why = text_problem(value)
        if why:
            yield path or "body", why
    elif isinstance(value, dict):
        for key, item in value.items():
            why = text_problem(key)
            if why:
                yield path or "body", f"an object key {why}"
            else:
                yield from _walk(item, _join(path, key), depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, _join(path, i), depth + 1)
    else:
        why = _number_problem(value)
        if why:
            yield path or "body", why


def _parse_int(text: str) -> int | _HugeInt:
    return _HugeInt(text) if len(text.lstrip("-")) > MAX_INT_DIGITS else int(text)


def body_problems(body: bytes) -> list[tuple[str, str]]:
    """Problems of a JSON body, or that it is not JSON (an empty body is the framework's to judge)."""
    if not body.strip():
        return []
    try:
        # Decoded here: json.loads on bytes would also take UTF-16 and UTF-32, which RFC 8259 rules out.
        parsed = json.loads(body.decode("utf-8"), parse_int=_parse_int, parse_constant=float)
    except UnicodeDecodeError:
        return [("body", "is not UTF-8 text")]
    except RecursionError:
        return [("body", f"is nested more than {MAX_DEPTH} levels deep")]
    except ValueError as exc:
        return [("body", f"is not valid JSON ({exc})")]
    return list(_walk(parsed, ""))

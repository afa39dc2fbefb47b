"""Typed reading of request arguments: a value of the wrong type is `bad_request`, never a query operator."""

from __future__ import annotations

from typing import Any, Mapping

from gamesvc.errors import bad_request

_MISSING = object()


def text(args: Mapping[str, Any], name: str, *, min_len: int = 0, max_len: int = 10_000, default: Any = _MISSING) -> str:
    """A string argument whose length (in characters) lies in [min_len, max_len]."""
    value = args.get(name, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise bad_request(f"{name} is required")
        return default
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string")
    if not min_len <= len(value) <= max_len:
        raise bad_request(f"{name} must be {min_len} to {max_len} characters")
    return value


def integer(args: Mapping[str, Any], name: str, *, low: int, high: int, default: Any = _MISSING) -> int:
    """An integer argument in [low, high] (booleans are not integers here)."""
    value = args.get(name, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise bad_request(f"{name} is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{name} must be an integer")
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}")
    return value


def boolean(args: Mapping[str, Any], name: str, *, default: Any = _MISSING) -> bool:
    """A true/false argument."""
    value = args.get(name, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise bad_request(f"{name} is required")
        return default
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false")
    return value

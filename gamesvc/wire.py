"""JSON encoding of frames, done once per message however many connections receive it."""

from __future__ import annotations

import datetime
import functools
import json
import math
from typing import Any

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode(message: dict[str, Any]) -> bytes:
    """A message as the UTF-8 JSON text of one WebSocket frame."""
    return _encoder.encode(message).encode("utf-8")


def iso(seconds: float) -> str:
    """A POSIX time as ISO 8601 UTC with milliseconds, e.g. ``2026-11-25T16:32:49.120Z``.

    Exactly what ``datetime.fromtimestamp`` gives (microseconds rounded half to even, then cut to milliseconds),
    with the date and time of the whole second formatted once: chat and moves stamp many messages a second.
    """
    fraction, whole = math.modf(seconds)
    micro = round(fraction * 1e6)
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    elif micro < 0:
        whole, micro = whole - 1, micro + 1_000_000
    return f"{_whole_second(int(whole))}.{micro // 1000:03d}Z"


@functools.lru_cache(maxsize=16)
def _whole_second(seconds: int) -> str:
    m = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"


class Outgoing:
    """One encoded message; a transport may cache its framed form here to frame it once per broadcast."""

    __slots__ = ("payload", "framed")

    def __init__(self, message: dict[str, Any]) -> None:
        self.payload = encode(message)
        self.framed: Any = None

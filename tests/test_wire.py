"""gamesvc.wire: timestamps formatted exactly as datetime formats them."""

from __future__ import annotations

import datetime

from hypothesis import example, given
from hypothesis import strategies as st

from gamesvc.wire import iso


def reference(seconds: float) -> str:
    """The plain datetime formatting that iso must match."""
    m = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return m.strftime("%Y-%m-%dT%H:%M:%S.") + f"{m.microsecond // 1000:03d}Z"


@given(st.floats(min_value=-1e9, max_value=4e9, allow_nan=False))
@example(1.9995)
@example(1.9999996)  # its microseconds round up into the next second
@example(1764088369.0004995)
@example(-0.5)
@example(0.0)
def test_iso_matches_datetime(seconds: float) -> None:
    """For any time from 1938 to 2096, iso gives what datetime.fromtimestamp formats, to the millisecond,
    including microseconds that round up into the next second."""
    assert iso(seconds) == reference(seconds)

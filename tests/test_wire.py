"""gamesvc.wire: frames encoded as compact UTF-8 JSON, and timestamps formatted exactly as datetime formats them."""

from __future__ import annotations

import datetime
import json

from hypothesis import example, given
from hypothesis import strategies as st

from gamesvc.wire import encode, iso

# What the service puts in messages: JSON values with string keys, finite numbers and text without lone surrogates.
TEXT = st.text(st.characters(exclude_categories=("Cs",)))
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def test_a_chat_event_is_compact_utf8_json() -> None:
    """A chat event is the same bytes the json module writes compactly without escaping non-ASCII text."""
    event = {"event": "room.chat", "room": "ABCDEF", "from": "Zoë", "text": "<b>héllo</b> 🎲 \"quoted\"\n", "at": iso(0)}
    expected = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert encode(event) == expected


@given(st.dictionaries(TEXT, VALUES, max_size=6))
def test_encoded_messages_read_back_as_written(message: dict) -> None:
    """Any message of JSON values reads back equal to itself."""
    assert json.loads(encode(message)) == message


def test_non_string_keys_become_strings() -> None:
    """Integer keys are written as strings, as the json module does."""
    assert json.loads(encode({"counts": {3: "three"}})) == {"counts": {"3": "three"}}


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

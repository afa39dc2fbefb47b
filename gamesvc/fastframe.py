"""A fast path for the common WebSocket frame: one whole, masked, unfragmented, small text frame (and its reply).

Autobahn parses every frame generically: a header object, a masker object, per-frame callbacks
(onFrameBegin, onFrameData, onFrameEnd, onMessageBegin, onMessageEnd), an incremental UTF-8 validator
and traffic counters; for the 60-byte requests of a game that is a good share of the server's CPU.
`deliver` takes the leading frames of a read that are of the common kind, unmasks each with one
big-integer XOR, checks its UTF-8 with the codec, and hands it to `onMessage`; it stops at the first
frame of any other kind (control frames, fragments, binary, RSV bits, oversize, invalid UTF-8, a header
cut by the end of the read) and returns the rest, which goes to Autobahn as before, so everything but
the common frame is parsed, answered and closed exactly as Autobahn does it. A common frame whose payload
the read cuts (`incomplete`) is kept by the protocol until it is whole: large requests then cost one unmask
and one codec check, not Autobahn's incremental masker, UTF-8 validator and buffer copies (a 64 KiB frame:
~0.3 ms on Autobahn's path, ~0.02 ms here), which is what 200 connections' first reads cost the reactor at
once in bench/memory_flood.py.

Library internals (a debt, pinned by tests/test_fastframe.py): `ready` reads Autobahn's receive state
(`data`, `current_frame`, `inside_message`, `_perMessageCompress`, `logOctets`, `logFrames`,
`trackedTimings`), and `deliver` cancels the auto-ping timeout as Autobahn's onFrameEnd does
(`autoPingTimeoutCall`, `autoPingRestartOnAnyTraffic`, `_cancelAutoPingTimeoutCall`). Skipped for these
frames: Autobahn's `trafficStats` counters and its "message" observers, neither used by gamesvc.
"""

from __future__ import annotations

from typing import Any

from autobahn.websocket import USES_NVX
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.xormasker import create_xor_masker

STATE_OPEN = WebSocketProtocol.STATE_OPEN
FIN_TEXT = 0x81  # FIN set, RSV clear, opcode 1 (text)
NVX_UNMASK_BYTES = 2048  # from this length the compiled masker is faster than the big integer (4 vs 9 µs at 4 KiB)


def ready(protocol: Any) -> bool:
    """Whether the protocol's receive state lets the next bytes be read by `deliver`: open, between messages,
    nothing buffered, no compression and no frame logging."""
    return (
        protocol.state == STATE_OPEN
        and not protocol.data
        and protocol.current_frame is None
        and not protocol.inside_message
        and protocol._perMessageCompress is None
        and not protocol.logOctets
        and not protocol.logFrames
        and not protocol.trackedTimings
    )


def text_frame(payload: bytes) -> bytes:
    """A server's (unmasked, unfragmented) text frame of `payload`: the bytes Autobahn's prepareMessage makes,
    without its PreparedMessage object and masker."""
    n = len(payload)
    if n < 126:
        return bytes((FIN_TEXT, n)) + payload
    if n < 65536:
        return bytes((FIN_TEXT, 126, n >> 8, n & 0xFF)) + payload
    return bytes((FIN_TEXT, 127)) + n.to_bytes(8, "big") + payload


def unmask(masked: bytes, mask: bytes) -> bytes:
    """XOR a payload with its 4-byte masking key repeated: one big-integer operation, or Autobahn's compiled
    masker (NVX) for long payloads, where the big integer costs ~15 times more (135 vs 9 µs at 64 KiB)."""
    n = len(masked)
    if n >= NVX_UNMASK_BYTES and USES_NVX:
        return create_xor_masker(mask, n).process(masked)  # type: ignore[no-any-return]
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(masked, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def _bounds(protocol: Any, data: bytes, i: int) -> tuple[int, int] | None:
    """Where the payload of the common frame starting at `data[i]` begins and ends (the end may lie past the data
    read so far); None when the bytes there are not (or not yet, for the header) such a frame."""
    n = len(data)
    if n - i < 7 or data[i] != FIN_TEXT:
        return None
    length = data[i + 1]
    if length < 0x80:  # unmasked: Autobahn fails the connection
        return None
    length &= 0x7F
    if length < 126:
        start = i + 6
    elif length == 126 and n - i >= 8:
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 126:  # not the shortest encoding: Autobahn fails the connection
            return None
        start = i + 8
    else:
        return None
    limit = protocol.maxMessagePayloadSize
    if length == 0 or 0 < limit < length:
        return None
    return start, start + length


def deliver(protocol: Any, data: bytes) -> bytes:
    """Hand the leading common frames of `data` to `protocol.onMessage`; return the bytes left for Autobahn.

    Stops when the connection leaves the open state or pauses reading (an onMessage may do either).
    """
    n = len(data)
    i = 0
    while protocol.state == STATE_OPEN and not protocol._reading_paused:
        bounds = _bounds(protocol, data, i)
        if bounds is None or bounds[1] > n:
            break
        start, end = bounds
        payload = unmask(data[start:end], data[start - 4 : start])
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            break  # Autobahn closes with 1007 and its own reason
        i = end
        if protocol.autoPingTimeoutCall and protocol.autoPingRestartOnAnyTraffic:
            protocol._cancelAutoPingTimeoutCall()
        protocol.onMessage(payload, False)
    return data[i:] if i else data


def incomplete(protocol: Any, data: bytes) -> int:
    """The whole size of the common frame that `data` (what `deliver` left) starts but does not hold yet, which the
    caller may keep until that many bytes have come and then `deliver`; 0 when the bytes are for Autobahn."""
    if protocol.state != STATE_OPEN or protocol._reading_paused:
        return 0
    bounds = _bounds(protocol, data, 0)
    return bounds[1] if bounds is not None and bounds[1] > len(data) else 0

"""A fast path for the common WebSocket frame: one whole, masked, unfragmented, small text frame (and its reply).

Autobahn parses every frame generically: a header object, a masker object, per-frame callbacks
(onFrameBegin, onFrameData, onFrameEnd, onMessageBegin, onMessageEnd), an incremental UTF-8 validator
and traffic counters; for the 60-byte requests of a game that is a good share of the server's CPU.
`deliver` takes the leading frames of a read that are of the common kind, unmasks each with one
big-integer XOR, checks its UTF-8 with the codec, and hands it to `onMessage`; it stops at the first
frame of any other kind (control frames, fragments, binary, RSV bits, oversize, invalid UTF-8, a frame
cut by the end of the read) and returns the rest, which goes to Autobahn as before, so everything but
the common frame is parsed, answered and closed exactly as Autobahn does it.

Library internals (a debt, pinned by tests/test_fastframe.py): `ready` reads Autobahn's receive state
(`data`, `current_frame`, `inside_message`, `_perMessageCompress`, `logOctets`, `logFrames`,
`trackedTimings`), and `deliver` cancels the auto-ping timeout as Autobahn's onFrameEnd does
(`autoPingTimeoutCall`, `autoPingRestartOnAnyTraffic`, `_cancelAutoPingTimeoutCall`). Skipped for these
frames: Autobahn's `trafficStats` counters and its "message" observers, neither used by gamesvc.
"""

from __future__ import annotations

from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol

STATE_OPEN = WebSocketProtocol.STATE_OPEN
FIN_TEXT = 0x81  # FIN set, RSV clear, opcode 1 (text)


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
    """XOR a payload with its 4-byte masking key repeated: one big-integer operation however long it is."""
    n = len(masked)
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(masked, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def deliver(protocol: Any, data: bytes) -> bytes:
    """Hand the leading common frames of `data` to `protocol.onMessage`; return the bytes left for Autobahn.

    Stops when the connection leaves the open state or pauses reading (an onMessage may do either).
    """
    limit = protocol.maxMessagePayloadSize
    n = len(data)
    i = 0
    while n - i >= 7 and data[i] == FIN_TEXT and protocol.state == STATE_OPEN and not protocol._reading_paused:
        length = data[i + 1]
        if length < 0x80:  # unmasked: Autobahn fails the connection
            break
        length &= 0x7F
        if length < 126:
            start = i + 6
        elif length == 126 and n - i >= 8:
            length = (data[i + 2] << 8) | data[i + 3]
            if length < 126:  # not the shortest encoding: Autobahn fails the connection
                break
            start = i + 8
        else:
            break
        end = start + length
        if length == 0 or end > n or 0 < limit < length:
            break
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

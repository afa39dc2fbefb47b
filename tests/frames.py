"""WebSocket frames by hand, and a GameProtocol over a StringTransport, for tests of the frame and request path."""

from __future__ import annotations

import json
import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport

from gamesvc.config import Settings
from gamesvc.passwords import PlainHasher
from gamesvc.protocol import GameFactory, GameProtocol
from gamesvc.service import build_services
from gamesvc.store.memory import MemoryStore
from twisted.internet.task import Clock

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:5000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def frame(payload: bytes, opcode: int = 1, fin: bool = True, mask: bytes | None = b"\x11\x22\x33\x44", rsv: int = 0) -> bytes:
    """One client frame (masked unless `mask` is None), with the shortest length encoding."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def request(op: str, rid: Any = None, **fields: Any) -> bytes:
    """A request's text frame."""
    return frame(json.dumps({"op": op, "id": rid, **fields}).encode())


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of every whole unmasked frame the server wrote."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i + 2 <= len(data):
        opcode, n = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if n == 126:
            (n,) = struct.unpack("!H", data[i : i + 2])
            i += 2
        elif n == 127:
            (n,) = struct.unpack("!Q", data[i : i + 8])
            i += 8
        out.append((opcode, data[i : i + n]))
        i += n
    return out


class LenientTransport(StringTransport):
    """A StringTransport that, like a TCP transport, lets Autobahn unregister a producer it never registered."""

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None


class GatedHasher(PlainHasher):
    """A hasher whose password checks wait until the test releases them: a slow request on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[Deferred] = []

    def check(self, password: bytes, hashed: bytes) -> Deferred:
        gate: Deferred = Deferred()
        self.gates.append(gate)
        return gate

    def release(self) -> None:
        """Answer every waiting check with "wrong password"."""
        gates, self.gates = self.gates, []
        for gate in gates:
            gate.callback(False)


class Wire:
    """A GameProtocol over a StringTransport after a real handshake; frames go in by hand, replies come out parsed."""

    def __init__(self, **overrides: Any) -> None:
        self.hasher = GatedHasher()
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        overrides.setdefault("ping_interval", 0)
        self.services = build_services(Settings(**overrides), self.clock, MemoryStore(), self.hasher)
        self.factory = GameFactory(self.services)
        self.protocol: GameProtocol = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4000))  # type: ignore[assignment]
        self.transport = LenientTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4000))
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(HANDSHAKE)
        assert self.transport.value().startswith(b"HTTP/1.1 101"), self.transport.value()
        self.transport.clear()
        self.closed: tuple[bool, Any, Any] | None = None
        original = self.protocol.onClose

        def on_close(was_clean: bool, code: Any, reason: Any) -> None:
            self.closed = (was_clean, code, reason)
            original(was_clean, code, reason)

        self.protocol.onClose = on_close  # type: ignore[method-assign]

    def send(self, *frames: bytes) -> None:
        """Deliver bytes as one read from the socket."""
        self.protocol.dataReceived(b"".join(frames))

    def take(self) -> list[tuple[int, bytes]]:
        """Every frame the server wrote since the last call."""
        data = self.transport.value()
        self.transport.clear()
        return server_frames(data)

    def replies(self) -> list[dict[str, Any]]:
        """The text frames the server wrote since the last call, parsed."""
        return [json.loads(p) for op, p in self.take() if op == 1]

    def close_code(self, frames: list[tuple[int, bytes]]) -> int | None:
        """The code of the close frame among `frames`, if any."""
        for opcode, payload in frames:
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        return None

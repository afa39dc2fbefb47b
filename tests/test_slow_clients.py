"""A client that stops reading cannot grow the server's memory: past the send buffer limit it is dropped."""

from __future__ import annotations

from typing import Any

from gamesvc.protocol import GameFactory, GameProtocol
from gamesvc.wire import Outgoing
from tests.support import FakeMind, memory_services


class UnreadTransport:
    """A TCP transport whose peer never reads: everything written stays buffered."""

    def __init__(self) -> None:
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0
        self.aborted = False

    def write(self, data: bytes) -> None:
        self._tempDataLen += len(data)


class BufferedConnection(GameProtocol):
    """A protocol that frames into the unread transport instead of a real socket."""

    _perMessageCompress = None  # no handshake ran, so Autobahn never set it

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        self.transport.write(data)

    def dropConnection(self, abort: bool = False) -> None:
        self.transport.aborted = abort


def connection(services: Any) -> BufferedConnection:
    factory = GameFactory(services)
    conn = BufferedConnection()
    conn.factory = factory
    conn.transport = UnreadTransport()  # type: ignore[assignment]
    conn.address = "192.0.2.1"
    conn.onOpen()
    return conn


def test_a_client_that_does_not_read_is_dropped_past_the_limit() -> None:
    """Messages queue up to --send-buffer-bytes; the one that passes it aborts the connection and frees its seat."""
    services = memory_services(send_buffer_bytes=4096)
    conn = connection(services)
    conn.account = FakeMind("slow").account
    room_id = services.rooms.create(conn, name="Slow", seats=2, private=False)["room"]["id"]
    message = Outgoing({"event": "room.chat", "text": "x" * 500})
    sent = 0
    while conn.open and sent < 100:
        conn.deliver(message)
        sent += 1
    assert not conn.open and conn.transport.aborted is True
    frame = len(message.framed)
    # Dropped by the first message that took the unsent bytes past the limit, not before.
    assert conn.transport._tempDataLen - frame <= 4096 < conn.transport._tempDataLen
    assert sent >= 4
    # The rooms hear of the drop on the next reactor turn, not from inside the delivery.
    assert conn in conn.factory.connections
    services.clock.advance(0)
    assert conn not in conn.factory.connections
    room = services.rooms.rooms[room_id]
    assert room.players[0].mind is None  # the seat waits for the grace period, as for any drop


def test_a_reading_client_is_never_dropped() -> None:
    """A client whose buffer drains keeps receiving however much is sent."""
    services = memory_services(send_buffer_bytes=4096)
    conn = connection(services)
    message = Outgoing({"event": "room.chat", "text": "x" * 500})
    for _ in range(1000):
        conn.deliver(message)
        conn.transport._tempDataLen = 0  # the peer read everything
    assert conn.open and conn.transport.aborted is False

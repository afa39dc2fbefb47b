"""gamesvc.sendnow: bytes go to the socket at once when nothing is queued, and stay in order when something is."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol, ServerFactory
from twisted.internet.testing import StringTransport

from gamesvc.sendnow import pending, write_now

# Larger than any loopback socket's send and receive buffers together, so part of it stays queued.
BACKLOG = 16 * 1024 * 1024


class Collect(Protocol):
    """Keeps what it receives; `until(n)` fires once n bytes have arrived."""

    def __init__(self) -> None:
        self.received = bytearray()
        self._waiting: tuple[int, Deferred[bytes]] | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self._check()

    def until(self, n: int) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self._waiting = (n, d)
        self._check()
        return d

    def _check(self) -> None:
        if self._waiting is not None and len(self.received) >= self._waiting[0]:
            d = self._waiting[1]
            self._waiting = None
            d.callback(bytes(self.received))


async def connected_pair(reactor: Any) -> tuple[Any, Collect, Any]:
    """A real loopback TCP connection: the server side's transport, the client's protocol, and the port."""
    accepted: Deferred[Protocol] = Deferred()

    class Server(Protocol):
        def connectionMade(self) -> None:
            accepted.callback(self)

    port = reactor.listenTCP(0, ServerFactory.forProtocol(Server), interface="127.0.0.1")
    client = Collect()
    reactor.connectTCP("127.0.0.1", port.getHost().port, ClientFactory.forProtocol(lambda: client))
    server = await accepted
    return server.transport, client, port


async def close(transport: Any, port: Any) -> None:
    """Drop the connection and stop listening."""
    transport.abortConnection()
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_idle_connection_sends_before_the_reactor_turns(reactor: Any) -> None:
    """On a connection with nothing queued, write_now leaves nothing pending (transport.write would), and the
    peer receives the bytes."""
    transport, client, port = await connected_pair(reactor)
    try:
        write_now(transport, b"hello")
        assert pending(transport) == 0
        transport.write(b" world")
        assert pending(transport) == 6
        assert await client.until(11) == b"hello world"
    finally:
        await close(transport, port)


@pytest_twisted.ensureDeferred
async def test_queued_bytes_keep_their_order(reactor: Any) -> None:
    """Behind a backlog that the socket cannot take, write_now queues its bytes after it: the peer gets
    everything in the order written, and the backlog is counted as pending meanwhile."""
    transport, client, port = await connected_pair(reactor)
    try:
        backlog = bytes(range(256)) * (BACKLOG // 256)
        write_now(transport, backlog)
        assert pending(transport) > 0
        write_now(transport, b"after")
        assert pending(transport) > 5
        received = await client.until(len(backlog) + 5)
        assert received[: len(backlog)] == backlog and received[len(backlog):] == b"after"
    finally:
        await close(transport, port)


def test_other_transports_just_get_written() -> None:
    """A transport that is not a TCP connection (TLS, tests) is written to as usual."""
    transport = StringTransport()
    write_now(transport, b"frame")
    assert transport.value() == b"frame" and pending(transport) == 0


@pytest_twisted.ensureDeferred
async def test_connections_that_started_tls_go_through_their_transport(reactor: Any) -> None:
    """Once a connection has started TLS its bytes must be encrypted by the transport, so write_now hands them
    to transport.write instead of the socket."""
    transport, client, port = await connected_pair(reactor)
    try:
        written: list[bytes] = []
        transport.TLS = True  # what startTLS sets
        transport.write = written.append  # the TLS layer's place; nothing reaches the socket
        write_now(transport, b"secret")
        assert written == [b"secret"] and pending(transport) == 0
    finally:
        del transport.write
        transport.TLS = False
        await close(transport, port)

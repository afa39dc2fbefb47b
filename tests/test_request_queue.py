"""The request path: ops that await nothing are answered at once, the queue behind a slow request is bounded."""

from __future__ import annotations

import json

import pytest

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from gamesvc.heap import HeapTrimmer
from gamesvc.protocol import OPS
from tests.frames import Wire, frame, request

LOGIN = {"username": "bob", "password": "wrong-password"}


def nested(size: int) -> bytes:
    """A request of about `size` bytes of nested JSON arrays (the most objects per byte a parser builds)."""
    depth = (size - 40) // 2
    return json.dumps({"op": "ping", "id": "deep"})[:-1].encode() + b', "x": ' + b"[" * depth + b"]" * depth + b"}"


def test_ops_that_await_nothing_are_answered_in_the_frames_own_call() -> None:
    """ping, chat, roll, ready, leave (and the room and lobby ops) are plain functions answered during dataReceived."""
    for name in ("ping", "room.chat", "game.roll", "room.ready", "room.leave", "room.create", "room.join"):
        assert OPS[name][2], name
    for name in ("signup", "login", "resume", "logout", "me", "leaderboard"):
        assert not OPS[name][2], name
    wire = Wire()
    wire.send(request("ping", 1), request("room.chat", 2, text="hi"))
    assert wire.replies() == [{"re": 1, "ok": True}, {"re": 2, "ok": False, "error": "unauthenticated",
                                                       "message": "sign up, log in or resume first"}]


def test_requests_behind_a_slow_one_wait_and_keep_their_order() -> None:
    """A ping sent while a login waits for bcrypt is answered after the login, not before."""
    wire = Wire()
    wire.send(request("login", 1, **LOGIN), request("ping", 2), frame(b"not json"), request("ping", 3))
    assert wire.replies() == []
    wire.hasher.release()
    assert [(r["re"], r["ok"]) for r in wire.replies()] == [(1, False), (2, True), (None, False), (3, True)]
    wire.send(request("ping", 4))
    assert wire.replies() == [{"re": 4, "ok": True}]


def test_a_full_queue_pauses_reading_and_leaves_the_rest_unparsed() -> None:
    """At --max-queued-requests waiting requests the transport is paused and later frames stay as bytes in the
    read buffer; once the slow request is done every request is answered, in order, and reading resumes."""
    wire = Wire(max_queued_requests=5, message_burst=100)
    wire.send(request("login", 0, **LOGIN), *(request("ping", i) for i in range(1, 21)))
    protocol = wire.protocol
    assert wire.transport.producerState == "paused"
    assert len(protocol._pending) == 5
    assert all(isinstance(entry[0], bytes) for entry in protocol._pending)
    assert len(protocol.data) > 0  # the other frames were not parsed
    wire.hasher.release()
    assert [r["re"] for r in wire.replies()] == list(range(21))
    assert wire.transport.producerState == "producing"
    assert not protocol._pending and not protocol.data


def test_queued_bytes_are_bounded() -> None:
    """Large nested requests queued behind a slow one pause reading at --max-queued-bytes, kept as raw bytes."""
    wire = Wire(max_queued_bytes=100_000, max_message_bytes=65536, message_burst=100)
    big = nested(60_000)
    wire.send(request("login", 0, **LOGIN), *(frame(big) for _ in range(10)))
    protocol = wire.protocol
    assert wire.transport.producerState == "paused"
    assert len(protocol._pending) == 2 and protocol._pending_bytes == 2 * len(big)
    wire.hasher.release()
    # Nested deeper than the parser allows: each is answered bad_request (re null), in order, after the login.
    assert [(r["re"], r.get("error")) for r in wire.replies()] == [(0, "bad_credentials")] + [(None, "bad_request")] * 10


def test_a_client_that_keeps_sending_while_paused_is_closed_1008() -> None:
    """Bytes that still arrive while reading is paused (no TCP transport delivers them; a misbehaving one might)
    close the connection with 1008 once they pass --max-queued-bytes, and are not kept."""
    wire = Wire(max_queued_requests=2, max_queued_bytes=4096, message_burst=1000)
    wire.send(request("login", 0, **LOGIN), request("ping", 1), request("ping", 2))
    assert wire.transport.producerState == "paused"
    for i in range(200):
        wire.send(request("ping", 100 + i, pad="x" * 30))
    frames = wire.take()
    assert wire.close_code(frames) == 1008
    assert len(wire.protocol.data) < 4096 + 100


def test_a_closed_connection_lets_go_of_its_queue_while_its_slow_request_still_runs() -> None:
    """Once the connection is lost, its queued and unread bytes are freed at once, not when the slow request
    (which keeps the protocol object alive) finally ends."""
    wire = Wire(max_queued_requests=3, message_burst=100)
    wire.send(request("login", 0, **LOGIN), *(request("ping", i, pad="x" * 1000) for i in range(1, 30)))
    assert wire.protocol._pending and wire.protocol.data
    wire.protocol.connectionLost(Failure(ConnectionDone()))
    assert wire.hasher.gates  # the login still waits
    assert not wire.protocol._pending and wire.protocol._pending_bytes == 0 and wire.protocol.data == b""


def test_closing_connections_that_filled_their_queue_trims_the_heap_once() -> None:
    """Connections whose queue filled hand their large buffers back to the OS: one malloc_trim a second after the
    first of them closes, however many close together; connections that never filled it trigger none."""
    trims: list[int] = []
    quiet, flooders = Wire(), [Wire(max_queued_requests=2) for _ in range(3)]
    for wire in [quiet, *flooders]:
        wire.factory.heap = HeapTrimmer(wire.clock, trim=trims.append)
    quiet.protocol.connectionLost(Failure(ConnectionDone()))
    quiet.clock.advance(5)
    assert trims == []
    shared = flooders[0].factory.heap
    for wire in flooders:
        wire.factory.heap = shared
        wire.send(request("login", 0, **LOGIN), request("ping", 1), request("ping", 2), request("ping", 3))
        assert wire.transport.producerState == "paused"
        wire.protocol.connectionLost(Failure(ConnectionDone()))
    assert trims == []
    flooders[0].clock.advance(1.0)
    assert trims == [0]


def test_malloc_trim_is_found_on_glibc() -> None:
    """On this (glibc) platform the trimmer has the C library's malloc_trim, and calling it works."""
    import platform

    from twisted.internet.task import Clock

    trimmer = HeapTrimmer(Clock())
    if platform.libc_ver()[0] == "glibc":
        assert trimmer._trim is not None and trimmer._trim(0) in (0, 1)


def test_a_paused_connection_whose_peer_closed_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A paused transport never reads the peer's close; once a second the socket's TCP state is checked, and a
    closed peer gets the connection dropped, its buffers freed, while the login still waits."""
    from gamesvc import sendnow

    wire = Wire(max_queued_requests=2)
    wire.send(request("login", 0, **LOGIN), request("ping", 1), request("ping", 2))
    assert wire.transport.producerState == "paused"
    closed = False
    monkeypatch.setattr(sendnow, "peer_closed", lambda transport: closed)
    wire.clock.advance(1.0)
    assert wire.protocol.open
    closed = True
    wire.clock.advance(1.0)
    assert not wire.protocol.open and wire.hasher.gates and not wire.protocol._pending


def test_peer_closed_reads_the_tcp_state_of_a_real_socket() -> None:
    """sendnow.peer_closed says True for a socket whose peer sent FIN behind unread data, False before."""
    import socket

    from twisted.internet import tcp

    from gamesvc import sendnow

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    transport = tcp.Connection.__new__(tcp.Connection)
    transport.socket = server
    try:
        client.sendall(b"x" * 1000)
        assert not sendnow.peer_closed(transport)
        client.close()  # on loopback the FIN arrives within the close call
        assert sendnow.peer_closed(transport)
    finally:
        server.close()
        listener.close()


def test_pausing_again_and_again_keeps_one_probe() -> None:
    """Reading paused, resumed and paused again within a second schedules one peer-close probe, not one per pause."""
    wire = Wire(max_queued_requests=2, message_burst=100)
    for round_ in range(3):
        wire.send(request("login", 0, **LOGIN), request("ping", 1), request("ping", 2))
        assert wire.transport.producerState == "paused"
        wire.hasher.release()
        wire.replies()
    wire.send(request("login", 0, **LOGIN), request("ping", 1), request("ping", 2))
    assert len([c for c in wire.clock.getDelayedCalls() if c.func == wire.protocol._probe_peer]) == 1

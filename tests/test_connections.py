"""Connection hardening: connections per client address, the sign-in deadline, and sessions ended on live sockets.

The protocol runs in memory over the memory store and a `task.Clock` (no sockets, no sleeps); the last test checks
the same against the real service.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from autobahn.websocket.types import ConnectionDeny

from gamesvc.protocol import CLOSE_SIGNIN_TIMEOUT, GameFactory, GameProtocol
from tests.conftest import fresh_database_uri
from tests.support import WsClient, http, memory_services, start_service


class Request:
    """The parts of an Autobahn ConnectionRequest that `GameProtocol.onConnect` reads."""

    def __init__(self, peer: str, cookie: str | None = None) -> None:
        self.peer = peer
        self.headers = {"host": "127.0.0.1:5000"}
        if cookie:
            self.headers["cookie"] = cookie


class Connection(GameProtocol):
    """A GameProtocol that records what it sends and how it closes instead of writing to a socket."""

    def __init__(self, factory: GameFactory) -> None:
        super().__init__()
        self.factory = factory
        self.received: list[dict[str, Any]] = []
        self.closes: list[tuple[Any, Any]] = []

    def deliver(self, outgoing: Any) -> None:
        """Record the message as the client would parse it."""
        if self.open:
            self.received.append(json.loads(outgoing.payload))

    def sendClose(self, code: int | None = None, reason: str | None = None) -> None:
        """Record the close instead of sending it."""
        self.closes.append((code, reason))

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return its reply (the memory store answers at once)."""
        before = len(self.received)
        self.onMessage(json.dumps({"op": op, "id": op, **fields}).encode(), False)
        replies = [m for m in self.received[before:] if "re" in m]
        assert len(replies) == 1, self.received[before:]
        return replies[0]

    def events(self, name: str) -> list[dict[str, Any]]:
        """The events of one kind received so far."""
        return [m for m in self.received if m.get("event") == name]


def opened(factory: GameFactory, address: str = "198.51.100.7", cookie: str | None = None) -> Connection:
    """A connection that passed the handshake and opened."""
    conn = Connection(factory)
    conn.onConnect(Request(f"tcp:{address}:40000", cookie))  # type: ignore[arg-type]
    conn.onOpen()
    return conn


def closed(conn: Connection) -> None:
    """The transport went away."""
    conn.onClose(False, 1006, None)


def services_and_factory(**settings: Any) -> tuple[Any, GameFactory]:
    """Memory services (with a generous message rate) and a factory of connections to them."""
    services = memory_services(**{"message_rate": 1000.0, "message_burst": 1000, **settings})
    return services, GameFactory(services)


# Connections per client address


def test_one_address_cannot_take_more_than_its_share() -> None:
    """The connection past --max-connections-per-address from one address is refused (429); others still connect."""
    services, factory = services_and_factory(max_connections_per_address=3)
    for _ in range(3):
        opened(factory)
    with pytest.raises(ConnectionDeny) as refused:
        opened(factory)
    assert refused.value.code == 429
    assert opened(factory, "203.0.113.9").open
    assert factory.by_address == {"198.51.100.7": 3, "203.0.113.9": 1}


def test_a_closed_connection_frees_its_addresses_slot() -> None:
    """Closing a connection (or a refused handshake) gives the slot back; no address count outlives its sockets."""
    services, factory = services_and_factory(max_connections_per_address=2)
    first, second = opened(factory), opened(factory)
    with pytest.raises(ConnectionDeny):
        third = Connection(factory)
        third.onConnect(Request("tcp:198.51.100.7:1"))  # type: ignore[arg-type]
    closed(third)  # Autobahn calls onClose after a refused handshake too: it must not uncount a slot it never took
    assert factory.by_address == {"198.51.100.7": 2}
    closed(first)
    assert opened(factory).open
    closed(second)
    assert factory.by_address == {"198.51.100.7": 1}


# The sign-in deadline


def test_an_anonymous_connection_is_closed_at_the_signin_deadline() -> None:
    """A socket that has not signed in --signin-timeout seconds after it opened is closed with 4408."""
    services, factory = services_and_factory(signin_timeout=30.0)
    idle = opened(factory)
    services.clock.advance(29.9)
    assert idle.closes == []
    assert idle.request("ping")["ok"] is True  # anonymous ops do not extend the deadline
    services.clock.advance(0.2)
    assert idle.closes == [(CLOSE_SIGNIN_TIMEOUT, "sign in (signup, login or resume) sooner")]


def test_a_signed_in_connection_is_not_closed_and_a_sign_out_rearms_the_deadline() -> None:
    """Signing in in time keeps the socket; after logout it has a fresh --signin-timeout to sign in again."""
    services, factory = services_and_factory(signin_timeout=30.0)
    conn = opened(factory)
    services.clock.advance(10)
    assert conn.request("signup", username="early", password="password1")["ok"]
    services.clock.advance(100)
    assert conn.closes == []
    assert conn.request("logout")["ok"]
    services.clock.advance(29)
    assert conn.closes == []
    services.clock.advance(2)
    assert [code for code, _ in conn.closes] == [CLOSE_SIGNIN_TIMEOUT]


def test_signing_in_drops_the_deadline_and_a_quick_sign_out_gets_a_whole_one() -> None:
    """A signed-in connection holds no sign-in timer (10,000 idle sockets hold none); one that signs in at 10 s and
    out at 20 s still has a whole --signin-timeout from its sign-out, not what was left of the first deadline."""
    services, factory = services_and_factory(signin_timeout=30.0)
    conn = opened(factory)
    services.clock.advance(10)
    assert conn.request("signup", username="quick", password="password1")["ok"]
    assert [c for c in services.clock.getDelayedCalls() if c.func == conn._signin_deadline] == []
    services.clock.advance(10)
    assert conn.request("logout")["ok"]
    services.clock.advance(29)
    assert conn.closes == []
    services.clock.advance(2)
    assert [code for code, _ in conn.closes] == [CLOSE_SIGNIN_TIMEOUT]


def test_no_deadline_when_the_timeout_is_zero_and_no_timer_outlives_the_socket() -> None:
    """--signin-timeout 0 keeps anonymous sockets; a closed socket leaves no sign-in timer behind."""
    services, factory = services_and_factory(signin_timeout=0.0)
    conn = opened(factory)
    services.clock.advance(86400)
    assert conn.closes == []
    services, factory = services_and_factory(signin_timeout=30.0)
    conn = opened(factory)
    closed(conn)
    assert services.clock.getDelayedCalls() == []


# Sessions ended on live connections


def test_logout_ends_the_session_on_every_connection_holding_it() -> None:
    """Logout on one socket: the other sockets of that session get session.ended and are signed out; another
    session of the same user stays signed in."""
    services, factory = services_and_factory()
    first = opened(factory)
    token = first.request("signup", username="sam", password="password1")["token"]
    second = opened(factory)
    assert second.request("resume", token=token)["ok"]
    other = opened(factory)
    assert other.request("login", username="sam", password="password1")["ok"]
    assert first.request("logout") == {"re": "logout", "ok": True}
    assert first.events("session.ended") == []  # it asked: it gets the reply, not the event
    assert second.events("session.ended") == [{"event": "session.ended", "reason": "logged_out"}]
    assert second.account is None and second.request("me")["error"] == "unauthenticated"
    assert other.account is not None and other.request("me")["ok"]
    assert len(services.sessions) == 1


def test_http_style_logout_ends_live_sessions_and_their_seat_gets_the_grace_period() -> None:
    """accounts.logout (what POST /api/logout calls) signs the socket out; its seat waits for the grace period."""
    services, factory = services_and_factory(grace_seconds=60.0)
    conn = opened(factory)
    token = conn.request("signup", username="tia", password="password1")["token"]
    room_id = conn.request("room.create", name="Table", seats=2)["room"]["id"]
    services.accounts.logout(token)
    assert conn.events("session.ended")[-1]["reason"] == "logged_out"
    seat = services.rooms.rooms[room_id].players[0]
    assert seat.mind is None and seat.grace is not None and seat.grace.active()
    assert services.rooms.room_of(conn) is None


def test_a_session_expiring_signs_its_live_connections_out() -> None:
    """At the session's expiry time every connection holding it gets session.ended (reason expired)."""
    services, factory = services_and_factory(session_ttl=3600.0)
    conn = opened(factory)
    token = conn.request("signup", username="una", password="password1")["token"]
    services.clock.advance(1800)
    later = opened(factory)
    assert later.request("resume", token=token)["ok"]
    services.clock.advance(1799)
    assert conn.account is not None and later.account is not None
    services.clock.advance(2)
    for c in (conn, later):
        assert c.events("session.ended") == [{"event": "session.ended", "reason": "expired"}]
        assert c.account is None
    assert len(services.sessions) == 0


def test_the_cookie_session_is_registered_and_closing_forgets_it() -> None:
    """A cookie-authenticated socket is ended by logout too; closed sockets leave nothing in the registry."""
    services, factory = services_and_factory()
    first = opened(factory)
    token = first.request("signup", username="vic", password="password1")["token"]
    by_cookie = opened(factory, cookie=f"gamesvc_session={token}")
    assert by_cookie.account is not None
    closed(first)
    services.accounts.logout(token)
    assert by_cookie.events("session.ended")[-1]["reason"] == "logged_out"
    closed(by_cookie)
    assert len(services.sessions) == 0
    assert [c for c in services.clock.getDelayedCalls() if c.active()] == []


def test_a_resume_that_raced_a_logout_is_refused() -> None:
    """A resume whose store lookup finished before a logout but signs in after it is unauthenticated, not signed
    in with a dead session."""
    from twisted.internet.defer import Deferred

    services, factory = services_and_factory()
    first = opened(factory)
    token = first.request("signup", username="wes", password="password1")["token"]
    accounts = services.accounts
    found: list = []
    accounts.resume_expiring(token).addCallback(found.append)  # the store's answer, before the logout
    held: Deferred = Deferred()
    held.addCallback(lambda _: found[0])
    accounts.resume_expiring = lambda _token: held  # type: ignore[method-assign]
    racing = opened(factory)
    racing.onMessage(b'{"op": "resume", "id": 1, "token": "%s"}' % token.encode(), False)
    accounts.logout(token)  # the logout lands while the resume is between its lookup and its sign-in
    held.callback(None)
    assert racing.received[-1]["error"] == "unauthenticated"
    assert racing.account is None and len(services.sessions) == 0


# The same over real sockets


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_real_handshakes_past_the_address_limit_are_refused_and_http_logout_ends_sockets(
    reactor: Any, mongo_uri: str
) -> None:
    """Against the real service: the third WebSocket from 127.0.0.1 with a limit of 2 is refused until one closes,
    and POST /api/logout sends session.ended to a socket signed in with that session."""
    running = await start_service(reactor, fresh_database_uri(mongo_uri), max_connections_per_address=2)
    try:
        first = await WsClient.connect(reactor, running.ws_url)
        token = (await first.ok("signup", username="xena", password="password1"))["token"]
        second = await WsClient.connect(reactor, running.ws_url)
        with pytest.raises(ConnectionError):
            await WsClient.connect(reactor, running.ws_url)
        await second.close()
        third = await WsClient.connect(reactor, running.ws_url)
        status, _, _ = await http(reactor, "POST", running.url + "/api/logout", body={},
                                  headers={"Authorization": f"Bearer {token}"})
        assert status == 200
        assert (await first.event("session.ended"))["reason"] == "logged_out"
        assert (await first.request("me"))["error"] == "unauthenticated"
        await first.close()
        await third.close()
    finally:
        await running.service.stopService()

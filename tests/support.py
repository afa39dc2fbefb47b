"""Test helpers: a real service in-process, a WebSocket client speaking the contract, an HTTP client, and fakes."""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from typing import Any

import attrs
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.task import Clock
from zope.interface import implementer

from gamesvc.auth import Account
from gamesvc.config import Settings
from gamesvc.interfaces import IMind
from gamesvc.passwords import PlainHasher
from gamesvc.service import GameService, build_services
from gamesvc.store.memory import MemoryStore

TIMEOUT = 15.0


# In-memory wiring for service tests


@implementer(IMind)
class FakeMind:
    """A connection as the services see it; records every message delivered."""

    def __init__(self, username: str | None = None) -> None:
        self.account = Account(username.lower(), username) if username else None
        self.address = "192.0.2.1"
        self.received: list[dict[str, Any]] = []

    def deliver(self, outgoing: Any) -> None:
        self.received.append(json.loads(outgoing.payload))

    def events(self, name: str) -> list[dict[str, Any]]:
        """The events of one kind received so far."""
        return [m for m in self.received if m.get("event") == name]

    def last(self, name: str) -> dict[str, Any]:
        """The latest event of one kind."""
        found = self.events(name)
        assert found, f"no {name} event among {[m.get('event') for m in self.received]}"
        return found[-1]


class ScriptedDice:
    """A die that rolls the given numbers, then 1s."""

    def __init__(self, *rolls: int) -> None:
        self.rolls = list(rolls)

    def __call__(self) -> int:
        return self.rolls.pop(0) if self.rolls else 1


def roll_until_over(
    services: Any, minds: list[FakeMind], limit: int = 2000, wait: float | None = None
) -> dict[str, Any]:
    """Roll for whoever's turn it is among `minds`; for anyone else (a player who is away, a bot) let `wait` seconds
    pass (default --turn-seconds, the deadline's auto-roll), until game.over, which is returned."""
    by_name = {m.account.username: m for m in minds}
    watcher = minds[0]
    for _ in range(limit):
        if watcher.events("game.over"):
            return watcher.last("game.over")
        current = watcher.last("game.turn")["player"]
        if current in by_name:
            services.rooms.roll(by_name[current])
        else:
            services.clock.advance(services.settings.turn_seconds if wait is None else wait)
    raise AssertionError("the game did not end")


def memory_services(**overrides: Any) -> Any:
    """Services over a memory store, a Clock and a plain hasher; `dice` and `choose` go to the rooms. Simulated
    nodes of a cluster share one `clock`, one `store` and a `MemoryHub(clock)`, each with its own `bus=hub.bus()`."""
    room_options = {
        k: overrides.pop(k) for k in ("dice", "choose", "new_game_id", "random_bytes", "bot_random") if k in overrides
    }
    bus = overrides.pop("bus", None)
    store = overrides.pop("store", None)
    if store is None:
        store = MemoryStore()
    clock = overrides.pop("clock", None)
    if clock is None:
        clock = Clock()
        clock.advance(1_800_000_000)
    settings = Settings(**overrides)
    services = build_services(settings, clock, store, PlainHasher(), bus=bus, **room_options)
    services.raw_store = store  # type: ignore[attr-defined]
    return services


# The real service


@attrs.define
class Running:
    """A started in-process service and where to reach it."""

    service: GameService
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


async def start_service(reactor: Any, mongo_uri: str, **overrides: Any) -> Running:
    """Start the real service on a free port against `mongo_uri` (fast bcrypt unless told otherwise)."""
    # A journal of its own, so that one test's pending results never reach another's service.
    journal = os.path.join(tempfile.mkdtemp(prefix="gamesvc-journal-"), "results.journal")
    options: dict[str, Any] = {"port": 0, "bcrypt_cost": 4, "mongo_uri": mongo_uri, "result_journal": journal}
    options.update(overrides)
    service = GameService(reactor, Settings(**options))
    service.startService()
    await within(reactor, service.store_ready)
    port = await within(reactor, service.listening)
    return Running(service, port.getHost().port)


# A WebSocket client of the contract


class _ClientProtocol(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.client._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.client._received(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.client._closed(code, reason)


class WsClient:
    """A WebSocket client: `request` waits for its reply; events are queued by name."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._ids = itertools.count(1)
        self._waiting: dict[Any, Deferred] = {}
        self.events: list[dict[str, Any]] = []
        self._event_waiters: list[tuple[str, Deferred]] = []
        self.replies: DeferredQueue = DeferredQueue()
        self.protocol: _ClientProtocol | None = None
        self.opened: Deferred = Deferred()
        self.closed: Deferred = Deferred()
        self.close_code: int | None = None

    @classmethod
    async def connect(cls, reactor: Any, url: str, origin: str | None = None, cookie: str | None = None) -> "WsClient":
        """Open a connection and wait for the handshake to finish."""
        client = cls(reactor)
        headers = {"Cookie": cookie} if cookie else None
        factory = WebSocketClientFactory(url, origin=origin, headers=headers)
        factory.protocol = _ClientProtocol
        factory.client = client  # type: ignore[attr-defined]
        factory.setProtocolOptions(autoPingInterval=0)
        connectWS(factory)
        await within(reactor, client.opened)
        return client

    def _opened(self, protocol: _ClientProtocol) -> None:
        self.protocol = protocol
        self.opened.callback(self)

    def _received(self, message: dict[str, Any]) -> None:
        if "re" in message:
            # Left in `_waiting` until `reply` takes it: a reply may arrive before the test asks for it.
            d = self._waiting.get(message["re"])
            if d is not None and not d.called:
                d.callback(message)
            else:
                self.replies.put(message)
            return
        self.events.append(message)
        for waiter in list(self._event_waiters):
            name, d = waiter
            if message.get("event") == name:
                self._event_waiters.remove(waiter)
                self.events.remove(message)
                d.callback(message)
                return

    def _closed(self, code: int | None, reason: str | None) -> None:
        self.close_code = code
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"handshake refused: {reason}"))
        if not self.closed.called:
            self.closed.callback(code)

    def send_raw(self, payload: bytes, binary: bool = False) -> None:
        """Send a frame as is."""
        assert self.protocol is not None
        self.protocol.sendMessage(payload, isBinary=binary)

    def send(self, op: str, **fields: Any) -> Any:
        """Send a request without waiting; returns its id."""
        rid = next(self._ids)
        self._waiting[rid] = Deferred()
        self.send_raw(json.dumps({"op": op, "id": rid, **fields}).encode())
        return rid

    async def reply(self, rid: Any) -> dict[str, Any]:
        """Wait for the reply to request `rid`."""
        try:
            return await within(self._reactor, self._waiting[rid])
        finally:
            del self._waiting[rid]

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send a request and wait for its reply."""
        return await self.reply(self.send(op, **fields))

    async def ok(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send a request that must succeed."""
        reply = await self.request(op, **fields)
        assert reply["ok"], reply
        return reply

    async def event(self, name: str) -> dict[str, Any]:
        """The next event called `name` (earlier ones already received are returned first)."""
        for message in self.events:
            if message.get("event") == name:
                self.events.remove(message)
                return message
        d: Deferred = Deferred()
        self._event_waiters.append((name, d))
        return await within(self._reactor, d)

    def drop(self) -> None:
        """Cut the TCP connection without a closing handshake."""
        assert self.protocol is not None
        self.protocol.dropConnection(abort=True)

    async def close(self) -> None:
        """Close cleanly and wait for it."""
        if self.protocol is not None and not self.closed.called:
            self.protocol.sendClose(1000)
            await within(self._reactor, self.closed)


def within(reactor: Any, d: Deferred, seconds: float = TIMEOUT) -> Deferred:
    """Fail `d` with a timeout after `seconds` so that a broken test fails instead of hanging."""
    return d.addTimeout(seconds, reactor)


async def http(reactor: Any, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, list[str]], Any]:
    """One HTTP request: status, headers (lower-case names), and the JSON body (or raw bytes)."""
    from twisted.web.client import Agent
    from twisted.web.http_headers import Headers

    producer = None
    all_headers = dict(headers or {})
    if body is not None:
        from twisted.web.client import FileBodyProducer
        from io import BytesIO

        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        producer = FileBodyProducer(BytesIO(raw))
        all_headers.setdefault("Content-Type", "application/json")
    agent = Agent(reactor)
    response = await within(
        reactor,
        agent.request(
            method.encode(), url.encode(), Headers({k: [v] for k, v in all_headers.items()}), producer
        ),
    )
    data = await within(reactor, _read_body(response))
    found = {k.decode().lower(): [v.decode() for v in vs] for k, vs in response.headers.getAllRawHeaders()}
    try:
        parsed: Any = json.loads(data)
    except ValueError:
        parsed = data
    return response.code, found, parsed


def _read_body(response: Any) -> Deferred:
    """A response's whole body."""
    from twisted.internet.protocol import Protocol

    done: Deferred = Deferred()
    chunks: list[bytes] = []

    class Collect(Protocol):
        def dataReceived(self, data: bytes) -> None:
            chunks.append(data)

        def connectionLost(self, reason: Any = None) -> None:
            done.callback(b"".join(chunks))

    response.deliverBody(Collect())
    return done

"""The message bus: one conformance suite for MemoryBus and RedisBus (against a real redis-server), then the
memory hub's own switches and the Redis URI parser."""

from __future__ import annotations

import secrets
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from gamesvc.bus import IBus, MemoryBus, MemoryHub
from gamesvc.errors import BusUnavailable
from gamesvc.redisbus import RedisAddress, parse_redis_uri
from tests.support import within


class Inbox:
    """A handler that records (channel, payload) and lets a test wait for the n-th message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._waiters: list[tuple[int, Deferred[None]]] = []

    def __call__(self, channel: str, payload: bytes) -> None:
        self.messages.append((channel, payload))
        for waiter in list(self._waiters):
            if len(self.messages) >= waiter[0]:
                self._waiters.remove(waiter)
                waiter[1].callback(None)

    def payloads(self) -> list[bytes]:
        """The payloads received so far."""
        return [payload for _, payload in self.messages]

    def wait(self, count: int) -> Deferred[None]:
        """Fire once `count` messages have arrived."""
        d: Deferred[None] = Deferred()
        self._waiters.append((count, d))
        if len(self.messages) >= count:
            self._waiters.remove((count, d))
            d.callback(None)
        return d


class States:
    """A state listener that records every change and lets a test wait for a given state."""

    def __init__(self) -> None:
        self.seen: list[bool] = []
        self._waiters: list[tuple[bool, Deferred[None]]] = []

    def __call__(self, connected: bool) -> None:
        self.seen.append(connected)
        for waiter in list(self._waiters):
            if waiter[0] == connected:
                self._waiters.remove(waiter)
                waiter[1].callback(None)

    def wait(self, connected: bool) -> Deferred[None]:
        """Fire at the next change to `connected`."""
        d: Deferred[None] = Deferred()
        self._waiters.append((connected, d))
        return d


class World:
    """Buses of one implementation, and a way to take their server down and bring it back."""

    def __init__(self, make: Callable[[], Any], outage: Callable[[], None], recover: Callable[[], None]) -> None:
        self._make = make
        self.outage = outage
        self.recover = recover
        self.buses: list[Any] = []

    async def bus(self) -> Any:
        """A new bus, started and connected."""
        bus = self._make()
        self.buses.append(bus)
        await bus.start()
        return bus


@pytest_twisted.async_yield_fixture(params=["memory", "redis"])
async def world(request: pytest.FixtureRequest, reactor: Any) -> AsyncIterator[World]:
    """Each bus implementation: memory buses on one hub delivering on the reactor, or RedisBuses on redis-server."""
    if request.param == "memory":
        hub = MemoryHub(reactor)
        w = World(hub.bus, hub.outage, hub.recover)
    else:
        from gamesvc.redisbus import RedisBus

        server = request.getfixturevalue("redis_server")
        address = parse_redis_uri(server.uri)
        w = World(lambda: RedisBus(reactor, address, timeout=5.0, retry_policy=lambda attempt: 0.05),
                  server.stop, server.start)
    try:
        yield w
    finally:
        if request.param == "redis" and not server.running:
            server.start()
        for bus in w.buses:
            await bus.stop()


def channel() -> str:
    """A channel name no other test uses (the session shares one redis-server)."""
    return "test." + secrets.token_hex(4)


@pytest_twisted.ensureDeferred
async def test_implements_interface(world: World) -> None:
    """Every bus provides the whole IBus interface and is connected once started."""
    bus = await world.bus()
    assert verifyObject(IBus, bus)
    assert bus.connected


@pytest_twisted.ensureDeferred
async def test_messages_arrive_in_publish_order_to_every_subscriber(world: World, reactor: Any) -> None:
    """Two subscribers (one of them the publisher itself) get a channel's messages in publish order, bytes intact;
    publish counts the receiving buses; other channels do not leak in."""
    a, b = await world.bus(), await world.bus()
    name, other = channel(), channel()
    got_a, got_b, got_other = Inbox(), Inbox(), Inbox()
    await a.subscribe(name, got_a)
    await b.subscribe(name, got_b)
    await b.subscribe(other, got_other)
    payloads = [b"\x00binary\xff", *[str(i).encode() for i in range(50)]]
    counts = [await a.publish(name, p) for p in payloads[:1]]
    counts += await _all([a.publish(name, p) for p in payloads[1:]])
    assert counts == [2] * len(payloads)
    await within(reactor, got_a.wait(len(payloads)), 10)
    await within(reactor, got_b.wait(len(payloads)), 10)
    assert got_a.payloads() == payloads and got_b.payloads() == payloads
    assert got_b.messages[0] == (name, payloads[0])
    assert got_other.messages == []


@pytest_twisted.ensureDeferred
async def test_unsubscribe_stops_delivery_and_keeps_other_handlers(world: World, reactor: Any) -> None:
    """After unsubscribe a handler gets nothing more, another handler of the channel still does, and publish
    counts only buses that still subscribe."""
    a, b = await world.bus(), await world.bus()
    name = channel()
    first, second, remote = Inbox(), Inbox(), Inbox()
    await a.subscribe(name, first)
    await a.subscribe(name, second)
    await b.subscribe(name, remote)
    await a.unsubscribe(name, first)
    await b.unsubscribe(name, remote)
    await b.unsubscribe(name, remote)  # twice: no error
    assert await b.publish(name, b"one") == 1
    await within(reactor, second.wait(1), 10)
    assert first.messages == [] and remote.messages == []


@pytest_twisted.ensureDeferred
async def test_a_failing_handler_does_not_stop_the_others(world: World, reactor: Any) -> None:
    """A handler that raises is logged and skipped; the next handler and the next message still arrive."""
    bus = await world.bus()
    name = channel()
    got = Inbox()

    def broken(channel: str, payload: bytes) -> None:
        raise RuntimeError("handler bug")

    await bus.subscribe(name, broken)
    await bus.subscribe(name, got)
    await bus.publish(name, b"1")
    await bus.publish(name, b"2")
    await within(reactor, got.wait(2), 10)
    assert got.payloads() == [b"1", b"2"]


@pytest_twisted.ensureDeferred
async def test_bad_arguments_fail_without_sending(world: World) -> None:
    """A non-bytes payload or a malformed channel name fails at once; nothing is subscribed."""
    bus = await world.bus()
    with pytest.raises(TypeError):
        await bus.publish(channel(), "text")
    for bad in ("", "a b", "room.*", "x" * 300, "tab\t"):
        with pytest.raises(ValueError):
            await bus.publish(bad, b"x")
        with pytest.raises(ValueError):
            await bus.subscribe(bad, Inbox())


@pytest_twisted.ensureDeferred
async def test_outage_fails_publish_fast_and_recovery_resubscribes(world: World, reactor: Any) -> None:
    """When the server goes: listeners hear False and publish fails at once with BusUnavailable; when it comes
    back: listeners hear True and the old subscriptions (and one made during the outage) deliver again."""
    a, b = await world.bus(), await world.bus()
    name, later = channel(), channel()
    got, got_later, states = Inbox(), Inbox(), States()
    await b.subscribe(name, got)
    a.on_state(states)
    down = states.wait(False)
    world.outage()
    await within(reactor, down, 10)
    assert not a.connected
    with pytest.raises(BusUnavailable):
        await a.publish(name, b"lost")
    await b.subscribe(later, got_later)
    up_a, up_b = states.wait(True), Deferred()
    b.on_state(lambda connected: up_b.callback(None) if connected and not up_b.called else None)
    world.recover()
    await within(reactor, up_a, 10)
    await within(reactor, up_b, 10)
    assert a.connected and b.connected and states.seen == [False, True]
    assert await a.publish(name, b"after") == 1
    assert await a.publish(later, b"later") == 1
    await within(reactor, got.wait(1), 10)
    await within(reactor, got_later.wait(1), 10)
    assert got.payloads() == [b"after"] and got_later.payloads() == [b"later"]


@pytest_twisted.ensureDeferred
async def test_start_waits_for_the_server_and_stop_fails_the_wait(world: World, reactor: Any) -> None:
    """A bus started while the server is down connects when it comes back; one stopped first fails its start
    with BusUnavailable and tells no listener."""
    world.outage()
    waiting, given_up = world._make(), world._make()
    world.buses += [waiting, given_up]
    states = States()
    given_up.on_state(states)
    started, abandoned = waiting.start(), given_up.start()
    assert not started.called and not waiting.connected
    await given_up.stop()
    with pytest.raises(BusUnavailable):
        await abandoned
    world.recover()
    await within(reactor, started, 10)
    assert waiting.connected and not given_up.connected and states.seen == []
    with pytest.raises(BusUnavailable):
        await given_up.publish(channel(), b"x")


async def _all(ds: list[Deferred[int]]) -> list[int]:
    return [await d for d in ds]


# The memory hub's own switches


def test_memory_hub_with_a_clock_delivers_on_the_next_turn_in_order() -> None:
    """With a Clock, messages wait for clock.advance(0) and then arrive in publish order, also those that a
    handler publishes while messages are being delivered (they come after the earlier ones)."""
    clock = Clock()
    hub = MemoryHub(clock)
    a, b = hub.bus(), hub.bus()
    a.start(), b.start()
    got = Inbox()
    echoes: list[bytes] = []

    def echo(channel: str, payload: bytes) -> None:
        echoes.append(payload)
        if payload == b"1":
            b.publish("c", b"echo")

    a.subscribe("c", got)
    b.subscribe("c", echo)
    a.publish("c", b"1")
    a.publish("c", b"2")
    assert got.messages == [] and hub.pending == 4
    clock.advance(0)
    assert got.payloads() == [b"1", b"2", b"echo"] and echoes == [b"1", b"2", b"echo"]
    assert hub.pending == 0


def test_memory_hub_without_a_clock_delivers_before_publish_returns() -> None:
    """Without a clock, publish delivers synchronously, and a handler's own publish still comes after the
    message being delivered to the other subscribers."""
    hub = MemoryHub()
    a, b = hub.bus(), hub.bus()
    a.start(), b.start()
    order: list[tuple[str, bytes]] = []
    a.subscribe("c", lambda ch, p: (order.append(("a", p)), a.publish("c", b"reply") if p == b"q" else None))
    b.subscribe("c", lambda ch, p: order.append(("b", p)))
    a.publish("c", b"q")
    assert order == [("a", b"q"), ("b", b"q"), ("a", b"reply"), ("b", b"reply")]


def test_memory_hub_outage_of_one_node_and_messages_in_flight() -> None:
    """An outage of one bus disconnects only it (its listeners hear False, then True on recovery); a message in
    flight to a bus that disconnects is lost, as with Redis."""
    clock = Clock()
    hub = MemoryHub(clock)
    a, b = hub.bus(), hub.bus()
    a.start(), b.start()
    got, states = Inbox(), States()
    b.subscribe("c", got)
    b.on_state(states)
    assert a.publish("c", b"in flight").result == 1
    hub.outage(b)
    clock.advance(0)
    assert got.messages == [] and a.connected and not b.connected
    assert a.publish("c", b"missed").result == 0
    hub.recover(b)
    a.publish("c", b"back")
    clock.advance(0)
    assert got.payloads() == [b"back"] and states.seen == [False, True]


def test_memory_bus_is_a_bus() -> None:
    """MemoryBus provides IBus before it is started, and is disconnected until then."""
    bus = MemoryHub().bus()
    assert verifyObject(IBus, bus) and isinstance(bus, MemoryBus) and not bus.connected
    assert bus.publish("c", b"x").addErrback(lambda f: f.check(BusUnavailable)).result is BusUnavailable


# The Redis URI


def test_parse_redis_uri() -> None:
    """Host, port, database and credentials come out of the URI; defaults are port 6379 and database 0; the
    printable form hides the password."""
    assert parse_redis_uri("redis://cache") == RedisAddress("cache", 6379, 0)
    full = parse_redis_uri("redis://:s%40cret@10.0.0.5:6380/3")
    assert (full.host, full.port, full.db, full.password, full.username) == ("10.0.0.5", 6380, 3, "s@cret", None)
    assert str(full) == "redis://10.0.0.5:6380/3" and "cret" not in repr(full)
    user = parse_redis_uri("redis://bob:pw@[::1]:7000/")
    assert (user.host, user.port, user.username, user.password) == ("::1", 7000, "bob", "pw")
    assert str(user) == "redis://[::1]:7000/0"


@pytest.mark.parametrize(
    "bad", ["", "cache:6379", "http://cache", "redis://", "redis://h:99999", "redis://h/x", "redis://h/0?ssl=1",
            "redis://:pw@:6379"],
)
def test_parse_redis_uri_refuses_bad_uris(bad: str) -> None:
    """Anything but redis://host[:port][/db] is a ValueError that does not repeat a password."""
    with pytest.raises(ValueError) as caught:
        parse_redis_uri(bad)
    assert "pw" not in str(caught.value)


# RedisBus against a fake server that can go silent


class _FakeRedis:
    """A server that answers PING with PONG, until `mute` is set; counts the connections it accepted."""

    def __init__(self) -> None:
        self.mute = False
        self.connections = 0
        self._waiters: list[tuple[int, Deferred[None]]] = []

    def accepted(self) -> None:
        self.connections += 1
        for waiter in list(self._waiters):
            if self.connections >= waiter[0]:
                self._waiters.remove(waiter)
                waiter[1].callback(None)

    def wait_connections(self, count: int) -> Deferred[None]:
        """Fire once `count` connections have been accepted in all."""
        d: Deferred[None] = Deferred()
        self._waiters.append((count, d))
        return d


@pytest_twisted.ensureDeferred
async def test_redisbus_counts_only_answered_connections_and_drops_a_silent_one(reactor: Any) -> None:
    """A RedisBus is connected only once Redis answers; when the server goes silent the heartbeat notices within
    the timeout and reports the outage, reconnections that get no answer do not count, and an answer heals it."""
    from twisted.internet.protocol import Factory, Protocol

    from gamesvc.redisbus import RedisBus

    fake = _FakeRedis()

    class Silentable(Protocol):
        def connectionMade(self) -> None:
            fake.accepted()

        def dataReceived(self, data: bytes) -> None:
            if not fake.mute:
                self.transport.write(b"+PONG\r\n" * data.count(b"PING"))

    port = reactor.listenTCP(0, Factory.forProtocol(Silentable), interface="127.0.0.1")
    bus = RedisBus(reactor, RedisAddress("127.0.0.1", port.getHost().port), timeout=0.2,
                   retry_policy=lambda attempt: 0.05)
    states = States()
    bus.on_state(states)
    try:
        await within(reactor, bus.start(), 10)
        down = states.wait(False)
        fake.mute = True
        await within(reactor, down, 10)
        await within(reactor, fake.wait_connections(fake.connections + 4), 10)
        assert not bus.connected and states.seen == [True, False]
        up = states.wait(True)
        fake.mute = False
        await within(reactor, up, 10)
        assert bus.connected and states.seen == [True, False, True]
    finally:
        await bus.stop()
        await port.stopListening()

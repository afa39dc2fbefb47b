"""`RedisBus`: the `IBus` of a cluster over Redis pub/sub, through txredisapi (the only txredisapi import).

Two connections: one for PUBLISH, one in subscriber mode. Each is kept by a `ClientService` that reconnects with
backoff. A connection counts only once Redis has answered on it (a PING, and on the subscriber every SUBSCRIBE
renewed after a reconnect) within the timeout; a PING heartbeat on both aborts a connection that goes silent.
Pub/sub channels are global to a Redis server: the URI's database number does not scope them.

txredisapi imports the global reactor when it is imported, so it is imported lazily (`_txredisapi()`): this module
can be imported (for `parse_redis_uri`) before twistd has chosen its reactor.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import unquote, urlsplit

import attrs
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gamesvc.bus import Handler, IBus, StateListener, Subscriptions, publish_refusal
from gamesvc.errors import BusUnavailable

__all__ = ["RedisAddress", "parse_redis_uri", "RedisBus"]

log = Logger()


@attrs.frozen
class RedisAddress:
    """Where a Redis server is, from a `redis://[[user]:password@]host[:port][/db]` URI."""

    host: str
    port: int = 6379
    db: int = 0
    username: str | None = attrs.field(default=None, repr=False)
    password: str | None = attrs.field(default=None, repr=False)

    def __str__(self) -> str:
        """The URI without its credentials, for logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.db}"


def parse_redis_uri(text: str) -> RedisAddress:
    """Parse `redis://[[user]:password@]host[:port][/db]`; ValueError (without the password) when it is not one."""
    shown = "a redis://host:port/db URI"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"not {shown}") from None
    if parts.scheme != "redis" or not parts.hostname:
        raise ValueError(f"not {shown} (e.g. redis://127.0.0.1:6379/0)")
    if parts.query or parts.fragment:
        raise ValueError(f"{shown} takes no query or fragment")
    db_text = parts.path.lstrip("/")
    if db_text and (not db_text.isdigit() or int(db_text) > 1_000_000):
        raise ValueError(f"the database of {shown} is a whole number")
    return RedisAddress(
        host=parts.hostname,
        port=port if port is not None else 6379,
        db=int(db_text) if db_text else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _txredisapi() -> Any:
    """The txredisapi module, imported on first use (it imports the global reactor)."""
    import txredisapi

    return txredisapi


class _RedisFactory(Factory):
    """Builds the txredisapi protocols of one connection and tells the bus when one is ready or lost."""

    # txredisapi's protocols read isLazy on a failed AUTH or SELECT; noisy off: a reconnect is logged once, by the bus.
    isLazy = False
    noisy = False

    def __init__(self, bus: RedisBus, subscriber: bool) -> None:
        self._bus = bus
        self._subscriber = subscriber

    def buildProtocol(self, addr: Any) -> Protocol:
        """A publisher or subscriber protocol wired to the bus."""
        proto = self._bus._make_protocol(self._subscriber)
        proto.factory = self
        lost = proto.connectionLost

        def connection_lost(reason: Failure) -> None:
            try:
                lost(reason)
            finally:
                self._bus._lost(proto, self._subscriber)

        proto.connectionLost = connection_lost
        proto.whenConnected().addCallback(self._bus._ready, self._subscriber)
        return proto

    def stopTrying(self) -> None:
        """Called by txredisapi when AUTH or SELECT failed: keep retrying, the operator may fix Redis."""

    def connectionError(self, why: str) -> None:
        """Called by txredisapi when AUTH or SELECT failed."""
        log.error("Redis refused the bus's connection: {why}", why=why)


@implementer(IBus)
class RedisBus:
    """The message bus over a Redis server; see `gamesvc.bus.IBus` for what each method promises."""

    def __init__(
        self,
        reactor: Any,
        address: RedisAddress,
        *,
        timeout: float = 5.0,
        retry_policy: Callable[[int], float] | None = None,
    ) -> None:
        """Prepare (not connect) a bus; `timeout` bounds connecting, replies and the heartbeat's PING."""
        self._reactor = reactor
        self.address = address
        self._timeout = timeout
        self._retry_policy = retry_policy or backoffPolicy(initialDelay=0.2, maxDelay=5.0)
        self._subs = Subscriptions()
        self._publisher: Any = None  # the ready publisher protocol
        self._subscriber: Any = None  # the ready subscriber protocol, every channel renewed
        self._subscriber_conn: Any = None  # the subscriber protocol from AUTH on, while its channels are renewed
        self._services: list[ClientService] = []
        self._heartbeat: LoopingCall | None = None
        self._start_waiters: list[Deferred[None]] = []
        self._stopped = False
        self.connected = False

    def start(self) -> Deferred[None]:
        """Start connecting both connections; fires once the bus is first connected."""
        d: Deferred[None] = Deferred()
        if self.connected:
            return succeed(None)
        self._start_waiters.append(d)
        if not self._services:
            endpoint = HostnameEndpoint(self._reactor, self.address.host, self.address.port, timeout=self._timeout)
            for subscriber in (False, True):
                service = ClientService(
                    endpoint, _RedisFactory(self, subscriber), retryPolicy=self._retry_policy, clock=self._reactor
                )
                self._services.append(service)
                service.startService()
            self._heartbeat = LoopingCall(self._ping)
            self._heartbeat.clock = self._reactor
            self._heartbeat.start(self._timeout, now=False)
            log.info("bus connecting to {uri}", uri=str(self.address))
        return d

    def stop(self) -> Deferred[None]:
        """Close both connections and stop reconnecting; fires when they are closed."""
        self._stopped = True
        self.connected = False
        self._publisher = self._subscriber = self._subscriber_conn = None
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        waiters, self._start_waiters = self._start_waiters, []
        for d in waiters:
            d.errback(BusUnavailable("the bus was stopped"))
        services, self._services = self._services, []
        done = gatherResults([s.stopService() for s in services], consumeErrors=True)
        return done.addCallback(lambda _: None)

    def publish(self, channel: str, payload: bytes) -> Deferred[int]:
        """PUBLISH on the publisher connection, or fail at once while disconnected."""
        refused = publish_refusal(channel, payload)
        if refused is not None:
            return fail(refused)
        if not self.connected or self._publisher is None:
            return fail(BusUnavailable("the bus is not connected to Redis"))
        d: Deferred[int] = self._publisher.publish(channel, payload)
        return d.addErrback(_unavailable)

    def subscribe(self, channel: str, handler: Handler) -> Deferred[None]:
        """Keep the subscription and, when connected, SUBSCRIBE now (a new channel only)."""
        try:
            new = self._subs.add(channel, handler)
        except ValueError as e:
            return fail(e)
        if not new or self._subscriber_conn is None:
            return succeed(None)
        # A connection lost meanwhile renews the subscription when it comes back: no error for the caller.
        return self._answered(self._subscriber_conn, self._subscriber_conn.subscribe(channel)).addErrback(lambda _: None)

    def unsubscribe(self, channel: str, handler: Handler) -> Deferred[None]:
        """Forget the handler and, when it was the channel's last, UNSUBSCRIBE."""
        if not self._subs.remove(channel, handler) or self._subscriber_conn is None:
            return succeed(None)
        # A lost connection drops the subscription anyway: no error for the caller.
        return self._subscriber_conn.unsubscribe(channel).addCallbacks(lambda _: None, lambda _: None)

    def on_state(self, listener: StateListener) -> None:
        """Add a state listener."""
        self._subs.listeners.append(listener)

    # Connections

    def _make_protocol(self, subscriber: bool) -> Any:
        txredisapi = _txredisapi()
        bus = self
        if subscriber:

            class Subscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc, name-defined]
                def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
                    bus._message(channel, message)

            # charset None: payloads stay bytes.
            proto = Subscriber(
                charset=None, password=self.address.password, username=self.address.username,
                replyTimeout=self._timeout,
            )
        else:
            proto = txredisapi.RedisProtocol(
                charset=None, replyTimeout=self._timeout, password=self.address.password,
                username=self.address.username, dbid=self.address.db or None,
            )
        proto.callLater = self._reactor.callLater
        return proto

    def _ready(self, proto: Any, subscriber: bool) -> None:
        if self._stopped:
            proto.transport.loseConnection()
            return
        if not subscriber:
            answered = self._answered(proto, proto.ping())
        else:
            self._subscriber_conn = proto
            answered = self._answered(
                proto, gatherResults([proto.ping()] + [proto.subscribe(c) for c in self._subs.handlers], consumeErrors=True)
            )

        def usable(_: object) -> None:
            if subscriber and self._subscriber_conn is proto:
                self._subscriber = proto
            elif not subscriber and proto.connected:
                self._publisher = proto
            self._refresh()

        answered.addCallbacks(usable, lambda f: log.warn(
            "Redis did not answer the bus ({why}); reconnecting", why=f.getErrorMessage()))

    def _answered(self, proto: Any, d: Deferred[Any]) -> Deferred[Any]:
        """`d`, failed after the timeout; a connection whose command failed or timed out is aborted (and renewed)."""
        d.addTimeout(self._timeout, self._reactor)

        def failed(f: Failure) -> Failure:
            if proto.transport is not None:
                proto.transport.abortConnection()
            return f

        return d.addErrback(failed)

    def _lost(self, proto: Any, subscriber: bool) -> None:
        if subscriber and proto is self._subscriber_conn:
            self._subscriber = self._subscriber_conn = None
        elif not subscriber and proto is self._publisher:
            self._publisher = None
        self._refresh()

    def _refresh(self) -> None:
        if self._stopped:
            return
        connected = self._publisher is not None and self._subscriber is not None
        if connected == self.connected:
            return
        self.connected = connected
        if connected:
            log.info("bus connected to {uri}", uri=str(self.address))
            waiters, self._start_waiters = self._start_waiters, []
            for d in waiters:
                d.callback(None)
        else:
            log.warn("bus lost its connection to {uri}; reconnecting", uri=str(self.address))
        self._subs.tell(connected)

    def _message(self, channel: Any, payload: Any) -> None:
        name = channel.decode("utf-8", "replace") if isinstance(channel, bytes) else str(channel)
        self._subs.deliver(name, payload if isinstance(payload, bytes) else str(payload).encode())

    def _ping(self) -> None:
        for proto in (self._publisher, self._subscriber):
            if proto is not None:
                self._answered(proto, proto.ping()).addErrback(lambda _: None)


def _unavailable(failure: Failure) -> Failure:
    """Turn a lost connection or a reply timeout into BusUnavailable."""
    if failure.check(BusUnavailable, TypeError, ValueError):
        return failure
    return Failure(BusUnavailable(f"Redis did not take the command: {failure.getErrorMessage()}"))

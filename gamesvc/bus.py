"""The message bus between the nodes of a cluster: the `IBus` interface and its in-memory implementation.

`gamesvc.redisbus.RedisBus` carries messages over Redis pub/sub; `MemoryBus` does the same between the simulated
nodes of one process, sharing a `MemoryHub`, so that cluster logic can be tested on a `task.Clock`.
`tests/test_bus.py` runs one suite against both.

Semantics (those of Redis pub/sub, which both implementations keep):
- delivery is at most once: a message published while a subscriber is disconnected is lost for it;
- messages on one channel from one publisher arrive in publish order;
- a bus delivers its own messages to itself when it subscribes to the channel it publishes on;
- subscriptions are kept by the bus and renewed by it after every reconnect;
- while disconnected, `publish` fails at once with `BusUnavailable` (nothing is queued).
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from gamesvc.errors import BusUnavailable

__all__ = ["Handler", "StateListener", "IBus", "MemoryHub", "MemoryBus", "Subscriptions", "check_channel", "publish_refusal"]

Handler = Callable[[str, bytes], None]
"""Receives a message: (channel, payload)."""

StateListener = Callable[[bool], None]
"""Told of every change of the bus's state: True when it (re)connected, False when it lost the connection."""

MAX_CHANNEL_CHARS = 256

log = Logger()


def check_channel(channel: str) -> str:
    """Return `channel` if it is a usable channel name (non-empty printable text, no glob characters); else ValueError."""
    if not isinstance(channel, str) or not channel or len(channel) > MAX_CHANNEL_CHARS:
        raise ValueError(f"a channel name is 1..{MAX_CHANNEL_CHARS} characters")
    if not channel.isprintable() or any(c in channel for c in " *?[]"):
        raise ValueError(f"{channel!r} is not a plain channel name")
    return channel


def publish_refusal(channel: str, payload: bytes) -> Exception | None:
    """Why `payload` cannot be published on `channel` (a payload that is not bytes, a bad channel name), or None."""
    if not isinstance(payload, bytes):
        return TypeError("a bus payload is bytes")
    try:
        check_channel(channel)
    except ValueError as e:
        return e
    return None


class IBus(Interface):
    """Publish/subscribe between nodes, at most once, in order per channel and publisher."""

    connected = Attribute("True while the bus can publish and receive (bool).")

    def start() -> Deferred[None]:
        """Begin connecting (and reconnecting after every loss, until `stop`); fires when first connected.

        The service does not wait for it: a node without its bus still serves its own players.
        Fails with BusUnavailable if `stop` is called first.
        """

    def stop() -> Deferred[None]:
        """Disconnect for good: no more reconnects, deliveries or state changes; fires when closed."""

    def publish(channel: str, payload: bytes) -> Deferred[int]:
        """Send `payload` to the subscribers of `channel`; fires with how many buses received it.

        Fails at once with BusUnavailable while disconnected (never queues).
        """

    def subscribe(channel: str, handler: Handler) -> Deferred[None]:
        """Call `handler(channel, payload)` for each message on `channel`, from now on and after every reconnect.

        The subscription is kept at once; the Deferred fires when the server confirmed it, or at once while
        disconnected (it takes effect on reconnection). A handler that raises is logged and skipped.
        """

    def unsubscribe(channel: str, handler: Handler) -> Deferred[None]:
        """Stop calling `handler` for `channel` (no error when it was not subscribed)."""

    def on_state(listener: StateListener) -> None:
        """Call `listener(connected)` on every change of `connected`, e.g. to reload state after an outage."""


class Subscriptions:
    """The handlers of each channel, and the state listeners, that both bus implementations keep."""

    def __init__(self) -> None:
        self.handlers: dict[str, list[Handler]] = {}
        self.listeners: list[StateListener] = []

    def add(self, channel: str, handler: Handler) -> bool:
        """Add a handler; True when the channel had none (the server must be told)."""
        handlers = self.handlers.setdefault(check_channel(channel), [])
        if handler not in handlers:
            handlers.append(handler)
        return len(handlers) == 1

    def remove(self, channel: str, handler: Handler) -> bool:
        """Remove a handler; True when the channel has none left (the server must be told)."""
        handlers = self.handlers.get(channel)
        if handlers is None or handler not in handlers:
            return False
        handlers.remove(handler)
        if handlers:
            return False
        del self.handlers[channel]
        return True

    def deliver(self, channel: str, payload: bytes) -> None:
        """Call every handler of `channel`; one that raises is logged and does not stop the others."""
        for handler in list(self.handlers.get(channel, ())):
            try:
                handler(channel, payload)
            except Exception:
                log.failure("bus handler failed on channel {channel}", channel=channel)

    def tell(self, connected: bool) -> None:
        """Tell every state listener; one that raises is logged and does not stop the others."""
        for listener in list(self.listeners):
            try:
                listener(connected)
            except Exception:
                log.failure("bus state listener failed")


class MemoryHub:
    """The Redis server of the memory buses: routes messages between the `MemoryBus`es made by `bus()`.

    With a `clock`, each message is delivered on `clock.callLater(0, ...)`, as a network hop would (tests call
    `clock.advance(0)`, which delivers everything published so far, in order); without one, `publish` delivers
    before it returns. Either way a handler that publishes does not overtake earlier messages: deliveries are
    one FIFO queue. `outage()` and `recover()` simulate Redis (or one node's link to it) going down and back.
    """

    def __init__(self, clock: IReactorTime | None = None) -> None:
        self._clock = clock
        self._buses: list[MemoryBus] = []
        self._queue: deque[tuple[MemoryBus, str, bytes]] = deque()
        self._drain_call: IDelayedCall | None = None
        self._draining = False
        self.up = True

    def bus(self) -> MemoryBus:
        """A new bus attached to this hub (not started)."""
        bus = MemoryBus(self)
        self._buses.append(bus)
        return bus

    def outage(self, *buses: MemoryBus) -> None:
        """Disconnect the given buses (all, and the hub itself, when none are given); messages in flight to them are lost."""
        if not buses:
            self.up = False
        for bus in buses:
            bus._link_up = False
        for bus in tuple(self._buses):
            bus._refresh()

    def recover(self, *buses: MemoryBus) -> None:
        """Reconnect the given buses (all, and bring the hub back, when none are given); they resubscribe themselves."""
        if not buses:
            self.up = True
        for bus in buses or tuple(self._buses):
            bus._link_up = True
        for bus in tuple(self._buses):
            bus._refresh()

    @property
    def pending(self) -> int:
        """Messages published but not yet delivered."""
        return len(self._queue)

    def _publish(self, channel: str, payload: bytes) -> int:
        receivers = [bus for bus in self._buses if bus.connected and channel in bus._subs.handlers]
        for bus in receivers:
            self._queue.append((bus, channel, payload))
        if self._clock is None:
            self._drain()
        elif self._drain_call is None and self._queue:
            self._drain_call = self._clock.callLater(0, self._drain)
        return len(receivers)

    def _drain(self) -> None:
        self._drain_call = None
        if self._draining:
            return  # the outer loop delivers what a handler published, after what came before it
        self._draining = True
        try:
            while self._queue:
                bus, channel, payload = self._queue.popleft()
                # Redis drops what a subscriber misses while disconnected or after unsubscribing.
                if bus.connected:
                    bus._subs.deliver(channel, payload)
        finally:
            self._draining = False


@implementer(IBus)
class MemoryBus:
    """One node's bus over a `MemoryHub` (make it with `hub.bus()`); behaves like `RedisBus`."""

    def __init__(self, hub: MemoryHub) -> None:
        self._hub = hub
        self._subs = Subscriptions()
        self._started = False
        self._link_up = True
        self._start_waiters: list[Deferred[None]] = []
        self.connected = False

    def start(self) -> Deferred[None]:
        """Connect now if the hub is up, else when it recovers."""
        self._started = True
        d: Deferred[None] = Deferred()
        self._start_waiters.append(d)
        self._refresh()
        return d

    def stop(self) -> Deferred[None]:
        """Disconnect for good."""
        self._started = False
        self.connected = False
        waiters, self._start_waiters = self._start_waiters, []
        for d in waiters:
            d.errback(BusUnavailable("the bus was stopped"))
        return succeed(None)

    def publish(self, channel: str, payload: bytes) -> Deferred[int]:
        """Hand the message to the hub, or fail at once while disconnected."""
        refused = publish_refusal(channel, payload)
        if refused is not None:
            return fail(refused)
        if not self.connected:
            return fail(BusUnavailable("the bus is not connected"))
        return succeed(self._hub._publish(channel, payload))

    def subscribe(self, channel: str, handler: Handler) -> Deferred[None]:
        """Keep the subscription; the hub routes by it whenever the bus is connected."""
        try:
            self._subs.add(channel, handler)
        except ValueError as e:
            return fail(e)
        return succeed(None)

    def unsubscribe(self, channel: str, handler: Handler) -> Deferred[None]:
        """Forget the subscription."""
        self._subs.remove(channel, handler)
        return succeed(None)

    def on_state(self, listener: StateListener) -> None:
        """Add a state listener."""
        self._subs.listeners.append(listener)

    def _refresh(self) -> None:
        connected = self._started and self._hub.up and self._link_up
        if connected == self.connected:
            return
        self.connected = connected
        if connected:
            waiters, self._start_waiters = self._start_waiters, []
            for d in waiters:
                d.callback(None)
        self._subs.tell(connected)

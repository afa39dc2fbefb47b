"""The WebSocket protocol: frames to the contract's JSON envelope, an op table, replies and events.

Thin by design: every op reads its typed arguments and calls a service. Requests of one
connection are served one after another, so replies come in request order; every failure is
answered as data, with tracebacks only in the server log.
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Any, Callable, Coroutine

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from zope.interface import implementer

from gamesvc import args, fairness, fastframe, origins, sendnow
from gamesvc.addresses import client_address, trusted_networks
from gamesvc.auth import token_hash
from gamesvc.cluster.relay import RELAYED_OPS
from gamesvc.errors import GameError, RateLimited, StoreUnavailable, bad_request
from gamesvc.heap import HeapTrimmer
from gamesvc.interfaces import IMind
from gamesvc.ratelimit import TokenBucket
from gamesvc.wire import Outgoing

log = Logger()
SESSION_COOKIE = "gamesvc_session"
# Behind TLS the cookie is __Host- prefixed: browsers then accept it only Secure, for Path=/ and without a
# Domain, so a sibling subdomain cannot plant one.
SECURE_SESSION_COOKIE = "__Host-gamesvc_session"
MAX_ID_LENGTH = 128
CLOSE_POLICY_VIOLATION = 1008
CLOSE_GOING_AWAY = 1001
CLOSE_SERVICE_RESTART = 1012
CLOSE_SIGNIN_TIMEOUT = 4408  # like HTTP 408: the connection did not sign in within --signin-timeout
SLOW_REQUEST = 0.5  # seconds; slower requests are logged with their fields
PEER_PROBE_SECONDS = 1.0  # while reading is paused, how often to look whether the peer has closed

Handler = Callable[["GameProtocol", dict], Any]
# name -> (handler, needs auth, answered at once): an `at_once` handler is a plain function that awaits nothing.
OPS: dict[str, tuple[Handler, bool, bool]] = {}


def op(name: str, *, auth: bool = True, at_once: bool = False) -> Callable[[Handler], Handler]:
    """Register a handler in the op table; `auth` ops answer `unauthenticated` before login.

    `at_once` handlers are plain functions returning the reply's fields: they need no store, so they are
    served in the frame's own call instead of through a coroutine and a Deferred.
    """

    def register(fn: Handler) -> Handler:
        OPS[name] = (fn, auth, at_once)
        return fn

    return register


def request_id(message: dict) -> str | int | None:
    """The request's `id` when it is a string or integer the client can match, else None."""
    value = message.get("id")
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and -(2**53) <= value <= 2**53:
        return value
    if isinstance(value, str) and len(value) <= MAX_ID_LENGTH and not holds_lone_surrogate(value):
        return value
    return None


def holds_lone_surrogate(value: Any) -> bool:
    """Whether a parsed JSON value holds a string that is not Unicode text (a lone ``\\ud800``-style escape).

    Such a string cannot be encoded as UTF-8, so it could never be echoed back in a reply or an event.
    """
    stack = [value]
    while stack:  # iterative: a frame may nest deeply
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def peer_host(peer: str) -> str:
    """The host part of Autobahn's peer string: ``tcp:1.2.3.4:5678`` -> ``1.2.3.4``, ``tcp6:::1:5678`` -> ``::1``."""
    kind, sep, rest = peer.partition(":")
    if not sep or kind not in ("tcp", "tcp4", "tcp6"):
        return peer
    host, _, _port = rest.rpartition(":")
    return host or rest


def session_cookie_name(behind_tls: bool) -> str:
    """The session cookie's name: ``__Host-`` prefixed behind TLS."""
    return SECURE_SESSION_COOKIE if behind_tls else SESSION_COOKIE


def session_cookie_values(header: str | None, name: str = SESSION_COOKIE) -> list[str]:
    """Every non-empty value of the cookie `name` in a Cookie header (several headers joined by ``;`` or ``,``)."""
    # Split by hand: http.cookies drops every cookie after one it cannot parse (a JSON value, a space),
    # and browsers send all of the host's cookies, ours among them.
    values = []
    for part in re.split(r"[;,]", header or ""):
        key, sep, value = part.strip().partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if value:
                values.append(value)
    return values


def session_token_from_cookie(header: str | None, name: str = SESSION_COOKIE) -> str | None:
    """The session token carried in a Cookie header; None when absent or sent more than once (a planted
    duplicate cannot be told from the real one, so neither is used)."""
    values = session_cookie_values(header, name)
    return values[0] if len(values) == 1 else None


def origin_allowed(origin: str | None, host: str | None, secure: bool, patterns: tuple[str, ...]) -> bool:
    """Whether a handshake's Origin may connect.

    No Origin header means a non-browser client, which is allowed; the literal ``null`` is refused.
    With no configured patterns only the server's own origin (scheme and Host header) is allowed; otherwise
    the origin must match a pattern exactly (gamesvc.origins).
    """
    if origin is None:
        return True
    origin = origin.strip().lower()
    if origin == "null" or not origin:
        return False
    if patterns:
        return origins.allowed(origin, origins.compile_patterns(patterns))
    parsed = origins.parse_origin(origin)
    if parsed is None or not host:
        return False
    own = origins.parse_origin(f"{'https' if secure else 'http'}://{host}")
    return own is not None and parsed == own


@implementer(IMind)
class GameProtocol(WebSocketServerProtocol):
    """One client connection: its identity, its request queue, and the events pushed to it."""

    factory: "GameFactory"
    fast_frames = True  # read common frames with gamesvc.fastframe (False: Autobahn reads every frame)
    # Class-level defaults, set on the instance only when they change: 10,000 idle connections carry no copies.
    _pending_bytes = 0
    _draining = False
    _reading_paused = False
    _received_while_paused = 0
    _queue_filled = False  # reading was paused at least once: large buffers were held
    _probing = False  # a peer-close probe is scheduled
    _held: list[bytes] | None = None  # the reads of a common frame not yet whole (fastframe.incomplete)
    _held_bytes = 0
    _held_need = 0  # the frame's whole size: its reads are joined and delivered once this many have come

    def __init__(self) -> None:
        super().__init__()
        self.account: Any = None
        self.token: str | None = None
        self.address = "unknown"
        self.open = False
        # Between onOpen and _detach: counted among the factory's connections and known to the services.
        self._attached = False
        self._cookie_token: str | None = None
        # Frames waiting behind a request that awaits (payload, binary, within the message rate): kept as the
        # bytes that came in, and parsed only when their turn comes, so a waiting frame costs its size.
        self._pending: deque[tuple[bytes, bool, bool]] = deque()
        self._busy = False  # a request is awaiting the store (or bcrypt)
        self._strikes = 0
        self._messages: TokenBucket | None = None
        self._chats: TokenBucket | None = None
        self._signin_timer: IDelayedCall | None = None
        self._address_counted = False

    # Handshake and lifecycle

    def onConnect(self, request: ConnectionRequest) -> None:
        """Refuse foreign origins and connections over the limit; remember the cookie's token."""
        services = self.factory.services
        settings = services.settings
        if not origin_allowed(
            request.headers.get("origin"), request.headers.get("host"), settings.behind_tls, settings.allowed_origins
        ):
            services.metrics.refused("origin")
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")
        if len(self.factory.connections) >= settings.max_connections:
            services.metrics.refused("capacity")
            raise ConnectionDeny(ConnectionDeny.SERVICE_UNAVAILABLE, "server is full")
        self.address = client_address(peer_host(request.peer), request.headers.get("x-forwarded-for"), self.factory.trusted)
        if not self.factory.address_opened(self.address):
            services.metrics.refused("address")
            raise ConnectionDeny(429, "too many connections from this address")
        self._address_counted = True
        self._cookie_token = session_token_from_cookie(
            request.headers.get("cookie"), session_cookie_name(settings.behind_tls)
        )

    def onOpen(self) -> None:
        """Join the factory's connections and authenticate from the handshake's cookie first."""
        services = self.factory.services
        clock = services.clock
        settings = services.settings
        self.open = self._attached = True
        self._messages = TokenBucket(clock, settings.message_rate, settings.message_burst)
        self._chats = TokenBucket(clock, settings.chat_rate, settings.chat_burst)
        self.factory.connections.add(self)
        services.metrics.connection_opened()
        self._arm_signin_deadline()
        if self._cookie_token:
            self._start(self._authenticate_cookie(self._cookie_token))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        """Leave the factory's connections; rooms keep the seat for the grace period."""
        if self._address_counted:
            self._address_counted = False
            self.factory.address_closed(self.address)
        self._detach()
        # A request still awaiting bcrypt keeps this object alive for seconds: let go of the unread bytes now.
        self.data = b""
        self._held = None
        if self._queue_filled:
            self.factory.heap.request()  # its large buffers are free now: give the memory back

    def _arm_signin_deadline(self) -> None:
        """Give an anonymous connection --signin-timeout seconds to sign in (again after a sign-out)."""
        timeout = self.factory.services.settings.signin_timeout
        if timeout > 0 and self._signin_timer is None:
            self._signin_timer = self.factory.services.clock.callLater(timeout, self._signin_deadline)

    def _disarm_signin_deadline(self) -> None:
        """Drop the sign-in deadline (signed in, or gone): a signed-in connection holds no timer, and a sign-out
        later gets a whole --signin-timeout again."""
        if self._signin_timer is not None and self._signin_timer.active():
            self._signin_timer.cancel()
        self._signin_timer = None

    def _signin_deadline(self) -> None:
        self._signin_timer = None
        if self.open and self.account is None:
            self.sendClose(CLOSE_SIGNIN_TIMEOUT, "sign in (signup, login or resume) sooner")

    def _detach(self) -> None:
        if not self._attached:
            return
        self.open = self._attached = False
        self._pending.clear()
        self._disarm_signin_deadline()
        self._pending_bytes = 0
        self.factory.connections.discard(self)
        services = self.factory.services
        services.metrics.connection_closed()
        services.sessions.remove(self)
        services.disconnected(self)

    # Incoming frames

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """Serve one frame at once, or queue its bytes behind a request that awaits.

        The message rate is charged on arrival; the frame is parsed when its turn comes, so every reply,
        errors included, comes in request order.
        """
        within_rate = self._messages.take()  # type: ignore[union-attr]
        if within_rate:
            self._strikes = 0
        elif self._flooding():
            return
        if self._busy or self._pending:
            self._queue(payload, isBinary, within_rate)
        else:
            self._handle(payload, isBinary, within_rate)

    def _queue(self, payload: bytes, binary: bool, within_rate: bool) -> None:
        """Keep a frame's bytes until the requests before it are served; stop reading once the queue is full."""
        self._pending.append((payload, binary, within_rate))
        self._pending_bytes += len(payload)
        settings = self.factory.services.settings
        if len(self._pending) >= settings.max_queued_requests or self._pending_bytes >= settings.max_queued_bytes:
            self._pause_reading()

    def _pause_reading(self) -> None:
        """Stop reading from the socket (TCP backpressure) and parsing what was already read."""
        if not self._reading_paused:
            self._reading_paused = True
            self._queue_filled = True
            self._received_while_paused = 0
            if self.transport is not None:
                self.transport.pauseProducing()  # type: ignore[attr-defined]  # a TCP transport is a producer
            if not self._probing:
                self._probing = True
                self.factory.services.clock.callLater(PEER_PROBE_SECONDS, self._probe_peer)

    def _probe_peer(self) -> None:
        """While reading is paused, drop the connection once its peer has closed: the close cannot be read, and the
        queue's buffers would otherwise be held until the slow request ends. One probe at a time."""
        if not self._reading_paused or not self.open:
            self._probing = False
            return
        if sendnow.peer_closed(self.transport):
            self._probing = False
            self._detach()
            self.dropConnection(abort=True)
        else:
            self.factory.services.clock.callLater(PEER_PROBE_SECONDS, self._probe_peer)

    def _resume_reading(self) -> None:
        """Read again, starting with the frames buffered when reading stopped."""
        self._reading_paused = False
        if self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]
        if self.state in (self.STATE_OPEN, self.STATE_CLOSING) and self.data:
            self.consumeData()

    def dataReceived(self, data: bytes) -> None:
        """Autobahn's reader, with a guard against bytes that keep coming while reading is paused.

        A TCP transport delivers nothing once paused; a transport that still does is bounded here: the client
        is closed with 1008 once those bytes pass the queue's byte limit. Common frames take the fast path
        (gamesvc.fastframe), one cut by the read being kept (at most one frame of --max-message-bytes) until it
        is whole; the rest goes to Autobahn.
        """
        if self._reading_paused:
            self._received_while_paused += len(data)
            if self._received_while_paused > self.factory.services.settings.max_queued_bytes:
                self._close_policy("request queue full", "closing {address}: it keeps sending while its queue is full")
                return
        if self._held is not None:
            self._held.append(data)
            self._held_bytes += len(data)
            if self._held_bytes < self._held_need and fastframe.ready(self):
                return
            # Joined once, so that a frame trickling in costs linear copies; if the connection left the open
            # state meanwhile (a close from our side), Autobahn reads the bytes instead, in order.
            data = b"".join(self._held)
            self._held = None
        if self.fast_frames and fastframe.ready(self):
            data = fastframe.deliver(self, data)
            if not data:
                return
            need = fastframe.incomplete(self, data)
            if need:
                self._held, self._held_bytes, self._held_need = [data], len(data), need
                return
        super().dataReceived(data)

    def processData(self) -> bool:
        """Autobahn's frame parser, which leaves buffered frames unparsed while the request queue is full."""
        if self._reading_paused:
            return False
        return bool(super().processData())

    def _handle(self, payload: bytes, binary: bool, within_rate: bool) -> None:
        """Parse and check one frame, then serve it: at once when its op awaits nothing, else as a coroutine."""
        started = self.factory.services.clock.seconds()
        rid: Any = None
        name: Any = ""
        try:
            if binary:
                raise bad_request("binary frames are not accepted")
            try:
                # Text frames are UTF-8 (Autobahn checks it); json.loads(bytes) would also guess UTF-16 or UTF-32.
                message = json.loads(payload.decode("utf-8"))
            except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser allows
                raise bad_request("the frame is not valid JSON") from None
            if not isinstance(message, dict):
                raise bad_request("a request must be a JSON object")
            rid = request_id(message)
            name = message.get("op")
            if not within_rate:
                raise RateLimited("too many messages; slow down", self._messages.retry_after())  # type: ignore[union-attr]
            if not isinstance(name, str) or not name:
                raise bad_request("op must be a non-empty string")
            # A lone surrogate can only come from a \u escape: skip the walk for the frames that have none.
            if b"\\u" in payload and holds_lone_surrogate(message):
                raise bad_request("the request holds a lone surrogate (\\ud800-\\udfff) escape")
            if name == "room.chat" and not self._chats.take():  # type: ignore[union-attr]
                raise RateLimited("too many chat messages; slow down", self._chats.retry_after())  # type: ignore[union-attr]
            entry = OPS.get(name) if not name.startswith("_") else None
            if entry is None:
                raise GameError("unknown_op", f"there is no op {name[:40]!r}")
            handler, needs_auth, at_once = entry
            if needs_auth and self.account is None:
                raise GameError("unauthenticated", "sign up, log in or resume first")
            relay = self.factory.services.relay
            if relay is not None and name in RELAYED_OPS and relay.routes(self, name):
                # In a cluster the room may be another node's: the op runs there (gamesvc.cluster.relay).
                self._start(self._serve(rid, name, relay.handler(name, handler), message, started))
                return
            if not at_once:
                self._start(self._serve(rid, name, handler, message, started))
                return
            fields = handler(self, message)
        except GameError as e:
            self._send_error(rid, e)
            self._served(name, e.code, started)
            return
        except Exception:
            log.failure("op {op} failed", op=name, **self._log_fields())
            self._send_error(rid, GameError("internal", "internal error"))
            self._served(name, "internal", started)
            return
        self._reply(rid, fields)
        self._served(name, "ok", started)

    def _start(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a request that awaits; the frames after it wait in the queue until it is done."""
        self._busy = True
        Deferred.fromCoroutine(coroutine).addErrback(lambda f: log.failure("request failed", f)).addBoth(self._done)

    def _done(self, _: Any) -> None:
        self._busy = False
        if not self._draining:
            self._drain()

    def _drain(self) -> None:
        """Serve queued frames in order until one awaits; read again once the queue has room."""
        self._draining = True
        try:
            while self._pending and not self._busy and self.open:
                payload, binary, within_rate = self._pending.popleft()
                self._pending_bytes -= len(payload)
                self._handle(payload, binary, within_rate)
        finally:
            self._draining = False
        settings = self.factory.services.settings
        if (
            self._reading_paused
            and self.open
            and len(self._pending) < settings.max_queued_requests
            and self._pending_bytes < settings.max_queued_bytes
        ):
            self._resume_reading()

    async def _serve(self, rid: Any, name: str, handler: Handler, message: dict, started: float) -> None:
        """Run one request that awaits and send exactly one reply."""
        result = "ok"
        try:
            fields = await handler(self, message)
            self._reply(rid, fields)
        except GameError as e:
            result = e.code
            self._send_error(rid, e)
        except StoreUnavailable as e:
            result = "unavailable"
            log.warn("store unavailable during {op}: {why}", op=name, why=str(e), **self._log_fields())
            self._send_error(rid, GameError("unavailable", "the store is unavailable; try again shortly"))
        except Exception:
            result = "internal"
            log.failure("op {op} failed", op=name, **self._log_fields())
            self._send_error(rid, GameError("internal", "internal error"))
        self._served(name, result, started)

    def _reply(self, rid: Any, fields: dict | None) -> None:
        reply = {"re": rid, "ok": True}
        if fields:
            reply.update(fields)
        self._send_message(reply)

    def _served(self, name: Any, result: str, started: float) -> None:
        """Count a served request and log it when slow."""
        latency = self.factory.services.clock.seconds() - started
        # Only known op names become metric labels: client-chosen strings must not grow the label set.
        label = name if isinstance(name, str) and name in OPS else "unknown"
        self.factory.services.metrics.request(label, result, latency)
        if latency >= SLOW_REQUEST:
            log.info("slow request {op}: {latency:.3f}s", op=name, latency=latency, result=result, **self._log_fields())

    def _flooding(self) -> bool:
        """Count a message over the rate; close the connection (1008) once it keeps flooding."""
        self._strikes += 1
        if self._strikes < self.factory.services.settings.flood_strikes:
            return False
        self.factory.services.metrics.error("rate_limited")
        self._close_policy("message rate limit exceeded", "closing flooding connection from {address}")
        return True

    def _close_policy(self, reason: str, event: str) -> None:
        """Close with 1008 (policy violation) and stop serving this connection's queue."""
        log.warn(event, address=self.address)
        # sendClose refuses codes other than 1000 and 3000-4999; the 1008 frame itself is valid.
        self.sendCloseFrame(code=CLOSE_POLICY_VIOLATION, reasonUtf8=reason.encode("utf-8"), isReply=False)

    def _log_fields(self) -> dict[str, Any]:
        """Who and where, for log events (never tokens, passwords or chat text)."""
        user = self.account.username if self.account is not None else None
        return {"user": user, "room": self.factory.services.rooms.room_of(self), "address": self.address}

    async def _authenticate_cookie(self, token: str) -> None:
        """Sign the connection in from its handshake cookie; a bad cookie just leaves it anonymous."""
        try:
            account, _user, expires = await self.factory.services.accounts.resume_expiring(token)
            self._sign_in(account, token, expires)
        except (GameError, StoreUnavailable):
            return

    # Outgoing

    def _send_message(self, message: dict) -> None:
        """Encode and send one reply or event to this connection (not named `_send`: Autobahn has its own)."""
        self.deliver(Outgoing(message))

    def _send_error(self, rid: Any, error: GameError) -> None:
        self.factory.services.metrics.error(error.code)
        self._send_message({"re": rid, "ok": False, **error.to_json()})

    def deliver(self, outgoing: Outgoing) -> None:
        """Send a pre-encoded message, framing it once per broadcast; drop clients that do not read."""
        if not self.open:
            return
        framed = outgoing.framed
        if framed is None:
            framed = outgoing.framed = fastframe.text_frame(outgoing.payload)
        if self._perMessageCompress is None:
            self.sendData(framed)
        else:  # never negotiated by GameFactory; kept correct should it ever be
            self.sendMessage(outgoing.payload)
        self.factory.services.metrics.message_out()
        if sendnow.pending(self.transport) > self.factory.services.settings.send_buffer_bytes:
            log.warn("dropping slow client {address}: send buffer full", address=self.address)
            self._drop_slow()

    def _drop_slow(self) -> None:
        """Abort a client that does not read. The rooms hear of it on a later reactor turn (onClose, or the call
        below if the transport never reports), never from inside the broadcast that is delivering to it."""
        self.open = False
        self.dropConnection(abort=True)
        self.factory.services.clock.callLater(0, self._detach)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """Autobahn's frame writer, sending at once (gamesvc.sendnow) when nothing is queued before the frame."""
        if sync or chopsize or self.send_queue or self.transport is None:
            super().sendData(data, sync, chopsize)
        else:
            sendnow.write_now(self.transport, data)

    # Session helpers used by the ops

    def _sign_in(self, account: Any, token: str, expires: float) -> None:
        if not self.open:
            return  # closed while the sign-in was under way: nothing would ever unregister it
        if not self.factory.services.sessions.add(token_hash(token), self, expires):
            raise GameError("unauthenticated", "the session was logged out")
        self._disarm_signin_deadline()
        if self.account is not None and self.account != account:
            self.factory.services.disconnected(self)
        self.account = account
        self.token = token

    def _sign_out(self) -> None:
        """Leave the room (a seat waits for the grace period) and become anonymous again."""
        services = self.factory.services
        services.sessions.remove(self)
        services.disconnected(self)
        self.account = self.token = None
        self._arm_signin_deadline()

    def end_session(self, reason: str) -> None:
        """The session was logged out elsewhere or expired: tell the client (`session.ended`) and sign out."""
        if not self.open:
            return
        self._send_message({"event": "session.ended", "reason": reason})
        self._sign_out()


class GameFactory(WebSocketServerFactory):
    """Builds `GameProtocol`s that share the services and the set of open connections."""

    protocol = GameProtocol  # type: ignore[assignment]

    def __init__(self, services: Any, url: str | None = None) -> None:
        super().__init__(url)
        self.services = services
        self.connections: set[GameProtocol] = set()
        # Open connections (handshake included) per client address, for --max-connections-per-address.
        self.by_address: dict[str, int] = {}
        self.heap = HeapTrimmer(services.clock)
        settings = services.settings
        self.trusted = trusted_networks(settings.trusted_proxies)
        self.setProtocolOptions(
            maxMessagePayloadSize=settings.max_message_bytes,
            maxFramePayloadSize=settings.max_message_bytes,
            autoPingInterval=settings.ping_interval,
            autoPingTimeout=settings.ping_timeout,
            openHandshakeTimeout=settings.handshake_timeout,
            closeHandshakeTimeout=5,
            # Close with 1007/1009 on invalid UTF-8 or oversized messages instead of dropping the TCP connection.
            failByDrop=False,
            # Origins are checked in onConnect against the Host header or the configured patterns.
            allowedOrigins=["*"],
        )

    def address_opened(self, address: str) -> bool:
        """Count a new connection from `address`; False (and not counted) when the address is at its limit."""
        count = self.by_address.get(address, 0)
        if count >= self.services.settings.max_connections_per_address:
            return False
        self.by_address[address] = count + 1
        return True

    def address_closed(self, address: str) -> None:
        """Uncount a connection from `address`."""
        count = self.by_address.get(address, 0) - 1
        if count > 0:
            self.by_address[address] = count
        else:
            self.by_address.pop(address, None)

    def announce_restart(self) -> None:
        """Tell every connection that the server is about to restart (`server.restarting`)."""
        outgoing = Outgoing({"event": "server.restarting"})
        for connection in list(self.connections):
            connection.deliver(outgoing)

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        """Close every connection (used at shutdown)."""
        for connection in list(self.connections):
            # sendClose refuses 1001 (only 1000 and 3000-4999); raising here stopped the shutdown half way.
            connection.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8"), isReply=False)


# The op table. Each op reads its arguments with `gamesvc.args` and calls a service.


@op("ping", auth=False, at_once=True)
def _ping(conn: GameProtocol, message: dict) -> None:
    return None


async def _with_password(conn: GameProtocol, message: dict, action: Callable[..., Deferred]) -> dict:
    """signup and login: read the credentials, call the service, and sign the connection in."""
    signed = await action(
        args.text(message, "username", max_len=100), args.text(message, "password", max_len=1000), conn.address
    )
    conn._sign_in(signed.account, signed.token, signed.expires)
    return {"user": signed.user, "token": signed.token}


@op("signup", auth=False)
async def _signup(conn: GameProtocol, message: dict) -> dict:
    return await _with_password(conn, message, conn.factory.services.accounts.signup)


@op("login", auth=False)
async def _login(conn: GameProtocol, message: dict) -> dict:
    return await _with_password(conn, message, conn.factory.services.accounts.login)


@op("resume", auth=False)
async def _resume(conn: GameProtocol, message: dict) -> dict:
    token = args.text(message, "token", min_len=1, max_len=200)
    account, user, expires = await conn.factory.services.accounts.resume_expiring(token)
    conn._sign_in(account, token, expires)
    return {"user": user}


@op("logout")
async def _logout(conn: GameProtocol, message: dict) -> None:
    token = conn.token
    # Signed out first, so that this connection gets its reply rather than `session.ended`.
    conn._sign_out()
    if token:
        await conn.factory.services.accounts.logout(token)
    return None


@op("me")
async def _me(conn: GameProtocol, message: dict) -> dict:
    services = conn.factory.services
    user = await services.accounts.user(conn.account.key)
    room = services.rooms.seat_of(conn.account.key)
    if room is None and services.relay is not None:
        # In a cluster the seat may be in another node's room.
        room = await services.relay.seat_of(conn)
    return {"user": user, "room": room}


@op("leaderboard", auth=False)
async def _leaderboard(conn: GameProtocol, message: dict) -> dict:
    limit = args.integer(message, "limit", low=1, high=100, default=20)
    return {"players": await conn.factory.services.accounts.leaderboard(limit)}


@op("lobby.watch", at_once=True)
def _lobby_watch(conn: GameProtocol, message: dict) -> dict:
    return {"rooms": conn.factory.services.rooms.watch_lobby(conn)}


@op("lobby.unwatch", at_once=True)
def _lobby_unwatch(conn: GameProtocol, message: dict) -> None:
    conn.factory.services.rooms.unwatch_lobby(conn)
    return None


@op("room.create", at_once=True)
def _room_create(conn: GameProtocol, message: dict) -> dict:
    return conn.factory.services.rooms.create(
        conn,
        name=args.text(message, "name", min_len=1, max_len=40),
        seats=args.integer(message, "seats", low=2, high=4, default=4),
        private=args.boolean(message, "private", default=False),
        bot_takeover=args.boolean(message, "bot_takeover", default=False),
    )


@op("room.join", at_once=True)
def _room_join(conn: GameProtocol, message: dict) -> dict:
    return conn.factory.services.rooms.join(
        conn,
        args.text(message, "room", min_len=1, max_len=20),
        spectate=args.boolean(message, "spectate", default=False),
    )


@op("room.leave", at_once=True)
def _room_leave(conn: GameProtocol, message: dict) -> None:
    conn.factory.services.rooms.leave(conn)
    return None


@op("room.ready", at_once=True)
def _room_ready(conn: GameProtocol, message: dict) -> dict:
    ready = args.boolean(message, "ready", default=True)
    client_seed = args.text(message, "client_seed", min_len=1, max_len=fairness.CLIENT_SEED_MAX, default=None)
    if client_seed is not None and not fairness.valid_client_seed(client_seed):
        raise bad_request("client_seed must be 1 to 64 printable ASCII characters")
    return conn.factory.services.rooms.ready(conn, ready, client_seed)


@op("room.chat", at_once=True)
def _room_chat(conn: GameProtocol, message: dict) -> None:
    conn.factory.services.rooms.chat(conn, args.text(message, "text", min_len=1, max_len=500))
    return None


@op("game.roll", at_once=True)
def _game_roll(conn: GameProtocol, message: dict) -> None:
    conn.factory.services.rooms.roll(conn)
    return None


@op("room.add_bot", at_once=True)
def _room_add_bot(conn: GameProtocol, message: dict) -> dict:
    return conn.factory.services.rooms.add_bot(conn)


@op("room.remove_bot", at_once=True)
def _room_remove_bot(conn: GameProtocol, message: dict) -> None:
    conn.factory.services.rooms.remove_bot(conn, args.text(message, "bot", min_len=1, max_len=40))
    return None


@op("room.configure", at_once=True)
def _room_configure(conn: GameProtocol, message: dict) -> None:
    conn.factory.services.rooms.configure(conn, bot_takeover=args.boolean(message, "bot_takeover"))
    return None


@op("room.quick_play", at_once=True)
def _room_quick_play(conn: GameProtocol, message: dict) -> dict:
    return conn.factory.services.rooms.quick_play(conn)

"""The twisted.web site: the browser client, the JSON API, /healthz, /metrics and the /ws endpoint."""

from __future__ import annotations

import functools
import json
import os
import re
from typing import Any, Awaitable, Callable, cast

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import Resource

from gamesvc import args
from gamesvc.addresses import client_address, trusted_networks
from gamesvc.auth import user_key
from gamesvc.errors import GameError, StoreUnavailable, bad_request
from gamesvc.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gamesvc.protocol import (
    GameFactory,
    origin_allowed,
    session_cookie_name,
    session_cookie_values,
)
from gamesvc.results import visible_record
from gamesvc.wire import encode

log = Logger()
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
GAME_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
SECURITY_HEADERS = {
    b"content-security-policy": (
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
    b"cross-origin-opener-policy": b"same-origin",
    b"permissions-policy": b"camera=(), microphone=(), geolocation=()",
    b"server": b"gamesvc",
}
# Sent only with --behind-tls: browsers then refuse plain HTTP to this host for a year.
HSTS = b"max-age=31536000"


def static_resource() -> Resource:
    """The browser client's folder, without directory listings."""
    # twisted.web.static warns about deprecated modules on import; keep that out of module import time.
    from twisted.web.static import File

    class ClientFiles(File):
        """Static files of the client; folders are never listed."""

        def directoryListing(self) -> Resource:
            return _JsonError(GameError("not_found", "no such page"))

    files = ClientFiles(STATIC_DIR)
    files.contentTypes.update({".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml", ".css": "text/css; charset=utf-8"})
    return files


def write_json(request: server.Request, status: int, body: dict[str, Any]) -> None:
    """Finish a request with a JSON body."""
    if request.finished or request._disconnected:  # type: ignore[attr-defined]
        return
    request.setResponseCode(status, b"Upgrade Required" if status == 426 else None)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    request.write(encode(body))
    request.finish()


def write_error(request: server.Request, error: GameError) -> None:
    """Finish a request with the contract's JSON error."""
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        request.setHeader(b"retry-after", str(max(1, int(retry_after + 0.999))).encode())
    write_json(request, error.status, error.to_json())


class _JsonError(Resource):
    """A resource that always answers one JSON error."""

    isLeaf = True

    def __init__(self, error: GameError) -> None:
        super().__init__()
        self._error = error

    def render(self, request: server.Request) -> int:
        write_error(request, self._error)
        return server.NOT_DONE_YET


class Api(Resource):
    """The JSON API under /api: accounts, leaderboard, rooms and game records."""

    isLeaf = True

    def __init__(self, services: Any) -> None:
        super().__init__()
        self._services = services
        self._trusted = trusted_networks(services.settings.trusted_proxies)
        self._cookie = session_cookie_name(services.settings.behind_tls)

    def render(self, request: server.Request) -> Any:
        path = [segment.decode("utf-8", "replace") for segment in request.postpath or []]
        method = request.method.decode("ascii", "replace")
        Deferred.fromCoroutine(self._serve(request, method, path)).addErrback(
            lambda f: log.failure("API request failed", f)
        )
        return server.NOT_DONE_YET

    async def _serve(self, request: server.Request, method: str, path: list[str]) -> None:
        try:
            handler = self._route(method, path)
            if method == "POST":
                self._check_same_site(request)
            status, body = await handler(request)
            write_json(request, status, body)
        except GameError as e:
            write_error(request, e)
        except StoreUnavailable as e:
            log.warn("store unavailable during {path}: {why}", path="/".join(path), why=str(e))
            write_error(request, GameError("unavailable", "the store is unavailable; try again shortly"))
        except Exception:
            log.failure("API {method} /api/{path} failed", method=method, path="/".join(path))
            write_error(request, GameError("internal", "internal error"))

    def _route(self, method: str, path: list[str]) -> Callable[[server.Request], Awaitable[tuple[int, dict]]]:
        def only(allowed: str, handler: Callable[..., Awaitable[tuple[int, dict]]], *extra: str) -> Any:
            if method != allowed and not (allowed == "GET" and method == "HEAD"):
                raise GameError("method_not_allowed", f"use {allowed} here", allow=allowed)
            return lambda request: handler(request, *extra)

        match path:
            case ["signup"]:
                return only("POST", self._signup)
            case ["login"]:
                return only("POST", self._login)
            case ["logout"]:
                return only("POST", self._logout)
            case ["me"]:
                return only("GET", self._me)
            case ["leaderboard"]:
                return only("GET", self._leaderboard)
            case ["rooms"]:
                return only("GET", self._rooms)
            case ["games", game_id]:
                return only("GET", self._game, game_id)
            case ["users", name, "games"]:
                return only("GET", self._user_games, name)
        raise GameError("not_found", "no such API path")

    # Helpers

    def _body(self, request: server.Request) -> dict[str, Any]:
        if getattr(request, "too_large", False):
            raise GameError("too_large", "the request body is too large")
        content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if content_type != b"application/json":
            raise bad_request("send the body as application/json")
        try:
            body = json.loads((request.content.read() if request.content is not None else b"") or b"{}")
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser allows
            raise bad_request("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        return body

    def _check_same_site(self, request: server.Request) -> None:
        """Refuse a state-changing request a browser sent from another site (CSRF, logout included).

        An Origin header decides when present (the WebSocket's rule); else Sec-Fetch-Site; a request with
        neither must carry a JSON body or an Authorization header, which no cross-site page can send without
        a CORS preflight (which this server never grants).
        """
        settings = self._services.settings
        origin = request.getHeader(b"origin")
        if origin is not None:
            host = request.getHeader(b"host")
            if origin_allowed(
                origin.decode("latin-1"),
                host.decode("latin-1") if host is not None else None,
                settings.behind_tls,
                settings.allowed_origins,
            ):
                return
            raise GameError("forbidden", "cross-site requests are refused")
        fetch_site = request.getHeader(b"sec-fetch-site")
        if fetch_site is not None:
            if fetch_site.strip().lower() in (b"same-origin", b"none"):
                return
            raise GameError("forbidden", "cross-site requests are refused")
        content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if content_type != b"application/json" and request.getHeader(b"authorization") is None:
            raise GameError("forbidden", "send a JSON body (application/json) or a same-origin Origin header")

    def _token(self, request: server.Request) -> str | None:
        authorization = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        cookies = "; ".join(h.decode("latin-1") for h in request.requestHeaders.getRawHeaders(b"cookie", []))
        values = session_cookie_values(cookies, self._cookie)
        if len(values) > 1:
            # Two session cookies: one may have been planted by a sibling site (cookie tossing); trust neither.
            raise bad_request("the session cookie is sent more than once")
        return values[0] if values else None

    async def _account(self, request: server.Request) -> Any:
        token = self._token(request)
        if not token:
            raise GameError("unauthenticated", "log in first")
        return await self._services.accounts.resume(token)

    async def _viewer(self, request: server.Request) -> str | None:
        """The caller's user key when the request carries a live session (cookie or Bearer), else None."""
        token = self._token(request)
        if not token:
            return None
        try:
            account, _user = await self._services.accounts.resume(token)
        except GameError:
            return None  # an unknown or expired token reads like no token: public data only
        return account.key

    def _set_cookie(self, request: server.Request, token: str, max_age: int) -> None:
        secure = "; Secure" if self._services.settings.behind_tls else ""
        cookie = f"{self._cookie}={token}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict{secure}"
        request.responseHeaders.addRawHeader(b"set-cookie", cookie.encode("ascii"))

    def _address(self, request: server.Request) -> str:
        forwarded = request.requestHeaders.getRawHeaders(b"x-forwarded-for")
        return client_address(
            getattr(request.getClientAddress(), "host", "unknown"),
            b",".join(forwarded).decode("latin-1") if forwarded else None,
            self._trusted,
        )

    def _limit(self, request: server.Request, default: int) -> int:
        values = request.args.get(b"limit") if request.args is not None else None
        raw = values[0] if values else None
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise bad_request("limit must be an integer") from None
        return args.integer({"limit": value}, "limit", low=1, high=100)

    # Handlers

    async def _signup(self, request: server.Request) -> tuple[int, dict]:
        body = self._body(request)
        signed = await self._services.accounts.signup(
            args.text(body, "username", max_len=100), args.text(body, "password", max_len=1000), self._address(request)
        )
        self._set_cookie(request, signed.token, int(self._services.settings.session_ttl))
        return 200, {"user": signed.user, "token": signed.token}

    async def _login(self, request: server.Request) -> tuple[int, dict]:
        body = self._body(request)
        signed = await self._services.accounts.login(
            args.text(body, "username", max_len=100), args.text(body, "password", max_len=1000), self._address(request)
        )
        self._set_cookie(request, signed.token, int(self._services.settings.session_ttl))
        return 200, {"user": signed.user, "token": signed.token}

    async def _logout(self, request: server.Request) -> tuple[int, dict]:
        token = self._token(request)
        if token:
            await self._services.accounts.logout(token)
        self._set_cookie(request, "", 0)
        return 200, {}

    async def _me(self, request: server.Request) -> tuple[int, dict]:
        account, user = await self._account(request)
        return 200, {"user": user, "room": self._services.rooms.seat_of(account.key)}

    async def _leaderboard(self, request: server.Request) -> tuple[int, dict]:
        return 200, {"players": await self._services.accounts.leaderboard(self._limit(request, 20))}

    async def _rooms(self, request: server.Request) -> tuple[int, dict]:
        return 200, {"rooms": self._services.rooms.public_rooms()}

    async def _game(self, request: server.Request, game_id: str) -> tuple[int, dict]:
        record = await self._services.store.find_game(game_id) if GAME_ID.match(game_id) else None
        if record is None:
            raise GameError("not_found", "no such game")
        return 200, {"game": visible_record(record, await self._viewer(request))}

    async def _user_games(self, request: server.Request, name: str) -> tuple[int, dict]:
        limit = self._limit(request, 20)
        records = await self._services.store.games_for_user(user_key(name), limit)
        viewer = await self._viewer(request) if any(r.get("private") for r in records) else None
        return 200, {"games": [visible_record(record, viewer) for record in records]}


class Health(Resource):
    """/healthz: 200 when the store answers, 503 otherwise; with a bus, `"bus": "up"|"down"` (never a 503 by itself)."""

    isLeaf = True

    def __init__(self, services: Any) -> None:
        super().__init__()
        self._services = services

    def render_GET(self, request: server.Request) -> Any:
        # A Redis outage only cuts the node off from the others: it still serves its own players, so the load
        # balancer must keep it; the bus state is there for operators and monitoring.
        bus = self._services.bus
        extra = {} if bus is None else {"bus": "up" if bus.connected else "down"}

        def answer(ok: bool) -> None:
            if ok:
                write_json(request, 200, {"status": "ok", **extra})
            else:
                write_json(request, 503, {"status": "unavailable", "error": "unavailable", "message": "the store does not answer", **extra})

        d = self._services.store.ping()
        d.addCallbacks(lambda _: answer(True), lambda f: answer(False))
        return server.NOT_DONE_YET

    render_HEAD = render_GET


class MetricsPage(Resource):
    """/metrics in the Prometheus text format."""

    isLeaf = True

    def __init__(self, metrics: Any) -> None:
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", METRICS_CONTENT_TYPE.encode())
        request.setHeader(b"cache-control", b"no-store")
        return self._metrics.exposition()


class WebSocketEntry(Resource):
    """/ws: hands WebSocket upgrades to Autobahn; anything else is told to upgrade (426)."""

    isLeaf = True

    def __init__(self, factory: GameFactory) -> None:
        super().__init__()
        self._ws = WebSocketResource(factory)

    def render(self, request: server.Request) -> Any:
        upgrade = (request.getHeader(b"upgrade") or b"").lower()
        if upgrade != b"websocket":
            request.setHeader(b"upgrade", b"websocket")
            request.setHeader(b"connection", b"Upgrade")
            write_error(request, GameError("upgrade_required", "this path speaks WebSocket only"))
            return server.NOT_DONE_YET
        return self._ws.render(request)


class BoundedRequest(server.Request):
    """A request whose body is cut off, and refused with 413, beyond the configured size."""

    max_body = 16384
    too_large = False
    _received = 0

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self.max_body:
            self.too_large = True
            return
        super().handleContentChunk(data)


class DeadlineChannel(http.HTTPChannel):
    """An HTTP connection with absolute deadlines: one for a request's head (request line and headers, from the
    connection's start or the next request's first byte) and one for its body.

    Twisted's own `timeOut` is an idle timer that every byte resets, so a client sending one byte a minute
    would hold a request open forever. Both deadlines end once the whole request is in, before it is served,
    so a connection upgraded to WebSocket is never cut by them.
    """

    header_timeout = 10.0
    body_timeout = 30.0
    _deadline: IDelayedCall | None = None
    _reading = True  # reading a request's head or body (False while one is served and between requests)

    def _start(self, seconds: float, what: str) -> None:
        self._stop()
        self._deadline = self.callLater(seconds, functools.partial(self._expired, what, seconds))

    def _stop(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _expired(self, what: str, seconds: float) -> None:
        self._deadline = None
        if self.transport is None:  # handed over (WebSocket) or gone
            return
        log.info("closing slow HTTP client {address}: {what} not received within {seconds}s",
                 address=getattr(self.transport.getPeer(), "host", "?"), what=what, seconds=seconds)
        cast(ITCPTransport, self.transport).abortConnection()

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start(self.header_timeout, "request headers")

    def dataReceived(self, data: bytes) -> None:
        if not self._reading and not self._handlingRequest:
            # The first byte of the next request on a kept-alive connection starts its head's deadline.
            self._reading = True
            self._start(self.header_timeout, "request headers")
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        super().allHeadersReceived()
        if self.length == 0:
            self._stop()
        else:
            self._start(self.body_timeout, "request body")

    def allContentReceived(self) -> None:
        self._stop()
        self._reading = False
        super().allContentReceived()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop()
        super().connectionLost(reason)


class GameSite(server.Site):
    """The site: security headers on every response, JSON errors, no tracebacks, deadlines for requests."""

    displayTracebacks = False
    # A plain HTTP/1.1 channel (this site serves no TLS, so no HTTP/2 negotiation is lost), with deadlines.
    protocol = DeadlineChannel  # type: ignore[assignment]
    header_timeout = DeadlineChannel.header_timeout
    body_timeout = DeadlineChannel.body_timeout
    hsts = False

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        channel.header_timeout = self.header_timeout
        channel.body_timeout = self.body_timeout
        return channel

    def getResourceFor(self, request: server.Request) -> Resource:
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        if self.hsts:
            request.setHeader(b"strict-transport-security", HSTS)
        return super().getResourceFor(request)


def build_site(services: Any, factory: GameFactory, reactor: Any = None) -> GameSite:
    """The whole site of one service instance (`reactor`: the clock of its deadlines; default the global one)."""
    settings = services.settings
    root = static_resource()
    api = Api(services)
    root.putChild(b"api", api)
    root.putChild(b"healthz", Health(services))
    if settings.metrics_port is None:
        root.putChild(b"metrics", MetricsPage(services.metrics))
    root.putChild(b"ws", WebSocketEntry(factory))
    request_class = type("Request", (BoundedRequest,), {"max_body": settings.max_body_bytes})
    site = GameSite(root, requestFactory=request_class, reactor=reactor)
    site.header_timeout = settings.http_header_timeout
    site.body_timeout = settings.http_body_timeout
    site.hsts = settings.behind_tls
    return site


def build_metrics_site(metrics: Any) -> GameSite:
    """A site of its own for /metrics, when operators keep it off the public port."""
    root = Resource()
    root.putChild(b"metrics", MetricsPage(metrics))
    return GameSite(root)

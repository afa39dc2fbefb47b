"""The web site in memory: a StringTransport per connection and a task.Clock for its deadlines.

Covers the HTTP request deadlines, cross-site POST refusal, the session cookie's name and duplicates, HSTS,
client addresses from trusted proxies, and `unavailable` (503) when password hashing is full.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from gamesvc.auth import AccountService
from gamesvc.passwords import PlainHasher
from gamesvc.protocol import GameFactory
from gamesvc.web import build_site
from tests.support import memory_services

PASSWORD = "s3cret pass"


class Site:
    """A site over memory services; `connect` opens a connection from a given peer address."""

    def __init__(self, **overrides: Any) -> None:
        overrides.setdefault("message_rate", 10_000)
        self.services = memory_services(**overrides)
        self.clock = self.services.clock
        self.factory = GameFactory(self.services)
        self.site = build_site(self.services, self.factory, self.clock)

    def connect(self, peer: str = "203.0.113.9") -> tuple[Any, StringTransport]:
        """A new connection's channel and transport."""
        address = IPv4Address("TCP", peer, 40000)
        channel = self.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        transport.protocol = channel  # type: ignore[attr-defined]  # Autobahn's takeover looks for it
        channel.makeConnection(transport)
        return channel, transport

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, peer: str = "203.0.113.9"
    ) -> tuple[int, dict[str, list[str]], Any]:
        """One HTTP/1.0 request: status, headers (lower-case names) and the parsed JSON body."""
        channel, transport = self.connect(peer)
        all_headers = {"Host": "127.0.0.1:5000", **(headers or {})}
        raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        if body is not None:
            all_headers.setdefault("Content-Type", "application/json")
        all_headers["Content-Length"] = str(len(raw))
        head = f"{method} {path} HTTP/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items()) + "\r\n"
        channel.dataReceived(head.encode("latin-1") + raw)
        return parse_response(transport.value())


def parse_response(data: bytes) -> tuple[int, dict[str, list[str]], Any]:
    """Status, headers and JSON body of a raw HTTP/1.0 response."""
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(status_line.split()[1]), headers, json.loads(body) if body else None


def session_cookie(headers: dict[str, list[str]]) -> str:
    """The one Set-Cookie header of a response."""
    [cookie] = headers["set-cookie"]
    return cookie


# Deadlines


def test_headers_have_an_absolute_deadline() -> None:
    """A client trickling one header byte at a time is cut at --http-header-timeout from connecting, however often it sends."""
    site = Site(http_header_timeout=10, http_body_timeout=30)
    channel, transport = site.connect()
    channel.dataReceived(b"GET /api/rooms HTTP/1.1\r\nHost: x\r\n")
    for _ in range(9):
        site.clock.advance(1)
        channel.dataReceived(b"X")
    assert not transport.disconnected
    site.clock.advance(1)
    assert transport.disconnected


def test_a_silent_connection_is_cut_at_the_header_deadline() -> None:
    """A connection that sends nothing is closed after --http-header-timeout."""
    site = Site(http_header_timeout=5)
    _, transport = site.connect()
    site.clock.advance(4.9)
    assert not transport.disconnected
    site.clock.advance(0.1)
    assert transport.disconnected


def test_body_has_an_absolute_deadline() -> None:
    """A body trickled byte by byte is cut at --http-body-timeout after the headers, though each byte comes in time."""
    site = Site(http_header_timeout=10, http_body_timeout=30)
    channel, transport = site.connect()
    channel.dataReceived(
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    site.clock.advance(9)  # the header deadline no longer applies
    for _ in range(20):
        channel.dataReceived(b" ")
        site.clock.advance(1)
    assert not transport.disconnected
    site.clock.advance(1)
    assert transport.disconnected


def test_deadlines_restart_for_each_request_on_a_kept_alive_connection() -> None:
    """After a complete request the connection is not cut while idle; the next request's first byte starts a new header deadline."""
    site = Site(http_header_timeout=10)
    channel, transport = site.connect()
    channel.dataReceived(b"GET /api/rooms HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b" 200 " in transport.value()
    site.clock.advance(50)  # idle between requests: Twisted's own idle timeout (60 s) governs
    assert not transport.disconnected
    channel.dataReceived(b"GET /api/rooms HTTP/1.1\r\n")
    site.clock.advance(9.9)
    assert not transport.disconnected
    site.clock.advance(0.1)
    assert transport.disconnected


def websocket(site: Site, headers: str = "", peer: str = "203.0.113.9") -> tuple[Any, StringTransport]:
    """Open a WebSocket through the site (extra handshake header lines in `headers`); its protocol and transport."""
    channel, transport = site.connect(peer)
    channel.dataReceived(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:5000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + headers.encode("latin-1") + b"\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 101"), transport.value()
    [connection] = [c for c in site.factory.connections if c.transport is transport]
    return connection, transport


def close(connection: Any) -> None:
    """Drop a WebSocket made by `websocket` and let it clean up (its timers run on the global reactor)."""
    connection.dropConnection(abort=True)
    connection.connectionLost(Failure(ConnectionDone()))


def test_websocket_upgrade_is_not_cut_by_the_deadlines() -> None:
    """A connection upgraded to WebSocket stays open long after both HTTP deadlines would have passed."""
    site = Site(http_header_timeout=1, http_body_timeout=1, ping_interval=0, handshake_timeout=600)
    connection, transport = websocket(site)
    site.clock.advance(100)
    assert not transport.disconnected
    close(connection)


# Cross-site requests


def test_logout_without_json_or_same_site_headers_is_forbidden() -> None:
    """A POST with neither a JSON body nor a same-origin Origin / Sec-Fetch-Site is refused 403 `forbidden`: logout included."""
    site = Site()
    status, _, reply = site.request("POST", "/api/logout")
    assert (status, reply["error"]) == (403, "forbidden")
    status, _, reply = site.request("POST", "/api/logout", b"x", {"Content-Type": "text/plain"})
    assert (status, reply["error"]) == (403, "forbidden")


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://127.0.0.1:5000"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {"Content-Type": "application/json"},
        {"Authorization": "Bearer not-a-session"},
    ],
)
def test_logout_with_same_site_headers_or_json_is_served(headers: dict[str, str]) -> None:
    """A same-origin Origin, Sec-Fetch-Site same-origin/none, a JSON content type or an Authorization header lets logout through."""
    status, headers_out, _ = Site().request("POST", "/api/logout", None, headers)
    assert status == 200 and "Max-Age=0" in session_cookie(headers_out)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_cross_site_posts_are_forbidden_even_with_json(headers: dict[str, str]) -> None:
    """A foreign Origin or a cross-site / same-site Sec-Fetch-Site is refused even with a JSON body."""
    status, _, reply = Site().request("POST", "/api/login", {"username": "abc", "password": PASSWORD}, headers)
    assert (status, reply["error"]) == (403, "forbidden")


def test_configured_origins_may_post() -> None:
    """An Origin admitted by --allowed-origin passes the POST check too."""
    site = Site(allowed_origins=("https://*.example.com",))
    status, _, _ = site.request("POST", "/api/logout", None, {"Origin": "https://play.example.com"})
    assert status == 200


# Cookies and TLS


def test_behind_tls_the_cookie_is_host_prefixed_and_hsts_is_sent() -> None:
    """With --behind-tls the cookie is __Host-gamesvc_session (Secure, Path=/, no Domain) and every response has HSTS."""
    site = Site(behind_tls=True)
    status, headers, reply = site.request("POST", "/api/signup", {"username": "tlsuser", "password": PASSWORD})
    assert status == 200
    cookie = session_cookie(headers)
    assert cookie.startswith(f"__Host-gamesvc_session={reply['token']};")
    assert "; Secure" in cookie and "; Path=/" in cookie and "Domain" not in cookie
    assert headers["strict-transport-security"] == ["max-age=31536000"]
    status, _, me = site.request("GET", "/api/me", headers={"Cookie": f"__Host-gamesvc_session={reply['token']}"})
    assert status == 200 and me["user"]["username"] == "tlsuser"
    # The plain name is not read behind TLS.
    status, _, _ = site.request("GET", "/api/me", headers={"Cookie": f"gamesvc_session={reply['token']}"})
    assert status == 401


def test_without_tls_no_hsts_and_the_plain_cookie_name() -> None:
    """Without --behind-tls the cookie keeps its name and no HSTS header is sent."""
    status, headers, _ = Site().request("POST", "/api/signup", {"username": "plainuser", "password": PASSWORD})
    assert status == 200 and session_cookie(headers).startswith("gamesvc_session=")
    assert "strict-transport-security" not in headers


@pytest.mark.parametrize(
    "cookies",
    [
        ["gamesvc_session=AAA; gamesvc_session=BBB"],
        ["gamesvc_session=AAA", "gamesvc_session=BBB"],
    ],
)
def test_a_request_with_the_session_cookie_twice_is_refused(cookies: list[str]) -> None:
    """The session cookie twice (in one Cookie header or two) is refused 400, even when one of them is valid."""
    site = Site()
    _, _, reply = site.request("POST", "/api/signup", {"username": "twice", "password": PASSWORD})
    token = reply["token"]
    channel, transport = site.connect()
    head = "GET /api/me HTTP/1.0\r\nHost: 127.0.0.1:5000\r\n"
    head += "".join(f"Cookie: {c.replace('AAA', token)}\r\n" for c in cookies) + "\r\n"
    channel.dataReceived(head.encode())
    status, _, body = parse_response(transport.value())
    assert (status, body["error"]) == (400, "bad_request")


def test_websocket_reads_the_cookie_name_of_its_mode_and_ignores_duplicates() -> None:
    """The handshake signs in from __Host-gamesvc_session behind TLS; the cookie sent twice leaves the connection anonymous."""
    site = Site(behind_tls=True, ping_interval=0, handshake_timeout=600)
    _, _, reply = site.request("POST", "/api/signup", {"username": "wsuser", "password": PASSWORD})
    token = reply["token"]
    connection, _ = websocket(site, f"Cookie: __Host-gamesvc_session={token}\r\n")
    assert connection.account is not None and connection.account.username == "wsuser"
    close(connection)
    connection, _ = websocket(site, f"Cookie: gamesvc_session={token}\r\n")
    assert connection.account is None
    close(connection)
    connection, _ = websocket(site, f"Cookie: __Host-gamesvc_session={token}; __Host-gamesvc_session=forged\r\n")
    assert connection.account is None
    close(connection)
    connection, _ = websocket(
        site, f"Cookie: __Host-gamesvc_session={token}\r\nCookie: __Host-gamesvc_session=forged\r\n"
    )
    assert connection.account is None
    close(connection)


# Client addresses


def test_websocket_address_from_a_trusted_proxy() -> None:
    """A WebSocket from a trusted proxy is keyed by the rightmost untrusted X-Forwarded-For entry; from others, by its peer."""
    site = Site(trusted_proxies=("127.0.0.1/32",), ping_interval=0, handshake_timeout=600)
    connection, _ = websocket(site, "X-Forwarded-For: 198.51.100.7, 2001:db8:1:2::9\r\n", peer="127.0.0.1")
    assert connection.address == "2001:db8:1:2::/64"
    close(connection)
    connection, _ = websocket(site, "X-Forwarded-For: 198.51.100.7\r\n", peer="203.0.113.3")
    assert connection.address == "203.0.113.3"
    close(connection)



def test_forwarded_for_is_read_only_from_trusted_proxies() -> None:
    """Signup limits key on the X-Forwarded-For client behind a trusted proxy, and on the peer otherwise."""
    site = Site(signup_address_limit=1, trusted_proxies=("10.0.0.0/8",))
    forwarded = {"X-Forwarded-For": "198.51.100.1"}
    ok = site.request("POST", "/api/signup", {"username": "viaproxy1", "password": PASSWORD}, forwarded, peer="10.0.0.2")
    assert ok[0] == 200
    other = {"X-Forwarded-For": "198.51.100.2"}
    assert site.request("POST", "/api/signup", {"username": "viaproxy2", "password": PASSWORD}, other, peer="10.0.0.2")[0] == 200
    again = site.request("POST", "/api/signup", {"username": "viaproxy3", "password": PASSWORD}, forwarded, peer="10.0.0.3")
    assert again[0] == 429
    # An untrusted peer's header is ignored: it is limited as itself.
    spoof = {"X-Forwarded-For": "198.51.100.77"}
    assert site.request("POST", "/api/signup", {"username": "direct1", "password": PASSWORD}, spoof, peer="203.0.113.1")[0] == 200
    assert site.request("POST", "/api/signup", {"username": "direct2", "password": PASSWORD}, {"X-Forwarded-For": "198.51.100.78"}, peer="203.0.113.1")[0] == 429


# Hashing capacity


class FullHasher(PlainHasher):
    """A hasher whose queue is always full."""

    def pending(self) -> int:
        return 1000


def test_full_hash_queue_is_503_with_retry_after() -> None:
    """With the hash queue full, HTTP login and signup answer 503 `unavailable` with Retry-After at once."""
    site = Site(hash_queue_limit=4)
    site.services.accounts = AccountService(site.services.store, site.clock, FullHasher(), site.services.settings)
    site.site = build_site(site.services, site.factory, site.clock)
    for path in ("/api/login", "/api/signup"):
        status, headers, reply = site.request("POST", path, {"username": "someone", "password": PASSWORD})
        assert (status, reply["error"]) == (503, "unavailable")
        assert headers["retry-after"] == ["1"] and reply["retry_after"] == 1.0

"""Integration tests of accounts and sessions: the real service on a free port, the real store and bcrypt,
spoken to over WebSocket and the HTTP API."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from tests.conftest import fresh_database_uri
from tests.support import Running, WsClient, http, start_service, within

pytestmark = pytest.mark.integration

PASSWORD = "s3cret pass"
INJECTIONS: list[Any] = [{"$ne": None}, {"$gt": ""}, {"$regex": ".*"}, ["a", "b"], [], 12345, 1.5, True, None]
Start = Callable[..., Awaitable[Running]]


@pytest_twisted.async_yield_fixture
async def serve(reactor: Any, mongo_uri: str) -> AsyncIterator[Start]:
    """Start the service with given settings on a fresh database; everything started is stopped afterwards."""
    started: list[Running] = []

    async def start(**overrides: Any) -> Running:
        overrides.setdefault("signup_address_limit", 1000)
        # These tests send bursts of requests; the per-connection message limit is not what they test.
        overrides.setdefault("message_rate", 10_000)
        overrides.setdefault("message_burst", 10_000)
        running = await start_service(reactor, fresh_database_uri(mongo_uri), **overrides)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.service.stopService()


def cookie_attributes(headers: dict[str, list[str]], name: str = "gamesvc_session") -> tuple[str, dict[str, str]]:
    """The session cookie's value and its attributes (lower-case names) from a response's Set-Cookie."""
    cookies = [c for c in headers.get("set-cookie", []) if c.startswith(f"{name}=")]
    assert len(cookies) == 1, headers.get("set-cookie")
    first, *attrs = [part.strip() for part in cookies[0].split(";")]
    found = {}
    for attr in attrs:
        name, _, value = attr.partition("=")
        found[name.lower()] = value
    return first.partition("=")[2], found


async def post(reactor: Any, running: Running, path: str, body: Any = None, **headers: str) -> tuple[int, dict, Any]:
    """POST to the API."""
    return await http(reactor, "POST", running.url + path, body, headers)


async def get(reactor: Any, running: Running, path: str, **headers: str) -> tuple[int, dict, Any]:
    """GET from the API."""
    return await http(reactor, "GET", running.url + path, None, headers)


async def gather_replies(pending: list[tuple[WsClient, Any]]) -> list[dict]:
    """The replies to requests already sent, in the given order.

    WsClient.reply looks its request up when first run, and a reply that arrived earlier is forgotten,
    so every wait starts now, before any of them yields to the reactor.
    """
    waits = [Deferred.fromCoroutine(client.reply(rid)) for client, rid in pending]
    return [await d for d in waits]


# WebSocket


@pytest_twisted.ensureDeferred
async def test_ws_accounts_lifecycle(reactor: Any, serve: Start) -> None:
    """signup, login, resume, me and logout over WebSocket; ops needing a user are unauthenticated before and after."""
    running = await serve()
    a = await WsClient.connect(reactor, running.ws_url)
    for op in ("me", "logout", "lobby.watch", "room.create"):
        reply = await a.request(op, name="r")
        assert reply["ok"] is False and reply["error"] == "unauthenticated", (op, reply)
    signed = await a.ok("signup", username="Walker_1", password=PASSWORD)
    assert signed["user"] == {"username": "Walker_1", "wins": 0, "games": 0}
    assert isinstance(signed["token"], str) and len(signed["token"]) >= 43
    assert (await a.ok("me"))["user"] == signed["user"]

    b = await WsClient.connect(reactor, running.ws_url)
    logged = await b.ok("login", username="walker_1", password=PASSWORD)
    assert logged["user"]["username"] == "Walker_1" and logged["token"] != signed["token"]

    c = await WsClient.connect(reactor, running.ws_url)
    assert (await c.ok("resume", token=signed["token"]))["user"]["username"] == "Walker_1"
    assert (await c.ok("me"))["user"]["username"] == "Walker_1"
    await c.ok("logout")
    assert (await c.request("me"))["error"] == "unauthenticated"

    d = await WsClient.connect(reactor, running.ws_url)
    assert (await d.request("resume", token=signed["token"]))["error"] == "unauthenticated"
    assert (await d.request("resume", token="made-up-token"))["error"] == "unauthenticated"
    assert (await d.request("me"))["error"] == "unauthenticated"
    assert (await d.ok("resume", token=logged["token"]))["user"]["username"] == "Walker_1"

    wrong = await d.request("login", username="walker_1", password="not the password")
    unknown = await d.request("login", username="nobody_here", password=PASSWORD)
    assert wrong["error"] == unknown["error"] == "bad_credentials"
    assert wrong["message"] == unknown["message"]
    for client in (a, b, c, d):
        await client.close()


@pytest_twisted.ensureDeferred
async def test_ws_validation_errors(reactor: Any, serve: Start) -> None:
    """Bad names are invalid_username, out-of-range passwords invalid_password, a taken name (any case) username_taken."""
    running = await serve()
    client = await WsClient.connect(reactor, running.ws_url)
    for name in ("ab", "a" * 21, "with space", "dot.ted", "ünï"):
        assert (await client.request("signup", username=name, password=PASSWORD))["error"] == "invalid_username"
    for password in ("a" * 7, "a" * 73, "é" * 36 + "a", "€" * 25):
        assert (await client.request("signup", username="valid", password=password))["error"] == "invalid_password"
    await client.ok("signup", username="Taken", password=PASSWORD)
    assert (await client.request("signup", username="tAKEN", password=PASSWORD))["error"] == "username_taken"
    await client.close()


@pytest_twisted.ensureDeferred
async def test_72_byte_password_edge(reactor: Any, serve: Start) -> None:
    """A password of exactly 72 UTF-8 bytes (36 two-byte characters) signs up and logs in; one byte less on login is wrong."""
    running = await serve()
    client = await WsClient.connect(reactor, running.ws_url)
    await client.ok("signup", username="edge72", password="é" * 36)
    await client.ok("login", username="edge72", password="é" * 36)
    assert (await client.request("login", username="edge72", password="é" * 35 + "e"))["error"] == "bad_credentials"
    status, _, body = await post(reactor, running, "/api/login", {"username": "edge72", "password": "é" * 36})
    assert status == 200 and body["user"]["username"] == "edge72"
    status, _, body = await post(reactor, running, "/api/signup", {"username": "edge73", "password": "é" * 36 + "x"})
    assert (status, body["error"]) == (400, "invalid_password")
    await client.close()


@pytest_twisted.ensureDeferred
async def test_ws_injection_in_every_field(reactor: Any, serve: Start) -> None:
    """Operator objects, arrays, numbers, booleans and null in any field are bad_request and sign nobody in."""
    running = await serve()
    client = await WsClient.connect(reactor, running.ws_url)
    await client.ok("signup", username="victim", password=PASSWORD)
    await client.ok("logout")
    for value in INJECTIONS:
        for op, fields in (
            ("signup", {"username": value, "password": PASSWORD}),
            ("signup", {"username": "fresh", "password": value}),
            ("login", {"username": value, "password": PASSWORD}),
            ("login", {"username": "victim", "password": value}),
            ("resume", {"token": value}),
        ):
            reply = await client.request(op, **fields)
            assert reply["ok"] is False and reply["error"] == "bad_request", (op, fields, reply)
            assert "Traceback" not in json.dumps(reply)
        if value is not None:
            reply = await client.request("leaderboard", limit=value)
            assert reply["error"] == "bad_request", (value, reply)
    for op in ("signup", "login"):
        assert (await client.request(op, password=PASSWORD))["error"] == "bad_request"
        assert (await client.request(op, username="victim"))["error"] == "bad_request"
    assert (await client.request("resume"))["error"] == "bad_request"
    assert (await client.request("me"))["error"] == "unauthenticated"
    assert [p["username"] for p in (await client.ok("leaderboard"))["players"]] == ["victim"]
    await client.close()


@pytest_twisted.ensureDeferred
async def test_cookie_handshake_is_authenticated_from_the_start(reactor: Any, serve: Start) -> None:
    """A handshake carrying a valid session cookie is signed in before its first request; a bad cookie stays anonymous."""
    running = await serve()
    status, headers, body = await post(reactor, running, "/api/signup", {"username": "Cookie_Fan", "password": PASSWORD})
    assert status == 200
    token, _ = cookie_attributes(headers)
    assert token == body["token"]
    for header in (
        f"gamesvc_session={token}",
        f"theme=dark; gamesvc_session={token}; lang=en",
        # Browsers send every cookie of the host, including ones a strict parser chokes on.
        f'prefs={{"a":1}}; gamesvc_session={token}',
        f"note=two words; gamesvc_session={token}",
    ):
        client = await WsClient.connect(reactor, running.ws_url, cookie=header)
        reply = await client.request("me")
        assert reply["ok"] is True and reply["user"]["username"] == "Cookie_Fan", (header, reply)
        await client.close()
    anonymous = await WsClient.connect(reactor, running.ws_url, cookie="gamesvc_session=not-a-real-token")
    assert (await anonymous.request("me"))["error"] == "unauthenticated"
    await anonymous.ok("login", username="cookie_fan", password=PASSWORD)
    await anonymous.close()
    # A revoked session's cookie no longer signs in.
    status, _, _ = await post(reactor, running, "/api/logout", Authorization=f"Bearer {token}")
    assert status == 200
    revoked = await WsClient.connect(reactor, running.ws_url, cookie=f"gamesvc_session={token}")
    assert (await revoked.request("me"))["error"] == "unauthenticated"
    await revoked.close()


@pytest_twisted.ensureDeferred
async def test_concurrent_signups_for_one_name(reactor: Any, serve: Start) -> None:
    """Two signups racing for one name in different case give exactly one account: one ok, one username_taken."""
    running = await serve()
    one = await WsClient.connect(reactor, running.ws_url)
    two = await WsClient.connect(reactor, running.ws_url)
    for name in ("Racer", "Sprinter", "Dasher"):
        first = one.send("signup", username=name, password=PASSWORD)
        second = two.send("signup", username=name.lower(), password=PASSWORD + "!")
        replies = await gather_replies([(one, first), (two, second)])
        assert sorted(r["ok"] for r in replies) == [False, True], replies
        assert [r["error"] for r in replies if not r["ok"]] == ["username_taken"]
        winner = next(r for r in replies if r["ok"])
        other_password = PASSWORD if winner["user"]["username"] == name else PASSWORD + "!"
        check = await WsClient.connect(reactor, running.ws_url)
        await check.ok("login", username=name.upper(), password=other_password)
        await check.close()
    players = (await one.ok("leaderboard"))["players"]
    assert sorted(p["username"].lower() for p in players) == ["dasher", "racer", "sprinter"]
    await one.close()
    await two.close()


# HTTP


@pytest_twisted.ensureDeferred
async def test_http_signup_login_cookie_me_logout(reactor: Any, serve: Start) -> None:
    """HTTP signup and login answer user and token and set an HttpOnly, SameSite=Strict, Path=/ cookie (no Secure
    without --behind-tls); /api/me works by cookie and by Bearer; after logout the token is 401 both ways."""
    running = await serve()
    status, headers, body = await post(reactor, running, "/api/signup", {"username": "Http_User", "password": PASSWORD})
    assert status == 200
    assert body["user"] == {"username": "Http_User", "wins": 0, "games": 0}
    token, attributes = cookie_attributes(headers)
    assert token == body["token"]
    assert {"httponly", "path", "samesite", "max-age"} <= set(attributes)
    assert attributes["path"] == "/" and attributes["samesite"] == "Strict"
    assert attributes["max-age"] == str(7 * 86400)
    assert "secure" not in attributes

    status, headers, body = await post(reactor, running, "/api/login", {"username": "http_user", "password": PASSWORD})
    assert status == 200 and body["user"]["username"] == "Http_User"
    login_token, attributes = cookie_attributes(headers)
    assert login_token == body["token"] != token
    assert "httponly" in attributes and attributes["samesite"] == "Strict"

    for auth in ({"Cookie": f"gamesvc_session={token}"}, {"Authorization": f"Bearer {token}"}):
        status, _, body = await get(reactor, running, "/api/me", **auth)
        assert status == 200 and body["user"]["username"] == "Http_User", auth
    status, _, body = await get(reactor, running, "/api/me")
    assert (status, body["error"]) == (401, "unauthenticated")
    status, _, body = await get(reactor, running, "/api/me", Authorization="Bearer nonsense")
    assert (status, body["error"]) == (401, "unauthenticated")

    status, headers, _ = await post(reactor, running, "/api/logout", {}, Cookie=f"gamesvc_session={token}")
    assert status == 200
    cleared, attributes = cookie_attributes(headers)
    assert cleared == "" and attributes["max-age"] == "0"
    for auth in ({"Cookie": f"gamesvc_session={token}"}, {"Authorization": f"Bearer {token}"}):
        status, _, body = await get(reactor, running, "/api/me", **auth)
        assert (status, body["error"]) == (401, "unauthenticated"), auth
    # The login session is separate and still valid; Bearer logout revokes it.
    status, _, _ = await get(reactor, running, "/api/me", Authorization=f"Bearer {login_token}")
    assert status == 200
    status, _, _ = await post(reactor, running, "/api/logout", Authorization=f"Bearer {login_token}")
    assert status == 200
    status, _, _ = await get(reactor, running, "/api/me", Authorization=f"Bearer {login_token}")
    assert status == 401


@pytest_twisted.ensureDeferred
async def test_http_cookie_secure_behind_tls(reactor: Any, serve: Start) -> None:
    """With --behind-tls the session cookie is __Host- prefixed and also Secure."""
    running = await serve(behind_tls=True)
    status, headers, _ = await post(reactor, running, "/api/signup", {"username": "tls_user", "password": PASSWORD})
    assert status == 200
    _, attributes = cookie_attributes(headers, "__Host-gamesvc_session")
    assert "secure" in attributes and "httponly" in attributes and attributes["samesite"] == "Strict"
    status, headers, _ = await post(reactor, running, "/api/login", {"username": "tls_user", "password": PASSWORD})
    assert "secure" in cookie_attributes(headers, "__Host-gamesvc_session")[1]


@pytest_twisted.ensureDeferred
async def test_http_errors(reactor: Any, serve: Start) -> None:
    """HTTP errors are JSON with fitting statuses: 400 validation, 401 bad credentials, 409 taken name."""
    running = await serve()
    cases = [
        ("/api/signup", {"username": "no", "password": PASSWORD}, 400, "invalid_username"),
        ("/api/signup", {"username": "shorty", "password": "short"}, 400, "invalid_password"),
        ("/api/signup", {"username": "Dupe", "password": PASSWORD}, 200, None),
        ("/api/signup", {"username": "DUPE", "password": PASSWORD}, 409, "username_taken"),
        ("/api/login", {"username": "dupe", "password": "wrong password"}, 401, "bad_credentials"),
        ("/api/login", {"username": "ghost", "password": PASSWORD}, 401, "bad_credentials"),
    ]
    for path, body, status, code in cases:
        got_status, headers, got = await post(reactor, running, path, body)
        assert got_status == status, (path, body, got)
        assert headers["content-type"][0].startswith("application/json")
        if code:
            assert got["error"] == code and isinstance(got["message"], str)
            assert "set-cookie" not in headers


@pytest_twisted.ensureDeferred
async def test_http_injection_in_every_field(reactor: Any, serve: Start) -> None:
    """Operator objects, arrays, numbers, booleans and null in the JSON body are 400 bad_request; non-object bodies too."""
    running = await serve()
    status, _, _ = await post(reactor, running, "/api/signup", {"username": "target", "password": PASSWORD})
    assert status == 200
    for value in INJECTIONS:
        for path, body in (
            ("/api/signup", {"username": value, "password": PASSWORD}),
            ("/api/signup", {"username": "fresh", "password": value}),
            ("/api/login", {"username": value, "password": PASSWORD}),
            ("/api/login", {"username": "target", "password": value}),
        ):
            status, headers, reply = await post(reactor, running, path, body)
            assert (status, reply["error"]) == (400, "bad_request"), (path, body, reply)
            assert "set-cookie" not in headers
    for raw in (b"[]", b'"target"', b"42", b"null", b"{not json", b"[" * 5000 + b"]" * 5000):
        status, _, reply = await post(reactor, running, "/api/login", raw)
        assert (status, reply["error"]) == (400, "bad_request"), (raw[:20], reply)
    status, _, body = await get(reactor, running, "/api/leaderboard")
    assert [p["username"] for p in body["players"]] == ["target"]


@pytest_twisted.ensureDeferred
async def test_http_body_type_and_size(reactor: Any, serve: Start) -> None:
    """A body that is not application/json is 403 without a same-origin Origin and 400 with one; one over the size
    limit is 413; a JSON charset parameter is fine."""
    running = await serve()
    body = json.dumps({"username": "typed", "password": PASSWORD}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "text/json"):
        status, _, reply = await post(reactor, running, "/api/signup", body, **{"Content-Type": content_type})
        assert (status, reply["error"]) == (403, "forbidden"), content_type
        status, _, reply = await post(
            reactor, running, "/api/signup", body, **{"Content-Type": content_type, "Origin": running.url}
        )
        assert (status, reply["error"]) == (400, "bad_request"), content_type
    # twisted.web itself answers an unparseable multipart body with a bare 400 before the API sees it.
    status, _, _ = await post(reactor, running, "/api/signup", body, **{"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 400
    huge = json.dumps({"username": "large", "password": PASSWORD, "pad": "x" * 20000}).encode()
    status, _, reply = await post(reactor, running, "/api/signup", huge)
    assert (status, reply["error"]) == (413, "too_large")
    status, _, reply = await post(
        reactor, running, "/api/signup", body, **{"Content-Type": "application/json; charset=utf-8"}
    )
    assert status == 200 and reply["user"]["username"] == "typed"
    status, _, reply = await get(reactor, running, "/api/login")
    assert (status, reply["error"]) == (405, "method_not_allowed")


@pytest_twisted.ensureDeferred
async def test_failed_logins_rate_limited_http_429(reactor: Any, serve: Start) -> None:
    """After login_user_address_limit wrong passwords the next login from that address (even a right one, on HTTP or WebSocket) is 429 with Retry-After."""
    running = await serve(login_user_address_limit=3, login_window=900)
    await post(reactor, running, "/api/signup", {"username": "locked", "password": PASSWORD})
    for _ in range(3):
        status, _, reply = await post(reactor, running, "/api/login", {"username": "locked", "password": "wrong password"})
        assert (status, reply["error"]) == (401, "bad_credentials")
    status, headers, reply = await post(reactor, running, "/api/login", {"username": "LOCKED", "password": PASSWORD})
    assert (status, reply["error"]) == (429, "rate_limited")
    retry_after = int(headers["retry-after"][0])
    assert 1 <= retry_after <= 900
    assert 0 < reply["retry_after"] <= 900
    client = await WsClient.connect(reactor, running.ws_url)
    ws_reply = await client.request("login", username="locked", password=PASSWORD)
    assert ws_reply["error"] == "rate_limited" and ws_reply["retry_after"] > 0
    # Other names are unaffected.
    await client.ok("signup", username="free", password=PASSWORD)
    await client.ok("login", username="free", password=PASSWORD)
    await client.close()


@pytest_twisted.ensureDeferred
async def test_failed_logins_rate_limited_per_address(reactor: Any, serve: Start) -> None:
    """Wrong passwords over many names from one address hit the per-address limit (429)."""
    running = await serve(login_user_limit=100, login_address_limit=3)
    for name in ("aaa", "bbb", "ccc"):
        status, _, _ = await post(reactor, running, "/api/login", {"username": name, "password": PASSWORD})
        assert status == 401
    status, headers, reply = await post(reactor, running, "/api/login", {"username": "ddd", "password": PASSWORD})
    assert (status, reply["error"]) == (429, "rate_limited") and "retry-after" in headers


@pytest_twisted.ensureDeferred
async def test_signups_rate_limited_per_address(reactor: Any, serve: Start) -> None:
    """Signups beyond signup_address_limit from one address are 429 with Retry-After, on HTTP and WebSocket."""
    running = await serve(signup_address_limit=2)
    for name in ("first", "second"):
        status, _, _ = await post(reactor, running, "/api/signup", {"username": name, "password": PASSWORD})
        assert status == 200
    status, headers, reply = await post(reactor, running, "/api/signup", {"username": "third", "password": PASSWORD})
    assert (status, reply["error"]) == (429, "rate_limited")
    assert 1 <= int(headers["retry-after"][0]) <= 3600
    client = await WsClient.connect(reactor, running.ws_url)
    assert (await client.request("signup", username="third", password=PASSWORD))["error"] == "rate_limited"
    await client.close()


@pytest_twisted.ensureDeferred
async def test_leaderboard_limits(reactor: Any, serve: Start) -> None:
    """The leaderboard defaults to 20, allows up to 100, refuses 0, 101 and non-integers, and sorts ties by name."""
    running = await serve()
    client = await WsClient.connect(reactor, running.ws_url)
    names = [f"P{i:02d}" if i % 2 else f"p{i:02d}" for i in range(25)]
    for i in range(0, 25, 5):
        ids = [client.send("signup", username=n, password=PASSWORD) for n in names[i : i + 5]]
        assert all(r["ok"] for r in await gather_replies([(client, rid) for rid in ids]))
    players = (await client.ok("leaderboard"))["players"]
    assert [p["username"] for p in players] == names[:20]
    assert all(p == {"username": p["username"], "wins": 0, "games": 0} for p in players)
    assert len((await client.ok("leaderboard", limit=100))["players"]) == 25
    assert len((await client.ok("leaderboard", limit=1))["players"]) == 1
    for bad in (0, 101, -5, "x", "5", 2.5, True, {"$gt": 0}, [5]):
        assert (await client.request("leaderboard", limit=bad))["error"] == "bad_request", bad
    await client.close()

    status, _, body = await get(reactor, running, "/api/leaderboard")
    assert status == 200 and [p["username"] for p in body["players"]] == names[:20]
    status, _, body = await get(reactor, running, "/api/leaderboard?limit=100")
    assert status == 200 and len(body["players"]) == 25
    status, _, body = await get(reactor, running, "/api/leaderboard?limit=3")
    assert [p["username"] for p in body["players"]] == names[:3]
    for bad in ("0", "101", "x", "-1", "1e2", "%24ne"):
        status, _, body = await get(reactor, running, f"/api/leaderboard?limit={bad}")
        assert (status, body["error"]) == (400, "bad_request"), bad


@pytest_twisted.ensureDeferred
async def test_shutdown_closes_signed_in_connections(reactor: Any, mongo_uri: str) -> None:
    """Stopping the service with a signed-in client connected tells it `server.restarting`, closes it with 1012
    (service restart) and the shutdown completes."""
    running = await start_service(reactor, fresh_database_uri(mongo_uri))
    client = await WsClient.connect(reactor, running.ws_url)
    await client.ok("signup", username="leaver", password=PASSWORD)
    await within(reactor, running.service.stopService())
    assert await within(reactor, client.closed) == 1012
    assert await client.event("server.restarting") == {"event": "server.restarting"}

"""Integration tests of the foundation: the real service on a free port with the real store."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.conftest import fresh_database_uri
from tests.support import Running, WsClient, http, start_service

pytestmark = pytest.mark.integration


@pytest_twisted.ensureDeferred
async def test_health_and_pages(reactor: Any, running: Running) -> None:
    """/healthz answers 200 with the store up, / serves the client with security headers, GET /ws is 426."""
    status, _, body = await http(reactor, "GET", running.url + "/healthz")
    assert (status, body) == (200, {"status": "ok"})
    status, headers, page = await http(reactor, "GET", running.url + "/")
    assert status == 200 and b"<html" in page.lower()
    assert "default-src 'self'" in headers["content-security-policy"][0]
    assert headers["x-content-type-options"] == ["nosniff"]
    status, headers, body = await http(reactor, "GET", running.url + "/ws")
    assert status == 426 and body["error"] == "upgrade_required"


@pytest_twisted.ensureDeferred
async def test_ping_and_envelope(reactor: Any, running: Running) -> None:
    """ping gets its reply with the same id; unknown ops, bad JSON and non-objects are answered as errors."""
    client = await WsClient.connect(reactor, running.ws_url)
    assert await client.request("ping") == {"re": 1, "ok": True}
    reply = await client.request("fly")
    assert reply["ok"] is False and reply["error"] == "unknown_op"
    client.send_raw(b"{not json")
    assert (await client.replies.get())["error"] == "bad_request"
    client.send_raw(b"[1,2]")
    bad = await client.replies.get()
    assert bad["re"] is None and bad["error"] == "bad_request"
    client.send_raw(b'{"op":"ping","id":{"x":1}}')
    assert await client.replies.get() == {"re": None, "ok": True}
    client.send_raw(b"\x01\x02", binary=True)
    assert (await client.replies.get())["error"] == "bad_request"
    reply = await client.request("me")
    assert reply["error"] == "unauthenticated"
    assert "Traceback" not in str(reply)
    await client.close()


@pytest_twisted.ensureDeferred
async def test_replies_in_request_order(reactor: Any, running: Running) -> None:
    """Replies to one connection's requests come in the order of the requests, slow ones included."""
    client = await WsClient.connect(reactor, running.ws_url)
    ids = [client.send("signup", username="orderly", password="password1")]
    ids += [client.send("ping") for _ in range(5)]
    got = [await client.reply(i) for i in ids]
    assert [r["re"] for r in got] == ids
    assert got[0]["ok"] is True
    await client.close()


@pytest_twisted.ensureDeferred
async def test_origins(reactor: Any, running: Running) -> None:
    """The server's own origin and no Origin are accepted; foreign and null origins are refused."""
    ok = await WsClient.connect(reactor, running.ws_url, origin=running.url)
    await ok.close()
    plain = await WsClient.connect(reactor, running.ws_url)
    await plain.close()
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{running.port + 1}"):
        with pytest.raises(ConnectionError):
            await WsClient.connect(reactor, running.ws_url, origin=origin)


@pytest_twisted.ensureDeferred
async def test_oversized_message_closes_with_1009(reactor: Any, running: Running) -> None:
    """A message over the size limit closes the connection with 1009; the server keeps serving others."""
    client = await WsClient.connect(reactor, running.ws_url)
    client.send_raw(b'{"op":"ping","pad":"' + b"x" * 70000 + b'"}')
    assert await client.closed == 1009
    other = await WsClient.connect(reactor, running.ws_url)
    assert (await other.request("ping"))["ok"]
    await other.close()


@pytest_twisted.ensureDeferred
async def test_invalid_utf8_closes_with_1007(reactor: Any, running: Running) -> None:
    """A text frame with invalid UTF-8 closes the connection with 1007."""
    client = await WsClient.connect(reactor, running.ws_url)
    client.protocol.sendMessage(b"\xff\xfe", isBinary=False)  # type: ignore[union-attr]
    assert await client.closed == 1007


@pytest_twisted.ensureDeferred
async def test_rate_limited_requests_keep_their_ids_and_order(reactor: Any, mongo_uri: str) -> None:
    """A request over the message rate gets `rate_limited` with its own id, in request order."""
    running = await start_service(reactor, fresh_database_uri(mongo_uri), message_rate=0.01, message_burst=2)
    try:
        client = await WsClient.connect(reactor, running.ws_url)
        ids = [client.send("ping") for _ in range(4)]
        replies = [await client.reply(i) for i in ids]
        assert [r["re"] for r in replies] == ids
        assert [r["ok"] for r in replies] == [True, True, False, False]
        assert replies[2]["error"] == "rate_limited" and replies[2]["retry_after"] > 0
        await client.close()
    finally:
        await running.service.stopService()

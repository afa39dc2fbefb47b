"""Operations: metrics, JSON logs, and store outages on the real service."""

from __future__ import annotations

import io
import json
import os
import signal
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import deferLater
from twisted.logger import Logger, globalLogPublisher

from gamesvc.config import Settings
from gamesvc.logs import JsonLinesObserver, event_as_json
from gamesvc.service import GameService
from tests.conftest import fresh_database_uri
from tests.support import Running, WsClient, http, start_service

pytestmark = pytest.mark.integration


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, keyed by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest_twisted.ensureDeferred
async def test_metrics_parse_and_count(reactor: Any, running: Running) -> None:
    """/metrics parses as Prometheus text and counts connections, requests by op, messages sent, errors, rooms and
    store calls."""
    client = await WsClient.connect(reactor, running.ws_url)
    await client.ok("ping")
    await client.ok("signup", username="metered", password="password1")
    await client.ok("room.create", name="Gauges")
    await client.request("fly-me-to-the-moon")
    status, headers, body = await http(reactor, "GET", running.url + "/metrics")
    assert status == 200 and headers["content-type"][0].startswith("text/plain")
    found = samples(body.decode() if isinstance(body, bytes) else json.dumps(body))
    assert found[("gamesvc_connections", ())] == 1
    assert found[("gamesvc_messages_in_total", (("op", "ping"), ("result", "ok")))] == 1
    assert found[("gamesvc_messages_in_total", (("op", "unknown"), ("result", "unknown_op")))] == 1
    assert found[("gamesvc_errors_total", (("code", "unknown_op"),))] == 1
    assert found[("gamesvc_rooms", (("status", "waiting"),))] == 1
    assert found[("gamesvc_authenticated_connections", ())] == 1
    assert found[("gamesvc_store_seconds_count", (("call", "insert_user"),))] == 1
    # Four replies and the events before the last of them: everything this only client was sent.
    assert found[("gamesvc_messages_out_total", ())] == 4 + len(client.events) and client.events
    assert not any(name.startswith("gamesvc") and "fly" in str(labels) for name, labels in found)
    await client.close()


@pytest_twisted.ensureDeferred
async def test_metrics_on_a_separate_port(reactor: Any, mongo_uri: str) -> None:
    """With --metrics-port, /metrics is served there and not on the public port."""
    running = await start_service(reactor, fresh_database_uri(mongo_uri), metrics_port=0)
    try:
        status, _, _ = await http(reactor, "GET", running.url + "/metrics")
        assert status == 404
        port = running.service.metrics_port.getHost().port  # type: ignore[union-attr]
        status, _, body = await http(reactor, "GET", f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and b"gamesvc_connections" in body
    finally:
        await running.service.stopService()


def test_json_log_lines_carry_fields_and_tracebacks() -> None:
    """The JSON-lines observer writes one parseable object per event with its fields and any traceback."""
    out = io.StringIO()
    observer = JsonLinesObserver(out)
    log = Logger(namespace="gamesvc.test", observer=observer)
    log.info("slow request {op}: {latency:.3f}s", op="room.join", latency=0.61, user="ann", room="ABCDEF")
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("op {op} failed", op="game.roll", user="bob")
    first, second = [json.loads(line) for line in out.getvalue().splitlines()]
    assert first["message"] == "slow request room.join: 0.610s" and first["level"] == "info"
    assert (first["op"], first["user"], first["room"], first["namespace"]) == ("room.join", "ann", "ABCDEF", "gamesvc.test")
    assert first["time"].endswith("Z")
    assert second["level"] == "critical" and "ZeroDivisionError" in second["traceback"]
    assert event_as_json({"log_time": 0.0, "log_format": "{x}", "x": object()})["x"].startswith("<object")


@pytest_twisted.ensureDeferred
async def test_logs_never_carry_passwords_or_tokens(reactor: Any, running: Running) -> None:
    """Signing up, logging in and chatting writes no password, token or chat text into the log."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        client = await WsClient.connect(reactor, running.ws_url)
        token = (await client.ok("signup", username="quiet", password="hunter2hunter2"))["token"]
        await client.request("login", username="quiet", password="wrong-password")
        await client.ok("room.create", name="Hush")
        await client.ok("room.chat", text="the secret chat line")
        await client.close()
    finally:
        globalLogPublisher.removeObserver(events.append)
    text = "\n".join(json.dumps(event_as_json(e)) for e in events)
    assert events and "hunter2hunter2" not in text and token not in text and "secret chat line" not in text


async def wait_for(reactor: Any, check: Any, seconds: float = 20.0) -> None:
    """Poll `check` (an async callable) every 0.1 s until it is true; fail after `seconds`."""
    for _ in range(int(seconds / 0.1)):
        if await check():
            return
        await deferLater(reactor, 0.1)
    raise AssertionError("condition not reached in time")


@pytest_twisted.async_yield_fixture
async def embedded(reactor: Any, tmp_path: Any) -> AsyncIterator[Running]:
    """The service with its own embedded database (short store timeout)."""
    service = GameService(reactor, Settings(port=0, bcrypt_cost=4, data_dir=str(tmp_path / "data"), store_timeout=1.0))
    service.startService()
    await service.store_ready
    running = Running(service, (await service.listening).getHost().port)
    try:
        yield running
    finally:
        pid = service.embedded.pid  # type: ignore[union-attr]
        if pid:
            os.kill(pid, signal.SIGCONT)
        await service.stopService()


async def healthy(reactor: Any, running: Running) -> bool:
    return (await http(reactor, "GET", running.url + "/healthz"))[0] == 200


@pytest_twisted.ensureDeferred
async def test_store_outage_gives_unavailable_then_recovers(reactor: Any, embedded: Running) -> None:
    """A hung store gives 503 health and `unavailable` replies in bounded time; the service recovers when it returns."""
    client = await WsClient.connect(reactor, embedded.ws_url)
    await client.ok("signup", username="steady", password="password1")
    pid = embedded.service.embedded.pid  # type: ignore[union-attr]
    os.kill(pid, signal.SIGSTOP)
    status, _, body = await http(reactor, "GET", embedded.url + "/healthz")
    assert status == 503 and body["status"] == "unavailable"
    reply = await client.request("leaderboard")
    assert reply["error"] == "unavailable"
    assert (await client.request("ping"))["ok"]
    os.kill(pid, signal.SIGCONT)
    await wait_for(reactor, lambda: healthy(reactor, embedded))
    assert (await client.request("leaderboard"))["players"][0]["username"] == "steady"
    await client.close()


@pytest_twisted.ensureDeferred
async def test_killed_store_is_restarted_and_the_service_recovers(reactor: Any, embedded: Running) -> None:
    """Killing the embedded database mid-run: it is restarted on its port and the data and service come back."""
    client = await WsClient.connect(reactor, embedded.ws_url)
    await client.ok("signup", username="phoenix", password="password1")
    embedded.service.embedded.kill()  # type: ignore[union-attr]
    await wait_for(reactor, lambda: healthy(reactor, embedded))
    assert embedded.service.embedded.restarts == 1  # type: ignore[union-attr]

    async def login_works() -> bool:
        reply = await client.request("login", username="phoenix", password="password1")
        return bool(reply["ok"])

    await wait_for(reactor, login_works)
    await client.close()


@pytest_twisted.ensureDeferred
async def test_store_outage_at_the_end_of_a_game(reactor: Any, tmp_path: Any) -> None:
    """With the store hung mid-game the players finish their game; the result lands exactly once when it returns."""
    from tests.play import play_out, seat_and_start

    service = GameService(reactor, Settings(port=0, bcrypt_cost=4, data_dir=str(tmp_path / "data"), store_timeout=1.0,
                                            result_retry=0.2, dice_seed=11, message_rate=1000, message_burst=1000))
    service.startService()
    await service.store_ready
    running = Running(service, (await service.listening).getHost().port)
    pid = service.embedded.pid  # type: ignore[union-attr]
    try:
        clients, _, _ = await seat_and_start(reactor, running, ["ann", "bob"], "Outage")
        ann, bob = clients["ann"], clients["bob"]
        os.kill(pid, signal.SIGSTOP)
        over = await play_out({"ann": ann, "bob": bob}, ann)
        assert service.app.results.pending and (await http(reactor, "GET", running.url + "/healthz"))[0] == 503
        os.kill(pid, signal.SIGCONT)
        await service.app.results.when_written(over["game"])
        board = {p["username"]: p for p in (await ann.ok("leaderboard"))["players"]}
        assert (board["ann"]["games"], board["bob"]["games"]) == (1, 1)
        assert board[over["winner"]]["wins"] == 1 and sum(p["wins"] for p in board.values()) == 1
        status, _, body = await http(reactor, "GET", f"{running.url}/api/games/{over['game']}")
        assert status == 200 and body["game"]["winner"] == over["winner"]
        await ann.close()
        await bob.close()
    finally:
        os.kill(pid, signal.SIGCONT)
        await service.stopService()

"""Integration test of quick play against bots: real service, real store, real WebSockets, seeded dice."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from gamesvc.game import replay
from tests.play import next_event, signed_in, until_state
from tests.support import Running, http

pytestmark = pytest.mark.integration

# Quick play waits 0.3 s before bots come, bots roll within 0.02 s, and the player rolls as fast as replies come.
SERVICE_OPTIONS = {
    "dice_seed": 20261130, "quick_play_wait": 0.3, "quick_play_seats": 3, "bot_delay": 0.01,
    "message_rate": 100_000.0, "message_burst": 100_000,
}


@pytest_twisted.ensureDeferred
async def test_play_now_in_an_empty_service_against_bots_to_game_over(reactor: Any, running: Running) -> None:
    """One player quick plays in an empty service, sees the countdown, gets two bots and plays to game.over; the game
    is stored with its bots and replays, it is in the player's history, and the leaderboard and stats are untouched."""
    client, _ = await signed_in(reactor, running, "solo")
    reply = await client.ok("room.quick_play")
    room = reply["room"]
    assert room["status"] == "waiting" and room["seats"] == 3 and room["bots_at"] is not None
    assert room["players"] == [{"username": "solo", "ready": True, "connected": True, "position": 0}]

    started = await client.event("game.started")
    assert started["order"][0] == "solo" and len(started["order"]) == 3
    bots = started["order"][1:]
    state = await until_state(client, lambda s: s["status"] == "playing")
    assert [p.get("bot", False) for p in state["players"]] == [False, True, True]
    assert state["bots_at"] is None

    for _ in range(2000):
        event = await next_event(client, "game.turn", "game.over")
        if event["event"] == "game.over":
            break
        if event["player"] == "solo":
            await client.ok("game.roll")
    else:
        raise AssertionError("the game did not end")
    over = event

    await running.service.app.results.when_written(over["game"])
    status, _, found = await http(reactor, "GET", f"{running.url}/api/games/{over['game']}")
    record = found["game"]
    assert status == 200 and record["bots"] == bots and record["stand_ins"] == []
    final = replay(record["players"], record["entries"])
    assert final.winner == over["winner"]
    _, _, history = await http(reactor, "GET", f"{running.url}/api/users/solo/games")
    assert [g["id"] for g in history["games"]] == [over["game"]]
    assert (await client.ok("me"))["user"] == {"username": "solo", "wins": 0, "games": 0}
    _, _, board = await http(reactor, "GET", f"{running.url}/api/leaderboard")
    assert [p["username"] for p in board["players"]] == ["solo"]
    await client.close()


@pytest_twisted.ensureDeferred
async def test_bot_ops_over_the_wire(reactor: Any, running: Running) -> None:
    """The host adds and removes bots and sets bot_takeover; others get not_host; bad arguments are bad_request."""
    host, _ = await signed_in(reactor, running, "hostess")
    guest, _ = await signed_in(reactor, running, "guest")
    room = (await host.ok("room.create", name="bots", seats=3, bot_takeover=True))["room"]
    assert room["bot_takeover"] is True and room["bots_at"] is None
    await guest.ok("room.join", room=room["id"])
    name = (await host.ok("room.add_bot"))["bot"]
    state = await until_state(host, lambda s: len(s["players"]) == 3)
    assert state["players"][2] == {"username": name, "ready": True, "connected": True, "position": 0, "bot": True}
    assert (await guest.request("room.add_bot"))["error"] == "not_host"
    assert (await guest.request("room.remove_bot", bot=name))["error"] == "not_host"
    assert (await host.request("room.remove_bot"))["error"] == "bad_request"
    assert (await host.request("room.remove_bot", bot="Bot Nobody"))["error"] == "not_found"
    assert (await host.request("room.configure", bot_takeover="yes"))["error"] == "bad_request"
    await host.ok("room.configure", bot_takeover=False)
    assert (await until_state(host, lambda s: not s["bot_takeover"]))["bot_takeover"] is False
    await host.ok("room.remove_bot", bot=name)
    assert [p["username"] for p in (await until_state(host, lambda s: len(s["players"]) == 2))["players"]] == [
        "hostess", "guest",
    ]
    assert (await guest.request("room.quick_play"))["error"] == "already_in_room"
    for client in (host, guest):
        await client.close()

"""Integration tests of the lobby and rooms: the real service on a free port, the real store, real WebSockets.

Nothing here sleeps: every test waits on the events the contract promises (with a timeout, so a
broken server fails the test instead of hanging it).
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred, gatherResults

from tests.conftest import fresh_database_uri
from tests.play import connected, resumed, seated, signed_in, until_state
from tests.support import Running, WsClient, http, start_service

pytestmark = pytest.mark.integration

# Many clients sign up from 127.0.0.1 in one test.
MANY_SIGNUPS = {"signup_address_limit": 1000}


SERVICE_OPTIONS = MANY_SIGNUPS


async def close_all(*clients: WsClient) -> None:
    """Close every client cleanly."""
    for client in clients:
        await client.close()


async def quiet(client: WsClient) -> None:
    """Make sure every event sent to `client` before now has arrived (a reply follows earlier events)."""
    await client.ok("ping")


@pytest_twisted.ensureDeferred
async def test_lobby_events_across_clients(reactor: Any, running: Running) -> None:
    """A watcher sees rooms open, fill and close, as /api/rooms does; after lobby.unwatch it sees nothing more."""
    watcher, _ = await signed_in(reactor, running, "watcher")
    alice, _ = await signed_in(reactor, running, "alice")
    bob, _ = await signed_in(reactor, running, "bob")
    assert (await watcher.ok("lobby.watch"))["rooms"] == []

    created = (await alice.ok("room.create", name="Friday night"))["room"]
    room_id = created["id"]
    assert created["seats"] == 4 and created["private"] is False
    summary = {"id": room_id, "name": "Friday night", "seats": 4, "players": 1, "status": "waiting"}
    assert await watcher.event("lobby.room") == {"event": "lobby.room", "room": summary}
    await bob.ok("room.join", room=room_id)
    assert (await watcher.event("lobby.room"))["room"]["players"] == 2
    status, _, body = await http(reactor, "GET", running.url + "/api/rooms")
    assert status == 200 and body == {"rooms": [dict(summary, players=2)]}
    assert (await watcher.ok("lobby.watch"))["rooms"] == body["rooms"]

    await alice.ok("room.leave")
    assert (await watcher.event("lobby.room"))["room"]["players"] == 1
    await bob.ok("room.leave")
    assert await watcher.event("lobby.room_closed") == {"event": "lobby.room_closed", "room": room_id}
    assert (await http(reactor, "GET", running.url + "/api/rooms"))[2] == {"rooms": []}

    await watcher.ok("lobby.unwatch")
    await alice.ok("room.create", name="later")
    await quiet(watcher)
    assert [e for e in watcher.events if e["event"].startswith("lobby.")] == []
    await close_all(watcher, alice, bob)


@pytest_twisted.ensureDeferred
async def test_private_rooms_are_unlisted_and_joined_by_code(reactor: Any, running: Running) -> None:
    """A private room is in no list and no lobby event, and anyone with its code can join it."""
    watcher, _ = await signed_in(reactor, running, "watcher")
    host, _ = await signed_in(reactor, running, "host")
    friend, _ = await signed_in(reactor, running, "friend")
    await watcher.ok("lobby.watch")
    secret = (await host.ok("room.create", name="secret", seats=2, private=True))["room"]
    assert secret["private"] is True
    public = (await friend.ok("room.create", name="public", seats=2))["room"]
    assert (await watcher.event("lobby.room"))["room"]["id"] == public["id"]
    assert [r["id"] for r in (await watcher.ok("lobby.watch"))["rooms"]] == [public["id"]]
    assert [r["id"] for r in (await http(reactor, "GET", running.url + "/api/rooms"))[2]["rooms"]] == [public["id"]]

    await friend.ok("room.leave")
    joined = (await friend.ok("room.join", room=secret["id"].lower()))["room"]
    assert seated(joined) == ["host", "friend"]
    assert (await until_state(host, lambda s: len(s["players"]) == 2))["version"] == joined["version"]
    await quiet(watcher)
    mentioned = [e["room"] if isinstance(e["room"], str) else e["room"]["id"] for e in watcher.events if "room" in e]
    assert secret["id"] not in mentioned
    await close_all(watcher, host, friend)


@pytest_twisted.ensureDeferred
async def test_race_for_the_last_seats(reactor: Any, running: Running) -> None:
    """20 clients asking at once for a room's 2 free seats: exactly 2 get one, the rest get room_full."""
    host, _ = await signed_in(reactor, running, "host")
    second, _ = await signed_in(reactor, running, "second")
    room_id = (await host.ok("room.create", name="crowded"))["room"]["id"]
    await second.ok("room.join", room=room_id)
    racers = [(await signed_in(reactor, running, f"racer{n:02d}"))[0] for n in range(20)]
    ids = [racer.send("room.join", room=room_id) for racer in racers]
    replies = await gatherResults([ensureDeferred(racer.reply(rid)) for racer, rid in zip(racers, ids)])
    winners = [r for r in replies if r["ok"]]
    assert len(winners) == 2
    assert sorted(r["error"] for r in replies if not r["ok"]) == ["room_full"] * 18
    final = await until_state(host, lambda s: len(s["players"]) == 4)
    assert seated(final)[:2] == ["host", "second"]
    assert sorted(seated(final)[2:]) == sorted(f"racer{n:02d}" for n, r in enumerate(replies) if r["ok"])
    await close_all(host, second, *racers)


@pytest_twisted.ensureDeferred
async def test_spectators_full_and_running_rooms(reactor: Any, running: Running) -> None:
    """Spectators may watch a full or running room and get its events; joining it as a player is refused."""
    alice, _ = await signed_in(reactor, running, "alice")
    bob, _ = await signed_in(reactor, running, "bob")
    carol, _ = await signed_in(reactor, running, "carol")
    room_id = (await alice.ok("room.create", name="duel", seats=2))["room"]["id"]
    await bob.ok("room.join", room=room_id)
    assert (await carol.request("room.join", room=room_id))["error"] == "room_full"
    watched = (await carol.ok("room.join", room=room_id, spectate=True))["room"]
    assert watched["spectators"] == 1 and seated(watched) == ["alice", "bob"]
    assert (await until_state(alice, lambda s: s["spectators"] == 1))["version"] == watched["version"]

    await alice.ok("room.ready", ready=True)
    await bob.ok("room.ready", ready=True)
    started = await carol.event("game.started")
    assert started["order"] == ["alice", "bob"]
    assert (await carol.event("game.turn"))["player"] == "alice"
    dave, _ = await signed_in(reactor, running, "dave")
    assert (await dave.request("room.join", room=room_id))["error"] == "game_in_progress"
    assert (await dave.ok("room.join", room=room_id, spectate=True))["room"]["spectators"] == 2
    await alice.ok("game.roll")
    for watcher in (carol, dave):
        assert (await watcher.event("game.rolled"))["player"] == "alice"
    await carol.ok("room.leave")
    assert (await until_state(dave, lambda s: s["spectators"] == 1))["status"] == "playing"
    await close_all(alice, bob, carol, dave)


@pytest_twisted.ensureDeferred
async def test_room_argument_checks(reactor: Any, running: Running) -> None:
    """Bad room.create/join/ready/chat arguments are bad_request; names of 40 and chats of 500 characters are fine."""
    alice, _ = await signed_in(reactor, running, "alice")
    for bad in ({}, {"name": ""}, {"name": "x" * 41}, {"name": 7}, {"name": "n", "seats": 1}, {"name": "n", "seats": 5},
                {"name": "n", "seats": "3"}, {"name": "n", "seats": True}, {"name": "n", "private": "yes"}):
        reply = await alice.request("room.create", **bad)
        assert reply["error"] == "bad_request", bad
    assert (await alice.request("room.join"))["error"] == "bad_request"
    assert (await alice.request("room.join", room="ABCDEF", spectate=1))["error"] == "bad_request"
    assert (await alice.request("room.join", room="ABCDEF"))["error"] == "room_not_found"
    assert (await alice.request("room.chat", text="hello"))["error"] == "not_in_room"
    room = (await alice.ok("room.create", name="x" * 40, seats=2))["room"]
    assert room["name"] == "x" * 40 and room["seats"] == 2
    # With the not_in_room one above and the good one below, these use the chat burst of 5.
    for bad in ({"text": ""}, {"text": "y" * 501}, {"text": ["a"]}):
        assert (await alice.request("room.chat", **bad))["error"] == "bad_request", bad
    assert (await alice.request("room.ready", ready="yes"))["error"] == "bad_request"
    assert (await alice.request("game.roll"))["error"] == "game_not_started"
    await alice.ok("room.chat", text="y" * 500)
    assert (await alice.event("room.chat"))["text"] == "y" * 500
    assert [e["event"] for e in alice.events] == ["room.state"]
    await alice.close()


@pytest_twisted.ensureDeferred
async def test_chat_fan_out_and_order(reactor: Any, running: Running) -> None:
    """Chat from players and spectators reaches everyone in the room, all in one order, each sender's in its order."""
    alice, _ = await signed_in(reactor, running, "alice")
    bob, _ = await signed_in(reactor, running, "bob")
    sam, _ = await signed_in(reactor, running, "sam")
    outsider, _ = await signed_in(reactor, running, "outsider")
    room_id = (await alice.ok("room.create", name="chatty"))["room"]["id"]
    await bob.ok("room.join", room=room_id)
    await sam.ok("room.join", room=room_id, spectate=True)
    await outsider.ok("room.create", name="elsewhere")
    senders = [alice, bob, sam]
    sent = [[client.send("room.chat", text=f"{name} <{n}> & \"{n}\"") for n in range(5)]
            for client, name in zip(senders, ["alice", "bob", "sam"])]
    for client, ids in zip(senders, sent):
        for rid in ids:
            assert (await client.reply(rid))["ok"]
    seen = []
    for client in senders:
        lines = [await client.event("room.chat") for _ in range(15)]
        assert all(line["room"] == room_id and line["at"].endswith("Z") for line in lines)
        seen.append([(line["from"], line["text"]) for line in lines])
    assert seen[0] == seen[1] == seen[2]
    for name in ("alice", "bob", "sam"):
        assert [t for f, t in seen[0] if f == name] == [f"{name} <{n}> & \"{n}\"" for n in range(5)]
    await quiet(outsider)
    assert [e for e in outsider.events if e["event"] == "room.chat"] == []
    late, _ = await signed_in(reactor, running, "late")
    history = (await late.ok("room.join", room=room_id))["chat"]
    assert [(c["from"], c["text"]) for c in history] == seen[0]
    await close_all(alice, bob, sam, outsider, late)


@pytest_twisted.ensureDeferred
async def test_chat_rate_limit(reactor: Any, mongo_uri: str) -> None:
    """Chat beyond the burst is rate_limited with retry_after; the connection keeps working."""
    running = await start_service(reactor, fresh_database_uri(mongo_uri), chat_burst=2, chat_rate=0.01)
    try:
        alice, _ = await signed_in(reactor, running, "alice")
        await alice.ok("room.create", name="fast talker")
        replies = [await alice.request("room.chat", text=f"line {n}") for n in range(4)]
        assert [r["ok"] for r in replies] == [True, True, False, False]
        assert replies[2]["error"] == "rate_limited" and replies[2]["retry_after"] > 0
        assert [(await alice.event("room.chat"))["text"] for _ in range(2)] == ["line 0", "line 1"]
        assert (await alice.request("ping"))["ok"]
        await alice.close()
    finally:
        await running.service.stopService()


@pytest_twisted.ensureDeferred
async def test_message_flood_closes_with_1008(reactor: Any, mongo_uri: str) -> None:
    """A connection that keeps sending over the message rate is answered rate_limited, then closed with 1008."""
    running = await start_service(reactor, fresh_database_uri(mongo_uri), message_rate=0.01, message_burst=3, flood_strikes=3)
    try:
        flooder = await WsClient.connect(reactor, running.ws_url)
        for _ in range(10):
            flooder.send_raw(b'{"op":"ping"}')
        assert await flooder.closed == 1008
        limited = []
        while flooder.replies.pending:
            limited.append(await flooder.replies.get())
        assert [r.get("error") for r in limited] == [None, None, None, "rate_limited", "rate_limited"]
        other = await WsClient.connect(reactor, running.ws_url)
        assert (await other.request("ping"))["ok"]
        await other.close()
    finally:
        await running.service.stopService()


@pytest_twisted.ensureDeferred
async def test_reconnection_within_grace(reactor: Any, running: Running) -> None:
    """A dropped player shows connected:false and takes the seat back with resume + room.join, or a cookie + room.join."""
    alice, token = await signed_in(reactor, running, "alice")
    bob, _ = await signed_in(reactor, running, "bob")
    room_id = (await alice.ok("room.create", name="patient"))["room"]["id"]
    await bob.ok("room.join", room=room_id)
    await alice.ok("room.chat", text="brb")

    alice.drop()
    state = await until_state(bob, lambda s: not connected(s, "alice"))
    assert seated(state) == ["alice", "bob"] and state["host"] == "alice"
    back = await resumed(reactor, running, token)
    assert (await back.ok("me"))["room"] == room_id
    reply = await back.ok("room.join", room=room_id)
    assert connected(reply["room"], "alice") and seated(reply["room"]) == ["alice", "bob"]
    assert [c["text"] for c in reply["chat"]] == ["brb"]
    assert (await until_state(bob, lambda s: connected(s, "alice")))["version"] == reply["room"]["version"]

    back.drop()
    await until_state(bob, lambda s: not connected(s, "alice"))
    cookie = await WsClient.connect(reactor, running.ws_url, cookie=f"gamesvc_session={token}")
    reply = await cookie.ok("room.join", room=room_id)
    assert connected(reply["room"], "alice")
    await cookie.ok("room.ready", ready=True)
    assert [p["ready"] for p in (await until_state(bob, lambda s: s["players"][0]["ready"]))["players"]] == [True, False]
    await close_all(bob, cookie)


@pytest_twisted.ensureDeferred
async def test_newer_connection_takes_over(reactor: Any, running: Running) -> None:
    """The same user's second connection joining the room takes the seat; the first gets room.detached."""
    alice, token = await signed_in(reactor, running, "alice")
    bob, _ = await signed_in(reactor, running, "bob")
    room_id = (await alice.ok("room.create", name="tabs"))["room"]["id"]
    await bob.ok("room.join", room=room_id)
    tab = await resumed(reactor, running, token)
    assert (await tab.request("room.create", name="another"))["error"] == "already_in_room"
    await tab.ok("room.join", room=room_id)
    assert await alice.event("room.detached") == {"event": "room.detached", "room": room_id, "reason": "taken_over"}
    assert (await alice.request("room.chat", text="me?"))["error"] == "not_in_room"
    await bob.ok("room.chat", text="hi tab")
    assert (await tab.event("room.chat"))["text"] == "hi tab"
    await quiet(alice)
    assert [e for e in alice.events if e["event"] == "room.chat"] == []
    await alice.close()
    await tab.ok("room.ready", ready=True)
    state = await until_state(bob, lambda s: s["players"][0]["ready"])
    assert connected(state, "alice")
    await close_all(bob, tab)


@pytest_twisted.ensureDeferred
async def test_after_grace_players_leave_or_forfeit(reactor: Any, mongo_uri: str) -> None:
    """After the grace period a dropped player leaves a waiting room (host passes on) and forfeits a running game."""
    running = await start_service(reactor, fresh_database_uri(mongo_uri), grace_seconds=0.2)
    try:
        alice, token = await signed_in(reactor, running, "alice")
        bob, _ = await signed_in(reactor, running, "bob")
        room_id = (await alice.ok("room.create", name="waiting"))["room"]["id"]
        await bob.ok("room.join", room=room_id)
        alice.drop()
        state = await until_state(bob, lambda s: seated(s) == ["bob"])
        assert state["host"] == "bob"
        again = await resumed(reactor, running, token)
        assert (await again.ok("me"))["room"] is None

        await again.ok("room.join", room=room_id)
        await again.ok("room.ready", ready=True)
        await bob.ok("room.ready", ready=True)
        assert (await bob.event("game.started"))["order"] == ["bob", "alice"]
        again.drop()
        over = await bob.event("game.over")
        assert over["winner"] == "bob"
        assert [(s["username"], s["forfeited"]) for s in over["standings"]] == [("bob", False), ("alice", True)]
        assert (await until_state(bob, lambda s: s["status"] == "finished"))["players"][0]["username"] == "bob"
        await bob.close()
    finally:
        await running.service.stopService()

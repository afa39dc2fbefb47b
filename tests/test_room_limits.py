"""Broadcast amplification and private rooms: per-account room limits, the spectator cap, coalesced spectator and
lobby updates, limits on unknown room codes, and game records that keep a private room's code to its players.

Unit tests run over the memory store with a `task.Clock`; the API test starts the real service.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
import pytest_twisted

from gamesvc.errors import GameError
from gamesvc.results import visible_record
from tests.play import play_out, signed_in
from tests.support import FakeMind, Running, ScriptedDice, http, memory_services

SERVICE_OPTIONS = {"dice_seed": 7, "message_rate": 1000.0, "message_burst": 1000}


def raises(code: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> GameError:
    """Call `fn` and check that it fails with the error `code`."""
    with pytest.raises(GameError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value.to_json()
    return info.value


# Per-account limits


def test_room_create_is_limited_per_account() -> None:
    """Past --room-create-limit creations in --room-limit-window, room.create is rate_limited with retry_after."""
    services = memory_services(room_create_limit=3, room_limit_window=60.0, coalesce_seconds=0)
    rooms = services.rooms
    ann = FakeMind("ann")
    for _ in range(3):
        rooms.create(ann, "table", 2, False)
        rooms.leave(ann)
    error = raises("rate_limited", rooms.create, ann, "table", 2, False)
    assert 0 < error.extra["retry_after"] <= 60
    assert rooms.create(FakeMind("bob"), "table", 2, False)  # another account is not affected
    services.clock.advance(60)
    assert rooms.create(ann, "table", 2, False)


def test_join_leave_and_spectate_churn_is_limited_per_account() -> None:
    """Joins, spectates and leaves share --room-churn-limit; a refused join changes nothing and sends nothing, and
    a leave is counted but never refused."""
    services = memory_services(room_churn_limit=4, room_limit_window=60.0, coalesce_seconds=0)
    rooms = services.rooms
    host = FakeMind("host")
    room_id = rooms.create(host, "table", 4, False)["room"]["id"]
    churner = FakeMind("churner")
    rooms.join(churner, room_id)
    rooms.leave(churner)
    rooms.join(churner, room_id, spectate=True)
    rooms.leave(churner)
    seen = len(host.received)
    raises("rate_limited", rooms.join, churner, room_id)
    raises("rate_limited", rooms.join, churner, room_id, spectate=True)
    assert len(host.received) == seen
    assert rooms.rooms[room_id].spectators == set() and len(rooms.rooms[room_id].players) == 1
    services.clock.advance(60)
    rooms.join(churner, room_id)
    rooms.leave(churner)
    rooms.join(churner, room_id, spectate=True)
    rooms.join(churner, room_id)  # sits down: the fourth in the window
    rooms.leave(churner)  # over the limit, and still free to go
    assert len(rooms.rooms[room_id].players) == 1
    raises("rate_limited", rooms.join, churner, room_id)


def test_taking_back_ones_own_seat_is_never_limited() -> None:
    """A player over the churn limit can still reconnect to the seat they hold."""
    services = memory_services(room_churn_limit=1, coalesce_seconds=0)
    rooms = services.rooms
    host = FakeMind("host")
    room_id = rooms.create(host, "table", 4, False)["room"]["id"]
    ann = FakeMind("ann")
    rooms.join(ann, room_id)
    rooms.disconnected(ann)
    again = FakeMind("ann")
    assert rooms.join(again, room_id)["room"]["players"][1]["connected"] is True


def test_spectators_are_capped_per_room() -> None:
    """The spectator past --max-spectators gets room_full; seats are unaffected and one leaving frees a place."""
    services = memory_services(max_spectators=2, coalesce_seconds=0)
    rooms = services.rooms
    room_id = rooms.create(FakeMind("host"), "table", 4, False)["room"]["id"]
    watchers = [FakeMind(f"watch{i}") for i in range(3)]
    rooms.join(watchers[0], room_id, spectate=True)
    rooms.join(watchers[1], room_id, spectate=True)
    error = raises("room_full", rooms.join, watchers[2], room_id, spectate=True)
    assert "spectators" in error.message
    rooms.join(FakeMind("player"), room_id)
    rooms.leave(watchers[0])
    rooms.join(watchers[2], room_id, spectate=True)


# Coalescing


def test_spectator_churn_is_coalesced_into_one_state_per_interval() -> None:
    """Many spectators coming and going within --coalesce-seconds cost the players one room.state and one
    checkpoint, carrying the final count; versions still grow by one."""
    services = memory_services(coalesce_seconds=0.25, room_churn_limit=1000)
    rooms = services.rooms
    host = FakeMind("host")
    room_id = rooms.create(host, "table", 4, False)["room"]["id"]
    services.clock.advance(1)
    written = services.checkpoints.written
    watchers = [FakeMind(f"w{i}") for i in range(50)]
    first = rooms.join(watchers[0], room_id, spectate=True)["room"]
    assert first["spectators"] == 1 and first["version"] == 2
    later = [rooms.join(watcher, room_id, spectate=True)["room"] for watcher in watchers[1:]]
    # A spectator whose state is coalesced gets the version under which the others will see it.
    assert [(s["spectators"], s["version"]) for s in later[:2]] == [(2, 3), (3, 3)]
    for watcher in watchers[:10]:
        rooms.leave(watcher)
    counts = [e["room"]["spectators"] for e in host.events("room.state")]
    assert counts == [0, 1]  # the first change goes at once (the room was quiet), the rest wait
    services.clock.advance(0.25)
    counts = [e["room"]["spectators"] for e in host.events("room.state")]
    assert counts == [0, 1, 40]
    versions = [e["room"]["version"] for e in host.events("room.state")]
    assert versions == [1, 2, 3]
    assert services.checkpoints.written - written == 2
    services.clock.advance(10)
    assert len(host.events("room.state")) == 3  # nothing more once the count is sent


def test_a_real_change_carries_a_waiting_spectator_count() -> None:
    """A player's change within the interval sends the state at once, with the spectator count; no extra state."""
    services = memory_services(coalesce_seconds=0.25)
    rooms = services.rooms
    host = FakeMind("host")
    room_id = rooms.create(host, "table", 4, False)["room"]["id"]
    rooms.join(FakeMind("watcher"), room_id, spectate=True)
    rooms.ready(host, True)
    assert [(e["room"]["spectators"], e["room"]["players"][0]["ready"]) for e in host.events("room.state")] == [
        (0, False), (1, True)
    ]
    services.clock.advance(1)
    assert len(host.events("room.state")) == 2


def test_lobby_updates_are_coalesced_per_room() -> None:
    """A lobby watcher gets at most one lobby.room per room per interval, with the latest summary; a room closing
    in the interval sends lobby.room_closed and nothing after it."""
    services = memory_services(coalesce_seconds=0.25, room_churn_limit=1000)
    rooms = services.rooms
    watcher = FakeMind("lobby")
    rooms.watch_lobby(watcher)
    host = FakeMind("host")
    room_id = rooms.create(host, "table", 4, False)["room"]["id"]
    guests = [FakeMind(name) for name in ("g1", "g2", "g3")]
    for _ in range(5):
        for guest in guests:
            rooms.join(guest, room_id)
        for guest in guests:
            rooms.leave(guest)
    rooms.join(guests[0], room_id)
    assert [e["room"]["players"] for e in watcher.events("lobby.room")] == [1]
    services.clock.advance(0.25)
    assert [e["room"]["players"] for e in watcher.events("lobby.room")] == [1, 2]
    rooms.join(guests[1], room_id)
    rooms.leave(guests[0])
    rooms.leave(guests[1])
    rooms.leave(host)
    services.clock.advance(1)
    assert [m["event"] for m in watcher.received] == ["lobby.room", "lobby.room", "lobby.room_closed"]


# Unknown room codes


def test_unknown_codes_are_limited_per_account_and_then_every_code_looks_the_same() -> None:
    """Past --room-miss-limit unknown codes an account gets rate_limited for any code, existing ones too."""
    services = memory_services(room_miss_limit=3, room_miss_address_limit=100, room_miss_window=600.0)
    rooms = services.rooms
    secret = rooms.create(FakeMind("host"), "hidden", 4, True)["room"]["id"]
    walker = FakeMind("walker")
    for code in ("AAAAAA", "BBBBBB", "CCCCCC"):
        raises("room_not_found", rooms.join, walker, code, spectate=True)
    raises("rate_limited", rooms.join, walker, "DDDDDD")
    raises("rate_limited", rooms.join, walker, secret, spectate=True)
    assert rooms.join(FakeMind("friend"), secret)  # another account, same address, still under both limits
    services.clock.advance(600)
    assert rooms.join(walker, secret, spectate=True)


def test_unknown_codes_are_limited_per_address_across_accounts() -> None:
    """Many accounts from one address share --room-miss-address-limit; another address is not affected."""
    services = memory_services(room_miss_limit=100, room_miss_address_limit=4)
    rooms = services.rooms
    for i in range(4):
        raises("room_not_found", rooms.join, FakeMind(f"sock{i}"), "ZZZZZZ")
    raises("rate_limited", rooms.join, FakeMind("sock9"), "ZZZZZZ")
    elsewhere = FakeMind("elsewhere")
    elsewhere.address = "203.0.113.50"
    raises("room_not_found", rooms.join, elsewhere, "ZZZZZZ")


def test_a_player_over_the_miss_limit_still_gets_their_seat_back() -> None:
    """The miss limit never keeps a player from the room where they hold a seat."""
    services = memory_services(room_miss_limit=1)
    rooms = services.rooms
    ann = FakeMind("ann")
    room_id = rooms.create(ann, "mine", 2, True)["room"]["id"]
    raises("room_not_found", rooms.join, ann, "QQQQQQ")
    rooms.disconnected(ann)
    assert rooms.join(FakeMind("ann"), room_id.lower())["room"]["id"] == room_id


# Private game records


def test_records_know_their_room_was_private_and_hide_its_code_from_outsiders() -> None:
    """A private room's record says private; visible_record shows its code to its players only."""
    services = memory_services(dice=ScriptedDice(6, 6, 6), coalesce_seconds=0)
    rooms = services.rooms
    ann, bob = FakeMind("Ann"), FakeMind("bob")
    room_id = rooms.create(ann, "secret", 2, True)["room"]["id"]
    rooms.join(bob, room_id)
    rooms.ready(ann, True)
    rooms.ready(bob, True)
    rooms.leave(bob)
    services.clock.advance(0)
    record = services.raw_store.games[ann.last("game.over")["game"]]
    assert record["private"] is True and record["room"] == room_id
    assert visible_record(record, "ann")["room"] == room_id
    assert visible_record(record, "bob")["room"] == room_id
    assert visible_record(record, "carol")["room"] is None
    assert visible_record(record, None)["room"] is None
    public = dict(record, private=False)
    assert visible_record(public, None)["room"] == room_id


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_the_api_shows_a_private_rooms_code_only_to_its_players(reactor: Any, running: Running) -> None:
    """/api/games/ID and /api/users/NAME/games show a private game's room code to its players (cookie or Bearer)
    and null to anyone else, signed in or not."""
    ann, ann_token = await signed_in(reactor, running, "ann")
    bob, _ = await signed_in(reactor, running, "bob")
    carol, carol_token = await signed_in(reactor, running, "carol")
    room_id = (await ann.ok("room.create", name="secret", seats=2, private=True))["room"]["id"]
    await bob.ok("room.join", room=room_id)
    await ann.ok("room.ready", ready=True)
    await bob.ok("room.ready", ready=True)
    over = await play_out({"ann": ann, "bob": bob}, ann)
    await running.service.app.results.when_written(over["game"])
    game_url = f"{running.url}/api/games/{over['game']}"
    seen = {}
    for who, headers in (
        ("anonymous", {}),
        ("carol", {"Authorization": f"Bearer {carol_token}"}),
        ("bad token", {"Authorization": "Bearer nonsense"}),
        ("ann", {"Authorization": f"Bearer {ann_token}"}),
        ("ann's cookie", {"Cookie": f"gamesvc_session={ann_token}"}),
    ):
        status, _, body = await http(reactor, "GET", game_url, headers=headers)
        assert status == 200
        _, _, listed = await http(reactor, "GET", f"{running.url}/api/users/bob/games", headers=headers)
        assert listed["games"][0]["id"] == over["game"]
        seen[who] = (body["game"]["room"], listed["games"][0]["room"])
    assert seen == {
        "anonymous": (None, None), "carol": (None, None), "bad token": (None, None),
        "ann": (room_id, room_id), "ann's cookie": (room_id, room_id),
    }
    for client in (ann, bob, carol):
        await client.close()

"""Service tests of the lobby, rooms, presence, the Dice Race turn flow and exactly-once results.

Everything runs over the memory store with a `task.Clock`: no sockets, no sleeps.
"""

from __future__ import annotations

import inspect
import random
import itertools
import secrets
from typing import Any, Callable

import pytest
import pytest_twisted

from gamesvc.errors import GameError
from gamesvc.game import Board, replay
from gamesvc.rooms import ROOM_ID_ALPHABET, RoomService
from gamesvc.wire import iso
from tests.support import FakeMind, ScriptedDice, memory_services

# The first player's shortest win on the default board without a six: 1->38, 41, 46, 51->67, 70, 75, 80->100.
WINNING_PATH = [1, 3, 5, 5, 3, 5, 5]
# Alternating with a second player who rolls 2s and never gets near 100.
FIRST_PLAYER_WINS = [n for pair in zip(WINNING_PATH, [2] * 6 + [0]) for n in pair if n]


def raises(code: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> GameError:
    """Call `fn` and check that it fails with the error `code`."""
    with pytest.raises(GameError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value.to_json()
    return info.value


def states(mind: FakeMind) -> list[dict[str, Any]]:
    """Every RoomState pushed to `mind`, in order."""
    return [e["room"] for e in mind.events("room.state")]


def assert_versions_step_by_one(mind: FakeMind) -> None:
    """The versions `mind` saw grow by exactly one from each state to the next."""
    versions = [s["version"] for s in states(mind)]
    assert versions == list(range(versions[0], versions[0] + len(versions))), versions


def player(state: dict[str, Any], username: str) -> dict[str, Any]:
    """One player's entry in a RoomState."""
    return next(p for p in state["players"] if p["username"] == username)


def two_player_room(services: Any, seats: int = 4, private: bool = False) -> tuple[str, FakeMind, FakeMind]:
    """alice creates a room and bob joins it."""
    alice, bob = FakeMind("alice"), FakeMind("bob")
    room_id = services.rooms.create(alice, "table", seats, private)["room"]["id"]
    services.rooms.join(bob, room_id)
    return room_id, alice, bob


def started_game(services: Any, *names: str) -> tuple[str, list[FakeMind]]:
    """A room where `names` sit in that order and all are ready, so the game has started."""
    minds = [FakeMind(name) for name in names]
    room_id = services.rooms.create(minds[0], "race", 4, False)["room"]["id"]
    for mind in minds[1:]:
        services.rooms.join(mind, room_id)
    for mind in minds:
        services.rooms.ready(mind, True)
    return room_id, minds


def roll_until_over(services: Any, minds: list[FakeMind], limit: int = 500) -> dict[str, Any]:
    """Roll for whoever's turn it is (letting the deadline pass for players not in `minds`) until game.over."""
    by_name = {m.account.username: m for m in minds}
    watcher = minds[0]
    for _ in range(limit):
        if watcher.events("game.over"):
            return watcher.last("game.over")
        current = watcher.last("game.turn")["player"]
        if current in by_name:
            services.rooms.roll(by_name[current])
        else:
            services.clock.advance(services.settings.turn_seconds)
    raise AssertionError("the game did not end")


async def signed_up(services: Any, *names: str) -> list[FakeMind]:
    """Sign the users up in the memory store and return a connection for each."""
    minds = []
    for number, name in enumerate(names):
        await services.accounts.signup(name, "password1", f"10.0.0.{number}")
        minds.append(FakeMind(name))
    return minds


# Rooms and the lobby


def test_create_seats_creator_as_host() -> None:
    """room.create opens a waiting room with the creator in the first seat as host, version 1, pushed to them."""
    services = memory_services(dice=ScriptedDice())
    alice = FakeMind("alice")
    reply = services.rooms.create(alice, "Alice's table", 3, False)
    room = reply["room"]
    assert room["name"] == "Alice's table" and room["seats"] == 3 and room["private"] is False
    assert room["status"] == "waiting" and room["host"] == "alice" and room["turn"] is None
    assert room["players"] == [{"username": "alice", "ready": False, "connected": True, "position": 0}]
    assert room["spectators"] == 0 and room["version"] == 1
    assert reply["chat"] == []
    assert states(alice) == [room]
    assert services.rooms.seat_of("alice") == room["id"]


def test_lobby_watch_lists_then_pushes_until_unwatch() -> None:
    """lobby.watch answers the open public rooms, then pushes lobby.room on summary changes and lobby.room_closed."""
    services = memory_services(dice=ScriptedDice(), coalesce_seconds=0)  # every update at once (coalescing: below)
    rooms = services.rooms
    early = FakeMind("early")
    first = rooms.create(early, "first", 2, False)["room"]["id"]
    watcher = FakeMind("watcher")
    assert rooms.watch_lobby(watcher) == [{"id": first, "name": "first", "seats": 2, "players": 1, "status": "waiting"}]
    assert rooms.public_rooms() == rooms.watch_lobby(watcher)

    alice, bob = FakeMind("alice"), FakeMind("bob")
    second = rooms.create(alice, "second", 4, False)["room"]["id"]
    rooms.join(bob, second)
    rooms.ready(alice, True)  # changes the room but not its summary: no lobby event
    rooms.chat(bob, "hi")
    rooms.leave(alice)
    rooms.leave(bob)
    lobby = [m for m in watcher.received if m["event"].startswith("lobby.")]
    assert lobby == [
        {"event": "lobby.room", "room": {"id": second, "name": "second", "seats": 4, "players": 1, "status": "waiting"}},
        {"event": "lobby.room", "room": {"id": second, "name": "second", "seats": 4, "players": 2, "status": "waiting"}},
        {"event": "lobby.room", "room": {"id": second, "name": "second", "seats": 4, "players": 1, "status": "waiting"}},
        {"event": "lobby.room_closed", "room": second},
    ]
    assert [r["id"] for r in rooms.public_rooms()] == [first]

    rooms.unwatch_lobby(watcher)
    rooms.leave(early)
    assert len(watcher.received) == len(lobby)
    assert rooms.public_rooms() == []


def test_lobby_sees_status_changes() -> None:
    """A game starting and ending changes the room's summary status, which the lobby is told about."""
    services = memory_services(dice=ScriptedDice(*FIRST_PLAYER_WINS), coalesce_seconds=0)
    watcher = FakeMind("watcher")
    services.rooms.watch_lobby(watcher)
    room_id, minds = started_game(services, "alice", "bob")
    roll_until_over(services, minds)
    statuses = [e["room"]["status"] for e in watcher.events("lobby.room")]
    assert statuses == ["waiting", "waiting", "playing", "finished"]


def test_watcher_that_disconnects_gets_nothing_more() -> None:
    """A closed connection stops watching the lobby."""
    services = memory_services(dice=ScriptedDice())
    watcher = FakeMind("watcher")
    services.rooms.watch_lobby(watcher)
    services.rooms.disconnected(watcher)
    services.rooms.create(FakeMind("alice"), "t", 2, False)
    assert watcher.received == []


def test_private_rooms_are_never_listed_and_joined_by_code() -> None:
    """A private room is not in the list nor pushed to the lobby, and is joined by its code (any case)."""
    services = memory_services(dice=ScriptedDice())
    watcher = FakeMind("watcher")
    services.rooms.watch_lobby(watcher)
    room_id, alice, bob = two_player_room(services, private=True)
    carol = FakeMind("carol")
    reply = services.rooms.join(carol, room_id.lower())
    assert reply["room"]["private"] is True and len(reply["room"]["players"]) == 3
    for mind in (alice, bob, carol):
        services.rooms.leave(mind)
    assert services.rooms.public_rooms() == []
    assert watcher.received == []
    assert room_id not in services.rooms.rooms


def test_room_ids_use_the_alphabet_and_are_unique_while_the_room_lives() -> None:
    """Ids are 6 characters drawn with the injected `choose`; an id in use is drawn again, a freed one may return."""
    draws = itertools.cycle("AAAAAA" "AAAAAA" "BBBBBB")
    asked: list[str] = []

    def choose(alphabet: str) -> str:
        asked.append(alphabet)
        return next(draws)

    services = memory_services(dice=ScriptedDice(), choose=choose)
    rooms = services.rooms
    first = rooms.create(FakeMind("alice"), "a", 2, False)["room"]["id"]
    second = rooms.create(FakeMind("bob"), "b", 2, False)["room"]["id"]
    assert (first, second) == ("AAAAAA", "BBBBBB")
    assert set(asked) == {ROOM_ID_ALPHABET}
    assert len(asked) == 18
    rooms.leave(rooms.rooms[first].players[0].mind)
    assert rooms.create(FakeMind("carol"), "c", 2, False)["room"]["id"] == "AAAAAA"


def test_default_room_ids_come_from_the_secure_rng() -> None:
    """Without an injected `choose` the ids come from `secrets.choice`, and look right."""
    assert inspect.signature(RoomService).parameters["choose"].default is secrets.choice
    services = memory_services(dice=ScriptedDice())
    ids = {services.rooms.create(FakeMind(f"user{n}"), "t", 2, False)["room"]["id"] for n in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 6 and set(i) <= set(ROOM_ID_ALPHABET) for i in ids)


def test_join_leave_host_passes_and_room_closes() -> None:
    """Joining and leaving update everyone; the next player becomes host; the room closes with its last player."""
    services = memory_services(dice=ScriptedDice())
    rooms = services.rooms
    room_id, alice, bob = two_player_room(services)
    carol = FakeMind("carol")
    reply = rooms.join(carol, room_id)
    assert [p["username"] for p in reply["room"]["players"]] == ["alice", "bob", "carol"]
    assert alice.last("room.state")["room"] == reply["room"]

    rooms.leave(alice)
    state = bob.last("room.state")["room"]
    assert state["host"] == "bob" and [p["username"] for p in state["players"]] == ["bob", "carol"]
    assert rooms.seat_of("alice") is None
    raises("not_in_room", rooms.leave, alice)

    rooms.leave(bob)
    assert carol.last("room.state")["room"]["host"] == "carol"
    rooms.leave(carol)
    assert room_id not in rooms.rooms
    raises("room_not_found", rooms.join, alice, room_id)
    for mind in (bob, carol):
        assert_versions_step_by_one(mind)


def test_spectators_of_a_closing_room_are_told() -> None:
    """When the last player leaves, spectators get room.closed and are out of the room."""
    services = memory_services(dice=ScriptedDice())
    alice, watcher = FakeMind("alice"), FakeMind("watcher")
    room_id = services.rooms.create(alice, "t", 2, False)["room"]["id"]
    services.rooms.join(watcher, room_id, spectate=True)
    services.rooms.leave(alice)
    assert watcher.last("room.closed") == {"event": "room.closed", "room": room_id}
    raises("not_in_room", services.rooms.chat, watcher, "hello?")


def test_every_change_bumps_the_version_by_one_for_everyone() -> None:
    """Joins, spectators, ready, a game and leaves each push room.state with version one above the last."""
    services = memory_services(dice=ScriptedDice(*FIRST_PLAYER_WINS), coalesce_seconds=0)
    rooms = services.rooms
    room_id, alice, bob = two_player_room(services)
    spectator = FakeMind("spectator")
    rooms.join(spectator, room_id, spectate=True)
    rooms.ready(alice, True)
    rooms.ready(bob, True)
    roll_until_over(services, [alice, bob])
    rooms.ready(bob, True)
    rooms.leave(spectator)
    rooms.leave(alice)
    for mind in (alice, bob, spectator):
        assert_versions_step_by_one(mind)
    assert states(bob)[-1]["version"] == rooms.rooms[room_id].version
    assert states(bob)[-1]["version"] > 20


def test_one_seat_per_user() -> None:
    """A user holding a seat cannot create or join as a player anywhere else, from any connection."""
    services = memory_services(dice=ScriptedDice())
    rooms = services.rooms
    room_id, alice, bob = two_player_room(services)
    other = rooms.create(FakeMind("carol"), "other", 4, False)["room"]["id"]
    raises("already_in_room", rooms.create, alice, "again", 2, False)
    raises("already_in_room", rooms.join, alice, other)
    second_tab = FakeMind("alice")
    raises("already_in_room", rooms.create, second_tab, "again", 2, False)
    raises("already_in_room", rooms.join, second_tab, other)
    raises("already_in_room", rooms.join, alice, other, spectate=True)
    assert rooms.seat_of("alice") == room_id
    assert len(rooms.rooms[other].players) == 1


def test_full_and_running_rooms() -> None:
    """A full room is room_full, a running one game_in_progress; spectating either is allowed."""
    services = memory_services(dice=ScriptedDice())
    rooms = services.rooms
    room_id, alice, bob = two_player_room(services, seats=2)
    carol = FakeMind("carol")
    raises("room_full", rooms.join, carol, room_id)
    reply = rooms.join(carol, room_id, spectate=True)
    assert reply["room"]["spectators"] == 1 and len(reply["room"]["players"]) == 2

    dave, erin, frank = FakeMind("dave"), FakeMind("erin"), FakeMind("frank")
    big_id = rooms.create(dave, "big", 4, False)["room"]["id"]
    rooms.join(erin, big_id)
    rooms.ready(dave, True)
    rooms.ready(erin, True)
    assert rooms.rooms[big_id].status == "playing"
    raises("game_in_progress", rooms.join, frank, big_id)
    watched = rooms.join(frank, big_id, spectate=True)["room"]
    assert watched["status"] == "playing" and watched["spectators"] == 1
    rooms.roll(dave)
    assert frank.last("game.rolled")["player"] == "dave"
    raises("not_in_room", rooms.roll, frank)
    raises("not_in_room", rooms.ready, frank, True)
    rooms.leave(frank)
    services.clock.advance(1)  # past the coalescing of spectator counts
    assert erin.last("room.state")["room"]["spectators"] == 0
    rooms.roll(erin)
    assert frank.events("game.rolled") and len(frank.events("game.rolled")) == 1


def test_spectator_moves_and_sits_down() -> None:
    """A spectator can watch another room or take a free seat; each room's count follows."""
    services = memory_services(dice=ScriptedDice())
    rooms = services.rooms
    first, alice, bob = two_player_room(services)
    second = rooms.create(FakeMind("carol"), "other", 4, False)["room"]["id"]
    dave = FakeMind("dave")
    rooms.join(dave, first, spectate=True)
    assert rooms.rooms[first].state()["spectators"] == 1
    rooms.join(dave, first, spectate=True)
    assert rooms.rooms[first].state()["spectators"] == 1
    rooms.join(dave, second, spectate=True)
    assert (rooms.rooms[first].state()["spectators"], rooms.rooms[second].state()["spectators"]) == (0, 1)
    reply = rooms.join(dave, second)
    assert reply["room"]["spectators"] == 0 and [p["username"] for p in reply["room"]["players"]][-1] == "dave"
    assert rooms.seat_of("dave") == second


def test_ops_outside_a_room() -> None:
    """Without a room, leave/ready/chat/roll are not_in_room; an unknown room is room_not_found."""
    services = memory_services(dice=ScriptedDice())
    rooms = services.rooms
    loner = FakeMind("loner")
    raises("not_in_room", rooms.leave, loner)
    raises("not_in_room", rooms.ready, loner, True)
    raises("not_in_room", rooms.chat, loner, "hello")
    raises("not_in_room", rooms.roll, loner)
    raises("room_not_found", rooms.join, loner, "ZZZZZZ")


# Presence


def test_dropped_player_keeps_the_seat_and_returns_within_grace() -> None:
    """A dropped player shows connected:false for the grace period; the same user's new connection takes the seat back."""
    services = memory_services(dice=ScriptedDice(), grace_seconds=60)
    rooms, clock = services.rooms, services.clock
    room_id, alice, bob = two_player_room(services)
    rooms.disconnected(alice)
    assert player(bob.last("room.state")["room"], "alice")["connected"] is False
    clock.advance(59)
    assert rooms.seat_of("alice") == room_id

    back = FakeMind("alice")
    reply = rooms.join(back, room_id)
    assert player(reply["room"], "alice")["connected"] is True
    assert reply["room"] == back.last("room.state")["room"] == bob.last("room.state")["room"]
    assert [p["username"] for p in reply["room"]["players"]] == ["alice", "bob"]
    clock.advance(3600)
    assert rooms.seat_of("alice") == room_id and reply["room"]["host"] == "alice"
    rooms.chat(bob, "welcome back")
    assert back.last("room.chat")["text"] == "welcome back"
    assert alice.events("room.chat") == []
    assert_versions_step_by_one(bob)


def test_grace_expiry_in_a_waiting_room_removes_the_player() -> None:
    """After the grace period a dropped player leaves a waiting room; the host passes on; the last one closes it."""
    services = memory_services(dice=ScriptedDice(), grace_seconds=30)
    rooms, clock = services.rooms, services.clock
    watcher = FakeMind("watcher")
    rooms.watch_lobby(watcher)
    room_id, alice, bob = two_player_room(services)
    rooms.disconnected(alice)
    clock.advance(30)
    state = bob.last("room.state")["room"]
    assert [p["username"] for p in state["players"]] == ["bob"] and state["host"] == "bob"
    assert rooms.seat_of("alice") is None

    rooms.disconnected(bob)
    assert room_id in rooms.rooms
    clock.advance(30)
    assert room_id not in rooms.rooms
    assert watcher.last("lobby.room_closed") == {"event": "lobby.room_closed", "room": room_id}


def test_reconnected_player_is_not_removed_by_the_old_timer() -> None:
    """Dropping, coming back and dropping again restarts the grace period instead of keeping the first deadline."""
    services = memory_services(dice=ScriptedDice(), grace_seconds=30)
    rooms, clock = services.rooms, services.clock
    room_id, alice, bob = two_player_room(services)
    rooms.disconnected(alice)
    clock.advance(20)
    again = FakeMind("alice")
    rooms.join(again, room_id)
    rooms.disconnected(again)
    clock.advance(20)
    assert rooms.seat_of("alice") == room_id
    clock.advance(10)
    assert rooms.seat_of("alice") is None


def test_newer_connection_takes_over_the_seat() -> None:
    """A second connection of the same user joining the room takes the seat; the older one gets room.detached."""
    services = memory_services(dice=ScriptedDice())
    rooms = services.rooms
    room_id, alice, bob = two_player_room(services)
    tab = FakeMind("alice")
    rooms.join(tab, room_id)
    assert alice.last("room.detached") == {"event": "room.detached", "room": room_id, "reason": "taken_over"}
    seen = len(alice.received)
    rooms.chat(bob, "who is there?")
    assert len(alice.received) == seen and tab.last("room.chat")["text"] == "who is there?"
    raises("not_in_room", rooms.ready, alice, True)
    raises("not_in_room", rooms.chat, alice, "me")
    raises("not_in_room", rooms.leave, alice)
    rooms.disconnected(alice)  # the old tab closing does not touch the seat
    assert player(rooms.rooms[room_id].state(), "alice")["connected"] is True
    rooms.ready(tab, True)
    assert player(bob.last("room.state")["room"], "alice")["ready"] is True


def test_spectating_connection_of_a_seated_user_takes_the_seat() -> None:
    """A user's other connection that joins their own room (even asking to spectate) gets the seat, not a spectator place."""
    services = memory_services(dice=ScriptedDice())
    rooms = services.rooms
    room_id, alice, bob = two_player_room(services)
    tab = FakeMind("alice")
    reply = rooms.join(tab, room_id, spectate=True)
    assert reply["room"]["spectators"] == 0
    assert alice.last("room.detached")["reason"] == "taken_over"


def test_failing_connection_is_dropped_from_the_room_not_the_room() -> None:
    """A connection whose delivery raises is treated as disconnected on the next reactor turn (never from inside
    the broadcast); the others keep getting events."""
    services = memory_services(dice=ScriptedDice())
    rooms = services.rooms
    room_id, alice, bob = two_player_room(services)

    def broken(outgoing: Any) -> None:
        raise OSError("gone")

    bob.deliver = broken  # type: ignore[method-assign]
    rooms.chat(alice, "still there?")
    assert alice.last("room.chat")["text"] == "still there?"
    assert player(alice.last("room.state")["room"], "bob")["connected"] is True
    services.clock.advance(0)
    assert player(alice.last("room.state")["room"], "bob")["connected"] is False


class DroppingMind(FakeMind):
    """A connection that the transport drops while a message is being delivered to it (a slow client): as the
    protocol does, the rooms hear of it on the next reactor turn."""

    def __init__(self, username: str, rooms: RoomService, clock: Any) -> None:
        super().__init__(username)
        self.rooms = rooms
        self.clock = clock
        self.armed = False

    def deliver(self, outgoing: Any) -> None:
        super().deliver(outgoing)
        if self.armed:
            self.armed = False
            self.clock.callLater(0, self.rooms.disconnected, self)


def test_drop_during_a_broadcast_keeps_the_order() -> None:
    """A member dropped in the middle of a broadcast does not make the others see messages or versions out of order."""
    services = memory_services(dice=ScriptedDice())
    rooms = services.rooms
    alice = FakeMind("alice")
    room_id = rooms.create(alice, "t", 4, False)["room"]["id"]
    slow, slower = DroppingMind("slow", rooms, services.clock), DroppingMind("slower", rooms, services.clock)
    rooms.join(slow, room_id)
    rooms.join(slower, room_id)
    carol = FakeMind("carol")
    rooms.join(carol, room_id)
    before = len(carol.received)

    slow.armed = True
    rooms.chat(alice, "hello")
    services.clock.advance(0)
    slower.armed = True
    rooms.ready(alice, True)
    services.clock.advance(0)
    for mind in (alice, carol):
        assert_versions_step_by_one(mind)
        assert player(states(mind)[-1], "slow")["connected"] is False
        assert player(states(mind)[-1], "slower")["connected"] is False
    got = [(m["event"], m["room"]["version"] if m["event"] == "room.state" else None) for m in carol.received[before:]]
    v = states(carol)[-3]["version"]
    assert got == [("room.chat", None), ("room.state", v), ("room.state", v + 1), ("room.state", v + 2)]


# Chat


def test_chat_reaches_everyone_in_order_as_sent() -> None:
    """Chat lines go to players and spectators in the order sent, unchanged, with from and at; joiners get the tail."""
    services = memory_services(dice=ScriptedDice(), chat_history=3)
    rooms, clock = services.rooms, services.clock
    room_id, alice, bob = two_player_room(services)
    watcher = FakeMind("watcher")
    rooms.join(watcher, room_id, spectate=True)
    lines = ["<b>hi</b> & bye", "  spaced  ", "x" * 500, "ünïcödé 🎲", "last"]
    for number, line in enumerate(lines):
        clock.advance(1)
        rooms.chat([alice, bob, watcher][number % 3], line)
    for mind in (alice, bob, watcher):
        got = mind.events("room.chat")
        assert [c["text"] for c in got] == lines
        assert [c["from"] for c in got] == ["alice", "bob", "watcher", "alice", "bob"]
        assert all(c["room"] == room_id for c in got)
    assert alice.events("room.chat")[-1]["at"] == iso(clock.seconds())
    assert alice.events("room.chat")[-1]["at"].endswith("Z")
    carol = FakeMind("carol")
    assert [c["text"] for c in rooms.join(carol, room_id)["chat"]] == lines[-3:]


# The game


def test_ready_starts_the_game_when_every_seated_player_is() -> None:
    """The game starts only when every seated player, at least two, is ready; turn = order[0]; game.turn has a deadline."""
    services = memory_services(dice=ScriptedDice(), turn_seconds=20)
    rooms, clock = services.rooms, services.clock
    alice = FakeMind("alice")
    room_id = rooms.create(alice, "t", 4, False)["room"]["id"]
    rooms.ready(alice, True)
    assert rooms.rooms[room_id].status == "waiting"
    bob, carol = FakeMind("bob"), FakeMind("carol")
    rooms.join(bob, room_id)
    rooms.join(carol, room_id)
    rooms.ready(bob, True)
    rooms.ready(carol, False)
    assert rooms.rooms[room_id].status == "waiting" and not alice.events("game.started")
    raises("game_not_started", rooms.roll, alice)
    rooms.ready(carol, True)

    started = bob.last("game.started")
    assert started["room"] == room_id and started["order"] == ["alice", "bob", "carol"]
    assert started["board"]["ladders"] and started["board"]["snakes"]
    assert Board.from_json(started["board"]).to_json() == started["board"]
    state = bob.last("room.state")["room"]
    assert state["status"] == "playing" and state["turn"] == "alice"
    assert bob.last("game.turn") == {
        "event": "game.turn",
        "room": room_id,
        "player": "alice",
        "deadline": iso(clock.seconds() + 20),
    }
    names = [m.get("event") for m in bob.received]
    assert names.index("game.started") < names.index("game.turn")
    raises("game_in_progress", rooms.ready, bob, False)


def test_rolls_follow_the_turn_order() -> None:
    """Only the current player may roll (not_your_turn otherwise); a six rolls again; every roll is game.rolled."""
    services = memory_services(dice=ScriptedDice(3, 6, 2, 4))
    rooms = services.rooms
    room_id, (alice, bob, carol) = started_game(services, "alice", "bob", "carol")
    raises("not_your_turn", rooms.roll, bob)
    rooms.roll(alice)
    rolled = carol.last("game.rolled")
    assert rolled == {
        "event": "game.rolled", "room": room_id, "player": "alice", "dice": 3, "from": 0, "to": 3,
        "via": None, "again": False, "auto": False, "n": 0,
    }
    assert carol.last("game.turn")["player"] == "bob"
    raises("not_your_turn", rooms.roll, alice)
    rooms.roll(bob)
    assert carol.last("game.rolled")["again"] is True
    assert carol.last("game.turn")["player"] == "bob"
    assert carol.last("room.state")["room"]["turn"] == "bob"
    rooms.roll(bob)
    assert (carol.last("game.rolled")["to"], carol.last("game.rolled")["via"]) == (8, None)
    assert carol.last("room.state")["room"]["turn"] == "carol"
    rooms.roll(carol)
    assert carol.last("game.rolled")["via"] == "ladder" and carol.last("game.rolled")["to"] == 14
    positions = {p["username"]: p["position"] for p in carol.last("room.state")["room"]["players"]}
    assert positions == {"alice": 3, "bob": 8, "carol": 14}


def test_deadline_rolls_for_the_player() -> None:
    """When a turn's deadline passes, the server rolls for the player (auto:true) and the next turn starts."""
    services = memory_services(turn_seconds=20, dice=ScriptedDice(2, 3))
    rooms, clock = services.rooms, services.clock
    room_id, (alice, bob) = started_game(services, "alice", "bob")
    clock.advance(19.9)
    assert not alice.events("game.rolled")
    clock.advance(0.1)
    rolled = bob.last("game.rolled")
    assert (rolled["player"], rolled["auto"], rolled["to"]) == ("alice", True, 2)
    assert bob.last("game.turn") == {"event": "game.turn", "room": room_id, "player": "bob", "deadline": iso(clock.seconds() + 20)}
    clock.advance(10)
    rooms.roll(bob)
    assert bob.last("game.rolled")["auto"] is False
    clock.advance(10)
    assert len(bob.events("game.rolled")) == 2  # bob's roll reset the deadline: nothing rolled for alice yet
    clock.advance(10)
    assert len(bob.events("game.rolled")) == 3


def test_game_over_then_finished_then_rematch() -> None:
    """game.over names winner, standings and record; the room stays finished with positions until a rematch resets it."""
    services = memory_services(dice=ScriptedDice(*FIRST_PLAYER_WINS, *FIRST_PLAYER_WINS), new_game_id=iter(["g1" * 8, "g2" * 8]).__next__)
    rooms, clock = services.rooms, services.clock
    watcher = FakeMind("watcher")
    room_id, (alice, bob) = started_game(services, "alice", "bob")
    rooms.join(watcher, room_id, spectate=True)
    over = roll_until_over(services, [alice, bob])
    assert {k: v for k, v in over.items() if k != "fairness"} == {
        "event": "game.over",
        "room": room_id,
        "winner": "alice",
        "standings": [
            {"username": "alice", "position": 100, "place": 1, "forfeited": False},
            {"username": "bob", "position": 12, "place": 2, "forfeited": False},
        ],
        "game": "g1" * 8,
    }
    assert watcher.last("game.over") == over
    state = bob.last("room.state")["room"]
    assert state["status"] == "finished" and state["turn"] is None
    assert {p["username"]: (p["position"], p["ready"]) for p in state["players"]} == {"alice": (100, False), "bob": (12, False)}
    raises("game_not_started", rooms.roll, bob)
    clock.advance(3600)  # no turn timer is left running
    assert len(bob.events("game.rolled")) == len(FIRST_PLAYER_WINS)

    carol = FakeMind("carol")
    rooms.join(carol, room_id)
    rooms.ready(bob, False)
    assert rooms.rooms[room_id].status == "finished"
    rooms.ready(bob, True)
    state = bob.last("room.state")["room"]
    assert state["status"] == "waiting" and all(p["position"] == 0 for p in state["players"])
    assert player(state, "bob")["ready"] is True
    rooms.ready(alice, True)
    rooms.ready(carol, True)
    assert bob.last("game.started")["order"] == ["alice", "bob", "carol"]
    assert bob.last("room.state")["room"]["turn"] == "alice"


def test_leaving_mid_game_forfeits_and_the_last_player_wins() -> None:
    """A player who leaves a running game forfeits; when one player is left, that player wins."""
    services = memory_services(dice=ScriptedDice())
    rooms = services.rooms
    room_id, (alice, bob, carol) = started_game(services, "alice", "bob", "carol")
    rooms.leave(alice)  # it was alice's turn: it passes to bob
    assert bob.last("game.turn")["player"] == "bob"
    assert bob.last("room.state")["room"]["turn"] == "bob"
    rooms.roll(bob)
    rooms.leave(bob)
    over = carol.last("game.over")
    assert over["winner"] == "carol"
    assert over["standings"][0] == {"username": "carol", "position": 0, "place": 1, "forfeited": False}
    assert {(s["username"], s["forfeited"]) for s in over["standings"][1:]} == {("alice", True), ("bob", True)}
    assert carol.last("room.state")["room"]["status"] == "finished"


def test_forfeit_after_grace_mid_game() -> None:
    """A player dropped mid-game keeps the seat (and turns time out) for the grace period, then forfeits."""
    services = memory_services(dice=ScriptedDice(), grace_seconds=60, turn_seconds=20)
    rooms, clock = services.rooms, services.clock
    room_id, (alice, bob, carol) = started_game(services, "alice", "bob", "carol")
    rooms.roll(alice)
    rooms.disconnected(bob)
    assert player(carol.last("room.state")["room"], "bob")["connected"] is False
    clock.advance(20)
    assert carol.last("game.rolled")["player"] == "bob" and carol.last("game.rolled")["auto"] is True
    clock.advance(40)
    state = carol.last("room.state")["room"]
    assert [p["username"] for p in state["players"]] == ["alice", "carol"]
    assert state["status"] == "playing"
    game = rooms.rooms[room_id].game
    assert game.forfeited == ("bob",)
    assert {"forfeit": "bob", "at": iso(clock.seconds())} in rooms.rooms[room_id].entries

    rooms.disconnected(carol)
    clock.advance(60)
    assert alice.last("game.over")["winner"] == "alice"


def test_game_starts_when_the_one_unready_player_leaves() -> None:
    """Every *seated* player being ready starts the game, also when the unready one leaves or times out."""
    services = memory_services(dice=ScriptedDice(), grace_seconds=5)
    rooms, clock = services.rooms, services.clock
    alice, bob, carol = FakeMind("alice"), FakeMind("bob"), FakeMind("carol")
    room_id = rooms.create(alice, "t", 4, False)["room"]["id"]
    rooms.join(bob, room_id)
    rooms.join(carol, room_id)
    rooms.ready(alice, True)
    rooms.ready(bob, True)
    rooms.leave(carol)
    assert alice.last("game.started")["order"] == ["alice", "bob"]

    dave, erin, frank = FakeMind("dave"), FakeMind("erin"), FakeMind("frank")
    other = rooms.create(dave, "u", 4, False)["room"]["id"]
    rooms.join(erin, other)
    rooms.join(frank, other)
    rooms.ready(dave, True)
    rooms.ready(erin, True)
    rooms.disconnected(frank)
    assert not dave.events("game.started")
    clock.advance(5)
    assert dave.last("game.started")["order"] == ["dave", "erin"]


# Results


@pytest_twisted.ensureDeferred
async def test_results_are_applied_once_and_the_record_is_stored() -> None:
    """At game.over every starter gets games+1 and the winner wins+1, once; the whole record is stored."""
    services = memory_services(dice=ScriptedDice(*FIRST_PLAYER_WINS))
    rooms, clock, raw = services.rooms, services.clock, services.raw_store
    alice, bob = await signed_up(services, "alice", "bob")
    room_id = rooms.create(alice, "t", 2, False)["room"]["id"]
    rooms.join(bob, room_id)
    rooms.ready(alice, True)
    started = clock.seconds()
    rooms.ready(bob, True)
    for _ in range(len(FIRST_PLAYER_WINS)):
        clock.advance(1.5)
        rooms.roll(alice if alice.last("game.turn")["player"] == "alice" else bob)
    over = alice.last("game.over")
    assert over["winner"] == "alice"
    assert (await services.accounts.user("alice")) == {"username": "alice", "wins": 1, "games": 1}
    assert (await services.accounts.user("bob")) == {"username": "bob", "wins": 0, "games": 1}
    assert services.results.pending == {} and services.results.written == 1

    record = await services.store.find_game(over["game"])
    assert record["players"] == ["alice", "bob"] and record["room"] == room_id
    assert record["winner"] == "alice" and record["standings"] == over["standings"]
    assert record["started"] == iso(started) and record["ended"] == iso(clock.seconds())
    assert len(record["entries"]) == len(FIRST_PLAYER_WINS)
    assert [e["dice"] for e in record["entries"]] == FIRST_PLAYER_WINS
    assert record["entries"][0]["at"] == iso(started + 1.5) and record["entries"][-1]["at"] == record["ended"]
    assert raw.games[over["game"]]["counted"] is True
    assert [g["id"] for g in await services.store.games_for_user("bob", 10)] == [over["game"]]

    # Writing the same record again (a retry after a crash) counts nothing twice.
    await services.results.write_once(record)
    assert (await services.accounts.user("alice")) == {"username": "alice", "wins": 1, "games": 1}


@pytest_twisted.ensureDeferred
async def test_the_record_alone_replays_the_game() -> None:
    """replay(players, entries, board) of the stored record reproduces the final positions, forfeits included."""
    seeded = random.Random(2024)
    services = memory_services(dice=lambda: seeded.randint(1, 6), grace_seconds=10, turn_seconds=5)
    rooms, clock = services.rooms, services.clock
    room_id, (alice, bob, carol) = started_game(services, "alice", "bob", "carol")
    for _ in range(12):
        rooms.roll({"alice": alice, "bob": bob, "carol": carol}[alice.last("game.turn")["player"]])
    clock.advance(5)  # one roll by the server
    rooms.disconnected(carol)
    over = roll_until_over(services, [alice, bob])
    record = await services.store.find_game(over["game"])
    game = replay(record["players"], record["entries"], Board.from_json(record["board"]))
    assert game.winner == over["winner"]
    assert game.standings() == over["standings"] == record["standings"]
    final = {p["username"]: p["position"] for p in alice.last("room.state")["room"]["players"]}
    assert {name: game.positions[name] for name in final} == final
    assert any(e.get("auto") for e in record["entries"])
    assert sum(1 for e in record["entries"] if "dice" in e) == len(alice.events("game.rolled"))


@pytest_twisted.ensureDeferred
async def test_store_outage_at_the_end_delays_but_never_loses_or_doubles_the_result() -> None:
    """With the store down at game.over nothing is written; retries every result_retry; once back, written exactly once."""
    services = memory_services(dice=ScriptedDice(*FIRST_PLAYER_WINS), result_retry=2.0)
    rooms, clock, raw = services.rooms, services.clock, services.raw_store
    alice, bob = await signed_up(services, "alice", "bob")
    room_id = rooms.create(alice, "t", 2, False)["room"]["id"]
    rooms.join(bob, room_id)
    rooms.ready(alice, True)
    rooms.ready(bob, True)
    raw.down = True
    over = roll_until_over(services, [alice, bob])
    assert raw.games == {} and list(services.results.pending) == [over["game"]]
    written = services.results.when_written(over["game"])
    assert over["game"] and alice.last("room.state")["room"]["status"] == "finished"
    calls = raw.calls
    clock.advance(2.0)
    assert raw.calls > calls and raw.games == {}
    clock.advance(1.0)
    raw.down = False
    assert not written.called
    clock.advance(1.0)
    assert raw.games[over["game"]]["counted"] is True
    assert written.called and services.results.when_written(over["game"]).called
    assert services.results.pending == {}
    for _ in range(5):
        clock.advance(2.0)
    assert (await services.accounts.user("alice")) == {"username": "alice", "wins": 1, "games": 1}
    assert (await services.accounts.user("bob")) == {"username": "bob", "wins": 0, "games": 1}
    assert services.results.written == 1


class FlakyStore:
    """Wraps the memory store: `mark_counted` fails once with an unexpected error, the rest passes through."""

    def __init__(self, store: Any, error: Exception) -> None:
        self._store = store
        self.error: Exception | None = error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def mark_counted(self, game_id: str) -> Any:
        from twisted.internet.defer import fail

        if self.error is not None:
            error, self.error = self.error, None
            return fail(error)
        return self._store.mark_counted(game_id)


@pytest_twisted.ensureDeferred
async def test_a_failure_half_way_is_retried_without_double_counting() -> None:
    """A write that fails after the stats were applied (even with an unexpected error) is retried and counts once."""
    from gamesvc.errors import StoreUnavailable
    from gamesvc.results import ResultWriter

    for error in (StoreUnavailable("timeout"), RuntimeError("driver bug")):
        services = memory_services(dice=ScriptedDice(*FIRST_PLAYER_WINS), result_retry=2.0)
        alice, bob = await signed_up(services, "alice", "bob")
        flaky = FlakyStore(services.raw_store, error)
        writer = ResultWriter(flaky, services.clock, 2.0)  # type: ignore[arg-type]
        services.rooms._results = writer
        room_id = services.rooms.create(alice, "t", 2, False)["room"]["id"]
        services.rooms.join(bob, room_id)
        services.rooms.ready(alice, True)
        services.rooms.ready(bob, True)
        over = roll_until_over(services, [alice, bob])
        assert services.raw_store.games[over["game"]]["counted"] is False
        assert list(writer.pending) == [over["game"]]
        services.clock.advance(2.0)
        assert writer.pending == {} and services.raw_store.games[over["game"]]["counted"] is True
        assert (await services.accounts.user("alice")) == {"username": "alice", "wins": 1, "games": 1}
        assert (await services.accounts.user("bob")) == {"username": "bob", "wins": 0, "games": 1}


@pytest_twisted.ensureDeferred
async def test_uncounted_records_are_finished_on_recover() -> None:
    """A record stored but left uncounted (a crash between steps) is finished by recover(), once."""
    services = memory_services(dice=ScriptedDice())
    await signed_up(services, "alice", "bob")
    record = {"id": "abcdef0123456789", "players": ["alice", "bob"], "winner": "bob", "entries": []}
    await services.store.save_game(record, ["alice", "bob"])
    await services.store.apply_result(record["id"], "alice", False)
    assert await services.results.recover() == 1
    assert await services.results.recover() == 0
    assert (await services.accounts.user("alice")) == {"username": "alice", "wins": 0, "games": 1}
    assert (await services.accounts.user("bob")) == {"username": "bob", "wins": 1, "games": 1}


def test_results_pending_at_shutdown_get_one_more_attempt() -> None:
    """flush (at shutdown) writes results still waiting for a retry, without waiting for the retry timer."""
    services = memory_services(dice=ScriptedDice(), result_retry=60)
    ann, bob = FakeMind("ann"), FakeMind("bob")
    for name in ("ann", "bob"):
        services.raw_store.users[name] = {"key": name, "username": name, "password_hash": b"", "wins": 0,
                                          "games": 0, "created": 0.0, "counted": set()}
    room_id = services.rooms.create(ann, name="T", seats=2, private=False)["room"]["id"]
    services.rooms.join(bob, room_id)
    services.rooms.ready(ann, True)
    services.rooms.ready(bob, True)
    services.raw_store.down = True
    services.rooms.leave(bob)
    assert len(services.results.pending) == 1
    services.raw_store.down = False
    left = services.results.flush()
    assert left.result == 0 and services.raw_store.users["ann"]["wins"] == 1
    assert services.raw_store.users["bob"]["games"] == 1


# One owner per fact


class RecordingListener:
    """An IRoomListener that remembers what it was told."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str, int]] = []

    def room_changed(self, room: Any) -> None:
        self.told.append(("changed", room.id, room.version))

    def room_closed(self, room: Any) -> None:
        self.told.append(("closed", room.id, room.version))


def test_the_room_listener_comes_in_the_constructor_and_hears_every_change_and_close() -> None:
    """The listener passed to RoomService hears each new version and the closing; the checkpoints implement it."""
    from zope.interface.verify import verifyObject

    from gamesvc.interfaces import IRoomListener

    services = memory_services()
    verifyObject(IRoomListener, services.checkpoints)
    listener = RecordingListener()
    rooms = RoomService(services.clock, services.settings, services.results, listener)
    alice = FakeMind("alice")
    room_id = rooms.create(alice, "t", 2, False)["room"]["id"]
    rooms.ready(alice, True)
    rooms.leave(alice)
    assert listener.told == [("changed", room_id, 1), ("changed", room_id, 2), ("closed", room_id, 2)]


def test_a_rooms_moves_live_in_the_games_log_only() -> None:
    """Room.entries is read from the game's log (with the room's notes: n, at, auto); replaying it rebuilds the game."""
    services = memory_services(dice=ScriptedDice(3, 4))
    rooms = services.rooms
    room_id, alice, bob = two_player_room(services)
    rooms.ready(alice, True)
    rooms.ready(bob, True)
    rooms.roll(alice)
    room = rooms.rooms[room_id]
    assert room.entries == room.game.record_entries()
    assert room.entries[0]["n"] == 0 and room.entries[0]["auto"] is False and "at" in room.entries[0]
    rebuilt = replay(list(room.game.order), room.entries)
    assert rebuilt.positions == room.game.positions and rebuilt.record_entries() == room.entries

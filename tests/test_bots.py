"""Service tests of bots in seats, quick play and forfeit takeover, over the memory store with a `task.Clock`."""

from __future__ import annotations

import random
from typing import Any, Sequence, TypeVar

import pytest
import pytest_twisted

from gamesvc.bots import BOT_PREFIX, bot_delay, bot_name, fullest_room
from gamesvc.config import Settings
from gamesvc.errors import GameError
from gamesvc.passwords import PlainHasher
from gamesvc.service import build_services
from gamesvc.wire import iso
from tests.support import FakeMind, ScriptedDice, memory_services, roll_until_over

T = TypeVar("T")


class SlowestRandom(random.Random):
    """An RNG for bots that always draws the longest delay and the first free name."""

    def uniform(self, a: float, b: float) -> float:
        return b

    def choice(self, seq: Sequence[T]) -> T:
        return seq[0]


def services_with_bots(*rolls: int, **settings: Any) -> Any:
    """Memory services with scripted dice (or a seeded die) and bots that wait 1.5 x --bot-delay (3 s here)."""
    options: dict[str, Any] = {"bot_delay": 2.0, "checkpoint_interval": 0.0, **settings}
    if rolls:
        options["dice"] = ScriptedDice(*rolls)
    else:
        options.setdefault("dice_seed", 16)
    return memory_services(bot_random=SlowestRandom(), **options)


def raises(code: str, fn: Any, *args: Any, **kwargs: Any) -> GameError:
    """Call `fn` and check that it fails with the error `code`."""
    with pytest.raises(GameError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value.to_json()
    return info.value


def last_state(mind: FakeMind) -> dict[str, Any]:
    """The latest RoomState pushed to `mind`."""
    return mind.last("room.state")["room"]


async def signed_up(services: Any, *names: str) -> list[FakeMind]:
    """Accounts in the memory store, and a connection for each."""
    minds = []
    for number, name in enumerate(names):
        await services.accounts.signup(name, "password1", f"10.0.0.{number}")
        minds.append(FakeMind(name))
    return minds


# The pure parts


def test_bot_names_cannot_be_usernames_and_do_not_repeat() -> None:
    """Bot names hold a space (usernames cannot), differ from the room's names, and fall back to numbers."""
    rng = random.Random(1)
    first = bot_name([], rng)
    assert first.startswith(BOT_PREFIX) and " " in first
    assert bot_name([first], SlowestRandom()) != first
    taken: list[str] = []
    for _ in range(40):
        taken.append(bot_name(taken, rng))
    assert len(set(taken)) == 40


def test_bot_delay_is_around_the_mean() -> None:
    """A bot's delay lies between half and one and a half times --bot-delay."""
    rng = random.Random(7)
    delays = [bot_delay(rng, 2.0) for _ in range(200)]
    assert all(1.0 <= d <= 3.0 for d in delays) and max(delays) - min(delays) > 1.0


# Bots in seats


def test_host_adds_a_bot_that_is_ready_and_marked() -> None:
    """A bot takes a free seat, always ready, connected and marked `bot`; the lobby sees it in `bots`."""
    services = services_with_bots()
    alice, watcher = FakeMind("alice"), FakeMind("watcher")
    room_id = services.rooms.create(alice, "t", 3, False)["room"]["id"]
    services.rooms.watch_lobby(watcher)
    reply = services.rooms.add_bot(alice)
    state = last_state(alice)
    bot = state["players"][1]
    assert bot == {"username": reply["bot"], "ready": True, "connected": True, "position": 0, "bot": True}
    assert " " in bot["username"] and state["host"] == "alice"
    assert "bot" not in state["players"][0]
    services.clock.advance(services.settings.coalesce_seconds)  # the lobby hears of a room at most every so often
    assert watcher.last("lobby.room")["room"] == {
        "id": room_id, "name": "t", "seats": 3, "players": 2, "status": "waiting", "bots": 1,
    }
    services.rooms.remove_bot(alice, reply["bot"])
    assert [p["username"] for p in last_state(alice)["players"]] == ["alice"]
    raises("not_found", services.rooms.remove_bot, alice, reply["bot"])


def test_bots_are_the_hosts_and_limited() -> None:
    """Only the host adds or removes bots, never into a full or running room, and bots never leave no seat for a person."""
    services = services_with_bots()
    alice, bob = FakeMind("alice"), FakeMind("bob")
    room_id = services.rooms.create(alice, "t", 3, False)["room"]["id"]
    services.rooms.join(bob, room_id)
    raises("not_host", services.rooms.add_bot, bob)
    raises("not_host", services.rooms.configure, bob, True)
    name = services.rooms.add_bot(alice)["bot"]
    raises("not_host", services.rooms.remove_bot, bob, name)
    raises("room_full", services.rooms.add_bot, alice)
    services.rooms.ready(alice, True)
    services.rooms.ready(bob, True)
    raises("game_in_progress", services.rooms.add_bot, alice)
    raises("game_in_progress", services.rooms.remove_bot, alice, name)

    # A two-seat room holds one bot at most: the other seat is the host's.
    solo = memory_services()
    carol = FakeMind("carol")
    solo.rooms.create(carol, "s", 2, False)
    solo.rooms.add_bot(carol)
    raises("room_full", solo.rooms.add_bot, carol)


def test_bots_per_account_are_limited_over_a_window() -> None:
    """An account adds at most --bot-limit bots per --bot-window, across rooms; later it may again."""
    services = services_with_bots(bot_limit=2, bot_window=60.0)
    alice = FakeMind("alice")
    services.rooms.create(alice, "t", 4, False)
    services.rooms.add_bot(alice)
    first = services.rooms.add_bot(alice)["bot"]
    services.rooms.remove_bot(alice, first)
    error = raises("rate_limited", services.rooms.add_bot, alice)
    assert 0 < error.to_json()["retry_after"] <= 60
    services.clock.advance(60)
    services.rooms.add_bot(alice)


def test_a_bots_turn_waits_then_rolls() -> None:
    """On its turn a bot rolls after its delay from the injected RNG and clock, not before; a 6 rolls again."""
    services = services_with_bots(3, 6, 2, 4)
    alice = FakeMind("alice")
    services.rooms.create(alice, "t", 2, False)
    bot = services.rooms.add_bot(alice)["bot"]
    services.rooms.ready(alice, True)
    assert alice.last("game.started")["order"] == ["alice", bot]
    services.rooms.roll(alice)
    assert alice.last("game.turn")["player"] == bot
    services.clock.advance(2.9)
    assert len(alice.events("game.rolled")) == 1
    services.clock.advance(0.1)
    rolled = alice.last("game.rolled")
    assert (rolled["player"], rolled["dice"], rolled["again"], rolled["auto"]) == (bot, 6, True, False)
    services.clock.advance(3)
    assert alice.last("game.rolled")["dice"] == 2
    assert alice.last("game.turn")["player"] == "alice"
    services.clock.advance(3)
    assert len(alice.events("game.rolled")) == 3  # people's turns are theirs


def test_a_human_who_joins_takes_a_bots_seat() -> None:
    """In a full waiting room a person who joins takes the place of a bot; in a running game they may not."""
    services = services_with_bots()
    alice, bob, carol = FakeMind("alice"), FakeMind("bob"), FakeMind("carol")
    room_id = services.rooms.create(alice, "t", 2, False)["room"]["id"]
    services.rooms.add_bot(alice)
    reply = services.rooms.join(bob, room_id)
    assert [(p["username"], p.get("bot", False)) for p in reply["room"]["players"]] == [("alice", False), ("bob", False)]
    services.rooms.leave(bob)
    services.rooms.add_bot(alice)
    services.rooms.ready(alice, True)
    raises("game_in_progress", services.rooms.join, carol, room_id)


def test_the_room_closes_when_its_last_person_leaves() -> None:
    """Bots do not keep a room open: it closes when no person is seated."""
    services = services_with_bots()
    alice = FakeMind("alice")
    room_id = services.rooms.create(alice, "t", 3, False)["room"]["id"]
    services.rooms.add_bot(alice)
    services.rooms.add_bot(alice)
    services.rooms.ready(alice, True)
    services.rooms.leave(alice)
    assert room_id not in services.rooms.rooms
    services.clock.advance(60)  # no bot timer fires into the closed room
    assert not services.clock.getDelayedCalls()


# Quick play


def test_quick_play_picks_the_fullest_public_waiting_room() -> None:
    """Quick play seats the player, ready, in the public waiting room with the most people and a place left."""
    services = services_with_bots()
    rooms = services.rooms
    people = {name: FakeMind(name) for name in ["a1", "b1", "b2", "c1", "c2", "c3", "d1", "d2", "d3", "e1", "e2"]}
    one = rooms.create(people["a1"], "one", 4, False)["room"]["id"]
    two = rooms.create(people["b1"], "two", 4, False)["room"]["id"]
    rooms.join(people["b2"], two)
    full = rooms.create(people["c1"], "full", 3, False)["room"]["id"]
    for name in ["c2", "c3"]:
        rooms.join(people[name], full)
    private = rooms.create(people["d1"], "private", 4, True)["room"]["id"]
    for name in ["d2", "d3"]:
        rooms.join(people[name], private)
    playing = rooms.create(people["e1"], "playing", 4, False)["room"]["id"]
    rooms.join(people["e2"], playing)
    rooms.ready(people["e1"], True)
    rooms.ready(people["e2"], True)
    rooms.add_bot(people["b1"])

    me = FakeMind("me")
    reply = rooms.quick_play(me)
    assert reply["room"]["id"] == two
    assert next(p for p in reply["room"]["players"] if p["username"] == "me")["ready"] is True
    assert one in rooms.rooms
    raises("already_in_room", rooms.quick_play, me)


def test_quick_play_takes_a_bots_seat() -> None:
    """A waiting room whose seats are people and bots still has a place for quick play: a bot's."""
    services = services_with_bots()
    alice, me = FakeMind("alice"), FakeMind("me")
    room_id = services.rooms.create(alice, "t", 2, False)["room"]["id"]
    services.rooms.add_bot(alice)
    reply = services.rooms.quick_play(me)
    assert reply["room"]["id"] == room_id
    assert [p["username"] for p in reply["room"]["players"]] == ["alice", "me"]


def test_quick_play_alone_counts_down_then_fills_with_bots() -> None:
    """With no room to join, quick play opens one whose state tells when bots come; then they fill it and it starts."""
    services = services_with_bots(quick_play_wait=10.0, quick_play_seats=3)
    me = FakeMind("me")
    now = services.clock.seconds()
    reply = services.rooms.quick_play(me)
    state = reply["room"]
    assert state["bots_at"] == iso(now + 10) and state["seats"] == 3 and state["status"] == "waiting"
    assert state["players"][0]["ready"] is True
    services.clock.advance(9.9)
    assert len(last_state(me)["players"]) == 1
    services.clock.advance(0.1)
    order = me.last("game.started")["order"]
    assert order[0] == "me" and len(order) == 3 and all(" " in name for name in order[1:])
    assert last_state(me)["bots_at"] is None


def test_a_person_who_quick_plays_during_the_countdown_joins_and_it_waits_on() -> None:
    """A second person lands in the counting-down room, ready; the game still waits for the countdown (or a full room)."""
    services = services_with_bots(quick_play_wait=10.0, quick_play_seats=3)
    me, you = FakeMind("me"), FakeMind("you")
    room_id = services.rooms.quick_play(me)["room"]["id"]
    services.clock.advance(5)
    assert services.rooms.quick_play(you)["room"]["id"] == room_id
    assert not me.events("game.started")
    services.clock.advance(5)
    assert me.last("game.started")["order"][:2] == ["me", "you"]


def test_leaving_during_the_countdown_fills_nothing() -> None:
    """When the quick player leaves before the countdown ends, the room closes and no bot is seated anywhere."""
    services = services_with_bots(quick_play_wait=10.0)
    me = FakeMind("me")
    room_id = services.rooms.quick_play(me)["room"]["id"]
    services.rooms.leave(me)
    assert room_id not in services.rooms.rooms
    services.clock.advance(20)
    assert services.rooms.rooms == {} and not services.clock.getDelayedCalls()


# Forfeit takeover


def test_a_bot_takes_over_a_seat_left_mid_game_when_the_host_chose_it() -> None:
    """With bot_takeover a leaver's seat is played on by a bot to the end; the leaver is free and the record says so."""
    services = services_with_bots()
    alice, bob, carol = FakeMind("alice"), FakeMind("bob"), FakeMind("carol")
    room_id = services.rooms.create(alice, "t", 3, False, bot_takeover=True)["room"]["id"]
    services.rooms.join(bob, room_id)
    services.rooms.join(carol, room_id)
    for mind in (alice, bob, carol):
        services.rooms.ready(mind, True)
    services.rooms.roll(alice)
    assert alice.last("game.turn")["player"] == "bob"
    services.rooms.leave(bob)
    assert services.rooms.seat_of("bob") is None
    state = last_state(alice)
    assert state["bot_takeover"] is True
    assert next(p for p in state["players"] if p["username"] == "bob") == {
        "username": "bob", "ready": True, "connected": True, "position": 0, "bot": True,
    }
    services.clock.advance(3)
    assert alice.last("game.rolled")["player"] == "bob"
    over = roll_until_over(services, [alice, carol], wait=services.settings.bot_delay * 1.5)
    assert not [s for s in over["standings"] if s["forfeited"]]
    record = services.results.pending.get(over["game"]) or services.raw_store.games[over["game"]]
    assert record["stand_ins"] == ["bob"] and record["bots"] == []
    assert [p["username"] for p in last_state(alice)["players"]] == ["alice", "carol"]


def test_without_takeover_the_leaver_forfeits() -> None:
    """The default (bot_takeover false): leaving a running game is a forfeit, as before; the host may change it."""
    services = services_with_bots()
    alice, bob = FakeMind("alice"), FakeMind("bob")
    room_id = services.rooms.create(alice, "t", 2, False)["room"]["id"]
    services.rooms.join(bob, room_id)
    services.rooms.configure(alice, True)
    services.rooms.configure(alice, False)
    services.rooms.ready(alice, True)
    services.rooms.ready(bob, True)
    services.rooms.leave(bob)
    assert alice.last("game.over")["winner"] == "alice"


def test_the_last_person_leaving_is_not_taken_over() -> None:
    """A bot never stands in for the last person: the room closes instead."""
    services = services_with_bots()
    alice = FakeMind("alice")
    room_id = services.rooms.create(alice, "t", 3, False, bot_takeover=True)["room"]["id"]
    services.rooms.add_bot(alice)
    services.rooms.add_bot(alice)
    services.rooms.ready(alice, True)
    services.rooms.leave(alice)
    assert room_id not in services.rooms.rooms


# Restarts


def restarted(services: Any, **settings: Any) -> Any:
    """New services over the same store and clock, restored from the checkpoints."""
    options = {"bot_delay": 2.0, **settings}
    again = build_services(
        Settings(**options), services.clock, services.raw_store, PlainHasher(),
        dice=ScriptedDice(), bot_random=SlowestRandom(),
    )
    again.raw_store = services.raw_store
    for snapshot in list(services.raw_store.rooms.values()):
        again.rooms.restore(snapshot)
    return again


def test_bots_are_restored_with_their_room_and_play_on() -> None:
    """After a restart a bot is back in its seat, ready and marked, holds no account's seat, and rolls on its turn."""
    services = services_with_bots(3)
    alice = FakeMind("alice")
    room_id = services.rooms.create(alice, "t", 2, False)["room"]["id"]
    bot = services.rooms.add_bot(alice)["bot"]
    services.rooms.ready(alice, True)
    services.rooms.roll(alice)
    services.clock.advance(0)
    services.rooms.stop()

    again = restarted(services)
    room = again.rooms.rooms[room_id]
    assert [(s.username, s.bot, s.ready) for s in room.players] == [("alice", False, True), (bot, True, True)]
    assert room.state()["players"][1]["bot"] is True and room.state()["turn"] == bot
    assert again.rooms.seat_of(bot.lower()) is None
    positions = room.game.positions
    again.clock.advance(3)
    assert room.game.positions != positions and room.game.current == "alice"


def test_a_quick_play_countdown_survives_a_restart() -> None:
    """A counting-down quick play room is restored with the time it had left, then filled."""
    services = services_with_bots(quick_play_wait=10.0, quick_play_seats=2)
    me = FakeMind("me")
    room_id = services.rooms.quick_play(me)["room"]["id"]
    services.clock.advance(4)
    services.rooms.stop()
    again = restarted(services)
    room = again.rooms.rooms[room_id]
    assert room.state()["bots_at"] == iso(services.clock.seconds() + 6)
    again.rooms.join(FakeMind("me"), room_id)
    again.clock.advance(6)
    assert room.status == "playing" and room.players[1].bot


# Results


@pytest_twisted.ensureDeferred
async def test_games_with_bots_are_stored_but_leave_the_leaderboard_alone() -> None:
    """A game against a bot is stored and in the player's history, marked; no stats change; no bot is ranked."""
    services = services_with_bots()
    (alice,) = await signed_up(services, "alice")
    services.rooms.create(alice, "t", 2, False)
    bot = services.rooms.add_bot(alice)["bot"]
    services.rooms.ready(alice, True)
    over = roll_until_over(services, [alice], wait=services.settings.bot_delay * 1.5)
    await services.results.when_written(over["game"])
    assert (await services.accounts.user("alice")) == {"username": "alice", "wins": 0, "games": 0}
    history = await services.store.games_for_user("alice", 10)
    assert [g["id"] for g in history] == [over["game"]]
    assert history[0]["bots"] == [bot] and history[0]["players"] == ["alice", bot]
    assert await services.store.find_game(over["game"]) is not None
    assert [p["username"] for p in await services.accounts.leaderboard(10)] == ["alice"]
    assert services.raw_store.games[over["game"]]["counted"] is True


def test_fullest_room_ignores_rooms_without_a_place() -> None:
    """fullest_room skips private, running and people-full rooms, and prefers more people, then more players."""

    class R:
        def __init__(self, id: str, humans: int, bots: int, seats: int = 4, private: bool = False, status: str = "waiting") -> None:
            self.id, self._humans, self._bots, self.seats, self.private, self.status = id, humans, bots, seats, private, status

        def humans(self) -> int:
            return self._humans

        def bots(self) -> int:
            return self._bots

    rooms = [R("a", 1, 0), R("b", 2, 0), R("c", 2, 1), R("d", 3, 0, private=True), R("e", 3, 0, status="playing"), R("f", 4, 0)]
    assert fullest_room(rooms, "waiting").id == "c"  # type: ignore[union-attr]
    assert fullest_room([R("x", 2, 0, seats=2)], "waiting") is None

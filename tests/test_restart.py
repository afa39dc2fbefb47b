"""Restarts lose no game: rooms are checkpointed as they change and restored, with their games, on start."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from tests.conftest import fresh_database_uri
from tests.play import play_out, resumed, seat_and_start
from gamesvc import fairness
from gamesvc.config import Settings
from gamesvc.passwords import PlainHasher
from gamesvc.service import build_services
from tests.support import FakeMind, Running, ScriptedDice, http, memory_services, start_service
from tests.processes import Twistd


def seated_game(dice: ScriptedDice, **settings: Any) -> tuple[Any, FakeMind, FakeMind, str]:
    """Memory services with ann and bob playing in one room; ann rolls first."""
    services = memory_services(dice=dice, **{"checkpoint_interval": 0.0, **settings})
    ann, bob = FakeMind("ann"), FakeMind("bob")
    room_id = services.rooms.create(ann, name="Table", seats=2, private=False)["room"]["id"]
    services.rooms.join(bob, room_id)
    services.rooms.ready(ann, True)
    services.rooms.ready(bob, True)
    return services, ann, bob, room_id


def restarted(services: Any, dice: ScriptedDice, **settings: Any) -> Any:
    """New services over the same store and clock, restored from its checkpoints as the service does at start."""
    again = build_services(Settings(**settings), services.clock, services.raw_store, PlainHasher(), dice=dice)
    again.raw_store = services.raw_store
    for snapshot in list(services.raw_store.rooms.values()):
        again.rooms.restore(snapshot)
    return again


def add_users(store: Any, *names: str) -> None:
    """Accounts for the players, so that results can be applied to them."""
    for name in names:
        store.users[name] = {"key": name, "username": name, "password_hash": b"", "wins": 0, "games": 0,
                             "created": 0.0, "counted": set()}


def test_every_change_is_checkpointed() -> None:
    """After each roll the room's checkpoint in the store holds the new move and version; the game is kept as its
    players and its one log of moves, nothing the log already says (positions, turn)."""
    services, ann, bob, room_id = seated_game(ScriptedDice(3, 4))
    services.rooms.roll(ann)
    services.clock.advance(0)
    saved = services.raw_store.rooms[room_id]
    assert saved["game"] == {"players": ["ann", "bob"]}
    assert [(e["player"], e["to"], e["n"]) for e in saved["entries"]] == [("ann", 3, 0)]
    assert saved["version"] == services.rooms.rooms[room_id].version
    services.rooms.roll(bob)
    services.clock.advance(0)
    entries = services.raw_store.rooms[room_id]["entries"]
    assert [(e["player"], e["to"], e["n"]) for e in entries] == [("ann", 3, 0), ("bob", 14, 1)]  # 4 is a ladder foot


def test_restore_carries_the_game_on() -> None:
    """A restored room has its players (disconnected), positions, turn, turn time left, chat and version."""
    services, ann, bob, room_id = seated_game(ScriptedDice(3), turn_seconds=20)
    services.rooms.chat(ann, "good luck")
    services.rooms.roll(ann)
    services.clock.advance(5)
    services.clock.advance(0)
    assert services.raw_store.rooms[room_id]["chat"] == []  # checkpoints written as rooms change leave chat out
    services.rooms.stop()
    services.checkpoints.room_changed(services.rooms.rooms[room_id])
    services.checkpoints.flush(final=True)  # as at shutdown: in full (the memory store answers at once)
    version = services.rooms.rooms[room_id].version

    again = restarted(services, ScriptedDice(5), turn_seconds=20)
    room = again.rooms.rooms[room_id]
    state = room.state()
    assert state["status"] == "playing" and state["turn"] == "bob" and state["version"] == version
    assert [(p["username"], p["position"], p["connected"]) for p in state["players"]] == [
        ("ann", 3, False), ("bob", 0, False)]
    assert [m["text"] for m in room.chat] == ["good luck"]
    assert room.deadline == pytest.approx(again.clock.seconds() + 15)
    assert again.rooms.seat_of("bob") == room_id

    bob_back = FakeMind("bob")
    joined = again.rooms.join(bob_back, room_id)
    assert joined["chat"][0]["text"] == "good luck"
    assert [p["connected"] for p in joined["room"]["players"]] == [False, True]
    again.rooms.roll(bob_back)
    assert bob_back.last("game.rolled")["to"] == 5


def test_restored_deadline_and_grace_resume() -> None:
    """The restored turn's deadline fires when its time left runs out; a player who never returns forfeits after the grace."""
    services, ann, bob, room_id = seated_game(ScriptedDice(3), turn_seconds=20, grace_seconds=60)
    services.rooms.stop()
    services.checkpoints.room_changed(services.rooms.rooms[room_id])
    services.clock.advance(0)
    again = restarted(services, ScriptedDice(2, 2), turn_seconds=20, grace_seconds=60)
    ann_back = FakeMind("ann")
    again.rooms.join(ann_back, room_id)
    again.clock.advance(20)
    assert ann_back.last("game.rolled")["auto"] is True and ann_back.last("game.rolled")["player"] == "ann"
    again.clock.advance(40)
    over = ann_back.last("game.over")
    assert over["winner"] == "ann"
    assert [s["username"] for s in over["standings"]] == ["ann", "bob"]


def test_a_result_pending_at_shutdown_is_written_after_restart() -> None:
    """A game that ended while the store was down keeps its result in the checkpoint; the next start writes it once."""
    services, ann, bob, room_id = seated_game(ScriptedDice())
    add_users(services.raw_store, "ann", "bob")
    services.raw_store.down = True
    services.rooms.leave(bob)  # ann wins: bob forfeits by leaving
    snapshot = services.rooms.snapshot(services.rooms.rooms[room_id])
    assert snapshot["status"] == "finished" and snapshot["record"]["winner"] == "ann"
    services.results.stop()
    services.raw_store.down = False
    services.raw_store.rooms[room_id] = snapshot

    again = restarted(services, ScriptedDice())
    users = again.raw_store.users
    assert (users["ann"]["wins"], users["ann"]["games"], users["bob"]["wins"], users["bob"]["games"]) == (1, 1, 0, 1)
    assert again.raw_store.games[snapshot["record"]["id"]]["counted"] is True
    assert again.raw_store.games[snapshot["record"]["id"]]["entries"] == [{"forfeit": "bob", "at": snapshot["entries"][-1]["at"]}]
    # A second restart from the same checkpoint cannot count the game again.
    restarted(services, ScriptedDice())
    assert (users["ann"]["wins"], users["ann"]["games"]) == (1, 1)


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_graceful_restart_mid_game(reactor: Any, mongo_uri: str) -> None:
    """SIGTERM mid-game: clients get server.restarting and 1012; after the restart they resume their seats, the game
    goes on where it was, rolling the dice committed to before the restart, and the result counts once."""
    uri = fresh_database_uri(mongo_uri)
    first = await start_service(reactor, uri, dice_seed=7, message_rate=1000, message_burst=1000)
    clients, tokens, room_id = await seat_and_start(reactor, first, ["ann", "bob"], "Restart")
    ann, bob = clients["ann"], clients["bob"]
    ann_token, bob_token = tokens["ann"], tokens["bob"]
    commit = (await ann.event("game.started"))["fairness"]["commit"]
    await ann.event("game.turn")
    await ann.ok("game.roll")
    rolled = await bob.event("game.rolled")
    await first.service.stopService()
    assert await ann.closed == 1012 and await bob.closed == 1012
    assert (await ann.event("server.restarting"))["event"] == "server.restarting"

    # Another --dice-seed: seeds drawn afresh after the restart would not be the committed ones.
    second = await start_service(reactor, uri, dice_seed=8, message_rate=1000, message_burst=1000)
    try:
        ann2 = await resumed(reactor, second, ann_token)
        bob2 = await resumed(reactor, second, bob_token)
        assert (await ann2.ok("me"))["room"] == room_id
        state = (await ann2.ok("room.join", room=room_id))["room"]
        await bob2.ok("room.join", room=room_id)
        assert state["status"] == "playing"
        assert {p["username"]: p["position"] for p in state["players"]}["ann"] == rolled["to"]
        over = await play_out({"ann": ann2, "bob": bob2}, ann2)
        await second.service.app.results.when_written(over["game"])
        record = (await http(reactor, "GET", f"{second.url}/api/games/{over['game']}"))[2]["game"]
        assert record["fairness"]["commit"] == commit and fairness.verify_record(record) == []
        board = {p["username"]: p for p in (await ann2.ok("leaderboard"))["players"]}
        assert board["ann"]["games"] == 1 and board["bob"]["games"] == 1
        assert board["ann"]["wins"] + board["bob"]["wins"] == 1
        await ann2.close()
        await bob2.close()
    finally:
        await second.service.stopService()


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_hard_kill_loses_at_most_the_roll_in_flight(reactor: Any, tmp_path: Path) -> None:
    """SIGKILL of the real twistd mid-game, checkpointing every change at once (--checkpoint-interval 0): after a
    restart on the same data the room is back with every roll but at most the last one, and the players take
    their seats again."""
    data = tmp_path / "gamesvc-data"
    first = Twistd(data, "--checkpoint-interval", "0")
    try:
        running = Running(None, first.port)  # type: ignore[arg-type]
        clients, tokens, room_id = await seat_and_start(reactor, running, ["ann", "bob"], "Crash")
        ann, bob = clients["ann"], clients["bob"]
        ann_token = tokens["ann"]
        versions = []
        for _ in range(3):
            turn = await ann.event("game.turn")
            await (ann if turn["player"] == "ann" else bob).ok("game.roll")
            await ann.event("game.rolled")
            versions.append((await ann.event("room.state"))["room"]["version"])
        # One more request that reaches the store, so the checkpoints written before it have had their turn.
        await ann.ok("leaderboard")
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    await ann.closed
    second = Twistd(data)
    try:
        running = Running(None, second.port)  # type: ignore[arg-type]
        ann2 = await resumed(reactor, running, ann_token)
        state = (await ann2.ok("room.join", room=room_id))["room"]
        assert state["status"] == "playing"
        assert state["version"] >= versions[-2]
        assert sum(p["position"] for p in state["players"]) > 0
        assert [p["connected"] for p in state["players"]] == [True, False]
        await ann2.close()
    finally:
        second.stop()

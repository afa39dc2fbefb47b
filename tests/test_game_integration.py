"""Integration tests of whole Dice Race games: real service, real store, real WebSockets, seeded dice.

With `dice_seed` the fair dice's server seeds (and the client seeds drawn for players) come from a seeded PRNG, so
each game here is the same every run.
Clients roll when game.turn names them; nothing sleeps.
"""

from __future__ import annotations

import io
import random
from typing import Any

import pytest
import pytest_twisted

from gamesvc import fairness
from gamesvc.game import Board, replay
from tests.conftest import fresh_database_uri
from tests.play import play_out, seat_and_start, seated, signed_in, until_state
from tests.support import Running, WsClient, http, start_service

pytestmark = pytest.mark.integration

SEED = 20261125
# Test players roll as fast as replies come back, far above a person's pace: lift the per-connection message limit.
FAST = {"message_rate": 100_000.0, "message_burst": 100_000}


# The service of every test here: seeded dice and the fast players' limit.
SERVICE_OPTIONS = {"dice_seed": SEED, **FAST}


async def close_all(clients: dict[str, WsClient]) -> None:
    """Close every client."""
    for client in clients.values():
        await client.close()


@pytest.mark.parametrize("count", [2, 3, 4])
@pytest_twisted.ensureDeferred
async def test_whole_game_to_game_over(reactor: Any, running: Running, count: int) -> None:
    """Players roll on their turns to game.over; stats, `me`, the leaderboard and the stored record all agree."""
    names = ["ann", "ben", "cat", "dan"][:count]
    clients, _, room_id = await seat_and_start(reactor, running, names)
    observer = clients[names[-1]]
    started = await observer.event("game.started")
    assert started["room"] == room_id and started["order"] == names
    board = Board.from_json(started["board"])
    state = await until_state(observer, lambda s: s["status"] == "playing")
    assert state["turn"] == names[0]

    over = await play_out(clients, observer)
    assert over["room"] == room_id and over["winner"] in names
    assert [s["username"] for s in over["standings"]][0] == over["winner"]
    for client in clients.values():
        if client is not observer:
            assert await client.event("game.over") == over
    final = await until_state(observer, lambda s: s["status"] == "finished")
    positions = {p["username"]: p["position"] for p in final["players"]}
    assert positions[over["winner"]] == 100 and final["turn"] is None

    await running.service.app.results.when_written(over["game"])
    status, _, body = await http(reactor, "GET", f"{running.url}/api/games/{over['game']}")
    assert status == 200
    record = body["game"]
    assert record["id"] == over["game"] and record["players"] == names and record["winner"] == over["winner"]
    assert record["started"] <= record["ended"]
    rolls = [e for e in record["entries"] if "dice" in e]
    assert all(e["at"].endswith("Z") and e["auto"] is False for e in rolls)
    # --dice-seed fixes the server seed (the room's is the PRNG's first draw) but the fair scheme still rolls.
    assert record["fairness"]["server_seed"] == random.Random(SEED).randbytes(32).hex()
    assert over["fairness"] == record["fairness"] == dict(started["fairness"], server_seed=record["fairness"]["server_seed"])
    assert [e["n"] for e in rolls] == list(range(len(rolls)))
    assert fairness.verify_record(record) == []
    game = replay(record["players"], record["entries"], Board.from_json(record["board"]))
    assert Board.from_json(record["board"]) == board
    assert game.positions == positions and game.winner == over["winner"]
    assert game.standings() == over["standings"] == record["standings"]

    leaderboard = (await observer.ok("leaderboard"))["players"]
    expected = {name: {"username": name, "wins": int(name == over["winner"]), "games": 1} for name in names}
    assert sorted(leaderboard, key=lambda u: u["username"]) == sorted(expected.values(), key=lambda u: u["username"])
    assert leaderboard[0]["username"] == over["winner"]
    for name, client in clients.items():
        me = await client.ok("me")
        assert me["user"] == expected[name] and me["room"] == room_id
        status, _, listed = await http(reactor, "GET", f"{running.url}/api/users/{name.upper()}/games")
        assert status == 200 and [g["id"] for g in listed["games"]] == [over["game"]]
    await close_all(clients)


@pytest_twisted.ensureDeferred
async def test_rematch_counts_each_game_once(reactor: Any, running: Running) -> None:
    """After game.over the room is finished until someone readies; a rematch resets positions and counts as a new game."""
    names = ["ann", "ben"]
    clients, _, room_id = await seat_and_start(reactor, running, names)
    ann, ben = clients["ann"], clients["ben"]
    first = await play_out(clients, ann)
    finished = await until_state(ben, lambda s: s["status"] == "finished")
    assert max(p["position"] for p in finished["players"]) == 100
    assert (await ben.request("game.roll"))["error"] == "game_not_started"

    await ben.ok("room.ready", ready=True)
    waiting = await until_state(ann, lambda s: s["version"] > finished["version"])
    assert waiting["status"] == "waiting"
    assert [(p["position"], p["ready"]) for p in waiting["players"]] == [(0, False), (0, True)]
    await ann.ok("room.ready", ready=True)
    assert (await ann.event("game.started"))["order"] == names
    second = await play_out(clients, ann)
    assert second["game"] != first["game"]

    for over in (first, second):
        await running.service.app.results.when_written(over["game"])
    wins = {name: sum(over["winner"] == name for over in (first, second)) for name in names}
    for name, client in clients.items():
        assert (await client.ok("me"))["user"] == {"username": name, "wins": wins[name], "games": 2}
    listed = (await http(reactor, "GET", f"{running.url}/api/users/ann/games"))[2]["games"]
    assert {g["id"] for g in listed} == {first["game"], second["game"]}
    assert seated((await ann.ok("room.join", room=room_id))["room"]) == names
    await close_all(clients)


@pytest_twisted.ensureDeferred
async def test_turn_deadline_rolls_for_an_idle_player(reactor: Any, mongo_uri: str) -> None:
    """When nobody rolls, the server rolls for the player at the turn's deadline (auto:true) and play goes on."""
    running = await start_service(reactor, fresh_database_uri(mongo_uri), turn_seconds=1, dice_seed=SEED, **FAST)
    try:
        clients, _, room_id = await seat_and_start(reactor, running, ["ann", "ben"])
        ann = clients["ann"]
        turn = await ann.event("game.turn")
        assert turn["player"] == "ann"
        started = (await ann.event("game.started"))["fairness"]
        rolled = await ann.event("game.rolled")
        assert rolled["player"] == "ann" and rolled["auto"] is True and rolled["room"] == room_id
        seeds = [started["client_seeds"][name] for name in ("ann", "ben")]
        assert rolled["n"] == 0 and rolled["dice"] == fairness.die(random.Random(SEED).randbytes(32), seeds, 0)
        following = await ann.event("game.turn")
        assert following["player"] == ("ann" if rolled["again"] else "ben")
        assert following["deadline"] > turn["deadline"]
        await clients[following["player"]].ok("game.roll")
        assert (await ann.event("game.rolled"))["auto"] is False
        await close_all(clients)
    finally:
        await running.service.stopService()


@pytest_twisted.ensureDeferred
async def test_client_seeds_over_the_wire_and_the_cli_verifies_by_game_id(reactor: Any, running: Running) -> None:
    """room.ready's client_seed is used (a bad one is bad_request, a missing one is drawn and returned); the finished
    game verifies with `python -m gamesvc.fairness verify GAME_ID --server URL`, run in-process."""
    from twisted.internet.threads import deferToThread

    ann, _ = await signed_in(reactor, running, "ann")
    ben, _ = await signed_in(reactor, running, "ben")
    room_id = (await ann.ok("room.create", name="race", seats=2))["room"]["id"]
    await ben.ok("room.join", room=room_id)
    for bad in ["", "x" * 65, "tab\t", "caf\u00e9", 42, ["x"]]:
        reply = await ann.request("room.ready", ready=True, client_seed=bad)
        assert reply["ok"] is False and reply["error"] == "bad_request", bad
    assert (await ann.ok("room.ready", ready=True, client_seed="Ann's lucky seed!"))["client_seed"] == "Ann's lucky seed!"
    drawn = (await ben.ok("room.ready", ready=True))["client_seed"]
    started = await ann.event("game.started")
    assert started["fairness"]["client_seeds"] == {"ann": "Ann's lucky seed!", "ben": drawn}
    over = await play_out({"ann": ann, "ben": ben}, ann)
    await running.service.app.results.when_written(over["game"])

    out = io.StringIO()
    # The CLI blocks on urllib, so it runs in a thread while the reactor serves it.
    code = await deferToThread(fairness.main, ["verify", over["game"], "--server", running.url], out)
    assert code == 0 and "verified fair" in out.getvalue(), out.getvalue()
    code = await deferToThread(fairness.main, ["verify", "0" * 16, "--server", running.url], io.StringIO())
    assert code == 1
    await close_all({"ann": ann, "ben": ben})

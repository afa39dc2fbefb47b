"""Nothing lost: finished results wait in an fsync'd local journal until the store has them, and a restart replays it.

Unit tests drive `ResultJournal` on a real file with its writes run at once and the memory store; the integration
test runs the real twistd and a real store, takes the store down at the game's end, SIGKILLs the service, brings
the store back and restarts: the result lands exactly once.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any, Callable

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock

from gamesvc.results import ResultJournal, ResultWriter
from gamesvc.store.memory import MemoryStore
from tests.play import seat_and_start
from tests.processes import Twistd, http_json
from tests.support import Running, within


def at_once(work: Callable[[], None]) -> Deferred[None]:
    """Run a journal write on the spot (the service runs it on the journal's thread)."""
    return maybeDeferred(work)


def record(game_id: str, winner: str = "ann") -> dict[str, Any]:
    """A finished game's record between ann and bob."""
    return {"id": game_id, "room": "ABCDEF", "players": ["ann", "bob"], "board": {}, "entries": [],
            "winner": winner, "standings": [], "started": "s", "ended": "e", "private": False}


def store_with_players() -> MemoryStore:
    """A memory store with the accounts ann and bob."""
    store = MemoryStore()
    for name in ("ann", "bob"):
        store.users[name] = {"key": name, "username": name, "password_hash": b"", "wins": 0, "games": 0,
                             "created": 0.0, "counted": set()}
    return store


def lines(path: Path) -> list[dict[str, Any]]:
    """The journal's lines, parsed."""
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_a_result_is_journaled_until_the_store_has_it_then_the_journal_is_emptied(tmp_path: Path) -> None:
    """submit writes the record to the journal before the store; once stored, nothing pending empties the file."""
    path = tmp_path / "data" / "results.journal"
    store = store_with_players()
    store.down = True
    clock = Clock()
    writer = ResultWriter(store, clock, 2.0, ResultJournal(str(path), at_once))
    writer.submit(record("g1"))
    writer.submit(record("g2", winner="bob"))
    assert [entry["record"]["id"] for entry in lines(path)] == ["g1", "g2"]
    store.down = False
    clock.advance(2)
    assert writer.pending == {} and path.read_bytes() == b""
    assert store.users["ann"]["games"] == 2 and store.users["ann"]["wins"] == 1


def test_a_crash_while_the_store_is_down_is_replayed_once(tmp_path: Path) -> None:
    """A writer that dies with results pending leaves them in the journal; the next one replays and stores them
    once, and a game already stored before the crash is not counted again."""
    path = str(tmp_path / "results.journal")
    store = store_with_players()
    clock = Clock()
    first = ResultWriter(store, clock, 2.0, ResultJournal(path, at_once))
    first.submit(record("stored"))
    store.down = True
    first.submit(record("lost-without-journal"))
    first.submit(record("also-pending", winner="bob"))
    del first  # the crash: its memory is gone, the file stays
    store.down = False
    again = ResultWriter(store, Clock(), 2.0, ResultJournal(path, at_once))
    assert again.replay() == 2
    assert again.pending == {}
    assert sorted(store.games) == ["also-pending", "lost-without-journal", "stored"]
    assert (store.users["ann"]["games"], store.users["ann"]["wins"]) == (3, 2)
    assert (store.users["bob"]["games"], store.users["bob"]["wins"]) == (3, 1)
    assert ResultJournal(path, at_once).load() == []


def test_done_lines_and_a_torn_last_line(tmp_path: Path) -> None:
    """A record with a done line is not replayed; a half-written last line (a crash mid-write) is skipped."""
    path = tmp_path / "results.journal"
    path.write_bytes(
        b'{"record":' + json.dumps(record("g1")).encode() + b"}\n"
        + b'{"record":' + json.dumps(record("g2")).encode() + b"}\n"
        + b'{"done": "g1"}\n'
        + b'{"record": {"id": "g3", "pla'
    )
    assert [r["id"] for r in ResultJournal(str(path), at_once).load()] == ["g2"]


def test_a_record_submitted_twice_is_journaled_once(tmp_path: Path) -> None:
    """A result both restored from a room checkpoint and replayed is journaled and written once."""
    path = tmp_path / "results.journal"
    store = store_with_players()
    store.down = True
    writer = ResultWriter(store, Clock(), 2.0, ResultJournal(str(path), at_once))
    writer.submit(record("g1"))
    writer.submit(record("g1"))
    assert len(lines(path)) == 1


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_store_down_at_game_end_sigkill_store_back_restart_lands_once(reactor: Any, tmp_path: Path) -> None:
    """The real twistd finishes a game while its store is down, is SIGKILLed, the store comes back with no trace
    of the game, and the restarted service stores the result from its journal exactly once."""
    from twisted.internet.task import deferLater
    from txmongo.connection import ConnectionPool

    from gamesvc.embedded import EmbeddedMongo

    db = EmbeddedMongo(reactor, str(tmp_path / "db"))
    db.startService()
    uri = await within(reactor, db.whenReady(), 30)
    options = ("--store-timeout", "1", "--result-retry", "0.5", "--message-rate", "1000", "--message-burst", "1000")
    data = tmp_path / "gamesvc-data"
    journal = data / "results.journal"
    first = Twistd(data, "--mongo-uri", uri + "journaltest", *options)
    try:
        running = Running(None, first.port)  # type: ignore[arg-type]
        clients, _, room_id = await seat_and_start(reactor, running, ["ann", "bob"], "Outage")
        await clients["ann"].event("game.turn")
        await within(reactor, db.stopService(), 30)  # the store goes down
        await clients["bob"].ok("room.leave")  # bob forfeits: ann wins, and the result cannot be stored
        over = await clients["ann"].event("game.over")
        for _ in range(200):  # until the journal holds the game (written on the service's journal thread)
            if journal.exists() and over["game"].encode() in journal.read_bytes():
                break
            await deferLater(reactor, 0.05)
        assert over["game"].encode() in journal.read_bytes()
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)

    db = EmbeddedMongo(reactor, str(tmp_path / "db"))
    db.startService()
    uri = await within(reactor, db.whenReady(), 30)
    pool = ConnectionPool(uri)
    second = None
    try:
        games = pool.journaltest.games
        assert await within(reactor, games.find_one({"_id": over["game"]})) is None  # only the journal has it
        second = Twistd(data, "--mongo-uri", uri + "journaltest", *options)
        for _ in range(200):
            status, body, _ = http_json(f"{second.url}/api/games/{over['game']}")
            if status == 200:
                break
            await deferLater(reactor, 0.05)
        assert status == 200 and body["game"]["winner"] == "ann" and body["game"]["room"] == room_id
        board = {p["username"]: (p["wins"], p["games"]) for p in http_json(f"{second.url}/api/leaderboard")[1]["players"]}
        assert board == {"ann": (1, 1), "bob": (0, 1)}
        for _ in range(200):
            if journal.read_bytes() == b"":
                break
            await deferLater(reactor, 0.05)
        assert journal.read_bytes() == b""  # compacted once nothing is pending
        assert second.stop() < 10
        third = Twistd(data, "--mongo-uri", uri + "journaltest", *options)
        board = {p["username"]: (p["wins"], p["games"]) for p in http_json(f"{third.url}/api/leaderboard")[1]["players"]}
        third.stop()
        assert board == {"ann": (1, 1), "bob": (0, 1)}  # a further restart counts nothing again
    finally:
        if second is not None:
            second.stop()
        await pool.disconnect()
        await within(reactor, db.stopService(), 30)

"""Room checkpoints: coalesced background writes, deletion of closed rooms, and waiting out a store outage."""

from __future__ import annotations

from typing import Any

import attrs
import pytest_twisted
from twisted.internet.task import Clock

from gamesvc.checkpoints import Checkpoints
from gamesvc.store.memory import MemoryStore


@attrs.define
class FakeRoom:
    id: str
    version: int = 0
    game_id: str | None = None
    entries: list = attrs.Factory(list)


class RecordingStore(MemoryStore):
    """A memory store that also keeps every snapshot it was asked to save."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: list[dict] = []

    def save_rooms(self, snapshots: list) -> Any:
        self.saved += [dict(s) for s in snapshots]
        return super().save_rooms(snapshots)


def make() -> tuple[Checkpoints, RecordingStore, Clock, list[str]]:
    store, clock, snapshots = RecordingStore(), Clock(), []

    def snapshot(room: Any, final: bool) -> dict:
        snapshots.append(room.id)
        return {"id": room.id, "version": room.version, "final": final, "game_id": room.game_id, "entries": list(room.entries)}

    return Checkpoints(store, clock, snapshot, retry=2.0, interval=1.0), store, clock, snapshots


def test_changes_are_coalesced_into_one_write_of_the_latest_state() -> None:
    """Several changes within the interval write the room once, with its latest version, when the interval ends."""
    checkpoints, store, clock, snapshots = make()
    room = FakeRoom("ROOM01")
    for version in (1, 2, 3):
        room.version = version
        checkpoints.room_changed(room)
        clock.advance(0.25)
    assert store.rooms == {} and checkpoints.pending == 1
    clock.advance(0.25)
    assert store.rooms == {"ROOM01": {"id": "ROOM01", "version": 3, "final": False, "game_id": None, "entries": []}}
    assert snapshots == ["ROOM01"] and checkpoints.pending == 0


def test_closed_rooms_are_deleted() -> None:
    """A room that closes is removed from the store, even when a change was still marked."""
    checkpoints, store, clock, _ = make()
    room = FakeRoom("ROOM01", 1)
    checkpoints.room_changed(room)
    clock.advance(1)
    room.version = 2
    checkpoints.room_changed(room)
    checkpoints.room_closed(room)
    clock.advance(1)
    assert store.rooms == {}


def test_outage_keeps_rooms_marked_until_the_store_returns() -> None:
    """With the store down nothing is lost: the rooms stay marked and are written after the retry delay."""
    checkpoints, store, clock, _ = make()
    store.down = True
    checkpoints.room_changed(FakeRoom("ROOM01", 1))
    checkpoints.room_changed(FakeRoom("ROOM02", 1))
    clock.advance(1)
    assert checkpoints.pending == 2
    store.down = False
    clock.advance(1.9)
    assert store.rooms == {}
    clock.advance(0.1)
    assert sorted(store.rooms) == ["ROOM01", "ROOM02"] and checkpoints.pending == 0


@pytest_twisted.ensureDeferred
async def test_flush_writes_everything_now() -> None:
    """flush (final at shutdown) writes every marked room in full without waiting for the timer, and says so."""
    checkpoints, store, clock, _ = make()
    checkpoints.room_changed(FakeRoom("ROOM01", 7))
    assert await checkpoints.flush(final=True) is True
    assert store.rooms["ROOM01"]["version"] == 7 and store.rooms["ROOM01"]["final"] is True
    store.down = True
    checkpoints.room_changed(FakeRoom("ROOM02", 1))
    assert await checkpoints.flush() is False
    assert checkpoints.pending == 1
    checkpoints.stop()
    assert clock.getDelayedCalls() == []


def test_each_write_tells_the_store_which_entries_it_holds_already() -> None:
    """After a write, the next one of the same game says how many entries the store has; a new game, a failed
    write or a closed room makes the next write start from the first entry again. The store ends up with
    exactly the room's entries every time."""
    checkpoints, store, clock, _ = make()
    room = FakeRoom("ROOM01", game_id="G1", entries=["a", "b"])

    def write() -> dict:
        checkpoints.room_changed(room)
        clock.advance(1)
        assert store.rooms["ROOM01"]["entries"] == room.entries
        return store.saved[-1]

    assert "stored_entries" not in write()
    room.entries.append("c")
    assert write()["stored_entries"] == 2
    room.entries.append("d")
    assert write()["stored_entries"] == 3
    room.game_id, room.entries = "G2", ["x"]
    assert "stored_entries" not in write()
    store.down = True
    room.entries.append("y")
    checkpoints.room_changed(room)
    clock.advance(1)
    assert store.saved[-1]["stored_entries"] == 1 and store.rooms["ROOM01"]["entries"] == ["x"]
    store.down = False
    room.entries.append("z")
    clock.advance(2)
    assert store.saved[-1]["stored_entries"] == 1 and store.rooms["ROOM01"]["entries"] == ["x", "y", "z"]
    checkpoints.room_closed(room)
    clock.advance(1)
    assert store.rooms == {}
    assert "stored_entries" not in write()

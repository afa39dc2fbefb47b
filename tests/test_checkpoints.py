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


def make() -> tuple[Checkpoints, MemoryStore, Clock, list[str]]:
    store, clock, snapshots = MemoryStore(), Clock(), []

    def snapshot(room: Any, final: bool) -> dict:
        snapshots.append(room.id)
        return {"id": room.id, "version": room.version, "final": final}

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
    assert store.rooms == {"ROOM01": {"id": "ROOM01", "version": 3, "final": False}}
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

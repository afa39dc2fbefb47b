"""Room checkpoints: every live room is written to the store as it changes, so a restart or a crash loses nothing.

Changes are coalesced: rooms that change while a write is under way (or within `interval` seconds, the
--checkpoint-interval option, when it is set) are written together in the next bulk write, each once with its
latest state; so a crash loses at most the change in flight, or that interval of play. Writes go one at a
time in the background; while the store is down the rooms stay marked and are written when it returns. At
shutdown `flush` writes whatever is still marked.

A game's entries only grow: each write tells the store how many of a room's entries it stored already (for
the same game), so a roll costs the store one new entry, not the whole game again.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from gamesvc._defer import deferred
from gamesvc.errors import StoreUnavailable
from gamesvc.interfaces import IRoomListener

log = Logger()


@implementer(IRoomListener)
class Checkpoints:
    """Writes room snapshots to the store in the background."""

    # Rooms written in one bulk request.
    BATCH = 25

    def __init__(
        self, store: Any, clock: IReactorTime, snapshot: Callable[[Any, bool], dict], retry: float, interval: float = 0.0,
        epochs: Mapping[str, int] | None = None,
    ) -> None:
        """`snapshot(room, final)` gives a room as plain data with its `id`, `game_id` and `entries`.

        In a cluster, `epochs` holds the epoch of each room this node has the lease of (gamesvc.cluster.leases):
        writes are fenced by it, and a room without one is not written (its lease is not there yet, or was lost).
        """
        self._store = store
        self._clock = clock
        self._snapshot = snapshot
        self._retry = retry
        self._interval = interval
        self._changed: dict[str, Any] = {}
        # Closed rooms to delete, with the epoch of this node's lease on each when in a cluster.
        self._closed: dict[str, int | None] = {}
        self._epochs = epochs
        # Per room, the game and the number of its entries that the store holds.
        self._stored: dict[str, tuple[Any, int]] = {}
        self._timer: IDelayedCall | None = None
        self._writing = False
        self._idle: list[Deferred[None]] = []
        self.written = 0

    @property
    def pending(self) -> int:
        """Rooms whose latest state is not in the store yet."""
        return len(self._changed) + len(self._closed)

    def room_changed(self, room: Any) -> None:
        """Mark a room for writing."""
        self._closed.pop(room.id, None)
        self._changed[room.id] = room
        self._schedule(self._interval)

    def room_closed(self, room: Any) -> None:
        """Mark a closed room for deletion."""
        self._changed.pop(room.id, None)
        self._stored.pop(room.id, None)
        self._closed[room.id] = self._epochs.get(room.id) if self._epochs is not None else None
        self._schedule(self._interval)

    def _schedule(self, delay: float) -> None:
        if self._timer is None and not self._writing:
            self._timer = self._clock.callLater(delay, self._background)

    def _background(self) -> None:
        self._timer = None
        self.flush().addErrback(lambda f: log.failure("writing room checkpoints failed", f))

    @deferred
    async def flush(self, final: bool = False) -> bool:
        """Write every marked room now (after a write already under way); False when the store was unavailable.

        `final` (at shutdown) asks for complete snapshots, chat included; the ones written as rooms change
        leave the chat out, which keeps a busy room's steady stream of writes small.
        """
        if self._writing:
            idle: Deferred[None] = Deferred()
            self._idle.append(idle)
            await idle
        self._writing = True
        try:
            while self._changed or self._closed:
                if self._closed:
                    room_id, epoch = self._closed.popitem()
                    try:
                        if self._epochs is None:
                            await self._store.delete_room(room_id)
                        elif epoch is not None:
                            await self._store.delete_room(room_id, epoch)
                    except StoreUnavailable:
                        self._closed[room_id] = epoch
                        raise
                    self._stored.pop(room_id, None)  # set again if the room closed while a write was under way
                    self.written += 1
                else:
                    batch = dict(self._changed.popitem() for _ in range(min(len(self._changed), self.BATCH)))
                    snapshots = [self._snapshot(room, final) for room in batch.values()]
                    if self._epochs is not None:
                        epochs = self._epochs
                        snapshots = [dict(s, epoch=epochs[s["id"]]) for s in snapshots if s["id"] in epochs]
                    for snap in snapshots:
                        game_id, stored = self._stored.get(snap["id"], (None, 0))
                        if stored and game_id == snap["game_id"] and stored <= len(snap["entries"]):
                            snap["stored_entries"] = stored
                    try:
                        fenced = await self._store.save_rooms(snapshots)
                    except StoreUnavailable:
                        for room_id, room in batch.items():
                            self._changed.setdefault(room_id, room)
                        raise
                    for snap in snapshots:
                        self._stored[snap["id"]] = (snap["game_id"], len(snap["entries"]))
                    for room_id in fenced or ():
                        # Another node took the room over; the lease's renewal finds out and gives the room up.
                        log.warn("checkpoint of room {room} refused: its lease has a newer epoch", room=room_id)
                        self._stored.pop(room_id, None)
                    self.written += len(batch)
            return True
        except StoreUnavailable as e:
            log.warn("room checkpoints wait for the store: {why}", why=str(e))
            return False
        finally:
            self._writing = False
            if self._idle:
                # Whoever waits goes next (and writes the rest); the timer is not needed.
                self._idle.pop(0).callback(None)
            elif self._changed or self._closed:
                self._schedule(self._retry)

    def stop(self) -> None:
        """Cancel the background timer."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

"""Room ownership: each room of a cluster has one owner node, which holds a lease on it in the room's document.

The lease (owner, epoch, expiry) is taken when the node creates the room, renewed every --lease-renew-seconds
to --lease-seconds from now, and released at shutdown. Taking a room over is a conditional update on the old epoch
(`IStore.acquire_lease`), so two nodes never both own a room; the owner's checkpoints carry its epoch, so a node
that lost a room can no longer write it (`gamesvc.checkpoints.Checkpoints(epochs=...)`). An owner that cannot
renew (the store is down) stops writing a third of a lease before its expiry by its own clock, before any other
node may take the room.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from gamesvc._defer import deferred
from gamesvc.errors import StoreUnavailable
from gamesvc.interfaces import IRoomListener

log = Logger()


@implementer(IRoomListener)
class RoomLeases:
    """This node's leases: the listener of its rooms, which passes a room's changes on to the checkpoints only
    while it holds the room's lease."""

    def __init__(
        self, store: Any, clock: IReactorTime, node: str, lease_seconds: float, epochs: dict[str, int],
        checkpoints: IRoomListener,
    ) -> None:
        """`epochs` is the mapping that the checkpoints read: this object is its only writer."""
        self._store = store
        self._clock = clock
        self.node = node
        self._lease = lease_seconds
        self.epochs = epochs
        self._checkpoints = checkpoints
        # When each held lease runs out, as this node wrote it.
        self.expires: dict[str, float] = {}
        # New rooms whose lease is being taken, with their latest state to checkpoint once it is, and who waits.
        self._acquiring: dict[str, Any] = {}
        self._waiters: dict[str, list[Deferred[None]]] = {}

    def when_leased(self, room_id: str) -> Deferred[None]:
        """Fires once this node holds the lease of a room it just created (at once if it does already, or if the
        room is not being leased); so that no other node hears of the room before its owner is in the store."""
        if room_id not in self._acquiring:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.setdefault(room_id, []).append(d)
        return d

    def _leased(self, room_id: str) -> None:
        for d in self._waiters.pop(room_id, ()):
            d.callback(None)

    def holds(self, room_id: str) -> bool:
        """True while this node may write the room: it holds the lease and it is not close to running out."""
        expires = self.expires.get(room_id)
        return expires is not None and self._clock.seconds() < expires - self._lease / 3

    # IRoomListener

    def room_changed(self, room: Any) -> None:
        """Checkpoint a room this node owns; a new room first gets its lease."""
        if room.id in self.epochs:
            self._checkpoints.room_changed(room)
        elif room.id in self._acquiring:
            self._acquiring[room.id] = room
        else:
            self._acquiring[room.id] = room
            self._acquire_new(room.id).addErrback(lambda f: log.failure("taking the lease of a new room failed", f))

    def room_closed(self, room: Any) -> None:
        """Delete a closed room's checkpoint (fenced by this node's epoch) and forget its lease."""
        self._acquiring.pop(room.id, None)
        self._checkpoints.room_closed(room)
        self.epochs.pop(room.id, None)
        self.expires.pop(room.id, None)

    @deferred
    async def _acquire_new(self, room_id: str) -> None:
        """Take the lease of a room this node just created (epoch 1), retrying while the store is down."""
        while room_id in self._acquiring:
            now = self._clock.seconds()
            try:
                epoch = await self._store.acquire_lease(room_id, self.node, now, now + self._lease)
            except StoreUnavailable:
                await _sleep(self._clock, self._lease / 3)
                continue
            room = self._acquiring.pop(room_id, None)
            self._leased(room_id)
            if epoch is None:
                log.error("room {room} is owned by another node: its id was taken twice", room=room_id)
            elif room is None:
                # Closed meanwhile: the lease goes with its document.
                await self._store.delete_room(room_id, epoch)
            else:
                self.take(room_id, epoch, now + self._lease)
                self._checkpoints.room_changed(room)
            return

    def take(self, room_id: str, epoch: int, expires: float) -> None:
        """Note a lease this node now holds."""
        self.epochs[room_id] = epoch
        self.expires[room_id] = expires

    def drop(self, room_id: str) -> None:
        """Forget a lease this node lost: its room is no longer written from here."""
        self.epochs.pop(room_id, None)
        self.expires.pop(room_id, None)

    @deferred
    async def discard(self, room_id: str, epoch: int) -> None:
        """Drop a room that has only its lease (its owner died before its first checkpoint): the document goes."""
        self.drop(room_id)
        try:
            await self._store.delete_room(room_id, epoch)
        except StoreUnavailable:
            pass  # the next takeover finds it again

    @deferred
    async def renew(self) -> list[str]:
        """Renew every lease (one store call); returns the rooms this node lost (another node has them, or the store
        could not be reached until too close to the lease's expiry)."""
        epochs = dict(self.epochs)
        now = self._clock.seconds()
        try:
            gone: set[str] | None = set(await self._store.renew_leases(self.node, epochs, now + self._lease))
        except StoreUnavailable:
            gone = None
        lost = []
        for room_id, epoch in epochs.items():
            if self.epochs.get(room_id) != epoch:
                continue  # closed (or lost) meanwhile
            if gone is not None and room_id not in gone:
                self.expires[room_id] = now + self._lease
            elif gone is not None or not self.holds(room_id):
                lost.append(room_id)
                self.drop(room_id)
        return lost

    @deferred
    async def release_all(self) -> int:
        """Release every lease (at shutdown, after the last checkpoints): other nodes may take the rooms at once."""
        released = 0
        for room_id, epoch in list(self.epochs.items()):
            try:
                if await self._store.release_lease(room_id, self.node, epoch):
                    released += 1
            except StoreUnavailable:
                log.warn("could not release the lease of room {room}: it expires by itself", room=room_id)
            self.drop(room_id)
        return released

    @deferred
    async def claimable(self) -> list[str]:
        """Rooms whose lease ran out (or that a previous run of this node, with the same --node-id, held)."""
        return [
            lease["id"] for lease in await self._store.claimable_leases(self.node, self._clock.seconds())
            if lease["id"] not in self.epochs and lease["id"] not in self._acquiring
        ]

    @deferred
    async def take_over(self, room_id: str) -> tuple[int, dict[str, Any] | None] | None:
        """Take a room's lease and read its checkpoint: (epoch, snapshot), the snapshot None when the room has only
        its lease (its owner died before its first checkpoint); None when another node was faster."""
        now = self._clock.seconds()
        epoch = await self._store.acquire_lease(room_id, self.node, now, now + self._lease)
        if epoch is None:
            return None
        self.take(room_id, epoch, now + self._lease)
        try:
            return epoch, await self._store.load_room(room_id)
        except StoreUnavailable:
            self.drop(room_id)
            raise


def _sleep(clock: IReactorTime, seconds: float) -> Any:
    from twisted.internet.task import deferLater

    return deferLater(clock, seconds)

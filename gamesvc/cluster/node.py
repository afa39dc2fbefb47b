"""This node's part of the cluster, on its clock: renew the leases, take over the rooms of dead nodes, hand the
rooms over at shutdown."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from gamesvc._defer import deferred
from gamesvc.bus import IBus
from gamesvc.cluster.leases import RoomLeases
from gamesvc.cluster.lobby import ClusterLobby
from gamesvc.cluster.relay import Relay
from gamesvc.errors import BusUnavailable, StoreUnavailable
from gamesvc.rooms import RoomService

log = Logger()
# Nodes tell each other here that they released rooms (a SIGTERM): the others look for rooms to take at once.
CLUSTER_CHANNEL = "gamesvc.cluster"


class ClusterNode:
    """Runs the lease renewals and takeovers every --lease-renew-seconds."""

    def __init__(
        self, rooms: RoomService, leases: RoomLeases, checkpoints: Any, bus: IBus, clock: IReactorTime,
        renew_seconds: float, lobby: ClusterLobby, relay: Relay,
    ) -> None:
        self.relay = relay
        self._rooms = rooms
        self.lobby = lobby
        self._leases = leases
        self._checkpoints = checkpoints
        self._bus = bus
        self._clock = clock
        self._every = renew_seconds
        self._timer: IDelayedCall | None = None
        self._ticking = False
        self._running = False
        self.taken_over = 0

    def start(self) -> None:
        """Begin: listen for released rooms, and look for rooms to take (a previous run's included) at once."""
        self._running = True
        self.lobby.start()
        self.relay.start()
        self._bus.subscribe(CLUSTER_CHANNEL, self._heard)
        self._schedule(0)

    def _heard(self, channel: str, payload: bytes) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if not isinstance(message, dict) or not isinstance(message.get("node"), str):
            return
        node = message["node"]
        if node == self._leases.node:
            return
        self.relay.heard_from(node)
        if message.get("released"):
            self._schedule(0, now=True)
        room_id = message.get("took")
        if isinstance(room_id, str) and room_id not in self._rooms.rooms:
            # Its members here follow it to the new owner, and routing finds it there.
            known = self.lobby.cache.rooms.get(room_id)
            if known is not None:
                self.lobby.cache.rooms[room_id] = (node, known[1])
            self.relay.moved(room_id, node)

    def _schedule(self, delay: float, now: bool = False) -> None:
        if not self._running:
            return
        if self._timer is not None and self._timer.active():
            if not now:
                return
            self._timer.cancel()
        self._timer = self._clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._ticking:
            self._schedule(self._every)
            return
        self._ticking = True
        d = self.tick()
        d.addErrback(lambda f: log.failure("cluster lease round failed", f))

        def done(_: Any) -> None:
            self._ticking = False
            self._schedule(self._every)

        d.addBoth(done)

    @deferred
    async def tick(self) -> None:
        """One round: say this node is alive, renew its leases (giving up the rooms it lost), disconnect the members
        of nodes gone silent, then take over the claimable rooms."""
        self._say({"alive": True})
        self.relay.check_nodes()
        for room_id in await self._leases.renew():
            self._rooms.evict(room_id)
        try:
            claimable = await self._leases.claimable()
        except StoreUnavailable:
            return
        for room_id in claimable:
            if not self._running:
                return
            await self._take_over(room_id)

    async def _take_over(self, room_id: str) -> None:
        try:
            taken = await self._leases.take_over(room_id)
        except StoreUnavailable:
            return
        if taken is None:
            return
        epoch, snapshot = taken
        if snapshot is None:
            # Its owner died before its first checkpoint: nothing to carry on.
            await self._leases.discard(room_id, epoch)
            self.lobby.closed(room_id)
            return
        try:
            room = self._rooms.restore(snapshot)
        except (KeyError, TypeError, ValueError) as e:
            log.warn("cannot take room {room} over: {why}", room=room_id, why=str(e))
            self._leases.drop(room_id)
            return
        self.taken_over += 1
        log.info("took room {room} over (epoch {epoch})", room=room_id, epoch=epoch)
        self._checkpoints.room_changed(room)
        self.lobby.cache.rooms.pop(room_id, None)
        self.lobby.announce(room)
        self._say({"took": room_id})
        self.relay.moved(room_id, self._leases.node)

    def _say(self, message: dict[str, Any]) -> None:
        """Publish a message of this node on the cluster channel (lost while the bus is down)."""
        payload = json.dumps(dict(message, node=self._leases.node)).encode()
        self._bus.publish(CLUSTER_CHANNEL, payload).addErrback(lambda f: f.trap(BusUnavailable))

    @deferred
    async def stop(self) -> None:
        """Stop the rounds and release every lease (call after the last checkpoints), telling the other nodes."""
        self._running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        released = await self._leases.release_all()
        if released:
            log.info("released {n} rooms to the other nodes", n=released)
            payload = json.dumps({"released": released, "node": self._leases.node}).encode()
            try:
                await self._bus.publish(CLUSTER_CHANNEL, payload)
            except BusUnavailable:
                pass  # the leases are released: the others find the rooms on their next round
        self._bus.unsubscribe(CLUSTER_CHANNEL, self._heard)
        self.lobby.stop()
        self.relay.stop()

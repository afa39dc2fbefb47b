"""The lobby of a cluster: each node announces its public rooms' summaries on the bus and keeps those of the others,
so that `lobby.watch` and `GET /api/rooms` show every room of the cluster, whichever node a player is on.

A node is one of its own rooms' lobby watchers: the coalesced `lobby.room` / `lobby.room_closed` events it gets
are published as they were encoded (`<node id>\\n<event JSON>`), and every other node passes the same bytes on to
its own watchers. The cache is loaded from the store at start and again whenever the bus comes back, since pub/sub
loses what is published during an outage.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from gamesvc._defer import deferred
from gamesvc.bus import IBus
from gamesvc.errors import BusUnavailable, StoreUnavailable
from gamesvc.interfaces import IMind
from gamesvc.rooms import RoomService
from gamesvc.wire import Outgoing, encode

log = Logger()
LOBBY_CHANNEL = "gamesvc.lobby"


class LobbyCache:
    """The public rooms of the other nodes, as their owners last announced them (or the store last said)."""

    def __init__(self) -> None:
        self.rooms: dict[str, tuple[str, dict[str, Any]]] = {}

    def summaries(self) -> list[dict[str, Any]]:
        """The cached rooms' summaries, oldest announced first."""
        return [summary for _owner, summary in self.rooms.values()]

    def owner_of(self, room_id: str) -> str | None:
        """The node that last announced this room."""
        known = self.rooms.get(room_id)
        return known[0] if known is not None else None


def summary_of(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's RoomSummary, as `gamesvc.rooms.Room.summary` gives it."""
    bots = sum(1 for p in snapshot["players"] if p.get("bot"))
    summary = {
        "id": snapshot["id"], "name": snapshot["name"], "seats": snapshot["seats"],
        "players": len(snapshot["players"]), "status": snapshot["status"],
    }
    if bots:
        summary["bots"] = bots
    return summary


@implementer(IMind)
class ClusterLobby:
    """Publishes this node's lobby events and passes the other nodes' on to the local watchers."""

    account = None
    address = "cluster"

    def __init__(self, node: str, cache: LobbyCache, bus: IBus, rooms: RoomService, store: Any) -> None:
        self._node = node
        self._prefix = node.encode() + b"\n"
        self.cache = cache
        self._bus = bus
        self._rooms = rooms
        self._store = store

    def start(self) -> None:
        """Watch the local lobby, listen to the other nodes, and load the cluster's rooms from the store."""
        self._rooms.watch_lobby(self)
        self._bus.subscribe(LOBBY_CHANNEL, self._heard)
        self._bus.on_state(self._bus_state)
        self.reload().addErrback(lambda f: log.failure("loading the cluster's lobby failed", f))

    def stop(self) -> None:
        """Stop publishing and listening."""
        self._rooms.unwatch_lobby(self)
        self._bus.unsubscribe(LOBBY_CHANNEL, self._heard)

    def _bus_state(self, connected: bool) -> None:
        if connected:
            # Announcements were lost meanwhile, both ways.
            self.reload().addErrback(lambda f: log.failure("reloading the cluster's lobby failed", f))
            for room in list(self._rooms.rooms.values()):
                self.announce(room)

    @deferred
    async def reload(self) -> None:
        """Replace the cache with the public rooms that the store says other nodes own."""
        try:
            snapshots = await self._store.load_rooms()
        except StoreUnavailable:
            return
        self.cache.rooms = {
            snap["id"]: (snap["owner"], summary_of(snap))
            for snap in snapshots
            if not snap.get("private") and snap.get("owner") not in (None, self._node)
            and snap["id"] not in self._rooms.rooms
        }

    # As a watcher of the local lobby

    def deliver(self, outgoing: Outgoing) -> None:
        """Publish a lobby event of one of this node's rooms (relayed events of other nodes' rooms are not)."""
        room = json.loads(outgoing.payload).get("room")
        room_id = room.get("id") if isinstance(room, dict) else room
        if room_id in self._rooms.rooms or not isinstance(room, dict):
            self._publish(outgoing.payload)

    def announce(self, room: Any) -> None:
        """Publish a room's summary now (a room taken over, or after a bus outage)."""
        if not room.private:
            self._publish(encode({"event": "lobby.room", "room": room.summary()}))

    def closed(self, room_id: str) -> None:
        """Publish that a room is gone (its checkpoint was empty when taken over)."""
        self._publish(encode({"event": "lobby.room_closed", "room": room_id}))

    def _publish(self, payload: bytes) -> None:
        self._bus.publish(LOBBY_CHANNEL, self._prefix + payload).addErrback(lambda f: f.trap(BusUnavailable))

    def _heard(self, channel: str, payload: bytes) -> None:
        node, _, body = payload.partition(b"\n")
        if node == self._node.encode() or not body:
            return
        try:
            message = json.loads(body)
            event, room = message["event"], message["room"]
        except (ValueError, KeyError, TypeError):
            log.warn("ignoring a malformed lobby message from node {node}", node=node.decode(errors="replace"))
            return
        if event == "lobby.room" and isinstance(room, dict) and isinstance(room.get("id"), str):
            if room["id"] in self._rooms.rooms:
                return  # this node owns it now
            self.cache.rooms[room["id"]] = (node.decode(), room)
        elif event == "lobby.room_closed" and isinstance(room, str):
            self.cache.rooms.pop(room, None)
        else:
            return
        self._rooms.to_watchers(Outgoing.encoded(body), skip=self)

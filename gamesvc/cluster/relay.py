"""Players on any node, rooms on their owner: room ops are forwarded to the owner node, and its events relayed back.

On the player's node (the edge), a room op for a room that another node owns is published to that node's channel
(`gamesvc.node.<id>`) with a correlation id, and its reply comes back on the edge's channel; a reply that does not
come within --store-timeout, or a bus that is down, answers `unavailable`. On the owner, the op runs through the
same op handler as a local one, with a `RemoteMind` standing in for the connection, so replies and errors are
exactly those of a single node.

A room's broadcasts go to its local members and, once, to the room's channel (`gamesvc.room.<id>`) as encoded
bytes when any member is elsewhere; each node subscribed to that channel (it has members there) passes the same
bytes to its members, framed once. Messages to one connection (room.detached, room.closed, the turn on re-join) go
to its node's channel with the connection's id.

The edge re-attaches its members to a room's new owner when a node announces that it took the room over, and to
the same owner after a bus outage; an owner treats the members on a node it has not heard from for
--lease-seconds (or all remote members, when its own bus goes down) as disconnected: their grace starts.
"""

from __future__ import annotations

import itertools
from inspect import isawaitable
from typing import Any, Callable, Mapping

import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gamesvc._defer import deferred
from gamesvc.auth import Account
from gamesvc.bots import QuickPlayCandidate, fullest_room
from gamesvc.bus import IBus
from gamesvc.cluster.lobby import LobbyCache
from gamesvc.errors import BusUnavailable, GameError, StoreUnavailable
from gamesvc.interfaces import IMind
from gamesvc.rooms import WAITING, RoomService
from gamesvc.wire import Outgoing, encode

log = Logger()
Handler = Callable[[Any, dict], Any]
# Ops about the room a connection is in; room.join is routed by the room it names.
ROUTED_OPS = frozenset(
    {"room.join", "room.leave", "room.ready", "room.chat", "game.roll", "room.add_bot", "room.remove_bot",
     "room.configure"}
)
# Ops that put a connection in a room of this node: refused (or preceded by leaving) while it is in another's.
LOCAL_ENTRY_OPS = frozenset({"room.create", "room.quick_play"})
RELAYED_OPS = ROUTED_OPS | LOCAL_ENTRY_OPS
# Ops an owner serves for other nodes' connections: quick play too, when its room is the cluster's fullest.
SERVED_OPS = ROUTED_OPS | {"room.quick_play"}
# Ops about the room a connection is in that `handle` runs here, unchanged, while the connection is in no room of
# another node: the protocol answers them at once, as on a single node, without the relay's coroutine.
HERE_AT_ONCE_OPS = ROUTED_OPS - {"room.join"}


def node_channel(node: str) -> str:
    """The channel of the messages addressed to one node."""
    return f"gamesvc.node.{node}"


def room_channel(room_id: str) -> str:
    """The channel of one room's broadcasts."""
    return f"gamesvc.room.{room_id}"


def _frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """A node-channel message: a JSON header line, then the raw payload it carries (an encoded event)."""
    return encode(header) + b"\n" + payload


class _Services:
    """What the op handlers reach through `conn.factory`: the owner's services."""

    def __init__(self, services: Any) -> None:
        self.services = services


@implementer(IMind)
class RemoteMind:
    """On the owner, a player connected to another node: events to it go over the bus."""

    def __init__(self, relay: "Relay", node: str, conn: str, account: Account, address: str) -> None:
        self.relay = relay
        self.node = node
        self.conn = conn
        self.account = account
        self.address = address
        self.factory = relay.as_factory

    def deliver(self, outgoing: Outgoing) -> None:
        """A room's broadcast goes once to the room's channel; a message to this connection alone to its node."""
        if outgoing.room is not None:
            self.relay.publish_room(outgoing)
        else:
            self.relay.publish_to(self.node, {"t": "ev", "conn": self.conn}, outgoing.payload)


class _Summary:
    """A room of another node as quick play sees it, from its lobby summary."""

    def __init__(self, summary: dict[str, Any]) -> None:
        self.id: str = summary["id"]
        self.private = False
        self.status: str = summary["status"]
        self.seats: int = summary["seats"]
        self._bots: int = summary.get("bots", 0)
        self._humans: int = summary["players"] - self._bots

    def humans(self) -> int:
        """Seats held by people."""
        return self._humans

    def bots(self) -> int:
        """Seats held by bots."""
        return self._bots


class _Membership:
    """On the edge, where one local connection is in another node's room."""

    __slots__ = ("room", "owner", "seated")

    def __init__(self, room: str, owner: str, seated: bool) -> None:
        self.room, self.owner, self.seated = room, owner, seated


class Relay:
    """Both sides of the relay on one node: forwarding its connections' ops, and serving other nodes' ops."""

    def __init__(
        self, node: str, bus: IBus, clock: IReactorTime, services: Any, lobby: LobbyCache, store: Any,
        ops: Mapping[str, tuple[Any, ...]], timeout: float, node_timeout: float,
        leased: Callable[[str], Deferred[None]],
    ) -> None:
        """`leased(room_id)` fires once this node owns a room it created (gamesvc.cluster.leases)."""
        self._leased = leased
        self.node = node
        self._bus = bus
        self._clock = clock
        self._services = services
        self._rooms: RoomService = services.rooms
        self._lobby = lobby
        self._store = store
        self._ops = ops
        self._timeout = timeout
        self._node_timeout = node_timeout
        self.as_factory = _Services(services)
        self._ids = itertools.count(1)
        # Edge: forwarded requests waiting for their reply; local connections in other nodes' rooms.
        self._waiting: dict[int, tuple[Deferred[dict], IDelayedCall]] = {}
        # The owner node and room each waiting request went to, so that a takeover answers them at once.
        self._sent_to: dict[int, tuple[str, str | None]] = {}
        self._conn_ids: dict[Any, str] = {}
        self._by_id: dict[str, Any] = {}
        self._where: dict[Any, _Membership] = {}
        self._members: dict[str, set[Any]] = {}
        # Owner: the stand-ins of remote connections, and when each node was last heard from.
        self._minds: dict[tuple[str, str], RemoteMind] = {}
        self._heard: dict[str, float] = {}
        # Nodes whose members this owner disconnected (silence, or its own bus down): asked to re-attach them.
        self._to_rejoin: set[str] = set()
        self._last_broadcast: Outgoing | None = None
        self.forwarded = 0
        self.served = 0

    def start(self) -> None:
        """Listen on this node's channel and follow the bus's state."""
        self._bus.subscribe(node_channel(self.node), self._on_node_message)
        self._bus.on_state(self._bus_state)

    def stop(self) -> None:
        """Stop listening; waiting requests answer `unavailable`."""
        self._bus.unsubscribe(node_channel(self.node), self._on_node_message)
        for room_id in list(self._members):
            self._bus.unsubscribe(room_channel(room_id), self._on_room_message)
        for rid in list(self._waiting):
            self._answer(rid, {"ok": False, "error": {"error": "unavailable", "message": "the node is stopping"}})

    # Edge: routing a local connection's op

    def is_remote(self, conn: Any) -> bool:
        """True while a local connection is in a room of another node."""
        return conn in self._where

    def routes(self, conn: Any, name: str) -> bool:
        """Whether a relayed op of this connection must go through `handle` (it may run elsewhere, or await);
        False for an op about the connection's room while that room, if any, is this node's."""
        return name not in HERE_AT_ONCE_OPS or conn in self._where

    def remote_room_of(self, conn: Any) -> str | None:
        """The id of the other node's room this connection is in, or None."""
        where = self._where.get(conn)
        return where.room if where is not None else None

    @deferred
    async def seat_of(self, conn: Any) -> str | None:
        """The room of another node where this connection's user holds a seat: the one it is in, else the store's."""
        where = self._where.get(conn)
        if where is not None and where.seated:
            return where.room
        room: str | None = await self._store.room_of_player(conn.account.key)
        return room if room not in self._rooms.rooms else None

    def handler(self, name: str, handler: Handler) -> Callable[[Any, dict], Deferred[dict | None]]:
        """The protocol's handler of a room op, routed: it runs here or at the owner of the room."""

        def routed(conn: Any, message: dict) -> Deferred[dict | None]:
            where = self._where.get(conn)
            if where is None or name not in HERE_AT_ONCE_OPS:
                return self.handle(conn, name, message, handler)
            # The common crossing op (a chat, a roll in another node's room): what `handle` does, without its
            # coroutine.
            d = self.forward(conn, where.owner, name, message)
            if name == "room.leave":
                d.addCallback(self._left, conn)
            return d

        return routed

    def _left(self, fields: dict | None, conn: Any) -> dict | None:
        self._forget(conn)
        return fields

    @deferred
    async def handle(self, conn: Any, name: str, message: dict, handler: Handler) -> dict | None:
        """Run a connection's op here, or at the owner of the room it is about."""
        where = self._where.get(conn)
        if name in LOCAL_ENTRY_OPS:
            if where is not None:
                await self._leave_remote(conn, where)
            else:
                await self._refuse_if_seated_elsewhere(conn, None)
            if name == "room.quick_play":
                remote = self._quick_play_elsewhere()
                if remote is not None:
                    return await self._forward_quick_play(conn, remote, message)
            fields = await _run(handler, conn, message)
            room_id = self._rooms.room_of(conn)
            if room_id is not None:
                # The reply names the room: other nodes must find its owner in the store from then on.
                await self._leased(room_id)
            return fields
        if name == "room.join":
            room_id = message.get("room")
            target = room_id.upper() if isinstance(room_id, str) and 0 < len(room_id) <= 20 else None
            if target is not None and message.get("spectate") is not True:
                await self._refuse_if_seated_elsewhere(conn, target)
            if target is None or target in self._rooms.rooms:
                if where is not None and target is not None:
                    await self._leave_remote(conn, where)
                return await _run(handler, conn, message)
            owner = await self._owner_of(target)
            if owner is None or owner == self.node:
                if where is not None:
                    await self._leave_remote(conn, where)
                return await _run(handler, conn, message)
            if where is not None and where.room != target:
                await self._leave_remote(conn, where)
            elif where is None:
                self._leave_local_for(conn, spectate=message.get("spectate") is True)
            return await self._forward_join(conn, target, owner, message)
        if where is None:
            return await _run(handler, conn, message)
        fields = await self.forward(conn, where.owner, name, message)
        if name == "room.leave":
            self._forget(conn)
        return fields

    def _quick_play_elsewhere(self) -> tuple[str, str] | None:
        """(room, owner) when quick play's room (the fullest public waiting room with a place) is another node's."""
        candidates: list[QuickPlayCandidate] = list(self._rooms.rooms.values())
        candidates += [_Summary(summary) for summary in self._lobby.summaries()]
        best = fullest_room(candidates, WAITING)
        if best is None or best.id in self._rooms.rooms:
            return None
        owner = self._lobby.owner_of(best.id)
        return (best.id, owner) if owner is not None and owner != self.node else None

    async def _forward_quick_play(self, conn: Any, remote: tuple[str, str], message: dict) -> dict | None:
        """Quick play at the owner of the cluster's fullest waiting room (it seats the player there, or in a new room
        of its own should that room have filled meanwhile)."""
        room_id, owner = remote
        self._remember(conn, _Membership(room_id, owner, seated=True))
        try:
            fields = await self.forward(conn, owner, "room.quick_play", message)
        except Exception:
            self._forget(conn)
            raise
        chosen = ((fields or {}).get("room") or {}).get("id")
        if isinstance(chosen, str) and chosen != room_id:
            self._remember(conn, _Membership(chosen, owner, seated=True))
        return fields

    async def _refuse_if_seated_elsewhere(self, conn: Any, target: str | None) -> None:
        """A user has one seat in the whole cluster: taking another one while holding a seat in a room of another node
        (found in the checkpoints, so a seat of the last moments may not show) is `already_in_room`, as on one node."""
        seat = await self.seat_of(conn)
        if seat is not None and seat != target:
            raise GameError("already_in_room", f"you already have a seat in room {seat}")

    def _leave_local_for(self, conn: Any, spectate: bool) -> None:
        """Before a join of another node's room: a seat here refuses it, as on one node; spectating here ends."""
        own = self._rooms.seat_of(conn.account.key)
        if own is not None:
            if spectate:
                raise GameError("already_in_room", f"leave room {own} first")
            raise GameError("already_in_room", f"you already have a seat in room {own}")
        if self._rooms.room_of(conn) is not None:
            self._rooms.leave(conn)

    async def _leave_remote(self, conn: Any, where: _Membership) -> None:
        """Leave another node's room before entering one elsewhere; a seat there refuses it, as on one node."""
        if where.seated:
            raise GameError("already_in_room", f"you already have a seat in room {where.room}")
        await self.forward(conn, where.owner, "room.leave", {"op": "room.leave"})
        self._forget(conn)

    async def _forward_join(self, conn: Any, room_id: str, owner: str, message: dict) -> dict | None:
        # A member from now on, so that the room's events from the join on reach it, as on one node.
        self._remember(conn, _Membership(room_id, owner, seated=False))
        try:
            fields = await self.forward(conn, owner, "room.join", message)
        except Exception:
            self._forget(conn)
            raise
        self._where[conn].seated = _seated(fields, conn.account.username)
        return fields

    async def _owner_of(self, room_id: str) -> str | None:
        """The owner of a room: known from the lobby (no store read), else from the store's lease."""
        owner = self._lobby.owner_of(room_id)
        if owner is not None:
            return owner
        for where in self._where.values():
            if where.room == room_id:
                return where.owner
        try:
            lease = await self._store.room_lease(room_id)
        except StoreUnavailable:
            return None
        if lease is None or lease["lease_expires"] <= self._clock.seconds():
            return None
        return str(lease["owner"])

    def forward(self, conn: Any, owner: str, name: str, message: dict) -> Deferred[dict | None]:
        """Send an op to the owner node; fires with its reply's fields, or fails with its error as GameError.

        A plain Deferred chain rather than a coroutine: it runs for every op of a player in another node's room."""
        rid = next(self._ids)
        waiting: Deferred[dict] = Deferred()
        timer = self._clock.callLater(self._timeout, self._answer, rid, _UNAVAILABLE)
        self._waiting[rid] = (waiting, timer)
        self._sent_to[rid] = (owner, self.remote_room_of(conn))
        header = {
            "t": "op", "node": self.node, "conn": self._conn_id(conn), "rid": rid, "op": name, "msg": message,
            "account": [conn.account.key, conn.account.username], "address": conn.address,
        }
        self.forwarded += 1
        self._bus.publish(node_channel(owner), _frame(header)).addErrback(self._unpublished, rid)
        return waiting.addCallback(_fields_of)

    def _unpublished(self, failure: Failure, rid: int) -> None:
        if not failure.check(BusUnavailable):
            log.failure("publishing a forwarded op failed", failure)
        self._answer(rid, _UNAVAILABLE)

    def _answer(self, rid: int, reply: dict) -> None:
        self._sent_to.pop(rid, None)
        waiting = self._waiting.pop(rid, None)
        if waiting is None:
            return
        d, timer = waiting
        if timer.active():
            timer.cancel()
        d.callback(reply)

    def _conn_id(self, conn: Any) -> str:
        cid = self._conn_ids.get(conn)
        if cid is None:
            cid = self._conn_ids[conn] = f"c{next(self._ids)}"
            self._by_id[cid] = conn
        return cid

    def _remember(self, conn: Any, where: _Membership) -> None:
        self._forget(conn)
        self._where[conn] = where
        members = self._members.get(where.room)
        if members is None:
            members = self._members[where.room] = set()
            self._bus.subscribe(room_channel(where.room), self._on_room_message)
        members.add(conn)

    def _forget(self, conn: Any) -> None:
        where = self._where.pop(conn, None)
        if where is None:
            return
        members = self._members.get(where.room)
        if members is not None:
            members.discard(conn)
            if not members:
                del self._members[where.room]
                self._bus.unsubscribe(room_channel(where.room), self._on_room_message)

    def disconnected(self, conn: Any) -> None:
        """A local connection closed or signed out: the owner of its room hears so (its seat's grace starts)."""
        where = self._where.get(conn)
        self._forget(conn)
        cid = self._conn_ids.pop(conn, None)
        if cid is not None:
            self._by_id.pop(cid, None)
        if where is not None and cid is not None:
            self.publish_to(where.owner, {"t": "gone", "node": self.node, "conn": cid})

    def moved(self, room_id: str, owner: str) -> None:
        """A node took a room over: requests still waiting on its old owner answer `unavailable` now (it is gone:
        they were not served, and a retry goes to the new owner), and this node's members follow the room."""
        stale = [rid for rid, (sent_to, room) in self._sent_to.items() if room == room_id and sent_to != owner]
        for conn in list(self._members.get(room_id, ())):
            self._where[conn].owner = owner
            self._reattach(conn)
        # After the members follow the room: an answer lets the connection's next request go, to the new owner.
        for rid in stale:
            self._answer(rid, _UNAVAILABLE)

    def _reattach(self, conn: Any, tries: int = 0) -> None:
        where = self._where.get(conn)
        if where is None:
            return
        if where.owner == self.node:
            # This node took the room over: its members here become local ones.
            self._forget(conn)
            try:
                fields = self._rooms.join(conn, where.room, spectate=not where.seated)
            except GameError:
                conn.deliver(Outgoing({"event": "room.detached", "room": where.room, "reason": "moved"}))
                return
            conn.deliver(Outgoing({"event": "room.state", "room": fields["room"]}))
            return
        message = {"op": "room.join", "room": where.room, "spectate": not where.seated}
        d = self.forward(conn, where.owner, "room.join", message)

        def rejoined(fields: dict | None) -> None:
            if fields and self._where.get(conn) is where:
                # What a client that joined again would have seen: the room as it is now.
                conn.deliver(Outgoing({"event": "room.state", "room": fields["room"]}))

        def failed(failure: Any) -> None:
            failure.trap(GameError)
            if self._where.get(conn) is not where:
                return
            if failure.value.code == "unavailable" and (tries + 1) * self._timeout < self._node_timeout * 2:
                # The owner is not back on the bus yet (or is being replaced): try again.
                self._clock.callLater(self._timeout, self._reattach, conn, tries + 1)
                return
            self._forget(conn)
            conn.deliver(Outgoing({"event": "room.detached", "room": where.room, "reason": "moved"}))

        d.addCallbacks(rejoined, failed)

    def _bus_state(self, connected: bool) -> None:
        if connected:
            for conn in list(self._where):
                self._reattach(conn)
            for node in list(self._to_rejoin):
                self._ask_rejoin(node)
        else:
            # Owner side: remote members cannot be reached; they come back by their nodes' re-attaching.
            for key in list(self._minds):
                self._drop_mind(key)

    # Both sides: messages on this node's channel

    def publish_to(self, node: str, header: dict[str, Any], payload: bytes = b"") -> None:
        """Publish a message to one node's channel (lost while the bus is down, like any pub/sub message)."""
        self._bus.publish(node_channel(node), _frame(header, payload)).addErrback(lambda f: f.trap(BusUnavailable))

    def publish_room(self, outgoing: Outgoing) -> None:
        """Publish a room's broadcast to its channel, once, whatever the number of remote members."""
        if outgoing is self._last_broadcast or outgoing.room is None:
            return
        self._last_broadcast = outgoing
        self._bus.publish(room_channel(outgoing.room), outgoing.payload).addErrback(lambda f: f.trap(BusUnavailable))

    def _on_room_message(self, channel: str, payload: bytes) -> None:
        members = self._members.get(channel[len("gamesvc.room."):])
        if not members:
            return
        outgoing = Outgoing.encoded(payload)  # framed once, by the first member's protocol, for all of them
        for conn in list(members):
            conn.deliver(outgoing)

    def _on_node_message(self, channel: str, payload: bytes) -> None:
        head, _, body = payload.partition(b"\n")
        try:
            header = orjson.loads(head)
            kind = header["t"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warn("ignoring a malformed message on this node's channel")
            return
        if kind == "re":
            self._answer(header.get("rid"), header)
        elif kind == "ev":
            self._on_event(header, body)
        elif kind == "op":
            self._heard[header.get("node")] = self._clock.seconds()
            self._serve(header)
        elif kind == "gone":
            # The connection closed: its seat's grace starts, and nothing is to be re-attached.
            mind = self._minds.pop((header.get("node"), header.get("conn")), None)  # type: ignore[arg-type]
            if mind is not None:
                self._rooms.disconnected(mind)
        elif kind == "rejoin":
            owner = header.get("owner")
            for conn, where in list(self._where.items()):
                if where.owner == owner:
                    self._reattach(conn)

    def _on_event(self, header: dict, body: bytes) -> None:
        """A message from an owner to one local connection."""
        cid = header.get("conn")
        conn = self._by_id.get(cid) if isinstance(cid, str) else None
        if conn is None:
            return
        try:
            event = orjson.loads(body)
        except ValueError:
            return
        if event.get("event") in ("room.detached", "room.closed") and self.remote_room_of(conn) == event.get("room"):
            self._forget(conn)
        conn.deliver(Outgoing.encoded(body))

    # Owner: serving other nodes' ops

    def _serve(self, header: dict) -> None:
        """Run another node's op for its connection's stand-in: one that awaits nothing (every room op) is
        answered within this call, with no coroutine."""
        node, cid, rid, name = header.get("node"), header.get("conn"), header.get("rid"), header.get("op")
        message = header.get("msg")
        account = header.get("account")
        if not (isinstance(node, str) and isinstance(cid, str) and name in SERVED_OPS and isinstance(message, dict)
                and isinstance(account, list) and len(account) == 2):
            log.warn("ignoring a malformed forwarded op")
            return
        key = (node, cid)
        mind = self._minds.get(key)
        if mind is None:
            mind = self._minds[key] = RemoteMind(self, node, cid, Account(*account), str(header.get("address")))
        self.served += 1
        handler = self._ops[name][0]
        try:
            result = handler(mind, message)
        except Exception:
            self._served_reply(key, mind, _reply(rid, name, None, Failure()))
            return
        if not isawaitable(result):
            self._served_reply(key, mind, _reply(rid, name, result, None))
            return
        d: Deferred[Any] = Deferred.fromCoroutine(_awaited(result))
        d.addCallbacks(
            lambda fields: self._served_reply(key, mind, _reply(rid, name, fields, None)),
            lambda failure: self._served_reply(key, mind, _reply(rid, name, None, failure)),
        ).addErrback(lambda f: log.failure("serving a forwarded op failed", f))

    def _served_reply(self, key: tuple[str, str], mind: RemoteMind, reply: dict[str, Any]) -> None:
        if self._rooms.room_of(mind) is None:
            self._minds.pop(key, None)  # in no room of this node: nothing keeps it
        self.publish_to(mind.node, reply)

    def _drop_mind(self, key: tuple[Any, Any]) -> None:
        mind = self._minds.pop(key, None)  # type: ignore[arg-type]
        if mind is not None:
            self._to_rejoin.add(mind.node)
            self._rooms.disconnected(mind)

    def _ask_rejoin(self, node: str) -> None:
        """Ask a node to re-attach its members of this node's rooms (their stand-ins here were dropped)."""
        self._to_rejoin.discard(node)
        self.publish_to(node, {"t": "rejoin", "owner": self.node})

    def heard_from(self, node: str) -> None:
        """A node said it is alive: if its members here were dropped meanwhile, it re-attaches them."""
        self._heard[node] = self._clock.seconds()
        if node in self._to_rejoin and self._bus.connected:
            self._ask_rejoin(node)

    def check_nodes(self) -> None:
        """Members on nodes not heard from for --lease-seconds are disconnected (their grace starts)."""
        now = self._clock.seconds()
        for key in list(self._minds):
            if now - self._heard.get(key[0], now) >= self._node_timeout:
                self._drop_mind(key)


_UNAVAILABLE = {"ok": False, "error": {"error": "unavailable", "message": "the room's node did not answer; try again"}}


async def _run(handler: Handler, conn: Any, message: dict) -> dict | None:
    """Run an op handler: one that awaits nothing returns its fields, the others a coroutine to await."""
    result = handler(conn, message)
    if isawaitable(result):
        result = await result
    return result  # type: ignore[no-any-return]


async def _awaited(result: Any) -> Any:
    """The value of an awaitable (an op handler's coroutine or Deferred)."""
    return await result


def _reply(rid: Any, name: Any, fields: Any, failure: Failure | None) -> dict[str, Any]:
    """The reply message to a forwarded op: its fields, or its error as a single node would give it."""
    reply: dict[str, Any] = {"t": "re", "rid": rid}
    if failure is None:
        reply.update(ok=True, fields=fields)
    elif failure.check(GameError):
        reply.update(ok=False, error=failure.value.to_json())  # type: ignore[union-attr]
    elif failure.check(StoreUnavailable):
        reply.update(_UNAVAILABLE)
    else:
        log.failure("forwarded op {op} failed", failure, op=name)
        reply.update(ok=False, error={"error": "internal", "message": "internal error"})
    return reply


def _fields_of(reply: dict) -> dict | None:
    """The fields of a forwarded op's reply; its error raised as GameError."""
    if not reply.get("ok"):
        raise _game_error(reply.get("error") or {})
    fields = reply.get("fields")
    return fields if isinstance(fields, dict) else None


def _game_error(error: dict) -> GameError:
    """The GameError of an error reply (a rate limit keeps its retry_after)."""
    from gamesvc.errors import RateLimited

    code, message = error.get("error"), error.get("message")
    if not isinstance(code, str):
        code = "internal"
    if not isinstance(message, str):
        message = "error"
    retry = error.get("retry_after")
    if code == "rate_limited" and isinstance(retry, (int, float)):
        return RateLimited(message, retry)
    return GameError(code, message, **{k: v for k, v in error.items() if k not in ("error", "message")})


def _seated(fields: dict | None, username: str) -> bool:
    """Whether a join's reply shows the user in a seat (joining a room where one has a seat takes it back)."""
    room = (fields or {}).get("room") or {}
    return any(p.get("username") == username for p in room.get("players", ()))

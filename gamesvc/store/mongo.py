"""The txmongo `IStore`: the only module that talks to MongoDB.

It works against a real MongoDB (standalone or replica set) and against the embedded
`nx-27017` server. Every call has a deadline (`timeout`) and any connection trouble is
reported as `StoreUnavailable`; txmongo reconnects by itself when the server returns.
Only plain equality, `$in`, `$exists`, `$inc`, `$set` and sorts are used, which both servers support.
"""

from __future__ import annotations

import datetime
from typing import Any, Awaitable, TypeVar

import pymongo.errors
from pymongo.operations import ReplaceOne, UpdateOne
import txmongo.filter as qf
from bson.binary import Binary
from pymongo.uri_parser import parse_uri
from twisted.internet.defer import Deferred, TimeoutError as DeferredTimeout, ensureDeferred
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from txmongo.connection import ConnectionPool
from zope.interface import implementer

from gamesvc._defer import deferred
from gamesvc.errors import DuplicateKey, StoreUnavailable
from gamesvc.store.interfaces import IStore

T = TypeVar("T")
log = Logger()
DEFAULT_DATABASE = "gamesvc"
_DOWN = (
    pymongo.errors.AutoReconnect,
    pymongo.errors.ConnectionFailure,
    pymongo.errors.NotPrimaryError,
    pymongo.errors.ExecutionTimeout,
    DeferredTimeout,
    ConnectionDone,
    ConnectionLost,
    ConnectError,
    TimeoutError,
)


def _date(seconds: float) -> datetime.datetime:
    """A POSIX time as the UTC datetime that MongoDB stores as a date (TTL indexes need dates)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


def _seconds(value: Any) -> float:
    """A stored date back to POSIX seconds (naive datetimes from the driver are UTC)."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    return float(value)


@implementer(IStore)
class MongoStore:
    """Users, sessions, game records and room checkpoints in MongoDB collections."""

    def __init__(self, clock: IReactorTime, uri: str, timeout: float = 5.0) -> None:
        self._clock = clock
        self.uri = uri
        self._timeout = timeout
        self._pool: ConnectionPool | None = None
        self._db: Any = None
        self._indexed = False

    async def _call(self, operation: Awaitable[T]) -> T:
        """Await one driver call with the store's deadline, mapping connection trouble to StoreUnavailable."""
        if self._db is None:
            raise StoreUnavailable("the store is not started")
        d: Deferred[T] = ensureDeferred(operation)  # type: ignore[arg-type]
        d.addTimeout(self._timeout, self._clock)
        try:
            return await d
        except pymongo.errors.DuplicateKeyError as e:
            raise DuplicateKey(str(e)) from None
        except _DOWN as e:
            raise StoreUnavailable(f"{type(e).__name__}: {e}") from None

    @deferred
    async def start(self) -> None:
        """Open the connection pool, then create the indexes (retried on later calls when the store is down)."""
        if self._pool is None:
            name = parse_uri(self.uri).get("database") or DEFAULT_DATABASE
            # A short reconnect backoff so the service recovers within seconds of the store's return.
            self._pool = ConnectionPool(self.uri, pool_size=4, retry_delay=0.5, max_delay=2.0)
            self._db = self._pool[name]
        await self._ensure_indexes()

    async def _ensure_indexes(self) -> None:
        if self._indexed:
            return
        db = self._db
        await self._call(db.users.create_index(qf.sort(qf.DESCENDING("wins") + qf.ASCENDING("games") + qf.ASCENDING("key"))))
        await self._call(db.sessions.create_index(qf.sort(qf.ASCENDING("expires")), expireAfterSeconds=0))
        await self._call(db.user_games.create_index(qf.sort(qf.ASCENDING("user") + qf.DESCENDING("ended"))))
        await self._call(db.games.create_index(qf.sort(qf.ASCENDING("counted"))))
        await self._call(db.rooms.create_index(qf.sort(qf.ASCENDING("move_of")), sparse=True))
        self._indexed = True

    @deferred
    async def stop(self) -> None:
        """Close the connection pool."""
        if self._pool is not None:
            pool, self._pool, self._db = self._pool, None, None
            await pool.disconnect()

    @deferred
    async def ping(self) -> None:
        """Fire when the server answers a ping."""
        await self._call(self._db.command("ping"))
        if not self._indexed:
            await self._ensure_indexes()

    # Users: the normalised name is the _id (so the primary key enforces uniqueness) and also `key`, for sorting.

    @deferred
    async def insert_user(self, user: dict) -> None:
        doc = {k: v for k, v in user.items() if k != "password_hash"}
        doc["_id"] = user["key"]
        doc["password_hash"] = Binary(user["password_hash"])
        doc["counted"] = {}
        await self._call(self._db.users.insert_one(doc))

    @deferred
    async def find_user(self, key: str) -> dict | None:
        doc = await self._call(self._db.users.find_one({"_id": key}, projection={"counted": 0}))
        if not doc:
            return None
        user = {k: v for k, v in doc.items() if k != "_id"}
        user["password_hash"] = bytes(doc["password_hash"])
        return user

    @deferred
    async def leaderboard(self, limit: int) -> list[dict]:
        order = qf.sort(qf.DESCENDING("wins") + qf.ASCENDING("games") + qf.ASCENDING("key"))
        docs = await self._call(
            self._db.users.find({}, projection={"username": 1, "wins": 1, "games": 1}, limit=limit, sort=order)
        )
        return [{"username": d["username"], "wins": d["wins"], "games": d["games"]} for d in docs]

    @deferred
    async def apply_result(self, game_id: str, key: str, won: bool) -> bool:
        # The marker and the counters change in one atomic update, guarded by the marker's absence,
        # so a retried write after a lost acknowledgement can never count the game twice.
        marker = f"counted.{game_id}"
        result = await self._call(
            self._db.users.update_one(
                {"_id": key, marker: {"$exists": False}},
                {"$inc": {"games": 1, "wins": 1 if won else 0}, "$set": {marker: True}},
            )
        )
        return bool(result.modified_count)

    # Sessions: the token's SHA-256 is the _id; the token itself is never stored.

    @deferred
    async def insert_session(self, session: dict) -> None:
        await self._call(
            self._db.sessions.insert_one(
                {"_id": session["token_hash"], "user": session["user"], "expires": _date(session["expires"])}
            )
        )

    @deferred
    async def find_session(self, token_hash: str) -> dict | None:
        doc = await self._call(self._db.sessions.find_one({"_id": token_hash}))
        if not doc:
            return None
        return {"token_hash": doc["_id"], "user": doc["user"], "expires": _seconds(doc["expires"])}

    @deferred
    async def delete_session(self, token_hash: str) -> None:
        await self._call(self._db.sessions.delete_one({"_id": token_hash}))

    # Game records, with a user -> game index collection for "recent games of a user".

    @deferred
    async def save_game(self, record: dict, player_keys: list) -> None:
        existing = await self._call(self._db.games.find_one({"_id": record["id"]}, projection={"counted": 1}))
        doc = dict(record, _id=record["id"], counted=bool(existing and existing.get("counted")))
        await self._call(self._db.games.replace_one({"_id": record["id"]}, doc, upsert=True))
        links = [
            {"_id": f"{key}/{record['id']}", "user": key, "game": record["id"], "ended": record.get("ended") or ""}
            for key in player_keys
        ]
        if links:
            requests = [ReplaceOne({"_id": link["_id"]}, link, upsert=True) for link in links]
            await self._call(self._db.user_games.bulk_write(requests, ordered=False))

    @deferred
    async def find_game(self, game_id: str) -> dict | None:
        doc = await self._call(self._db.games.find_one({"_id": game_id}))
        return _record(doc) if doc else None

    @deferred
    async def games_for_user(self, key: str, limit: int) -> list[dict]:
        links = await self._call(
            self._db.user_games.find({"user": key}, limit=limit, sort=qf.sort(qf.DESCENDING("ended")))
        )
        ids = [link["game"] for link in links]
        docs = await self._call(self._db.games.find({"_id": {"$in": ids}}))
        by_id = {d["_id"]: _record(d) for d in docs}
        return [by_id[i] for i in ids if i in by_id]

    @deferred
    async def uncounted_games(self) -> list[dict]:
        docs = await self._call(self._db.games.find({"counted": False}))
        return [dict(_record(d), counted=False) for d in docs]

    @deferred
    async def mark_counted(self, game_id: str) -> None:
        await self._call(self._db.games.update_one({"_id": game_id}, {"$set": {"counted": True}}))

    # Room checkpoints. A room's entries (its game's moves) grow with every roll, so they are not part of the
    # room's document, which would then be rewritten whole each time: each entry is a small document of its own
    # (_id "<room>:<n>", `move_of` the room), written once, and the room's document counts how many belong to it.
    # Both kinds live in the `rooms` collection so that one bulk write (one round trip) saves a batch of rooms.

    @deferred
    async def save_rooms(self, snapshots: list) -> list[str]:
        fenced: list[str] = []
        epochs = {snap["id"]: snap["epoch"] for snap in snapshots if "epoch" in snap}
        if epochs:
            # A cluster's room is written only by the holder of its lease: one read of the batch's epochs first, so
            # that a node that lost a room writes neither its head nor its moves. (The lease's margin covers the
            # time between this read and the write: an owner stops well before its lease runs out.)
            found = await self._call(self._db.rooms.find({"_id": {"$in": list(epochs)}}, projection={"epoch": 1}))
            current = {doc["_id"]: doc.get("epoch") for doc in found}
            fenced = [room_id for room_id, epoch in epochs.items() if current.get(room_id) != epoch]
        moves: list[ReplaceOne[dict[str, Any]]] = []
        rooms: list[ReplaceOne[dict[str, Any]] | UpdateOne] = []
        for snap in snapshots:
            room_id, entries = snap["id"], snap.get("entries", [])
            if room_id in fenced:
                continue
            for n in range(snap.get("stored_entries", 0), len(entries)):
                move = {"_id": f"{room_id}:{n}", "move_of": room_id, "n": n, "entry": entries[n]}
                moves.append(ReplaceOne({"_id": move["_id"]}, move, upsert=True))
            head = {k: v for k, v in snap.items() if k not in ("entries", "stored_entries")}
            if "epoch" in snap:
                # $set keeps the lease's owner and expiry, which only the lease calls change.
                update = {"$set": dict(head, entry_count=len(entries))}
                rooms.append(UpdateOne({"_id": room_id, "epoch": snap["epoch"]}, update))
            else:
                rooms.append(ReplaceOne({"_id": room_id}, dict(head, _id=room_id, entry_count=len(entries)), upsert=True))
        if rooms:
            # Ordered, moves first: a room's document never counts an entry that is not stored yet.
            await self._call(self._db.rooms.bulk_write(moves + rooms, ordered=True))
        return fenced

    @deferred
    async def delete_room(self, room_id: str, epoch: int | None = None) -> None:
        if epoch is None:
            await self._call(self._db.rooms.delete_one({"_id": room_id}))
        else:
            result = await self._call(self._db.rooms.delete_one({"_id": room_id, "epoch": epoch}))
            if not result.deleted_count:
                return  # another node owns the room now: its moves are its own
        await self._call(self._db.rooms.delete_many({"move_of": room_id}))

    @deferred
    async def load_rooms(self) -> list[dict]:
        heads: list[dict] = []
        moves: dict[str, dict[int, dict]] = {}
        for doc in await self._call(self._db.rooms.find({})):
            if "move_of" in doc:
                moves.setdefault(doc["move_of"], {})[doc["n"]] = doc["entry"]
            elif "entry_count" in doc or "entries" in doc:
                heads.append(doc)
        rooms = [self._room(head, moves.pop(head["_id"], {})) for head in heads]
        # Moves of rooms that are gone (a crash came between deleting a room and its moves), but not those of a
        # room that only has its lease yet (a new room of a cluster before its first checkpoint).
        leased = {doc["_id"] for doc in await self._call(self._db.rooms.find({"epoch": {"$exists": True}}))}
        gone = [room_id for room_id in moves if room_id not in leased]
        if gone:
            await self._call(self._db.rooms.delete_many({"move_of": {"$in": gone}}))
        return rooms

    @deferred
    async def load_room(self, room_id: str) -> dict | None:
        head = await self._call(self._db.rooms.find_one({"_id": room_id}))
        if head is None or ("entry_count" not in head and "entries" not in head):
            return None
        docs = await self._call(self._db.rooms.find({"move_of": room_id}))
        return self._room(head, {doc["n"]: doc["entry"] for doc in docs})

    @staticmethod
    def _room(head: dict, have: dict[int, dict]) -> dict:
        """A room's snapshot from its document and its moves' documents (by number)."""
        if "entry_count" in head:
            # Entries past the count are left from an earlier game in the room (or a write cut short); a
            # missing one makes the entries end early, which restoring the game detects.
            entries: list[dict] = []
            while len(entries) < head["entry_count"] and len(entries) in have:
                entries.append(have[len(entries)])
        else:
            entries = head.get("entries", [])  # written by gamesvc before entries had documents of their own
        snap = dict({k: v for k, v in head.items() if k not in ("_id", "entry_count")}, entries=entries)
        if "lease_expires" in snap:
            snap["lease_expires"] = _seconds(snap["lease_expires"])
        return snap

    # Leases: conditional updates on the epoch (plain equality and $exists, which nx-27017 supports too).

    @deferred
    async def acquire_lease(self, room_id: str, node: str, now: float, expires: float) -> int | None:
        doc = await self._call(self._db.rooms.find_one({"_id": room_id}, projection={"owner": 1, "epoch": 1,
                                                                                      "lease_expires": 1}))
        if doc is None:
            try:
                await self._call(self._db.rooms.insert_one(
                    {"_id": room_id, "id": room_id, "owner": node, "epoch": 1, "lease_expires": expires}
                ))
            except DuplicateKey:
                return None  # another node created it first
            return 1
        if doc.get("owner") not in (None, node) and _seconds(doc.get("lease_expires", 0.0)) > now:
            return None
        old = doc.get("epoch")
        condition = {"_id": room_id, "epoch": old} if old is not None else {"_id": room_id, "epoch": {"$exists": False}}
        epoch = (old or 0) + 1
        result = await self._call(self._db.rooms.update_one(
            condition, {"$set": {"owner": node, "epoch": epoch, "lease_expires": expires}}
        ))
        return epoch if result.matched_count else None

    @deferred
    async def room_of_player(self, key: str) -> str | None:
        doc = await self._call(self._db.rooms.find_one({"players.key": key}, projection={"_id": 1}))
        return str(doc["_id"]) if doc is not None else None

    @deferred
    async def renew_leases(self, node: str, epochs: dict, expires: float) -> list[str]:
        if not epochs:
            return []
        ids = list(epochs)
        # One update for all of them, then one read to find the rooms whose lease moved on (a node id is unique, so
        # a document this node owns has its epoch, unless the room was taken over and back, which the read finds).
        await self._call(self._db.rooms.update_many(
            {"_id": {"$in": ids}, "owner": node}, {"$set": {"lease_expires": expires}}
        ))
        found = await self._call(self._db.rooms.find({"_id": {"$in": ids}}, projection=_LEASE_PROJECTION))
        held = {doc["_id"] for doc in found if doc.get("owner") == node and doc.get("epoch") == epochs[doc["_id"]]}
        return [room_id for room_id in ids if room_id not in held]

    @deferred
    async def room_lease(self, room_id: str) -> dict | None:
        doc = await self._call(self._db.rooms.find_one({"_id": room_id}, projection=_LEASE_PROJECTION))
        return _lease(doc) if doc is not None and "epoch" in doc else None

    @deferred
    async def claimable_leases(self, node: str, now: float) -> list[dict]:
        expired = await self._call(self._db.rooms.find({"lease_expires": {"$lte": now}}, projection=_LEASE_PROJECTION))
        mine = await self._call(self._db.rooms.find({"owner": node}, projection=_LEASE_PROJECTION))
        leases = {doc["_id"]: _lease(doc) for doc in [*expired, *mine] if "epoch" in doc}
        return list(leases.values())

    @deferred
    async def release_lease(self, room_id: str, node: str, epoch: int) -> bool:
        result = await self._call(self._db.rooms.update_one(
            {"_id": room_id, "epoch": epoch, "owner": node}, {"$set": {"lease_expires": 0.0}}
        ))
        return bool(result.matched_count)


_LEASE_PROJECTION = {"owner": 1, "epoch": 1, "lease_expires": 1}


def _lease(doc: dict) -> dict:
    """A room document's lease fields."""
    return {"id": doc["_id"], "owner": doc.get("owner"), "epoch": doc["epoch"],
            "lease_expires": _seconds(doc.get("lease_expires", 0.0))}


def _record(doc: dict) -> dict:
    """A stored game document as the record the services know."""
    return {k: v for k, v in doc.items() if k not in ("_id", "counted")}

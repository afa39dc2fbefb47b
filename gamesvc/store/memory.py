"""An in-memory `IStore` for unit tests: the same behaviour as the real store, no I/O."""

from __future__ import annotations

import copy
from typing import Any

from zope.interface import implementer

from gamesvc._defer import deferred
from gamesvc.errors import DuplicateKey, StoreUnavailable
from gamesvc.store.interfaces import IStore


# The fields of a room's document that belong to its lease, not to its checkpoint.
LEASE_FIELDS = ("owner", "epoch", "lease_expires")


def _public_user(user: dict) -> dict:
    """The leaderboard fields of a user."""
    return {"username": user["username"], "wins": user["wins"], "games": user["games"]}


@implementer(IStore)
class MemoryStore:
    """Dictionaries behind the store interface; `down = True` makes every call fail as unavailable."""

    def __init__(self) -> None:
        self.users: dict[str, dict] = {}
        self.sessions: dict[str, dict] = {}
        self.games: dict[str, dict] = {}
        self.game_players: dict[str, list[str]] = {}
        self.rooms: dict[str, dict] = {}
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("the memory store is marked down")

    @deferred
    async def start(self) -> None:
        self._check()

    @deferred
    async def stop(self) -> None:
        pass

    @deferred
    async def ping(self) -> None:
        self._check()

    @deferred
    async def insert_user(self, user: dict) -> None:
        self._check()
        if user["key"] in self.users:
            raise DuplicateKey(user["key"])
        self.users[user["key"]] = dict(user, counted=set())

    @deferred
    async def find_user(self, key: str) -> dict | None:
        self._check()
        user = self.users.get(key)
        if user is None:
            return None
        return {k: v for k, v in user.items() if k != "counted"}

    @deferred
    async def leaderboard(self, limit: int) -> list[dict]:
        self._check()
        ranked = sorted(self.users.values(), key=lambda u: (-u["wins"], u["games"], u["key"]))
        return [_public_user(u) for u in ranked[:limit]]

    @deferred
    async def apply_result(self, game_id: str, key: str, won: bool) -> bool:
        self._check()
        user = self.users.get(key)
        if user is None or game_id in user["counted"]:
            return False
        user["counted"].add(game_id)
        user["games"] += 1
        user["wins"] += 1 if won else 0
        return True

    @deferred
    async def insert_session(self, session: dict) -> None:
        self._check()
        self.sessions[session["token_hash"]] = dict(session)

    @deferred
    async def find_session(self, token_hash: str) -> dict | None:
        self._check()
        session = self.sessions.get(token_hash)
        return dict(session) if session else None

    @deferred
    async def delete_session(self, token_hash: str) -> None:
        self._check()
        self.sessions.pop(token_hash, None)

    @deferred
    async def save_game(self, record: dict, player_keys: list) -> None:
        self._check()
        previous = self.games.get(record["id"], {})
        self.games[record["id"]] = dict(copy.deepcopy(record), counted=previous.get("counted", False))
        self.game_players[record["id"]] = list(player_keys)

    @deferred
    async def find_game(self, game_id: str) -> dict | None:
        self._check()
        record = self.games.get(game_id)
        return _without_counted(record) if record else None

    @deferred
    async def games_for_user(self, key: str, limit: int) -> list[dict]:
        self._check()
        mine = [self.games[g] for g, keys in self.game_players.items() if key in keys]
        mine.sort(key=lambda r: r.get("ended") or "", reverse=True)
        return [_without_counted(r) for r in mine[:limit]]

    @deferred
    async def uncounted_games(self) -> list[dict]:
        self._check()
        return [copy.deepcopy(r) for r in self.games.values() if not r["counted"]]

    @deferred
    async def mark_counted(self, game_id: str) -> None:
        self._check()
        if game_id in self.games:
            self.games[game_id]["counted"] = True

    @deferred
    async def save_rooms(self, snapshots: list) -> list[str]:
        self._check()
        fenced = []
        for snapshot in snapshots:
            # Like the MongoDB store: the first `stored_entries` entries are the ones stored already, and when
            # some of those are missing the entries end there.
            snapshot = copy.deepcopy(snapshot)
            previous = self.rooms.get(snapshot["id"], {})
            if "epoch" in snapshot and previous.get("epoch") != snapshot["epoch"]:
                fenced.append(snapshot["id"])
                continue
            kept = snapshot.pop("stored_entries", 0)
            stored = previous.get("entries", [])[:kept]
            snapshot["entries"] = stored + snapshot.get("entries", [])[kept:] if len(stored) == kept else stored
            if "epoch" in snapshot:
                snapshot.update({k: previous[k] for k in LEASE_FIELDS})
            self.rooms[snapshot["id"]] = snapshot
        return fenced

    @deferred
    async def delete_room(self, room_id: str, epoch: int | None = None) -> None:
        self._check()
        if epoch is None or self.rooms.get(room_id, {}).get("epoch") == epoch:
            self.rooms.pop(room_id, None)

    @deferred
    async def load_rooms(self) -> list[dict]:
        self._check()
        return [copy.deepcopy(s) for s in self.rooms.values() if "entries" in s]

    @deferred
    async def load_room(self, room_id: str) -> dict | None:
        self._check()
        room = self.rooms.get(room_id)
        return copy.deepcopy(room) if room is not None and "entries" in room else None

    @deferred
    async def acquire_lease(self, room_id: str, node: str, now: float, expires: float) -> int | None:
        self._check()
        room = self.rooms.get(room_id)
        if room is None:
            # Only the lease, until the first checkpoint: loading does not see it.
            self.rooms[room_id] = {"id": room_id, "owner": node, "epoch": 1, "lease_expires": expires}
            return 1
        if room.get("owner") not in (None, node) and room.get("lease_expires", 0.0) > now:
            return None
        epoch = room.get("epoch", 0) + 1
        room.update(owner=node, epoch=epoch, lease_expires=expires)
        return epoch

    @deferred
    async def room_of_player(self, key: str) -> str | None:
        self._check()
        for room in self.rooms.values():
            if any(p.get("key") == key for p in room.get("players", ())):
                return str(room["id"])
        return None

    @deferred
    async def renew_leases(self, node: str, epochs: dict, expires: float) -> list[str]:
        self._check()
        lost = []
        for room_id, epoch in epochs.items():
            room = self.rooms.get(room_id)
            if room is None or room.get("owner") != node or room.get("epoch") != epoch:
                lost.append(room_id)
            else:
                room["lease_expires"] = expires
        return lost

    @deferred
    async def room_lease(self, room_id: str) -> dict | None:
        self._check()
        room = self.rooms.get(room_id)
        return {"id": room_id, **{k: room[k] for k in LEASE_FIELDS}} if room is not None and "epoch" in room else None

    @deferred
    async def claimable_leases(self, node: str, now: float) -> list[dict]:
        self._check()
        return [
            {"id": r["id"], **{k: r[k] for k in LEASE_FIELDS}} for r in self.rooms.values()
            if "epoch" in r and (r["lease_expires"] <= now or r["owner"] == node)
        ]

    @deferred
    async def release_lease(self, room_id: str, node: str, epoch: int) -> bool:
        self._check()
        room = self.rooms.get(room_id)
        if room is None or room.get("owner") != node or room.get("epoch") != epoch:
            return False
        room["lease_expires"] = 0.0
        return True


def _without_counted(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored record without the store's bookkeeping."""
    return {k: copy.deepcopy(v) for k, v in record.items() if k != "counted"}

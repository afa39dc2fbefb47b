"""The storage interface that the services use; `MemoryStore` and `MongoStore` implement it.

Every method returns a Deferred. Failures are `gamesvc.errors.StoreUnavailable` when the store
cannot be reached in time, and `gamesvc.errors.DuplicateKey` for a unique-key collision.
Times are POSIX seconds (floats) at this interface; a store may keep them as dates.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Interface


class IStore(Interface):
    """Users, sessions, game records and room checkpoints."""

    def start() -> Deferred[None]:
        """Connect and make sure the indexes exist; fires when ready or fails as unavailable."""

    def stop() -> Deferred[None]:
        """Disconnect."""

    def ping() -> Deferred[None]:
        """Fire when the store answers; fail with StoreUnavailable otherwise."""

    # Users: {"key", "username", "password_hash" (bytes), "wins", "games", "created"}
    def insert_user(user: dict) -> Deferred[None]:
        """Add a user; DuplicateKey when `key` (the normalised username) exists."""

    def find_user(key: str) -> Deferred[dict[str, Any] | None]:
        """The user with this normalised name, or None."""

    def leaderboard(limit: int) -> Deferred[list[dict[str, Any]]]:
        """Up to `limit` users as {"username","wins","games"}: wins desc, games asc, name asc."""

    def apply_result(game_id: str, key: str, won: bool) -> Deferred[bool]:
        """Add one game (and a win when `won`) to a user, at most once per `game_id`; True if applied now."""

    # Sessions: {"token_hash", "user", "expires"}
    def insert_session(session: dict) -> Deferred[None]:
        """Add a session."""

    def find_session(token_hash: str) -> Deferred[dict[str, Any] | None]:
        """The session with this token hash, or None (expired ones may still be returned)."""

    def delete_session(token_hash: str) -> Deferred[None]:
        """Remove a session (no error when absent)."""

    # Game records: the record of `gamesvc.rooms` plus a `counted` flag
    def save_game(record: dict, player_keys: list) -> Deferred[None]:
        """Insert or replace a game record by its `id` (idempotent), indexed by its players' keys."""

    def find_game(game_id: str) -> Deferred[dict[str, Any] | None]:
        """The game record with this id, or None."""

    def games_for_user(key: str, limit: int) -> Deferred[list[dict[str, Any]]]:
        """The user's most recent game records, newest first."""

    def uncounted_games() -> Deferred[list[dict[str, Any]]]:
        """Records whose results were not yet applied to every player's stats."""

    def mark_counted(game_id: str) -> Deferred[None]:
        """Note that a record's results have been applied."""

    # Room checkpoints, for restarts
    def save_rooms(snapshots: list) -> Deferred[list[str]]:
        """Insert or replace rooms' checkpoints in bulk; fires with the ids of the rooms whose write was fenced off.

        Each snapshot has its room's `id` and may have `entries`, a list that only grows during a game, and
        `stored_entries`: how many of those entries an earlier save_rooms of this room already stored (the
        store may skip writing them again). Loading gives back the snapshot without `stored_entries`.
        A snapshot with an `epoch` (a room of a cluster) is written only while the room's lease has that epoch,
        and keeps the lease's fields; the ids of those that were not written are the result.
        """

    def delete_room(room_id: str, epoch: int | None = None) -> Deferred[None]:
        """Remove a room's checkpoint (no error when absent); with an `epoch`, only while its lease has that epoch."""

    def load_rooms() -> Deferred[list[dict[str, Any]]]:
        """Every stored room checkpoint, each with its `entries` (an empty list when it was saved without), and
        with `owner`, `epoch` and `lease_expires` when a node of a cluster owns it."""

    def load_room(room_id: str) -> Deferred[dict[str, Any] | None]:
        """One room's checkpoint as `load_rooms` gives it, or None (also when only its lease was written yet)."""

    # Room leases, for a cluster: the room's document holds `owner` (a node id), `epoch` (counts owners) and
    # `lease_expires` (POSIX seconds). Every change is a conditional update, so two nodes never both own a room.
    def acquire_lease(room_id: str, node: str, now: float, expires: float) -> Deferred[int | None]:
        """Own a room until `expires`: a new room (no document yet) gets epoch 1; a room whose lease ran out by `now`
        (or that `node` owns already) gets the next epoch. Fires with the new epoch, or None when another node
        holds the lease or won the race."""

    def release_lease(room_id: str, node: str, epoch: int) -> Deferred[bool]:
        """End `node`'s lease at `epoch` now (another node may take the room over at once); False when not held."""

    def room_of_player(key: str) -> Deferred[str | None]:
        """The id of a checkpointed room where the user with this key holds a seat, or None (for `me` in a cluster,
        where the seat may be on another node)."""

    def renew_leases(node: str, epochs: dict, expires: float) -> Deferred[list[str]]:
        """Renew in one go the leases `node` holds (room id -> epoch) to `expires`; fires with the rooms it no longer
        holds (another node took them, or they are gone)."""

    def room_lease(room_id: str) -> Deferred[dict[str, Any] | None]:
        """A room's lease as {"id", "owner", "epoch", "lease_expires"}, or None (no such room, or no lease)."""

    def claimable_leases(node: str, now: float) -> Deferred[list[dict[str, Any]]]:
        """The leases that ran out by `now`, and those held by `node` (a previous run of it), as `room_lease` gives
        them: the rooms `node` may take over."""

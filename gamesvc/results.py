"""Game results, written exactly once and never lost to a store outage.

A finished game is written in three idempotent steps: the record (keyed by its id), then each
player's stats (each update guarded by a per-game marker in the user's document), then the
record is marked counted. A failure at any step retries the whole sequence later; a retry can
repeat steps but never count a game twice. On start, records left uncounted by a crash are
finished the same way.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from gamesvc._defer import deferred
from gamesvc.auth import user_key
from gamesvc.errors import StoreUnavailable
from gamesvc.store.interfaces import IStore

log = Logger()


def visible_record(record: dict[str, Any], viewer: str | None) -> dict[str, Any]:
    """A game record as `viewer` (a user key, or None when anonymous) may see it: a private room's code is shown
    only to the game's players."""
    if record.get("private") and viewer not in {user_key(name) for name in record.get("players", ())}:
        return {**record, "room": None}
    return record


class ResultWriter:
    """Writes finished games to the store, retrying every `retry` seconds while it is down."""

    def __init__(self, store: IStore, clock: IReactorTime, retry: float) -> None:
        self._store = store
        self._clock = clock
        self._retry = retry
        self.pending: dict[str, dict[str, Any]] = {}
        self._writing: set[str] = set()
        self._timers: dict[str, IDelayedCall] = {}
        self.written = 0
        self._stopped = False
        self._waiters: dict[str, list[Deferred[None]]] = {}

    def submit(self, record: dict[str, Any]) -> None:
        """Queue a finished game's record; it is written now or as soon as the store allows."""
        self.pending[record["id"]] = record
        self._attempt(record["id"])

    def when_written(self, game_id: str) -> Deferred[None]:
        """Fire once the game's record is stored and counted (at once when nothing of it is pending)."""
        if game_id not in self.pending:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.setdefault(game_id, []).append(d)
        return d

    def _attempt(self, game_id: str) -> None:
        self._timers.pop(game_id, None)
        if game_id in self._writing or game_id not in self.pending:
            return
        self._writing.add(game_id)
        self._write(self.pending[game_id]).addErrback(
            lambda f: log.failure("writing the result of game {game} failed", f, game=game_id)
        )

    @deferred
    async def _write(self, record: dict[str, Any]) -> None:
        game_id = record["id"]
        try:
            await self.write_once(record)
        except StoreUnavailable as e:
            log.warn("result of game {game} waits for the store: {why}", game=game_id, why=str(e))
            self._retry_later(game_id)
        except Exception:
            # Not an outage we know of, but giving up would lose the result: log it and try again.
            log.failure("writing the result of game {game} failed; retrying", game=game_id)
            self._retry_later(game_id)
        else:
            self._done(game_id)
        finally:
            self._writing.discard(game_id)

    def _done(self, game_id: str) -> None:
        self.pending.pop(game_id, None)
        self.written += 1
        for d in self._waiters.pop(game_id, []):
            d.callback(None)

    @deferred
    async def flush(self) -> int:
        """One more attempt at every pending record now (at shutdown); returns how many are still pending."""
        for game_id, record in list(self.pending.items()):
            if game_id in self._writing:
                continue
            try:
                await self.write_once(record)
            except StoreUnavailable:
                break
            self._done(game_id)
        return len(self.pending)

    def _retry_later(self, game_id: str) -> None:
        if self._stopped:
            return
        self._timers[game_id] = self._clock.callLater(self._retry, self._attempt, game_id)

    async def write_once(self, record: dict[str, Any]) -> None:
        """Store a record and apply its stats; safe to repeat."""
        players = record["players"]
        await self._store.save_game(record, [user_key(name) for name in players])
        for name in players:
            await self._store.apply_result(record["id"], user_key(name), name == record["winner"])
        await self._store.mark_counted(record["id"])

    @deferred
    async def recover(self) -> int:
        """Finish records that a crash left uncounted; returns how many were found."""
        records = await self._store.uncounted_games()
        for record in records:
            record.pop("counted", None)
            self.submit(record)
        return len(records)

    def stop(self) -> None:
        """Cancel the retry timers (pending records stay in `pending`, and are recovered on the next start)."""
        self._stopped = True
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

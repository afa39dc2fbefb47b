"""Game results, written exactly once and never lost to a store outage.

A finished game is written in three idempotent steps: the record (keyed by its id), then each
player's stats (each update guarded by a per-game marker in the user's document), then the
record is marked counted. A failure at any step retries the whole sequence later; a retry can
repeat steps but never count a game twice. On start, records left uncounted by a crash are
finished the same way.

Until the store has a record it also sits in a local journal (`ResultJournal`, --result-journal): an
append-only file, fsync'd on a thread of its own before the record counts as safe, so a crash while
the store is down loses nothing; the next start replays it. The journal is emptied whenever nothing
is pending, so it stays as small as the outage.
"""

from __future__ import annotations

import json
import os
from typing import IO, Any, Callable, Protocol

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


class Journal(Protocol):
    """Where results wait for the store across a crash."""

    def load(self) -> list[dict[str, Any]]:
        """The records still pending from an earlier run, oldest first."""

    def append(self, record: dict[str, Any]) -> None:
        """Keep a record durably (in the background) until `done` or `compact`."""

    def done(self, game_id: str) -> None:
        """The store has this game's record."""

    def compact(self) -> None:
        """Nothing is pending: forget everything."""

    def idle(self) -> Deferred[None]:
        """Fire once every write asked for so far is finished."""


class NoJournal:
    """No journal: results pending at a crash are lost (the memory services of unit tests)."""

    def load(self) -> list[dict[str, Any]]:
        """Nothing was kept."""
        return []

    def append(self, record: dict[str, Any]) -> None:
        """Keep nothing."""

    def done(self, game_id: str) -> None:
        """Nothing to mark."""

    def compact(self) -> None:
        """Nothing to forget."""

    def idle(self) -> Deferred[None]:
        """Always idle."""
        return succeed(None)


class ResultJournal:
    """An append-only JSON-lines file of results not yet in the store: ``{"record": ...}`` lines, fsync'd, and
    ``{"done": id}`` lines; emptied (truncated) when nothing is pending.

    Every file operation runs through `run` (a one-thread pool in the service), one after another in the order
    asked, so the reactor never waits for the disk; `load` alone runs at once, at start-up.
    """

    def __init__(self, path: str, run: Callable[[Callable[[], None]], Deferred[None]]) -> None:
        self.path = path
        self._run = run
        self._file: IO[bytes] | None = None
        self._tail: Deferred[None] = succeed(None)
        self.appended = 0

    def load(self) -> list[dict[str, Any]]:
        """The records without a done line; a torn last line (a crash mid-write) is skipped."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        records: dict[str, dict[str, Any]] = {}
        try:
            with open(self.path, "rb") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            try:
                entry = json.loads(line)
                if "record" in entry:
                    records[entry["record"]["id"]] = entry["record"]
                elif "done" in entry:
                    records.pop(entry["done"], None)
            except (ValueError, TypeError, KeyError):
                log.warn("skipping an unreadable line of the result journal {path}", path=self.path)
        return list(records.values())

    def append(self, record: dict[str, Any]) -> None:
        """Write the record and fsync it (in the background)."""
        line = json.dumps({"record": record}, separators=(",", ":")).encode("utf-8") + b"\n"
        self.appended += 1
        self._queue(lambda: self._write(line, sync=True))

    def done(self, game_id: str) -> None:
        """Write a done line; not fsync'd: losing it only means an idempotent rewrite after a crash."""
        self._queue(lambda: self._write(json.dumps({"done": game_id}).encode("utf-8") + b"\n", sync=False))

    def compact(self) -> None:
        """Empty the file."""
        self._queue(self._truncate)

    def idle(self) -> Deferred[None]:
        """Fire once every write asked for so far is finished."""
        d: Deferred[None] = Deferred()

        def reached(result: object) -> object:
            d.callback(None)
            return result

        self._tail.addBoth(reached)
        return d

    def close(self) -> Deferred[None]:
        """Close the file once the writes asked for so far are finished."""
        self._queue(self._close)
        return self.idle()

    def _queue(self, work: Callable[[], None]) -> None:
        def step(_: object) -> Deferred[None]:
            return self._run(work)

        def failed(failure: Any) -> None:
            log.failure("writing the result journal {path} failed", failure, path=self.path)

        self._tail = self._tail.addCallback(step).addErrback(failed)

    def _open(self) -> IO[bytes]:
        if self._file is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._file = open(self.path, "ab")
        return self._file

    def _write(self, line: bytes, sync: bool) -> None:
        f = self._open()
        f.write(line)
        f.flush()
        if sync:
            os.fsync(f.fileno())

    def _truncate(self) -> None:
        f = self._open()
        f.truncate(0)
        os.fsync(f.fileno())

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ResultWriter:
    """Writes finished games to the store, retrying every `retry` seconds while it is down."""

    def __init__(self, store: IStore, clock: IReactorTime, retry: float, journal: Journal = NoJournal()) -> None:
        self._store = store
        self._clock = clock
        self._retry = retry
        self._journal = journal
        self.pending: dict[str, dict[str, Any]] = {}
        self._writing: set[str] = set()
        self._timers: dict[str, IDelayedCall] = {}
        self.written = 0
        self._stopped = False
        self._waiters: dict[str, list[Deferred[None]]] = {}

    def submit(self, record: dict[str, Any]) -> None:
        """Queue a finished game's record (journaled first); it is written now or as soon as the store allows."""
        if record["id"] not in self.pending:
            self._journal.append(record)
        self.pending[record["id"]] = record
        self._attempt(record["id"])

    def replay(self) -> int:
        """Queue the records an earlier run left in the journal (at start); returns how many."""
        records = self._journal.load()
        for record in records:
            self.pending[record["id"]] = record
            self._attempt(record["id"])
        return len(records)

    def journal_idle(self) -> Deferred[None]:
        """Fire once the journal's writes asked for so far are on disk."""
        return self._journal.idle()

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
        if self.pending.pop(game_id, None) is not None:
            if self.pending:
                self._journal.done(game_id)
            else:
                self._journal.compact()
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
        bots = record.get("bots") or []
        people = [name for name in record["players"] if name not in bots]
        await self._store.save_game(record, [user_key(name) for name in people])
        # Only games among people count on the leaderboard: not when a bot played from the start or stood in.
        if not bots and not record.get("stand_ins"):
            for name in people:
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

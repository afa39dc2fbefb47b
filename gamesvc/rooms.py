"""The lobby and its rooms: seats, ready, chat, spectators, presence, reconnection, and the game turn flow.

All room state lives in memory on the reactor thread, so every operation here is synchronous
and atomic with respect to other connections. Connections are `IMind`s: the service pushes
events by calling `deliver` on them, and one that fails is dropped from the room, not the room.
"""

from __future__ import annotations

import random
import secrets
from collections import deque
from typing import Any, Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from gamesvc import fairness
from gamesvc.bots import BOT_KEY_PREFIX, bot_delay, bot_key, bot_name, fullest_room
from gamesvc.config import Settings
from gamesvc.errors import GameError, RateLimited
from gamesvc.game import DEFAULT_BOARD, DiceRace
from gamesvc.interfaces import IMind, IRoomListener, NoRoomListener
from gamesvc.ratelimit import SlidingWindow
from gamesvc.results import ResultWriter
from gamesvc.wire import Outgoing, iso

log = Logger()
ROOM_ID_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
ROOM_ID_LENGTH = 6
WAITING, PLAYING, FINISHED = "waiting", "playing", "finished"
# The board the next game will use, shown in waiting rooms too.
DEFAULT_BOARD_JSON = DEFAULT_BOARD.to_json()


@attrs.define(eq=False)
class Seat:
    """A player's place in a room; `mind` is None while they are disconnected."""

    key: str
    username: str
    ready: bool = False
    mind: Any = None
    grace: IDelayedCall | None = None
    # The seed this player adds to the next game's dice, set when they ready up.
    client_seed: str | None = None
    # A bot (gamesvc.bots) has no mind; a stand-in is a bot finishing the game for a player who left.
    bot: bool = False
    stand_in: bool = False

    def cancel_grace(self) -> None:
        """Stop the reconnection countdown."""
        if self.grace is not None and self.grace.active():
            self.grace.cancel()
        self.grace = None


@attrs.define(eq=False)
class Room:
    """One room: its players in seat order, spectators, chat tail and current game."""

    id: str
    name: str
    seats: int
    private: bool
    chat: deque
    status: str = WAITING
    players: list[Seat] = attrs.Factory(list)
    spectators: set = attrs.Factory(set)
    version: int = 0
    game: DiceRace | None = None
    game_id: str | None = None
    started: float | None = None
    deadline: float | None = None
    turn_timer: IDelayedCall | None = None
    last_summary: dict | None = None
    # The secret of the next (or current) game's dice: only its SHA-256 is shown until game.over. The service sets
    # it from its injected RNG; the default only ensures that no room, however made, plays without a commitment.
    server_seed: bytes = attrs.Factory(lambda: secrets.token_bytes(fairness.SEED_BYTES))
    # The players' seeds of the current game, fixed when it starts.
    client_seeds: dict[str, str] | None = None
    bot_takeover: bool = False
    bot_timer: IDelayedCall | None = None
    # Quick play: when the free seats of this waiting room are filled with bots.
    bots_at: float | None = None
    fill_timer: IDelayedCall | None = None

    @property
    def entries(self) -> list[dict[str, Any]]:
        """The current game's moves with their notes (`n`, `at`, `auto`), from the game's log: its only log."""
        return self.game.record_entries() if self.game is not None else []

    def humans(self) -> int:
        """Seats held by people."""
        return sum(1 for seat in self.players if not seat.bot)

    def bots(self) -> int:
        """Seats held by bots."""
        return sum(1 for seat in self.players if seat.bot)

    def host(self) -> Seat | None:
        """The first seated person: bots and stand-ins are never the host."""
        return next((seat for seat in self.players if not seat.bot), None)
    # Coalescing (--coalesce-seconds): when the room last broadcast its state and the lobby its summary, and the
    # timers that send a merged update at the end of the interval.
    changed_at: float = float("-inf")
    state_timer: IDelayedCall | None = None
    lobby_sent: float = float("-inf")
    lobby_timer: IDelayedCall | None = None

    def cancel_coalescing(self) -> None:
        """Stop the timers of merged updates (the room changed in full, or closed)."""
        for timer in (self.state_timer, self.lobby_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self.state_timer = self.lobby_timer = None

    def seat_of(self, key: str) -> Seat | None:
        """The seat this user holds here, if any."""
        for seat in self.players:
            if seat.key == key:
                return seat
        return None

    def minds(self) -> list[Any]:
        """Every connection that receives this room's events."""
        return [seat.mind for seat in self.players if seat.mind is not None] + list(self.spectators)

    def summary(self) -> dict[str, Any]:
        """The contract's RoomSummary (`players` is the number of seated players, `bots` of them bots)."""
        summary = {"id": self.id, "name": self.name, "seats": self.seats, "players": len(self.players), "status": self.status}
        if bots := self.bots():
            # Seats a person may still take in a waiting room.
            summary["bots"] = bots
        return summary

    def state(self) -> dict[str, Any]:
        """The contract's RoomState, plus the game's board, order, deadline, winner, record id and dice commitment."""
        positions = self.game.positions if self.game is not None else {}
        return {
            "id": self.id,
            "name": self.name,
            "seats": self.seats,
            "private": self.private,
            "status": self.status,
            "host": host.username if (host := self.host()) is not None else None,
            "players": [
                {
                    "username": seat.username,
                    "ready": seat.ready,
                    "connected": seat.mind is not None or seat.bot,
                    "position": positions.get(seat.username, 0),
                    # Only bots carry the marker, so people's entries stay as they were.
                    **({"bot": True} if seat.bot else {}),
                }
                for seat in self.players
            ],
            "spectators": len(self.spectators),
            "turn": self.game.current if self.status == PLAYING and self.game is not None else None,
            "version": self.version,
            "board": self.game.board.to_json() if self.game is not None else DEFAULT_BOARD_JSON,
            "order": list(self.game.order) if self.game is not None else None,
            "deadline": iso(self.deadline) if self.deadline is not None else None,
            "winner": self.game.winner if self.game is not None else None,
            "game": self.game_id,
            "bot_takeover": self.bot_takeover,
            "bots_at": iso(self.bots_at) if self.bots_at is not None else None,
            "fairness": {
                "scheme": fairness.SCHEME, "version": fairness.VERSION, "commit": fairness.commit_of(self.server_seed)
            },
        }


def _check_limit(window: SlidingWindow, key: str, message: str) -> None:
    """Refuse with `rate_limited` (and its retry_after) when `key` is over `window`'s limit."""
    wait = window.retry_after(key)
    if wait is not None:
        raise RateLimited(message, wait)


def default_random_bytes(settings: Settings) -> Callable[[int], bytes]:
    """The source of server seeds (and of client seeds drawn for players): the OS's secure RNG, or a seeded PRNG
    when a test fixes the seeds with --dice-seed."""
    if settings.dice_seed is None:
        return secrets.token_bytes
    return random.Random(settings.dice_seed).randbytes


class RoomService:
    """Rooms, seats and the games played in them."""

    def __init__(
        self,
        clock: IReactorTime,
        settings: Settings,
        results: ResultWriter,
        listener: IRoomListener = NoRoomListener(),
        others: Callable[[], list[dict[str, Any]]] = list,
        dice: Callable[[], int] | None = None,
        choose: Callable[[str], str] = secrets.choice,
        new_game_id: Callable[[], str] = lambda: secrets.token_hex(8),
        random_bytes: Callable[[int], bytes] | None = None,
        bot_random: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._settings = settings
        self._results = results
        # A die injected by rules tests replaces the fair dice (the records then fail verification); else None.
        self._dice = dice
        self._random_bytes = random_bytes or default_random_bytes(settings)
        self._choose = choose
        self._new_game_id = new_game_id
        self.rooms: dict[str, Room] = {}
        self._where: dict[Any, Room] = {}
        self._seats: dict[str, Room] = {}
        self._watchers: set[Any] = set()
        self.games_started = 0
        self.games_finished = 0
        # Told of every change and close, to checkpoint rooms (gamesvc.checkpoints.Checkpoints).
        self._listener = listener
        # The public rooms of the other nodes of a cluster (gamesvc.cluster.lobby), listed after this node's.
        self._others = others
        self._stopped = False
        # Bots' names and delays; bots added per account, so that bots cannot flood the server.
        self._bot_random = bot_random or random.Random()
        self._bot_adds = SlidingWindow(clock, settings.bot_limit, settings.bot_window)
        # Per-account limits on cheap requests that buy broadcasts, and on guessing private room codes.
        self._creates = SlidingWindow(clock, settings.room_create_limit, settings.room_limit_window)
        self._churn = SlidingWindow(clock, settings.room_churn_limit, settings.room_limit_window)
        self._misses_by_account = SlidingWindow(clock, settings.room_miss_limit, settings.room_miss_window)
        self._misses_by_address = SlidingWindow(clock, settings.room_miss_address_limit, settings.room_miss_window)

    # Queries

    def seat_of(self, key: str) -> str | None:
        """The id of the room where this user holds a seat, or None."""
        room = self._seats.get(key)
        return room.id if room else None

    def room_of(self, mind: IMind) -> str | None:
        """The id of the room this connection is in (as player or spectator), or None."""
        room = self._where.get(mind)
        return room.id if room else None

    def public_rooms(self) -> list[dict[str, Any]]:
        """Summaries of the open public rooms, oldest first (this node's, then those of the other nodes)."""
        return [room.summary() for room in self.rooms.values() if not room.private] + self._others()

    # Lobby

    def watch_lobby(self, mind: IMind) -> list[dict[str, Any]]:
        """Start pushing lobby events to `mind`; returns the current list."""
        self._watchers.add(mind)
        return self.public_rooms()

    def unwatch_lobby(self, mind: IMind) -> None:
        """Stop pushing lobby events to `mind`."""
        self._watchers.discard(mind)

    # Room membership

    def create(self, mind: IMind, name: str, seats: int, private: bool, bot_takeover: bool = False) -> dict[str, Any]:
        """Open a room with `mind`'s user in the first seat."""
        account = mind.account
        if account.key in self._seats:
            raise GameError("already_in_room", f"you already have a seat in room {self._seats[account.key].id}")
        if len(self.rooms) >= self._settings.max_rooms:
            raise GameError("unavailable", "the server has as many rooms as it allows; try again later")
        _check_limit(self._creates, account.key, "you created too many rooms; try again later")
        self._creates.hit(account.key)
        self._leave_spectating(mind)
        room = Room(self._new_room_id(), name, seats, private, deque(maxlen=self._settings.chat_history))
        room.server_seed = self._random_bytes(fairness.SEED_BYTES)
        room.bot_takeover = bot_takeover
        self.rooms[room.id] = room
        self._seat(room, Seat(account.key, account.username, mind=mind))
        log.info("room {room} created by {user}", room=room.id, user=account.username)
        self._changed(room)
        return {"room": room.state(), "chat": []}

    def _new_room_id(self) -> str:
        while True:
            candidate = "".join(self._choose(ROOM_ID_ALPHABET) for _ in range(ROOM_ID_LENGTH))
            if candidate not in self.rooms:
                return candidate

    def join(self, mind: IMind, room_id: str, spectate: bool = False) -> dict[str, Any]:
        """Take a seat (or watch) in a room; the user's own seat is taken back after a drop or from another tab."""
        account = mind.account
        room_id = room_id.upper()
        room = self.rooms.get(room_id)
        own = self._seats.get(account.key)
        if own is None or own.id != room_id:
            # Past the limit every code gets the same answer, known or not, so the code space cannot be walked.
            _check_limit(self._misses_by_account, account.key, "too many unknown room codes; try again later")
            _check_limit(self._misses_by_address, mind.address, "too many unknown room codes; try again later")
        if room is None:
            self._misses_by_account.hit(account.key)
            self._misses_by_address.hit(mind.address)
            raise GameError("room_not_found", f"there is no room {room_id}")
        seat = room.seat_of(account.key)
        if seat is not None:
            self._take_back(room, seat, mind)
        elif spectate and mind in room.spectators:
            pass
        elif spectate:
            current = self._where.get(mind)
            if current is not None and current is not room and current.seat_of(account.key) is not None:
                raise GameError("already_in_room", f"leave room {current.id} first")
            if len(room.spectators) >= self._settings.max_spectators:
                raise GameError("room_full", f"room {room.id} has as many spectators as it allows")
            self._churned(account.key)
            self._leave_spectating(mind)
            room.spectators.add(mind)
            self._where[mind] = room
            self._spectators_changed(room)
        else:
            if account.key in self._seats:
                raise GameError("already_in_room", f"you already have a seat in room {self._seats[account.key].id}")
            if room.status == PLAYING:
                raise GameError("game_in_progress", f"room {room.id} is playing; you may spectate")
            if len(room.players) >= room.seats and not self._make_way(room):
                raise GameError("room_full", f"room {room.id} has no free seat")
            self._churned(account.key)
            self._leave_spectating(mind)
            self._seat(room, Seat(account.key, account.username, mind=mind))
            self._changed(room)
        if room.status == PLAYING and room.game is not None and room.deadline is not None:
            # Whoever (re)joins a running game learns whose turn it is, as if they had been there.
            self._send(mind, self._turn_event(room))
        state = room.state()
        if room.state_timer is not None:
            # This state (with the new spectator count) goes to the others as the next version, coalesced.
            state["version"] += 1
        return {"room": state, "chat": list(room.chat)}

    def _seat(self, room: Room, seat: Seat) -> None:
        room.players.append(seat)
        self._seats[seat.key] = room
        self._where[seat.mind] = room

    def _take_back(self, room: Room, seat: Seat, mind: IMind) -> None:
        """Give a user's seat to `mind`: a reconnection, or a newer tab taking over from an older one."""
        if seat.mind is mind:
            return
        previous = seat.mind
        if previous is not None:
            self._where.pop(previous, None)
            self._send(previous, {"event": "room.detached", "room": room.id, "reason": "taken_over"})
        self._leave_spectating(mind)
        room.spectators.discard(mind)
        seat.cancel_grace()
        seat.mind = mind
        self._where[mind] = room
        self._changed(room)

    def _leave_spectating(self, mind: IMind) -> None:
        """Stop watching whatever room `mind` spectates."""
        room = self._where.get(mind)
        if room is not None and mind in room.spectators:
            room.spectators.discard(mind)
            del self._where[mind]
            self._spectators_changed(room)

    def leave(self, mind: IMind) -> None:
        """Leave the room: a spectator stops watching; a player gives up the seat (forfeiting a running game)."""
        room = self._where.get(mind)
        if room is None:
            raise GameError("not_in_room", "you are not in a room")
        # Counted but never refused: nobody should be kept in a room, and each leave needs a (limited) join first.
        self._churn.hit(mind.account.key)
        if mind in room.spectators:
            self._leave_spectating(mind)
            return
        seat = room.seat_of(mind.account.key)
        if seat is not None:
            self._remove_player(room, seat)

    def disconnected(self, mind: IMind) -> None:
        """A connection closed (or signed out): spectators leave; a player's seat waits for the grace period."""
        self._watchers.discard(mind)
        room = self._where.pop(mind, None)
        if room is None:
            return
        if self._stopped:
            # Shutting down: the checkpoint keeps the seat; the next start gives it its grace period.
            room.spectators.discard(mind)
            for seat in room.players:
                if seat.mind is mind:
                    seat.mind = None
            return
        if mind in room.spectators:
            room.spectators.discard(mind)
            self._spectators_changed(room)
            return
        for seat in room.players:
            if seat.mind is mind:
                seat.mind = None
                seat.grace = self._clock.callLater(self._settings.grace_seconds, self._grace_over, room, seat)
                self._changed(room)

    def _grace_over(self, room: Room, seat: Seat) -> None:
        seat.grace = None
        if seat.mind is None and seat in room.players:
            log.info("{user} did not come back to room {room}", user=seat.username, room=room.id)
            self._remove_player(room, seat)

    def _remove_player(self, room: Room, seat: Seat) -> None:
        """Take a player out of a room, forfeiting a running game and closing an empty room."""
        seat.cancel_grace()
        playing = room.status == PLAYING and room.game is not None and seat.username in room.game.active
        if playing and room.bot_takeover and room.humans() > 1:
            self._take_over(room, seat)
            return
        room.players.remove(seat)
        self._seats.pop(seat.key, None)
        if seat.mind is not None:
            self._where.pop(seat.mind, None)
        if playing:
            self._forfeit(room, seat.username)
        if not room.humans():
            # A room needs a person: bots do not keep it open (nor play on by themselves).
            self._close(room)
        elif not self._start_if_ready(room):
            self._changed(room)

    def _churned(self, key: str) -> None:
        """Count one join or spectate of an account, refusing it past --room-churn-limit."""
        _check_limit(self._churn, key, "you joined and left rooms too often; try again later")
        self._churn.hit(key)

    def _close(self, room: Room) -> None:
        """Close a room whose players have all left."""
        self._stop_turn(room)
        self._stop_fill(room)
        room.cancel_coalescing()
        del self.rooms[room.id]
        for mind in list(room.spectators):
            self._where.pop(mind, None)
            self._send(mind, {"event": "room.closed", "room": room.id})
        room.spectators.clear()
        log.info("room {room} closed", room=room.id)
        self._listener.room_closed(room)
        if not room.private:
            self._to_watchers({"event": "lobby.room_closed", "room": room.id})

    # Ready and chat

    def ready(self, mind: IMind, ready: bool, client_seed: str | None = None) -> dict[str, Any]:
        """Mark a player (not) ready with the seed they add to the dice (drawn for them when None); the game starts
        when every seated player, at least two, is ready. Returns the player's client seed when ready."""
        room, seat = self._player(mind)
        if room.status == PLAYING:
            raise GameError("game_in_progress", "the game is already running")
        if room.status == FINISHED:
            if not ready:
                return {}
            # A rematch: back to waiting with positions reset, and a fresh commitment for the new game.
            room.status = WAITING
            room.game = None
            room.game_id = None
            room.deadline = None
            room.server_seed = self._random_bytes(fairness.SEED_BYTES)
            room.client_seeds = None
        seat.ready = ready
        if ready:
            seat.client_seed = client_seed if client_seed is not None else fairness.draw_client_seed(self._random_bytes)
        else:
            seat.client_seed = None
        reply = {"client_seed": seat.client_seed} if ready else {}
        if not self._start_if_ready(room):
            self._changed(room)
        return reply

    def _start_if_ready(self, room: Room) -> bool:
        """Start the game of a waiting room whose seated players, at least two, are all ready."""
        # A quick play room waits for its countdown (or to be full) before it starts.
        filling = room.fill_timer is not None and len(room.players) < room.seats
        if room.status == WAITING and len(room.players) >= 2 and all(s.ready for s in room.players) and not filling:
            self._start(room)
            return True
        return False

    def chat(self, mind: IMind, text: str) -> None:
        """Send a chat line to everyone in the room, in order; clients render it as text."""
        room = self._where.get(mind)
        if room is None:
            raise GameError("not_in_room", "you are not in a room")
        message = {
            "event": "room.chat",
            "room": room.id,
            "from": mind.account.username,
            "text": text,
            "at": iso(self._clock.seconds()),
        }
        room.chat.append(message)
        self._broadcast(room, message)

    # The game

    def roll(self, mind: IMind) -> None:
        """Roll for the player whose turn it is."""
        room, seat = self._player(mind)
        if room.status != PLAYING or room.game is None:
            raise GameError("game_not_started", "the game has not started")
        if room.game.current != seat.username:
            raise GameError("not_your_turn", f"it is {room.game.current}'s turn")
        self._roll(room, auto=False)

    def _start(self, room: Room) -> None:
        order = [seat.username for seat in room.players]
        room.client_seeds = {
            seat.username: seat.client_seed or fairness.draw_client_seed(self._random_bytes) for seat in room.players
        }
        room.game = DiceRace(order, rng=self._game_dice(room, order, rolled=0))
        room.game_id = self._new_game_id()
        room.started = self._clock.seconds()
        room.status = PLAYING
        self.games_started += 1
        log.info("game {game} started in room {room}", game=room.game_id, room=room.id)
        self._broadcast(
            room,
            {
                "event": "game.started", "room": room.id, "order": order, "board": room.game.board.to_json(),
                "fairness": self._fairness(room, order, reveal=False),
            },
        )
        self._next_turn(room)

    def _game_dice(self, room: Room, order: list[str], rolled: int) -> Callable[[], int]:
        """The die of the room's game: the injected one, else the fair dice of its seeds after `rolled` rolls."""
        if self._dice is not None:
            return self._dice
        assert room.client_seeds is not None
        return fairness.Dice(room.server_seed, [room.client_seeds[name] for name in order], rolled)

    def _fairness(self, room: Room, order: list[str], reveal: bool) -> dict[str, Any]:
        """The game's `fairness` object; the server seed only when `reveal` (the game is over)."""
        assert room.client_seeds is not None
        commit = fairness.commit_of(room.server_seed)
        return fairness.fairness_json(commit, order, room.client_seeds, room.server_seed if reveal else None)

    def _next_turn(self, room: Room) -> None:
        """Set the deadline of the current turn and announce it."""
        assert room.game is not None and room.game.current is not None
        self._stop_turn(room)
        room.deadline = self._clock.seconds() + self._settings.turn_seconds
        room.turn_timer = self._clock.callLater(self._settings.turn_seconds, self._turn_expired, room)
        self._changed(room)
        self._broadcast(room, self._turn_event(room))
        self._bot_turn(room)

    def _turn_event(self, room: Room) -> dict[str, Any]:
        assert room.game is not None and room.deadline is not None
        return {"event": "game.turn", "room": room.id, "player": room.game.current, "deadline": iso(room.deadline)}

    def _stop_turn(self, room: Room) -> None:
        if room.turn_timer is not None and room.turn_timer.active():
            room.turn_timer.cancel()
        room.turn_timer = None
        if room.bot_timer is not None and room.bot_timer.active():
            room.bot_timer.cancel()
        room.bot_timer = None
        room.deadline = None

    def _turn_expired(self, room: Room) -> None:
        room.turn_timer = None
        if room.status == PLAYING and room.id in self.rooms:
            self._roll(room, auto=True)

    def _roll(self, room: Room, auto: bool) -> None:
        game = room.game
        assert game is not None
        # `n` numbers the rolls of the game from 0: the die of roll n is recomputed from it (docs/fairness.md).
        n = len(game.rolls)
        result = game.roll(game.current, {"n": n, "at": iso(self._clock.seconds()), "auto": auto})  # type: ignore[arg-type]
        event = dict(result.to_json(), n=n)
        self._broadcast(room, {"event": "game.rolled", "room": room.id, **event, "auto": auto})
        if game.finished:
            self._finish(room)
        else:
            self._next_turn(room)

    def _forfeit(self, room: Room, username: str) -> None:
        game = room.game
        assert game is not None
        was_current = game.current == username
        game.forfeit(username, {"at": iso(self._clock.seconds())})
        if game.finished:
            self._finish(room)
        elif was_current:
            self._next_turn(room)

    def _finish(self, room: Room) -> None:
        game = room.game
        assert game is not None and room.game_id is not None and room.started is not None
        self._stop_turn(room)
        room.status = FINISHED
        for seat in room.players:
            seat.ready = seat.bot
        now = self._clock.seconds()
        standings = game.standings()
        record = {
            "id": room.game_id,
            "room": room.id,
            "players": list(game.order),
            "board": game.board.to_json(),
            "entries": room.entries,
            # Who may see the room's code: gamesvc.results.visible_record hides it from others when private.
            "private": room.private,
            "winner": game.winner,
            "standings": standings,
            "started": iso(room.started),
            "ended": iso(now),
            "fairness": self._fairness(room, list(game.order), reveal=True),
            # Games with bots are stored and replayable but leave the leaderboard alone (gamesvc.results).
            "bots": [s.username for s in room.players if s.bot and not s.stand_in and s.username in game.order],
            "stand_ins": [s.username for s in room.players if s.stand_in],
        }
        # Stand-ins only finish a game: their players have left the room.
        room.players = [s for s in room.players if not s.stand_in]
        self.games_finished += 1
        log.info("game {game} in room {room} won by {winner}", game=room.game_id, room=room.id, winner=game.winner)
        self._results.submit(record)
        self._broadcast(
            room,
            {
                "event": "game.over", "room": room.id, "winner": game.winner, "standings": standings,
                "game": room.game_id, "fairness": record["fairness"],
            },
        )
        self._changed(room)

    # Bots and quick play (gamesvc.bots)

    def add_bot(self, mind: IMind) -> dict[str, Any]:
        """The host seats a bot in a free seat of the room; returns the bot's name."""
        room = self._hosted(mind)
        if len(room.players) >= room.seats or room.bots() >= room.seats - 1:
            raise GameError("room_full", f"room {room.id} has no free seat")
        retry = self._bot_adds.retry_after(mind.account.key)
        if retry is not None:
            raise RateLimited("you have added as many bots as allowed for now", retry)
        seat = self._seat_bot(room, mind.account.key)
        log.info("{user} added {bot} to room {room}", user=mind.account.username, bot=seat.username, room=room.id)
        if not self._start_if_ready(room):
            self._changed(room)
        return {"bot": seat.username}

    def remove_bot(self, mind: IMind, name: str) -> None:
        """The host takes a bot out of the room."""
        room = self._hosted(mind)
        seat = next((s for s in room.players if s.bot and s.username == name), None)
        if seat is None:
            raise GameError("not_found", f"there is no bot {name[:40]!r} in room {room.id}")
        room.players.remove(seat)
        self._changed(room)

    def configure(self, mind: IMind, bot_takeover: bool) -> None:
        """The host chooses whether a bot takes over the seat of a player who leaves a running game."""
        room, seat = self._player(mind)
        if room.host() is not seat:
            raise GameError("not_host", "only the room's host may change its settings")
        room.bot_takeover = bot_takeover
        self._changed(room)

    def quick_play(self, mind: IMind) -> dict[str, Any]:
        """Seat the user, ready, in the fullest public waiting room with a place for them, or in a new room whose
        free seats bots fill after --quick-play-wait seconds (`bots_at` in its state)."""
        account = mind.account
        if account.key in self._seats:
            raise GameError("already_in_room", f"you already have a seat in room {self._seats[account.key].id}")
        found = fullest_room(list(self.rooms.values()), WAITING)
        if found is not None:
            room = self.rooms[found.id]
            self.join(mind, room.id)
        else:
            room = self.rooms[self.create(mind, "Quick play", self._settings.quick_play_seats, False)["room"]["id"]]
            self._start_fill(room, self._settings.quick_play_wait)
        seat = room.seat_of(account.key)
        assert seat is not None
        seat.ready = True
        log.info("{user} quick play in room {room}", user=account.username, room=room.id)
        if not self._start_if_ready(room):
            self._changed(room)
        return {"room": room.state(), "chat": list(room.chat)}

    def _hosted(self, mind: IMind) -> Room:
        """The room `mind` hosts, when it is not playing: the place where bots come and go."""
        room, seat = self._player(mind)
        if room.host() is not seat:
            raise GameError("not_host", "only the room's host may add or remove bots")
        if room.status == PLAYING:
            raise GameError("game_in_progress", "bots join and leave between games")
        return room

    def _seat_bot(self, room: Room, by: str) -> Seat:
        """Seat a new bot, counted against account `by`'s allowance."""
        name = bot_name((s.username for s in room.players), self._bot_random)
        seat = Seat(bot_key(name), name, ready=True, bot=True)
        room.players.append(seat)
        self._bot_adds.hit(by)
        return seat

    def _make_way(self, room: Room) -> bool:
        """Give a person the seat of a bot in a full waiting room; False when there is none to give."""
        if room.status != WAITING:
            return False
        bot = next((s for s in reversed(room.players) if s.bot), None)
        if bot is None:
            return False
        room.players.remove(bot)
        return True

    def _take_over(self, room: Room, seat: Seat) -> None:
        """A bot plays on for a player who left a running game (the room's `bot_takeover` setting)."""
        assert room.game is not None
        self._seats.pop(seat.key, None)
        if seat.mind is not None:
            self._where.pop(seat.mind, None)
        seat.key, seat.mind, seat.ready, seat.bot, seat.stand_in = BOT_KEY_PREFIX + seat.key, None, True, True, True
        log.info("a bot plays on for {user} in room {room}", user=seat.username, room=room.id)
        self._changed(room)
        if room.game.current == seat.username:
            self._bot_turn(room)

    def _bot_turn(self, room: Room) -> None:
        """When the turn is a bot's, roll for it after a human-like delay."""
        if room.bot_timer is not None and room.bot_timer.active():
            room.bot_timer.cancel()
        room.bot_timer = None
        current = room.game.current if room.game is not None else None
        seat = next((s for s in room.players if s.username == current), None)
        if seat is not None and seat.bot and not self._stopped:
            delay = bot_delay(self._bot_random, self._settings.bot_delay)
            room.bot_timer = self._clock.callLater(delay, self._bot_roll, room, seat)

    def _bot_roll(self, room: Room, seat: Seat) -> None:
        room.bot_timer = None
        if room.id in self.rooms and room.status == PLAYING and room.game is not None:
            if room.game.current == seat.username and seat in room.players:
                self._roll(room, auto=False)

    def _start_fill(self, room: Room, delay: float) -> None:
        room.bots_at = self._clock.seconds() + delay
        room.fill_timer = self._clock.callLater(delay, self._fill, room)

    def _stop_fill(self, room: Room) -> None:
        if room.fill_timer is not None and room.fill_timer.active():
            room.fill_timer.cancel()
        room.fill_timer = None
        room.bots_at = None

    def _fill(self, room: Room) -> None:
        """Quick play's countdown is over: bots take the free seats (as far as the host's allowance goes)."""
        room.fill_timer = None
        room.bots_at = None
        host = room.host()
        if room.id not in self.rooms or room.status != WAITING or host is None:
            return
        while len(room.players) < room.seats and self._bot_adds.retry_after(host.key) is None:
            self._seat_bot(room, host.key)
        if not self._start_if_ready(room):
            self._changed(room)

    # Checkpoints: what a restart needs to carry a room on (gamesvc.snapshots)

    def snapshot(self, room: Room, chat: bool = True) -> dict[str, Any]:
        """A room as plain data (`gamesvc.snapshots.snapshot`)."""
        from gamesvc.snapshots import snapshot  # snapshots builds Rooms: it imports this module

        return snapshot(room, self._clock.seconds(), self._results.pending, chat)

    def restore(self, data: dict[str, Any]) -> Room:
        """Bring back a checkpointed room: every player is disconnected with a fresh grace period, and a running
        game's turn gets back the time it had left."""
        from gamesvc.snapshots import room_from_snapshot

        if str(data.get("id")) in self.rooms:
            raise ValueError(f"room {data.get('id')} is already open")
        room = room_from_snapshot(data, self._settings.chat_history, self._random_bytes, self._game_dice)
        for seat in room.players:
            if not seat.bot and seat.key in self._seats:
                raise ValueError(f"{seat.username} already holds a seat in room {self._seats[seat.key].id}")
        self.rooms[room.id] = room
        for seat in room.players:
            if not seat.bot:
                seat.grace = self._clock.callLater(self._settings.grace_seconds, self._grace_over, room, seat)
                self._seats[seat.key] = room
        if data.get("bots_left") is not None and room.status == WAITING:
            self._start_fill(room, data["bots_left"])
        if room.status == PLAYING and room.game is not None and not room.game.finished:
            left = data["turn_left"] if data["turn_left"] is not None else self._settings.turn_seconds
            room.deadline = self._clock.seconds() + left
            room.turn_timer = self._clock.callLater(left, self._turn_expired, room)
            self._bot_turn(room)
        if data.get("record"):
            self._results.submit({"entries": room.entries, **data["record"]})
        room.last_summary = room.summary()
        log.info("room {room} restored ({status})", room=room.id, status=room.status)
        # Every player was ready but the start was not checkpointed yet (a crash came between the two): start it
        # now, as the last ready did; the seeds are the checkpoint's, so the dice are the ones that game would have had.
        self._start_if_ready(room)
        return room

    def evict(self, room_id: str) -> None:
        """Forget a room this node no longer owns (its lease went to another node): its timers stop, nothing about it
        is written, and its members here get `room.detached` with reason "moved" (joining again finds the room)."""
        room = self.rooms.pop(room_id, None)
        if room is None:
            return
        self._stop_turn(room)
        self._stop_fill(room)
        room.cancel_coalescing()
        for seat in room.players:
            seat.cancel_grace()
            if self._seats.get(seat.key) is room:
                del self._seats[seat.key]
        minds = room.minds()
        for mind in minds:
            if self._where.get(mind) is room:
                del self._where[mind]
        room.spectators.clear()
        log.warn("room {room} moved to another node: its lease was lost", room=room_id)
        for mind in minds:
            self._send(mind, {"event": "room.detached", "room": room_id, "reason": "moved"})

    def stop(self) -> None:
        """Freeze every room for shutdown: no timer fires and no seat is given up from here on."""
        self._stopped = True
        for room in self.rooms.values():
            if room.turn_timer is not None and room.turn_timer.active():
                room.turn_timer.cancel()
            room.turn_timer = None
            room.cancel_coalescing()
            if room.bot_timer is not None and room.bot_timer.active():
                room.bot_timer.cancel()
            room.bot_timer = None
            if room.fill_timer is not None and room.fill_timer.active():
                # The checkpoint keeps `bots_at`: the next start counts down what is left.
                room.fill_timer.cancel()
            room.fill_timer = None
            for seat in room.players:
                seat.cancel_grace()

    # Delivery

    def _player(self, mind: IMind) -> tuple[Room, Seat]:
        room = self._where.get(mind)
        seat = room.seat_of(mind.account.key) if room is not None else None
        if room is None or seat is None or seat.mind is not mind:
            raise GameError("not_in_room", "you have no seat in a room")
        return room, seat

    def _changed(self, room: Room) -> None:
        """Push the new state to the room, and the new summary to the lobby when it changed."""
        if room.id not in self.rooms:
            return
        if room.state_timer is not None:
            # This state carries the spectator count that was waiting to be sent.
            if room.state_timer.active():
                room.state_timer.cancel()
            room.state_timer = None
        room.changed_at = self._clock.seconds()
        room.version += 1
        self._listener.room_changed(room)
        self._broadcast(room, {"event": "room.state", "room": room.state()})
        self._lobby_changed(room)

    def _spectators_changed(self, room: Room) -> None:
        """A spectator came or went: push the state now, or once at the end of the coalescing interval."""
        if room.id not in self.rooms or room.state_timer is not None:
            return
        wait = room.changed_at + self._settings.coalesce_seconds - self._clock.seconds()
        if wait <= 0:
            self._changed(room)
        else:
            room.state_timer = self._clock.callLater(wait, self._coalesced_change, room)

    def _coalesced_change(self, room: Room) -> None:
        room.state_timer = None
        self._changed(room)

    def _lobby_changed(self, room: Room) -> None:
        """Push a public room's new summary to the lobby: at most one per room per coalescing interval."""
        if room.private or room.lobby_timer is not None or room.summary() == room.last_summary:
            return
        wait = room.lobby_sent + self._settings.coalesce_seconds - self._clock.seconds()
        if wait <= 0:
            self._send_summary(room)
        else:
            room.lobby_timer = self._clock.callLater(wait, self._coalesced_summary, room)

    def _coalesced_summary(self, room: Room) -> None:
        room.lobby_timer = None
        if room.id in self.rooms and room.summary() != room.last_summary:
            self._send_summary(room)

    def _send_summary(self, room: Room) -> None:
        summary = room.summary()
        room.last_summary = summary
        room.lobby_sent = self._clock.seconds()
        self._to_watchers({"event": "lobby.room", "room": summary})

    def _broadcast(self, room: Room, message: dict[str, Any]) -> None:
        outgoing = Outgoing(message)
        outgoing.room = room.id
        for mind in room.minds():
            self._deliver(mind, outgoing)

    def _to_watchers(self, message: dict[str, Any]) -> None:
        outgoing = Outgoing(message)
        for mind in list(self._watchers):
            self._deliver(mind, outgoing)

    def to_watchers(self, outgoing: Outgoing, skip: object = None) -> None:
        """Pass a lobby event of another node's room on to this node's lobby watchers (but `skip`)."""
        for mind in list(self._watchers):
            if mind is not skip:
                self._deliver(mind, outgoing)

    def _send(self, mind: IMind, message: dict[str, Any]) -> None:
        self._deliver(mind, Outgoing(message))

    def _deliver(self, mind: IMind, outgoing: Outgoing) -> None:
        """Deliver one message. A mind never calls back into the rooms from `deliver` (a slow client is dropped by
        its protocol, whose close tells us on a later turn); one that raises anyway is dropped on a later turn too,
        so that a broadcast never re-enters the room code and nobody sees a newer state before an older one."""
        try:
            mind.deliver(outgoing)
        except Exception:
            log.failure("delivery failed; dropping the connection from its room")
            self._clock.callLater(0, self.disconnected, mind)

"""Dice Race rules as pure code: no Twisted, no I/O, no clock; the die is injected.

Two to four players race a token from square 0 to square ``Board.size`` (100).
On a turn the current player rolls one six-sided die and moves:

- Passing 100 bounces back by the excess (97 + 6 = 103 -> 97).
- The bounce is applied first; then, at the final square, a ladder's foot
  climbs to its top and a snake's head slides to its tail (once, no chains).
- A 6 earns another roll. The third 6 in a row within one turn does not move
  the token: it sends the player back to the square where that turn began and
  ends the turn (undoing any ladders climbed during those sixes).
- Landing exactly on 100 wins and ends the game; a winning 6 gives no extra roll.
- A player may forfeit (their reconnection grace ran out): they leave the turn
  order, the turn passes on if it was theirs, and when one player is left that
  player wins.

``DEFAULT_BOARD``, the board ``game.started`` carries unless told otherwise:

    ladder foot -> top      snake head -> tail
    ------------------      ------------------
         1 -> 38                 16 ->  6
         4 -> 14                 47 -> 26
         9 -> 31                 49 -> 11
        21 -> 42                 56 -> 53
        28 -> 84                 62 -> 19
        36 -> 44                 64 -> 60
        51 -> 67                 87 -> 24
        71 -> 91                 93 -> 73
        80 -> 100                95 -> 75
                                 98 -> 78

Record format (``DiceRace.record_entries()``, input of ``replay``): a list,
in order, of roll entries ``{"player", "dice", "from", "to", "via", "again"}``
(plus ``"reset": true`` on a third-six reset) and forfeit entries
``{"forfeit": username}``.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs

__all__ = [
    "DEFAULT_BOARD",
    "Board",
    "DiceRace",
    "Forfeit",
    "GameFinished",
    "GameRuleError",
    "NotYourTurn",
    "Roll",
    "secure_die",
    "replay",
]

Die = Callable[[], int]

MIN_PLAYERS = 2
MAX_PLAYERS = 4
DIE_FACES = 6
# The third six in a row within one turn is the one that resets.
SIXES_LIMIT = 3


class GameRuleError(Exception):
    """A move the rules do not allow at this point of the game."""


class NotYourTurn(GameRuleError):
    """The player asked to roll while it is someone else's turn."""


class GameFinished(GameRuleError):
    """The game is over: nothing more can be played."""


def secure_die() -> int:
    """Roll one six-sided die with the operating system's cryptographic RNG."""
    return secrets.randbelow(DIE_FACES) + 1


def _frozen_squares(value: Mapping[int, int]) -> Mapping[int, int]:
    """Copy a square mapping into a read-only one so a Board cannot change."""
    return MappingProxyType(dict(value))


def _is_int(value: object) -> bool:
    """Tell whether a decoded JSON value is a true integer (bools are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


@attrs.frozen(hash=False)
class Board:
    """The track: its size and its ladders (foot -> top) and snakes (head -> tail)."""

    ladders: Mapping[int, int] = attrs.field(factory=dict, converter=_frozen_squares)
    snakes: Mapping[int, int] = attrs.field(factory=dict, converter=_frozen_squares)
    size: int = 100

    def __attrs_post_init__(self) -> None:
        """Reject boards whose rules would be ambiguous or could never finish."""
        if not _is_int(self.size) or self.size < 2:
            raise ValueError(f"board size must be an integer of at least 2, not {self.size!r}")
        for kind, table in (("ladder", self.ladders), ("snake", self.snakes)):
            for start, end in table.items():
                if not (_is_int(start) and _is_int(end)):
                    raise ValueError(f"{kind} {start!r}->{end!r}: squares must be integers")
                if not 1 <= start <= self.size - 1:
                    raise ValueError(f"{kind} {start}->{end}: start must be within 1..{self.size - 1}")
        for foot, top in self.ladders.items():
            if not foot < top <= self.size:
                raise ValueError(f"ladder {foot}->{top} must go up, to at most {self.size}")
        for head, tail in self.snakes.items():
            if not 1 <= tail < head:
                raise ValueError(f"snake {head}->{tail} must go down, to at least 1")
        both = self.ladders.keys() & self.snakes.keys()
        if both:
            raise ValueError(f"squares {sorted(both)} are both a ladder foot and a snake head")
        # Ladders and snakes apply once; forbidding chains keeps that rule unambiguous.
        starts = self.ladders.keys() | self.snakes.keys()
        chained = starts & (set(self.ladders.values()) | set(self.snakes.values()))
        if chained:
            raise ValueError(f"squares {sorted(chained)} end one ladder or snake and start another")
        # A board where some reachable square can never reach the goal would make a
        # game that never ends, so such a board is refused up front.
        stuck = self._squares_that_cannot_finish()
        if stuck:
            raise ValueError(f"square {self.size} cannot be reached from square {min(stuck)}")

    def move(self, square: int, dice: int) -> tuple[int, str | None]:
        """Return the square a token on ``square`` ends on after ``dice``, and how it got there."""
        target = square + dice
        via: str | None = None
        if target > self.size:
            target = 2 * self.size - target
            via = "bounce"
        if target in self.ladders:
            return self.ladders[target], "ladder"
        if target in self.snakes:
            return self.snakes[target], "snake"
        return target, via

    def _squares_that_cannot_finish(self) -> set[int]:
        """Find the squares reachable from 0 from which the goal is not reachable."""
        edges = {
            sq: {self.move(sq, d)[0] for d in range(1, DIE_FACES + 1)}
            for sq in range(self.size)
        }
        reachable = _closure({0}, edges)
        reverse: dict[int, set[int]] = {}
        for sq, targets in edges.items():
            for t in targets:
                reverse.setdefault(t, set()).add(sq)
        can_finish = _closure({self.size}, reverse)
        return reachable - can_finish

    def to_json(self) -> dict[str, Any]:
        """Return the board as the ``board`` field of ``game.started``."""
        return {
            "size": self.size,
            "ladders": [[foot, top] for foot, top in sorted(self.ladders.items())],
            "snakes": [[head, tail] for head, tail in sorted(self.snakes.items())],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Board:
        """Build a board from ``to_json()`` output; raise ValueError on any malformed part."""
        if not isinstance(data, Mapping):
            raise ValueError("a board must be a JSON object")

        def pairs(key: str) -> dict[int, int]:
            """Read one list of ``[start, end]`` pairs, refusing repeated starts."""
            raw = data.get(key, [])
            if not isinstance(raw, list):
                raise ValueError(f"board {key} must be a list of [start, end] pairs")
            table: dict[int, int] = {}
            for pair in raw:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise ValueError(f"board {key} must be a list of [start, end] pairs")
                start, end = pair
                if start in table:
                    raise ValueError(f"board {key} lists square {start!r} twice")
                table[start] = end
            return table

        return cls(ladders=pairs("ladders"), snakes=pairs("snakes"), size=data.get("size", 100))


def _closure(start: set[int], edges: Mapping[int, set[int]]) -> set[int]:
    """Return every node reachable from ``start`` along ``edges``."""
    seen = set(start)
    todo = list(start)
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


DEFAULT_BOARD = Board(
    ladders={1: 38, 4: 14, 9: 31, 21: 42, 28: 84, 36: 44, 51: 67, 71: 91, 80: 100},
    snakes={16: 6, 47: 26, 49: 11, 56: 53, 62: 19, 64: 60, 87: 24, 93: 73, 95: 75, 98: 78},
)


@attrs.frozen
class Roll:
    """One roll of the die and its outcome; ``to_json()`` is the ``game.rolled`` payload."""

    player: str
    dice: int
    from_: int
    to: int
    # "ladder", "snake", "bounce" or None; a ladder or snake wins over a bounce.
    via: str | None
    again: bool
    won: bool
    # True for the third six in a row, which sends the player back to the turn's start.
    reset: bool = False
    # What the caller wrote down with the roll (e.g. when, and whether the server rolled): opaque to the rules,
    # kept in the record entry so that the game's log is the only log of its moves.
    notes: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Return the ``game.rolled`` fields (without ``room``); ``reset`` only when true."""
        data: dict[str, Any] = {
            "player": self.player,
            "dice": self.dice,
            "from": self.from_,
            "to": self.to,
            "via": self.via,
            "again": self.again,
        }
        if self.reset:
            data["reset"] = True
        return data


@attrs.frozen
class Forfeit:
    """A player leaving the game for good (their reconnection grace ran out)."""

    player: str
    notes: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Return the record entry ``{"forfeit": username}``."""
        return {"forfeit": self.player}


# The keys of a record entry that the rules read; any other key is a note (`Roll.notes`).
RULE_KEYS = frozenset({"player", "dice", "from", "to", "via", "again", "won", "reset", "forfeit"})


Event = Roll | Forfeit


class DiceRace:
    """One game of Dice Race: seats, positions, whose turn it is, and every event so far."""

    def __init__(
        self,
        players: Sequence[str],
        rng: Die | None = None,
        board: Board = DEFAULT_BOARD,
    ) -> None:
        """Start a game for 2-4 distinct players; the first one of ``players`` rolls first."""
        order = tuple(players)
        if not MIN_PLAYERS <= len(order) <= MAX_PLAYERS:
            raise ValueError(f"Dice Race takes {MIN_PLAYERS} to {MAX_PLAYERS} players, not {len(order)}")
        if not all(isinstance(name, str) and name for name in order):
            raise ValueError("player names must be non-empty strings")
        if len(set(order)) != len(order):
            raise ValueError("player names must be distinct")
        self._order = order
        self._rng: Die = rng if rng is not None else secure_die
        self._board = board
        self._positions = {name: 0 for name in order}
        self._current: int | None = 0
        self._sixes = 0
        self._turn_start = 0
        self._forfeited: list[str] = []
        self._winner: str | None = None
        self._log: list[Event] = []

    @property
    def board(self) -> Board:
        """The board this game is played on."""
        return self._board

    @property
    def order(self) -> tuple[str, ...]:
        """Every player who started, in seat order, which is also turn order."""
        return self._order

    @property
    def positions(self) -> dict[str, int]:
        """A copy of every player's square, forfeited players included."""
        return dict(self._positions)

    @property
    def current(self) -> str | None:
        """The player whose turn it is, or None once the game is over."""
        return None if self._current is None else self._order[self._current]

    @property
    def winner(self) -> str | None:
        """The winner, or None while the game is running."""
        return self._winner

    @property
    def finished(self) -> bool:
        """Whether the game is over."""
        return self._winner is not None

    @property
    def active(self) -> tuple[str, ...]:
        """The players who have not forfeited, in seat order."""
        return tuple(name for name in self._order if name not in self._forfeited)

    @property
    def forfeited(self) -> tuple[str, ...]:
        """The players who forfeited, in the order they did."""
        return tuple(self._forfeited)

    @property
    def rolls(self) -> list[Roll]:
        """Every roll so far, in order."""
        return [event for event in self._log if isinstance(event, Roll)]

    def roll(self, player: str, notes: Mapping[str, Any] | None = None) -> Roll:
        """Roll the die for ``player``, move them, and pass the turn on when it ends; ``notes`` go to its entry."""
        if self._winner is not None:
            raise GameFinished("the game is over")
        if player != self.current:
            raise NotYourTurn(f"it is {self.current}'s turn, not {player}'s")
        dice = self._rng()
        if not (_is_int(dice) and 1 <= dice <= DIE_FACES):
            raise ValueError(f"the die must give an integer 1..{DIE_FACES}, not {dice!r}")
        start = self._positions[player]
        sixes = self._sixes + 1 if dice == DIE_FACES else 0
        reset = sixes == SIXES_LIMIT
        if reset:
            to, via = self._turn_start, None
        else:
            to, via = self._board.move(start, dice)
        won = to == self._board.size
        again = dice == DIE_FACES and not won and not reset
        result = Roll(player, dice, start, to, via, again, won, reset, notes=dict(notes or {}))

        self._positions[player] = to
        self._log.append(result)
        if won:
            self._finish(player)
        elif again:
            self._sixes = sixes
        else:
            self._pass_turn()
        return result

    def forfeit(self, player: str, notes: Mapping[str, Any] | None = None) -> None:
        """Remove ``player`` from the turn order; the last one left wins; ``notes`` go to its entry."""
        if player not in self._positions:
            raise ValueError(f"{player!r} is not playing in this game")
        if player in self._forfeited:
            raise ValueError(f"{player!r} has already forfeited")
        if self._winner is not None:
            raise GameFinished("the game is over")
        was_current = player == self.current
        self._forfeited.append(player)
        self._log.append(Forfeit(player, notes=dict(notes or {})))
        remaining = self.active
        if len(remaining) == 1:
            self._finish(remaining[0])
        elif was_current:
            self._pass_turn()

    def standings(self) -> list[dict[str, Any]]:
        """Rank everyone: winner, then the others by square (ties share a place), forfeits last."""

        def by_square(names: Sequence[str]) -> list[str]:
            """Sort players by square, highest first, keeping seat order among ties."""
            return sorted(names, key=lambda n: -self._positions[n])

        others = [n for n in self.active if n != self._winner]
        # Each group is ranked after the previous one, so groups never share a place.
        groups = ([[self._winner]] if self._winner is not None else []) + [
            by_square(others),
            by_square(self._forfeited),
        ]
        table: list[dict[str, Any]] = []
        for group in groups:
            first_of_group = len(table)
            for name in group:
                square = self._positions[name]
                tied = len(table) > first_of_group and table[-1]["position"] == square
                # Competition ranking (1, 2, 2, 4): a tie shares the place, the next one skips.
                place = table[-1]["place"] if tied else len(table) + 1
                table.append(
                    {
                        "username": name,
                        "position": square,
                        "place": place,
                        "forfeited": name in self._forfeited,
                    }
                )
        return table

    def record_entries(self) -> list[dict[str, Any]]:
        """Return every roll and forfeit so far, in order, as the stored record's entries (with their notes)."""
        return [{**event.to_json(), **event.notes} if event.notes else event.to_json() for event in self._log]

    @property
    def moves(self) -> int:
        """How many entries (rolls and forfeits) the game's log holds."""
        return len(self._log)

    def to_dict(self, record: bool = True, default_board: bool = True) -> dict[str, Any]:
        """Return the whole state as plain JSON-able data for ``from_dict``.

        ``record=False`` leaves out the moves, for a caller that keeps them itself and passes them back
        to ``from_dict`` as ``record``. ``default_board=False`` leaves out the board when it is
        ``DEFAULT_BOARD``, which ``from_dict`` assumes when none is given.
        """
        state: dict[str, Any] = {"players": list(self._order)}
        if default_board or self._board is not DEFAULT_BOARD:
            state["board"] = self._board.to_json()
        state.update(
            positions=dict(self._positions),
            current=self._current,
            sixes=self._sixes,
            turn_start=self._turn_start,
            forfeited=list(self._forfeited),
            winner=self._winner,
        )
        if record:
            state["record"] = self.record_entries()
        return state

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        rng: Die | None = None,
        board: Board | None = None,
    ) -> DiceRace:
        """Rebuild a game from ``to_dict()`` output; raise ValueError if the snapshot is inconsistent.

        The record is replayed and the resulting state must equal the snapshot's
        fields, so a corrupted snapshot is refused instead of continuing wrongly.
        ``board`` defaults to the snapshot's own board, then to ``DEFAULT_BOARD``.
        """
        try:
            if board is None:
                board = Board.from_json(data["board"]) if "board" in data else DEFAULT_BOARD
            game = replay(data["players"], data["record"], board=board)
            expected = {
                "positions": data["positions"],
                "current": data["current"],
                "sixes": data["sixes"],
                "turn_start": data["turn_start"],
                "forfeited": list(data["forfeited"]),
                "winner": data["winner"],
            }
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed game snapshot: {exc!r}") from exc
        actual = game.to_dict()
        for key, value in expected.items():
            if actual[key] != value:
                raise ValueError(f"snapshot {key} {value!r} does not match its record ({actual[key]!r})")
        game._rng = rng if rng is not None else secure_die
        return game

    def set_die(self, rng: Die) -> None:
        """Roll from now on with ``rng`` (a replayed game goes on with the dice of its room)."""
        self._rng = rng

    def _pass_turn(self) -> None:
        """Hand the turn to the next player in seat order who has not forfeited."""
        assert self._current is not None
        count = len(self._order)
        for step in range(1, count + 1):
            index = (self._current + step) % count
            if self._order[index] not in self._forfeited:
                self._current = index
                break
        self._sixes = 0
        self._turn_start = self._positions[self._order[self._current]]

    def _finish(self, winner: str) -> None:
        """End the game with ``winner``."""
        self._winner = winner
        self._current = None
        self._sixes = 0


def replay(
    players: Sequence[str],
    entries: Sequence[Mapping[str, Any]],
    board: Board = DEFAULT_BOARD,
) -> DiceRace:
    """Rebuild a game from its record entries; raise ValueError where the record disagrees with the rules.

    Roll entries must carry ``player``, ``dice``, ``from`` and ``to``; ``via``,
    ``again`` and ``reset`` are checked too when present (a missing ``reset``
    means false, as ``Roll.to_json`` writes it). Keys the rules do not read are kept as the entry's notes.
    """
    recorded_dice: deque[int] = deque()
    game = DiceRace(players, rng=recorded_dice.popleft, board=board)
    for number, entry in enumerate(entries):
        try:
            if not isinstance(entry, Mapping):
                raise ValueError("entry is not an object")
            notes = {k: v for k, v in entry.items() if k not in RULE_KEYS}
            if "forfeit" in entry:
                game.forfeit(entry["forfeit"], notes)
                continue
            recorded_dice.append(entry["dice"])
            result = game.roll(entry["player"], notes).to_json()
            result.setdefault("reset", False)
            claimed = {
                "from": entry["from"],
                "to": entry["to"],
                "via": entry.get("via", result["via"]),
                "again": entry.get("again", result["again"]),
                "reset": entry.get("reset", False),
            }
            for key, value in claimed.items():
                if value != result[key]:
                    raise ValueError(f"{key} is {value!r} but the rules give {result[key]!r}")
        except (GameRuleError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"record entry {number} {entry!r}: {exc}") from exc
    return game

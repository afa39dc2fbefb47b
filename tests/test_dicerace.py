"""Tests for the Dice Race rules in gamesvc.game.dicerace: exact cases and properties."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gamesvc.game import (
    DEFAULT_BOARD,
    Board,
    DiceRace,
    GameFinished,
    GameRuleError,
    NotYourTurn,
    Roll,
    replay,
    secure_die,
)

NAMES = ("alice", "bob", "carol", "dave")


class ScriptedDie:
    """A die that gives a fixed list of values in order and fails loudly when it runs out."""

    def __init__(self, *values: int) -> None:
        """Remember the values to give."""
        self._values = list(values)
        self.used = 0

    def __call__(self) -> int:
        """Give the next scripted value."""
        if self.used >= len(self._values):
            raise AssertionError("the scripted die ran out of values")
        value = self._values[self.used]
        self.used += 1
        return value

    def extend(self, *values: int) -> None:
        """Append more values to give later."""
        self._values.extend(values)


def new_game(*dice: int, players: int = 2, board: Board = DEFAULT_BOARD) -> tuple[DiceRace, ScriptedDie]:
    """Start a game for the first ``players`` names with a die scripted to ``dice``."""
    die = ScriptedDie(*dice)
    return DiceRace(NAMES[:players], rng=die, board=board), die


def roll_all(game: DiceRace, count: int) -> list[Roll]:
    """Let whoever's turn it is roll, ``count`` times."""
    return [game.roll(game.current) for _ in range(count)]  # type: ignore[arg-type]


def reference_move(board: Board, square: int, dice: int) -> tuple[int, str | None]:
    """The rule table, written independently of the module: bounce, then one ladder or snake."""
    target = square + dice
    via = None
    if target > board.size:
        target = board.size - (target - board.size)
        via = "bounce"
    if target in board.ladders:
        return board.ladders[target], "ladder"
    if target in board.snakes:
        return board.snakes[target], "snake"
    return target, via


def next_active(game: DiceRace, after: str) -> str:
    """The next player after ``after`` in seat order who has not forfeited."""
    order = game.order
    index = order.index(after)
    for step in range(1, len(order) + 1):
        name = order[(index + step) % len(order)]
        if name in game.active:
            return name
    raise AssertionError("nobody is left")


class RuleChecker:
    """A reference model of turns that checks every roll a game makes against the rules."""

    def __init__(self, game: DiceRace) -> None:
        """Start tracking ``game`` from its current state."""
        self.game = game
        self.turn_start = game.positions[game.current] if game.current else 0
        self.sixes = 0

    def roll(self) -> Roll:
        """Roll for the current player and assert the outcome and the turn hand-over."""
        game = self.game
        player = game.current
        assert player is not None
        before = game.positions[player]
        result = game.roll(player)
        assert result.player == player
        assert result.from_ == before
        assert 1 <= result.dice <= 6
        self.sixes = self.sixes + 1 if result.dice == 6 else 0
        if self.sixes == 3:
            assert (result.to, result.via, result.reset) == (self.turn_start, None, True)
        else:
            assert (result.to, result.via) == reference_move(game.board, before, result.dice)
            assert not result.reset
        assert result.won == (result.to == 100)
        assert result.again == (result.dice == 6 and not result.won and not result.reset)
        assert game.positions[player] == result.to
        assert all(0 <= sq <= 100 for sq in game.positions.values())
        if result.won:
            assert game.finished and game.winner == player and game.current is None
        elif result.again:
            assert game.current == player
        else:
            assert game.current == next_active(game, player)
        if not result.again:
            self.start_turn()
        return result

    def forfeit(self, player: str) -> None:
        """Forfeit ``player`` and assert who holds the turn afterwards."""
        game = self.game
        was_current = game.current
        game.forfeit(player)
        assert player not in game.active
        if len(game.active) == 1:
            assert game.finished and game.winner == game.active[0] and game.current is None
        elif was_current == player:
            assert game.current == next_active(game, player)
            self.start_turn()
        else:
            assert game.current == was_current

    def start_turn(self) -> None:
        """Note where the new current player's turn begins."""
        self.sixes = 0
        if self.game.current is not None:
            self.turn_start = self.game.positions[self.game.current]


@st.composite
def boards(draw: st.DrawFn) -> Board:
    """Generate valid boards: distinct starts, no chains, the goal reachable."""
    starts = draw(st.lists(st.integers(1, 99), unique=True, max_size=16))
    ladders: dict[int, int] = {}
    snakes: dict[int, int] = {}
    taken = set(starts)
    for start in starts:
        ups = [sq for sq in range(start + 1, 101) if sq not in taken]
        downs = [sq for sq in range(1, start) if sq not in taken]
        if ups and (not downs or draw(st.booleans())):
            ladders[start] = draw(st.sampled_from(ups))
        elif downs:
            snakes[start] = draw(st.sampled_from(downs))
    try:
        return Board(ladders=ladders, snakes=snakes)
    except ValueError:
        assume(False)
        raise


any_board = st.one_of(st.just(DEFAULT_BOARD), boards())
player_count = st.integers(2, 4)


# ---------------------------------------------------------------- properties


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(board=any_board, players=player_count, dice=st.lists(st.integers(1, 6), max_size=300))
def test_every_roll_follows_the_rule_table(board: Board, players: int, dice: list[int]) -> None:
    """Any dice on any valid board: each roll's target is the rule table applied to from + dice
    (or the turn start on a third six), squares stay within 0..100, and turns pass in seat order."""
    game, die = new_game(*dice, players=players, board=board)
    checker = RuleChecker(game)
    for _ in dice:
        if game.finished:
            break
        checker.roll()
    assert len(game.rolls) == die.used


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), players=player_count)
def test_a_game_with_random_dice_ends(seed: int, players: int) -> None:
    """With fair random dice a game on the default board ends (someone lands on 100) within 100000 rolls."""
    rnd = random.Random(seed)
    game = DiceRace(NAMES[:players], rng=lambda: rnd.randint(1, 6))
    for _ in range(100_000):
        if game.finished:
            break
        game.roll(game.current)  # type: ignore[arg-type]
    assert game.finished
    assert game.positions[game.winner] == 100  # type: ignore[index]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    board=any_board,
    players=player_count,
    actions=st.lists(st.tuples(st.integers(1, 6), st.integers(0, 19)), max_size=200),
)
def test_random_rolls_and_forfeits_keep_the_game_consistent(
    board: Board, players: int, actions: list[tuple[int, int]]
) -> None:
    """Interleaving rolls and forfeits: the rules hold, standings list everyone once (winner first,
    forfeits last, places never decreasing), and both replay and to_dict/from_dict rebuild the state."""
    game, die = new_game(players=players, board=board)
    checker = RuleChecker(game)
    for dice, choice in actions:
        if game.finished:
            break
        if choice < len(game.active):
            checker.forfeit(game.active[choice])
        else:
            die.extend(dice)
            checker.roll()
        check_standings(game)
        assert json.loads(json.dumps(game.to_dict())) == game.to_dict()
    rebuilt = replay(game.order, game.record_entries(), board=board)
    assert rebuilt.to_dict() == game.to_dict()
    restored = DiceRace.from_dict(json.loads(json.dumps(game.to_dict())))
    assert restored.to_dict() == game.to_dict()


def check_standings(game: DiceRace) -> None:
    """Assert the standings' invariants for ``game``."""
    table = game.standings()
    assert sorted(row["username"] for row in table) == sorted(game.order)
    assert [row["place"] for row in table] == sorted(row["place"] for row in table)
    assert table[0]["place"] == 1
    if game.winner is not None:
        assert table[0]["username"] == game.winner
        assert all(row["place"] > 1 for row in table[1:])
    flags = [row["forfeited"] for row in table]
    assert flags == sorted(flags), "forfeited players come last"
    for row in table:
        assert row["position"] == game.positions[row["username"]]
        assert row["forfeited"] == (row["username"] not in game.active)


@given(board=boards())
def test_board_json_round_trips(board: Board) -> None:
    """Any valid board survives to_json -> JSON text -> from_json unchanged."""
    data = json.loads(json.dumps(board.to_json()))
    assert Board.from_json(data) == board
    assert data["ladders"] == sorted(data["ladders"])
    assert data["snakes"] == sorted(data["snakes"])


# ---------------------------------------------------------------- exact cases: moves


def test_ladder_climbs() -> None:
    """Landing on a ladder's foot moves the token to its top, via "ladder"."""
    game, _ = new_game(1)
    result = game.roll("alice")
    assert (result.from_, result.to, result.via, result.again) == (0, 38, "ladder", False)
    assert game.positions == {"alice": 38, "bob": 0}


def test_snake_slides_and_a_six_still_rolls_again() -> None:
    """Landing on a snake's head moves the token to its tail; a 6 that hits a snake still earns a roll."""
    game, _ = new_game(5, 5, 5, 5, 6)
    roll_all(game, 4)
    result = game.roll("alice")
    assert (result.from_, result.to, result.via, result.again) == (10, 6, "snake", True)
    assert game.current == "alice"


def test_plain_move_has_no_via() -> None:
    """A move onto an ordinary square reports via None."""
    game, _ = new_game(3)
    assert game.roll("alice").to_json() == {
        "player": "alice",
        "dice": 3,
        "from": 0,
        "to": 3,
        "via": None,
        "again": False,
    }


def test_bounce_off_100() -> None:
    """97 + 6 = 103 bounces back by 3 to 97, via "bounce"; the 6 still earns a roll, and 3 then wins."""
    game, _ = new_game(2, 1, 6, 3, board=Board(ladders={2: 97}))
    roll_all(game, 2)
    result = game.roll("alice")
    assert (result.from_, result.to, result.via, result.again) == (97, 97, "bounce", True)
    assert game.roll("alice").won


def test_bounce_onto_a_snake_reports_the_snake() -> None:
    """97 + 5 bounces to 98, a snake's head, and slides to 78: via is "snake", not "bounce"."""
    game, _ = new_game(2, 1, 5, board=Board(ladders={2: 97}, snakes={98: 78}))
    roll_all(game, 2)
    result = game.roll("alice")
    assert (result.from_, result.to, result.via) == (97, 78, "snake")


def test_six_earns_another_roll() -> None:
    """A 6 keeps the turn; the following non-6 ends it and passes to the next seat."""
    game, _ = new_game(6, 2)
    first = game.roll("alice")
    assert first.again and game.current == "alice"
    second = game.roll("alice")
    assert (second.from_, second.to, second.again) == (6, 8, False)
    assert game.current == "bob"


def test_third_six_returns_to_turn_start_undoing_a_ladder() -> None:
    """Three 6s in one turn put the player back where the turn began (the ladder climbed on the
    first 6 is undone), end the turn, and mark the roll with reset."""
    game, _ = new_game(3, 1, 6, 6, 6)
    roll_all(game, 2)  # alice on 3, bob up the ladder to 38
    first = game.roll("alice")
    assert (first.to, first.via, first.again) == (31, "ladder", True)
    assert game.roll("alice").to == 37
    third = game.roll("alice")
    assert (third.from_, third.to, third.via, third.again, third.reset) == (37, 3, None, False, True)
    assert third.to_json() == {
        "player": "alice",
        "dice": 6,
        "from": 37,
        "to": 3,
        "via": None,
        "again": False,
        "reset": True,
    }
    assert game.current == "bob"
    assert game.positions["alice"] == 3


def test_sixes_are_counted_per_turn() -> None:
    """Two 6s in one turn and two in the next are not three in a row: no reset."""
    game, _ = new_game(6, 6, 1, 2, 6, 6, 1)
    rolls = roll_all(game, 7)
    assert not any(r.reset for r in rolls)
    assert game.positions["alice"] == 6 + 6 + 1 + 6 + 6 + 1


def test_exact_100_wins_and_ends_the_game() -> None:
    """Landing exactly on 100 wins: the game is over, nobody holds the turn, nobody can roll."""
    game, die = new_game(2, 1, 3, board=Board(ladders={2: 97}))
    roll_all(game, 2)
    result = game.roll("alice")
    assert (result.to, result.won, result.again) == (100, True, False)
    assert game.finished and game.winner == "alice" and game.current is None
    with pytest.raises(GameFinished):
        game.roll("bob")
    with pytest.raises(GameFinished):
        game.roll("alice")
    assert die.used == 3


def test_ladder_to_100_wins() -> None:
    """A ladder whose top is 100 wins the game, via "ladder"."""
    game, _ = new_game(2, 1, 2, board=Board(ladders={2: 78, 80: 100}))
    roll_all(game, 2)
    result = game.roll("alice")
    assert (result.to, result.via, result.won) == (100, "ladder", True)
    assert game.winner == "alice"


def test_a_winning_six_gives_no_extra_roll() -> None:
    """A 6 that lands on 100 wins with again false, and the game is over."""
    game, _ = new_game(2, 1, 6, board=Board(ladders={2: 94}))
    roll_all(game, 2)
    result = game.roll("alice")
    assert (result.dice, result.to, result.won, result.again) == (6, 100, True, False)
    assert game.finished


# ---------------------------------------------------------------- exact cases: turns and errors


def test_not_your_turn() -> None:
    """Rolling out of turn (or as a stranger) raises NotYourTurn, a GameRuleError, and changes nothing."""
    game, die = new_game(4)
    before = game.to_dict()
    with pytest.raises(NotYourTurn):
        game.roll("bob")
    with pytest.raises(GameRuleError):
        game.roll("mallory")
    assert game.to_dict() == before
    assert die.used == 0


def test_game_finished_is_a_rule_error() -> None:
    """GameFinished and NotYourTurn share the GameRuleError base, which is not a ValueError."""
    assert issubclass(GameFinished, GameRuleError)
    assert issubclass(NotYourTurn, GameRuleError)
    assert not issubclass(GameRuleError, ValueError)


def test_player_count_and_names_are_checked() -> None:
    """A game needs 2 to 4 distinct players."""
    for players in (["a"], ["a", "b", "c", "d", "e"], ["a", "a"], []):
        with pytest.raises(ValueError):
            DiceRace(players)
    game = DiceRace(["a", "b", "c", "d"])
    assert game.order == ("a", "b", "c", "d") and game.current == "a"
    assert game.positions == {"a": 0, "b": 0, "c": 0, "d": 0}


def test_a_die_out_of_range_is_refused() -> None:
    """A broken injected die (not 1..6) raises ValueError and leaves the game unchanged."""
    game, _ = new_game(7)
    before = game.to_dict()
    with pytest.raises(ValueError):
        game.roll("alice")
    assert game.to_dict() == before


def test_the_default_die_covers_one_to_six() -> None:
    """Without an injected RNG the cryptographic die gives every face 1..6 and nothing else."""
    faces = {secure_die() for _ in range(600)}
    assert faces == {1, 2, 3, 4, 5, 6}
    game = DiceRace(["a", "b"])
    assert 1 <= game.roll("a").dice <= 6


def test_forfeit_of_the_current_player_passes_the_turn() -> None:
    """When the player holding the turn forfeits (even mid-sixes), the next seat plays a fresh turn."""
    game, _ = new_game(6, 6, 6, 1, 2, players=3)
    game.roll("alice")
    game.forfeit("alice")
    assert game.current == "bob" and game.active == ("bob", "carol")
    # bob's two sixes are his own, not a continuation of alice's streak.
    assert not game.roll("bob").reset and not game.roll("bob").reset
    game.roll("bob")
    assert game.current == "carol"
    game.roll("carol")
    assert game.current == "bob", "the forfeited seat is skipped"


def test_forfeit_of_another_player_keeps_the_turn_and_its_sixes() -> None:
    """A forfeit by someone else leaves the current player's turn and six streak intact."""
    game, _ = new_game(6, 6, 6, players=3)
    game.roll("alice")
    game.forfeit("carol")
    assert game.current == "alice"
    game.roll("alice")
    assert game.roll("alice").reset
    assert game.current == "bob"


def test_forfeit_to_one_player_left_wins() -> None:
    """When all but one player forfeit, the last one wins even from behind, and ranks first."""
    game, _ = new_game(5, 2, players=3)
    roll_all(game, 2)
    game.forfeit("alice")
    assert not game.finished
    game.forfeit("carol")
    assert game.finished and game.winner == "bob" and game.current is None
    with pytest.raises(GameFinished):
        game.roll("bob")
    with pytest.raises(GameFinished):
        game.forfeit("bob")
    assert game.standings() == [
        {"username": "bob", "position": 2, "place": 1, "forfeited": False},
        {"username": "alice", "position": 5, "place": 2, "forfeited": True},
        {"username": "carol", "position": 0, "place": 3, "forfeited": True},
    ]


def test_forfeit_errors() -> None:
    """Forfeiting a stranger or forfeiting twice is a ValueError."""
    game, _ = new_game(players=3)
    with pytest.raises(ValueError):
        game.forfeit("mallory")
    game.forfeit("bob")
    with pytest.raises(ValueError):
        game.forfeit("bob")


def test_standings_rank_by_square_with_shared_places() -> None:
    """Mid-game standings order by square; tied players share a place and the next place skips."""
    game, _ = new_game(3, 3, 2, 1, players=4)
    roll_all(game, 4)
    table = [(r["username"], r["position"], r["place"]) for r in game.standings()]
    assert table == [("dave", 38, 1), ("alice", 3, 2), ("bob", 3, 2), ("carol", 2, 4)]


def test_rolls_lists_every_roll() -> None:
    """``rolls`` holds every roll in order, and forfeits stay out of it."""
    game, _ = new_game(2, 3, 4, players=3)
    game.roll("alice")
    game.forfeit("carol")
    game.roll("bob")
    game.roll("alice")
    assert [(r.player, r.dice) for r in game.rolls] == [("alice", 2), ("bob", 3), ("alice", 4)]


# ---------------------------------------------------------------- snapshots and records


def test_snapshot_round_trip_continues_identically() -> None:
    """from_dict(to_dict()) mid-turn (after a 6, with a forfeit on record) continues exactly like the original."""
    script = [3, 1, 2, 6, 6, 4, 5, 6, 1, 2, 3, 4, 5, 6, 6, 6, 1, 2, 3] * 10
    game, _ = new_game(*script, players=3)
    roll_all(game, 3)
    game.forfeit("carol")
    game.roll("alice")
    assert game.current == "alice"
    snapshot = json.loads(json.dumps(game.to_dict()))
    restored = DiceRace.from_dict(snapshot, rng=ScriptedDie(*script[4:]))
    assert restored.to_dict() == game.to_dict()
    while not game.finished:
        assert restored.roll(restored.current) == game.roll(game.current)  # type: ignore[arg-type]
    assert restored.to_dict() == game.to_dict()
    assert restored.standings() == game.standings()


def test_snapshot_shape() -> None:
    """to_dict gives plain JSON data naming players, board, positions, current index, sixes, turn start,
    forfeits, winner and the record."""
    game, _ = new_game(6)
    game.roll("alice")
    assert game.to_dict() == {
        "players": ["alice", "bob"],
        "board": DEFAULT_BOARD.to_json(),
        "positions": {"alice": 6, "bob": 0},
        "current": 0,
        "sixes": 1,
        "turn_start": 0,
        "forfeited": [],
        "winner": None,
        "record": [
            {"player": "alice", "dice": 6, "from": 0, "to": 6, "via": None, "again": True},
        ],
    }


def test_snapshot_without_the_default_board() -> None:
    """to_dict(default_board=False) leaves out the default board and from_dict takes it back; a game on another
    board keeps its board in the snapshot."""
    game, _ = new_game(6)
    game.roll("alice")
    snapshot = game.to_dict(default_board=False)
    assert "board" not in snapshot and snapshot == {k: v for k, v in game.to_dict().items() if k != "board"}
    assert DiceRace.from_dict(snapshot).to_dict() == game.to_dict()
    other, _ = new_game(2, board=Board(ladders={2: 97}))
    other.roll("alice")
    assert other.to_dict(default_board=False)["board"] == Board(ladders={2: 97}).to_json()


def test_a_tampered_snapshot_is_refused() -> None:
    """from_dict refuses a snapshot whose fields disagree with its own record, or that is malformed."""
    game, _ = new_game(4, 2)
    roll_all(game, 2)
    for key, value in (("positions", {"alice": 99, "bob": 2}), ("current", 1), ("sixes", 2), ("winner", "bob")):
        snapshot = game.to_dict()
        snapshot[key] = value
        with pytest.raises(ValueError):
            DiceRace.from_dict(snapshot)
    snapshot = game.to_dict()
    del snapshot["record"]
    with pytest.raises(ValueError):
        DiceRace.from_dict(snapshot)


def test_replay_reproduces_a_game() -> None:
    """Replaying record_entries() with forfeits rebuilds the same positions, turn, winner and rolls."""
    game, _ = new_game(*[1, 6, 6, 3, 2, 5, 6, 6, 6, 4, 3, 2, 1] * 20, players=4)
    roll_all(game, 6)
    game.forfeit("dave")
    roll_all(game, 6)
    record = json.loads(json.dumps(game.record_entries()))
    assert {"forfeit": "dave"} in record
    rebuilt = replay(game.order, record)
    assert rebuilt.positions == game.positions
    assert rebuilt.current == game.current
    assert rebuilt.rolls == game.rolls
    assert rebuilt.to_dict() == game.to_dict()


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda rec: rec[1].update(to=rec[1]["to"] + 1), id="to"),
        pytest.param(lambda rec: rec[1].update({"from": 50}), id="from"),
        pytest.param(lambda rec: rec[1].update(dice=5), id="dice"),
        pytest.param(lambda rec: rec[0].update(player="bob"), id="out-of-turn"),
        pytest.param(lambda rec: rec[2].update(via="ladder"), id="via"),
        pytest.param(lambda rec: rec[2].update(again=True), id="again"),
        pytest.param(lambda rec: rec[2].pop("to"), id="missing-to"),
        pytest.param(lambda rec: rec.append({"forfeit": "mallory"}), id="unknown-forfeit"),
        pytest.param(lambda rec: rec[1].update(dice=9), id="impossible-dice"),
    ],
)
def test_replay_rejects_a_tampered_record(tamper: Any) -> None:
    """Any entry whose player, dice, from, to, via or again disagrees with the rules makes replay raise ValueError."""
    game, _ = new_game(3, 4, 2, 1)
    roll_all(game, 4)
    record = game.record_entries()
    replay(game.order, record)  # the untouched record is fine
    tamper(record)
    with pytest.raises(ValueError):
        replay(game.order, record)


def test_replay_rejects_rolls_after_the_end() -> None:
    """A record that keeps rolling after someone won is refused."""
    game, _ = new_game(2, 1, 3, board=Board(ladders={2: 97}))
    roll_all(game, 3)
    record = game.record_entries()
    record.append({"player": "bob", "dice": 1, "from": 1, "to": 2, "via": None, "again": False})
    with pytest.raises(ValueError):
        replay(game.order, record, board=Board(ladders={2: 97}))


# ---------------------------------------------------------------- boards


def test_default_board_table() -> None:
    """DEFAULT_BOARD is the documented classic table, serialized sorted."""
    assert DEFAULT_BOARD.to_json() == {
        "size": 100,
        "ladders": [[1, 38], [4, 14], [9, 31], [21, 42], [28, 84], [36, 44], [51, 67], [71, 91], [80, 100]],
        "snakes": [
            [16, 6], [47, 26], [49, 11], [56, 53], [62, 19],
            [64, 60], [87, 24], [93, 73], [95, 75], [98, 78],
        ],
    }
    assert Board.from_json(DEFAULT_BOARD.to_json()) == DEFAULT_BOARD


@pytest.mark.parametrize(
    "ladders, snakes",
    [
        pytest.param({10: 20}, {10: 5}, id="square-both-ladder-and-snake"),
        pytest.param({0: 20}, {}, id="ladder-from-0"),
        pytest.param({100: 100}, {}, id="ladder-from-100"),
        pytest.param({}, {100: 50}, id="snake-from-100"),
        pytest.param({20: 10}, {}, id="ladder-going-down"),
        pytest.param({20: 101}, {}, id="ladder-past-100"),
        pytest.param({}, {10: 20}, id="snake-going-up"),
        pytest.param({}, {10: 0}, id="snake-to-0"),
        pytest.param({10: 20}, {20: 5}, id="ladder-into-snake"),
        pytest.param({}, {94: 1, 95: 1, 96: 1, 97: 1, 98: 1, 99: 1}, id="goal-unreachable"),
        pytest.param({True: 20}, {}, id="bool-square"),
    ],
)
def test_board_validation(ladders: dict[int, int], snakes: dict[int, int]) -> None:
    """Boards with ambiguous or impossible ladders and snakes are refused with ValueError."""
    with pytest.raises(ValueError):
        Board(ladders=ladders, snakes=snakes)


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"ladders": [[1, 2, 3]]},
        {"ladders": {"1": 38}},
        {"snakes": [[16, 6], [16, 5]]},
        {"snakes": [["16", 6]]},
        {"size": "100"},
    ],
)
def test_board_from_json_rejects_malformed_data(data: Any) -> None:
    """Board.from_json raises ValueError on malformed JSON rather than building a broken board."""
    with pytest.raises(ValueError):
        Board.from_json(data)


def test_board_is_immutable() -> None:
    """A Board cannot be changed after it is built, even through the mapping it was given."""
    ladders = {2: 50}
    board = Board(ladders=ladders)
    ladders[3] = 60
    assert dict(board.ladders) == {2: 50}
    with pytest.raises(TypeError):
        board.ladders[4] = 70  # type: ignore[index]


def test_positions_is_a_copy() -> None:
    """Editing the dict returned by ``positions`` does not move anyone."""
    game, _ = new_game()
    game.positions["alice"] = 99
    assert game.positions["alice"] == 0



def test_to_dict_without_record_leaves_out_only_the_moves() -> None:
    """to_dict(record=False) is to_dict() without "record", and from_dict takes the moves back from the caller."""
    game = DiceRace(["ann", "bob"], rng=ScriptedDie(6, 2, 3))
    game.roll("ann")
    game.roll("ann")
    game.roll("bob")
    full = game.to_dict()
    bare = game.to_dict(record=False)
    assert "record" not in bare and bare == {k: v for k, v in full.items() if k != "record"}
    again = DiceRace.from_dict(dict(bare, record=full["record"]))
    assert again.to_dict() == full

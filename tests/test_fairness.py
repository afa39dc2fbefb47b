"""Tests of the provably fair dice (docs/fairness.md): the scheme's known answers, its uniformity, the verifier and
its command line, and the rooms that commit, collect seeds, roll, reveal and survive a restore."""

from __future__ import annotations

import copy
import hashlib
import hmac
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.logger import globalLogPublisher, formatEvent

from gamesvc import fairness
from gamesvc.game import Board, replay
from tests.support import FakeMind, memory_services

SEED_A = bytes(range(32))
SEEDS_A = ["alice-seed", "bob-seed"]
SEED_B = hashlib.sha256(b"gamesvc").digest()
SEEDS_B = ["7f3a9c01d2e4b685", "Hello, world! ~ 42", "x"]


# The scheme


def test_known_answer_vector_a() -> None:
    """Vector A of docs/fairness.md: commit, canonical message, HMAC digest, twenty dice and a skipped byte."""
    assert fairness.commit_of(SEED_A) == "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd"
    message = fairness.message(SEEDS_A, 0, 0)
    assert message.hex() == (
        "67616d657376632d646963652d686d61632f3100020a616c6963652d7365656408626f622d73656564000000000000000000000000"
    )
    digest = hmac.new(SEED_A, message, hashlib.sha256).hexdigest()
    assert digest == "22751e055fb17e73b0d66b8e2af5b60eeaecbebaa2c3dedc9621a48eddf8ed56"
    assert [fairness.die(SEED_A, SEEDS_A, n) for n in range(20)] == [
        5, 1, 6, 1, 5, 5, 1, 3, 4, 5, 2, 6, 5, 3, 2, 3, 1, 2, 5, 4
    ]
    skipped = hmac.new(SEED_A, fairness.message(SEEDS_A, 98, 0), hashlib.sha256).digest()
    assert skipped[:2] == bytes([0xFE, 0x8F]) and fairness.die(SEED_A, SEEDS_A, 98) == 0x8F % 6 + 1 == 6


def test_known_answer_vector_b() -> None:
    """Vector B of docs/fairness.md: three seeds with punctuation and spaces, and a large roll number."""
    assert SEED_B.hex() == "1c969c2f2efaaa99aeaa69d7353f120b164a5649910a71ec4859189285220dd5"
    assert fairness.commit_of(SEED_B) == "e4c5d4e8e70c1ca1d789bf06f7a642cb1f55a1f537dd86e0dbd7be5b4e790f7a"
    assert fairness.message(SEEDS_B, 1_000_000, 0).hex() == (
        "67616d657376632d646963652d686d61632f31000310376633613963303164326534623638351248656c6c6f2c20776f726c64"
        "21207e203432017800000000000f424000000000"
    )
    assert [fairness.die(SEED_B, SEEDS_B, n) for n in range(20)] == [
        3, 3, 2, 3, 1, 2, 6, 5, 6, 4, 5, 5, 1, 5, 2, 6, 1, 3, 3, 4
    ]


def test_bytes_from_252_are_skipped_and_a_spent_round_moves_to_the_next() -> None:
    """252..255 never make a die (no modulo bias); a round of 32 such bytes moves on to the next round's digest."""
    assert fairness.first_die([bytes([252, 253, 254, 255, 251])]) == 251 % 6 + 1
    assert fairness.first_die([bytes([255] * 32), bytes([7]) + bytes(31)]) == 2
    with pytest.raises(ValueError):
        fairness.first_die([bytes([252] * 32)])


def test_the_message_is_unambiguous() -> None:
    """Seeds that concatenate the same way, or the same seeds in another order, give different messages."""
    assert fairness.message(["ab", "c"], 0, 0) != fairness.message(["a", "bc"], 0, 0)
    assert fairness.message(["a", "b"], 0, 0) != fairness.message(["b", "a"], 0, 0)
    assert fairness.message(["a"], 1, 0) != fairness.message(["a"], 0, 1)


def test_client_seed_limits() -> None:
    """A client seed is 1-64 printable ASCII characters (space to ~); anything else is refused."""
    for good in ["x", " ", "~" * 64, "Hello, world! 42"]:
        assert fairness.valid_client_seed(good), good
    for bad in ["", "x" * 65, "tab\there", "new\nline", "caf\u00e9", "\x7f", None, 42, ["x"]]:
        assert not fairness.valid_client_seed(bad), bad


def test_dice_are_uniform() -> None:
    """A chi-square test over 60,000 dice of 60 games' seeds stays far below the 0.1 % critical value (5 dof: 20.5)."""
    counts = [0] * 6
    picker = random.Random(7)
    for game in range(60):
        seed = picker.randbytes(32)
        seeds = [picker.randbytes(8).hex() for _ in range(picker.randint(2, 4))]
        dice = fairness.Dice(seed, seeds)
        for _ in range(1000):
            counts[dice() - 1] += 1
    expected = sum(counts) / 6
    chi_square = sum((c - expected) ** 2 / expected for c in counts)
    assert sum(counts) == 60_000 and chi_square < 20.52, (counts, chi_square)


def test_dice_continue_after_the_rolls_already_made() -> None:
    """Dice(rolled=k) rolls what a fresh Dice rolls from its k-th call on: a restored game rolls the same dice."""
    fresh = fairness.Dice(SEED_A, SEEDS_A)
    rolled = [fresh() for _ in range(10)]
    resumed = fairness.Dice(SEED_A, SEEDS_A, rolled=4)
    assert [resumed() for _ in range(6)] == rolled[4:]


# The verifier


def fair_record(seed: int = 1, names: tuple[str, ...] = ("alice", "bob", "carol")) -> dict[str, Any]:
    """The stored record of a whole three-player game played in memory with the fair dice (one server roll)."""
    services = memory_services(random_bytes=random.Random(seed).randbytes, turn_seconds=5)
    minds = {name: FakeMind(name) for name in names}
    first = minds[names[0]]
    room_id = services.rooms.create(first, "race", 4, False)["room"]["id"]
    for name in names[1:]:
        services.rooms.join(minds[name], room_id)
    for mind in minds.values():
        services.rooms.ready(mind, True)
    services.clock.advance(5)  # the server rolls once for the first player
    for _ in range(2000):
        if first.events("game.over"):
            break
        services.rooms.roll(minds[first.last("game.turn")["player"]])
    over = first.last("game.over")
    record = services.results.pending.get(over["game"]) or services.raw_store.games[over["game"]]
    return json.loads(json.dumps(record))


def test_every_game_replays_from_its_record_and_verifies() -> None:
    """Twenty whole games with the fair dice: each record verifies, numbers its rolls 0.., and replays to its result."""
    for seed in range(20):
        record = fair_record(seed)
        assert fairness.verify_record(record) == []
        rolls = [e for e in record["entries"] if "dice" in e]
        assert [e["n"] for e in rolls] == list(range(len(rolls))) and rolls[0]["auto"] is True
        game = replay(record["players"], record["entries"], Board.from_json(record["board"]))
        assert game.winner == record["winner"] and game.standings() == record["standings"]


def test_a_tampered_record_fails_verification() -> None:
    """One die changed, another server seed, a changed client seed, a renumbered roll or no fairness: not verified."""
    record = fair_record(3)
    rolls = [e for e in record["entries"] if "dice" in e]

    one_die = copy.deepcopy(record)
    target = [e for e in one_die["entries"] if "dice" in e][5]
    target["dice"] = target["dice"] % 6 + 1
    assert any("roll 5 shows" in p for p in fairness.verify_record(one_die))

    other_seed = copy.deepcopy(record)
    other_seed["fairness"]["server_seed"] = bytes(32).hex()
    assert any("not the commit" in p for p in fairness.verify_record(other_seed))

    recommitted = copy.deepcopy(other_seed)
    recommitted["fairness"]["commit"] = fairness.commit_of(bytes(32))
    assert fairness.verify_record(recommitted)  # a consistent but different seed does not give these dice

    client = copy.deepcopy(record)
    client["fairness"]["client_seeds"]["bob"] = "not bob's seed"
    assert fairness.verify_record(client)

    renumbered = copy.deepcopy(record)
    [e for e in renumbered["entries"] if "dice" in e][2]["n"] = 7
    assert any("roll number 7" in p for p in fairness.verify_record(renumbered))

    assert fairness.verify_record({k: v for k, v in record.items() if k != "fairness"})
    assert fairness.verify_record({"fairness": "x"}) and fairness.verify_record([])  # type: ignore[arg-type]
    assert len(rolls) > 5


# The command line, in-process


def test_cli_verifies_a_record_file(tmp_path: Path) -> None:
    """`verify FILE` exits 0 for a fair record (bare or as the API's {"game": ...}) and 1, with reasons, when tampered."""
    record = fair_record(4)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"game": record}))
    out = io.StringIO()
    assert fairness.main(["verify", str(good)], out=out) == 0
    assert "verified fair" in out.getvalue()

    [e for e in record["entries"] if "dice" in e][0]["dice"] += 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(record))
    out = io.StringIO()
    assert fairness.main(["verify", str(bad)], out=out) == 1
    assert "NOT VERIFIED" in out.getvalue() and "roll 0 shows" in out.getvalue()

    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert fairness.main(["verify", str(garbage)], out=io.StringIO()) == 1


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """No command, an unknown command or a missing argument is a usage error: exit code 2."""
    assert fairness.main([]) == 2
    assert fairness.main(["check", "x"]) == 2
    assert fairness.main(["verify"]) == 2
    assert "usage" in capsys.readouterr().err


# The rooms


def test_commit_before_the_game_seeds_at_start_reveal_at_the_end() -> None:
    """room.state shows only the commit; game.started lists every client seed (typed or drawn); game.over reveals a
    server seed whose SHA-256 is that commit; the seed appears in no event or log line before game.over."""
    logged: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        logged.append(formatEvent(event) or "")

    services = memory_services(random_bytes=random.Random(5).randbytes)
    rooms = services.rooms
    alice, bob, watcher = FakeMind("alice"), FakeMind("bob"), FakeMind("watcher")
    globalLogPublisher.addObserver(observer)
    try:
        room_id = rooms.create(alice, "race", 4, False)["room"]["id"]
        commit = alice.last("room.state")["room"]["fairness"]
        assert commit == {"scheme": "gamesvc-dice-hmac", "version": 1, "commit": commit["commit"]}
        rooms.join(bob, room_id)
        rooms.join(watcher, room_id, spectate=True)
        assert rooms.ready(alice, True, "my own seed") == {"client_seed": "my own seed"}
        drawn = rooms.ready(bob, True)["client_seed"]
        assert fairness.valid_client_seed(drawn) and len(drawn) == 16
        started = watcher.last("game.started")["fairness"]
        assert started == {
            "scheme": "gamesvc-dice-hmac", "version": 1, "commit": commit["commit"],
            "client_seeds": {"alice": "my own seed", "bob": drawn},
        }
        for _ in range(2000):
            if alice.events("game.over"):
                break
            rooms.roll({"alice": alice, "bob": bob}[alice.last("game.turn")["player"]])
            seed_hex = rooms.rooms[room_id].server_seed.hex()
            assert not any(seed_hex in json.dumps(m) for m in watcher.received if m.get("event") != "game.over")
    finally:
        globalLogPublisher.removeObserver(observer)
    over = watcher.last("game.over")["fairness"]
    assert over == dict(started, server_seed=over["server_seed"])
    assert hashlib.sha256(bytes.fromhex(over["server_seed"])).hexdigest() == commit["commit"]
    assert not any(over["server_seed"] in line for line in logged)
    seats = {"alice": "my own seed", "bob": drawn}
    rolled = watcher.events("game.rolled")
    assert [r["n"] for r in rolled] == list(range(len(rolled)))
    assert [r["dice"] for r in rolled] == [
        fairness.die(bytes.fromhex(over["server_seed"]), list(seats.values()), r["n"]) for r in rolled
    ]


def test_each_game_gets_a_fresh_commit() -> None:
    """A rematch draws a new server seed: the waiting room shows a new commit, and unready forgets a client seed."""
    services = memory_services(random_bytes=random.Random(6).randbytes)
    rooms = services.rooms
    alice, bob = FakeMind("alice"), FakeMind("bob")
    room_id = rooms.create(alice, "race", 2, False)["room"]["id"]
    rooms.join(bob, room_id)
    first = alice.last("room.state")["room"]["fairness"]["commit"]
    assert rooms.ready(alice, True, "a") == {"client_seed": "a"}
    assert rooms.ready(alice, False) == {}
    rooms.ready(alice, True)
    rooms.ready(bob, True)
    assert alice.last("game.started")["fairness"]["client_seeds"]["alice"] != "a"
    rooms.leave(bob)  # alice wins by forfeit
    assert alice.last("game.over")["fairness"]["commit"] == first
    rooms.join(bob, room_id)
    rooms.ready(bob, True)
    second = alice.last("room.state")["room"]["fairness"]["commit"]
    assert alice.last("room.state")["room"]["status"] == "waiting" and second != first


@pytest_twisted.ensureDeferred
async def test_a_restored_game_keeps_rolling_the_committed_dice() -> None:
    """A checkpoint holds the seeds (never shown to clients); the restored game rolls exactly the dice it would have."""
    services = memory_services(random_bytes=random.Random(8).randbytes)
    rooms = services.rooms
    alice, bob = FakeMind("alice"), FakeMind("bob")
    room_id = rooms.create(alice, "race", 2, False)["room"]["id"]
    rooms.join(bob, room_id)
    rooms.ready(alice, True)
    rooms.ready(bob, True)
    minds = {"alice": alice, "bob": bob}
    for _ in range(6):
        rooms.roll(minds[alice.last("game.turn")["player"]])
    snapshot = json.loads(json.dumps(rooms.snapshot(rooms.rooms[room_id])))
    commit = alice.last("game.started")["fairness"]["commit"]
    assert fairness.commit_of(bytes.fromhex(snapshot["server_seed"])) == commit

    # The original carries on; so does the restored copy, on another service.
    for _ in range(6):
        rooms.roll(minds[alice.last("game.turn")["player"]])
    original = [r["dice"] for r in alice.events("game.rolled")][6:]
    other = memory_services(random_bytes=random.Random(99).randbytes)
    other.rooms.restore(snapshot)
    again = {"alice": FakeMind("alice"), "bob": FakeMind("bob")}
    for mind in again.values():
        other.rooms.join(mind, room_id)
    for _ in range(6):
        other.rooms.roll(again[other.rooms.rooms[room_id].game.current])
    restored = again["alice"].events("game.rolled")
    assert [r["dice"] for r in restored] == original
    assert [r["n"] for r in restored] == list(range(6, 12))


def test_a_checkpoint_from_before_fair_dice_restores_with_fresh_seeds() -> None:
    """A checkpoint without seeds (written by an older version) restores: the room gets a fresh commit, and its
    running game rolls on with fresh seeds and a full fairness object (whose earlier dice then do not verify)."""
    services = memory_services(random_bytes=random.Random(10).randbytes)
    rooms = services.rooms
    alice, bob = FakeMind("alice"), FakeMind("bob")
    room_id = rooms.create(alice, "race", 2, False)["room"]["id"]
    rooms.join(bob, room_id)
    rooms.ready(alice, True)
    rooms.ready(bob, True)
    rooms.roll(alice)
    snapshot = json.loads(json.dumps(rooms.snapshot(rooms.rooms[room_id])))
    for key in ("server_seed", "client_seeds"):
        del snapshot[key]
    for player in snapshot["players"]:
        del player["client_seed"]
    other = memory_services(random_bytes=random.Random(11).randbytes)
    room = other.rooms.restore(snapshot)
    assert len(room.server_seed) == 32 and set(room.client_seeds or {}) == {"alice", "bob"}
    again = FakeMind(room.game.current if room.game and room.game.current else "alice")
    other.rooms.join(again, room_id)
    other.rooms.roll(again)
    assert again.last("game.rolled")["n"] == 1

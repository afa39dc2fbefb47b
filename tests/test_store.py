"""One conformance suite for every store: the memory one and the txmongo one (embedded or GAMESVC_TEST_MONGO_URI)."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from gamesvc.errors import DuplicateKey
from gamesvc.store.interfaces import IStore


def user(name: str, wins: int = 0, games: int = 0) -> dict[str, Any]:
    return {"key": name.lower(), "username": name, "password_hash": b"$2b$hash\x00bytes", "wins": wins, "games": games, "created": 1.5}


def record(game_id: str, players: list[str], winner: str, ended: str) -> dict[str, Any]:
    return {"id": game_id, "room": "ABCDEF", "players": players, "winner": winner, "entries": [{"player": players[0], "dice": 3, "from": 0, "to": 3, "via": None, "again": False}], "ended": ended}


def test_implements_interface(store: Any) -> None:
    """Every store provides the whole IStore interface."""
    assert verifyObject(IStore, store)


@pytest_twisted.ensureDeferred
async def test_users_round_trip_and_unique_keys(store: Any) -> None:
    """A user reads back as written (bytes hash included); a second user with the same key is refused."""
    await store.insert_user(user("Alice"))
    found = await store.find_user("alice")
    assert found["username"] == "Alice" and found["password_hash"] == b"$2b$hash\x00bytes"
    assert found["wins"] == 0 and found["games"] == 0 and found["key"] == "alice"
    with pytest.raises(DuplicateKey):
        await store.insert_user(user("ALICE"))
    assert await store.find_user("nobody") is None


@pytest_twisted.ensureDeferred
async def test_operator_lookalike_keys_are_plain_values(store: Any) -> None:
    """A key that looks like an operator is just a string that matches nothing."""
    await store.insert_user(user("bob"))
    assert await store.find_user("$ne") is None
    assert await store.find_session("{'$ne': None}") is None


@pytest_twisted.ensureDeferred
async def test_leaderboard_order(store: Any) -> None:
    """The leaderboard sorts by wins desc, then games asc, then name, and honours the limit."""
    for name, wins, games in [("dora", 1, 5), ("Carl", 3, 4), ("anna", 3, 4), ("eve", 3, 2), ("finn", 0, 0)]:
        await store.insert_user(user(name, wins, games))
    board = await store.leaderboard(10)
    assert [p["username"] for p in board] == ["eve", "anna", "Carl", "dora", "finn"]
    assert board[0] == {"username": "eve", "wins": 3, "games": 2}
    assert len(await store.leaderboard(2)) == 2


@pytest_twisted.ensureDeferred
async def test_apply_result_counts_once_per_game(store: Any) -> None:
    """Applying a game's result twice changes the stats once; another game counts again."""
    await store.insert_user(user("ann"))
    assert await store.apply_result("g1", "ann", True) is True
    assert await store.apply_result("g1", "ann", True) is False
    assert await store.apply_result("g2", "ann", False) is True
    found = await store.find_user("ann")
    assert (found["wins"], found["games"]) == (1, 2)


@pytest_twisted.ensureDeferred
async def test_sessions(store: Any) -> None:
    """Sessions are found by token hash with their expiry, and deleted."""
    await store.insert_session({"token_hash": "h1", "user": "ann", "expires": 2_000_000_000.25})
    found = await store.find_session("h1")
    assert found["user"] == "ann" and abs(found["expires"] - 2_000_000_000.25) < 0.01
    await store.delete_session("h1")
    await store.delete_session("h1")
    assert await store.find_session("h1") is None


@pytest_twisted.ensureDeferred
async def test_game_records(store: Any) -> None:
    """Records are saved idempotently, found by id and by player (newest first), and counted once marked."""
    first = record("g1", ["ann", "Bob"], "ann", "2026-01-01T10:00:00.000Z")
    second = record("g2", ["bob", "cy"], "cy", "2026-01-02T10:00:00.000Z")
    await store.save_game(first, ["ann", "bob"])
    await store.save_game(first, ["ann", "bob"])
    await store.save_game(second, ["bob", "cy"])
    assert await store.find_game("g1") == first
    assert await store.find_game("nope") is None
    assert [r["id"] for r in await store.games_for_user("bob", 10)] == ["g2", "g1"]
    assert [r["id"] for r in await store.games_for_user("bob", 1)] == ["g2"]
    assert sorted(r["id"] for r in await store.uncounted_games()) == ["g1", "g2"]
    await store.mark_counted("g1")
    await store.save_game(first, ["ann", "bob"])
    assert [r["id"] for r in await store.uncounted_games()] == ["g2"]


@pytest_twisted.ensureDeferred
async def test_room_checkpoints(store: Any) -> None:
    """Room checkpoints are replaced by id, listed, and deleted."""
    await store.save_rooms([{"id": "ROOM01", "v": 1}])
    await store.save_rooms([{"id": "ROOM01", "v": 2}, {"id": "ROOM02", "v": 1}])
    await store.save_rooms([])
    rooms = sorted(await store.load_rooms(), key=lambda r: r["id"])
    assert rooms == [{"id": "ROOM01", "v": 2, "entries": []}, {"id": "ROOM02", "v": 1, "entries": []}]
    await store.delete_room("ROOM01")
    assert [r["id"] for r in await store.load_rooms()] == ["ROOM02"]


@pytest_twisted.ensureDeferred
async def test_room_entries_are_added_to_what_is_stored(store: Any) -> None:
    """A checkpoint that says how many entries are stored already adds only the rest; one that says nothing
    replaces them all (a new, shorter game leaves none of the old one behind). Deleting the room removes its
    entries: a checkpoint that then claims them loads with its entries cut short (restoring the game refuses it)."""
    moves = [{"player": "ann", "die": n, "at": f"t{n}"} for n in range(1, 6)]
    await store.save_rooms([{"id": "ROOM01", "game_id": "G1", "entries": moves[:2]}])
    await store.save_rooms([{"id": "ROOM01", "game_id": "G1", "entries": moves[:4], "stored_entries": 2}])
    await store.save_rooms([{"id": "ROOM01", "game_id": "G1", "entries": moves, "stored_entries": 4}])
    assert await store.load_rooms() == [{"id": "ROOM01", "game_id": "G1", "entries": moves}]
    await store.save_rooms([{"id": "ROOM01", "game_id": "G2", "entries": [{"forfeit": "bob"}]}])
    assert await store.load_rooms() == [{"id": "ROOM01", "game_id": "G2", "entries": [{"forfeit": "bob"}]}]
    await store.delete_room("ROOM01")
    await store.save_rooms([{"id": "ROOM01", "game_id": "G2", "entries": [{"forfeit": "bob"}, moves[0]], "stored_entries": 1}])
    assert await store.load_rooms() == [{"id": "ROOM01", "game_id": "G2", "entries": []}]


@pytest_twisted.ensureDeferred
async def test_ping(store: Any) -> None:
    """A running store answers a ping."""
    await store.ping()


@pytest_twisted.ensureDeferred
async def test_mongo_checkpoint_documents(store: Any) -> None:
    """The MongoDB store's own format: a room document written before entries had documents of their own
    (entries inside it, no entry_count) loads with those entries, so an upgrade's restart keeps its games; and
    loading removes the entry documents of rooms that are gone (a crash between the two deletes)."""
    if not hasattr(store, "_db"):
        pytest.skip("the memory store keeps snapshots as they are given")
    moves = [{"player": "ann", "die": 3}]
    await store._db.rooms.insert_one({"_id": "ROOM01", "id": "ROOM01", "game_id": "G1", "entries": moves})
    await store._db.rooms.insert_one({"_id": "GONE01:0", "move_of": "GONE01", "n": 0, "entry": moves[0]})
    assert await store.load_rooms() == [{"id": "ROOM01", "game_id": "G1", "entries": moves}]
    assert await store._db.rooms.count_documents({"move_of": "GONE01"}) == 0


@pytest_twisted.ensureDeferred
async def test_leases_new_room_renew_expire_and_take_over(store: Any) -> None:
    """A new room's lease has epoch 1; another node cannot take it while it runs, can once it expired (epoch 2), and
    then the first node can neither renew nor release it; the owner may acquire its own room again."""
    assert await store.acquire_lease("ROOM01", "a", 100.0, 110.0) == 1
    assert await store.acquire_lease("ROOM01", "b", 105.0, 115.0) is None
    assert await store.renew_leases("a", {"ROOM01": 1}, 120.0) == []
    assert await store.acquire_lease("ROOM01", "b", 115.0, 125.0) is None  # renewed: still held
    assert await store.acquire_lease("ROOM01", "b", 121.0, 131.0) == 2
    assert await store.renew_leases("a", {"ROOM01": 1}, 140.0) == ["ROOM01"]
    assert await store.release_lease("ROOM01", "a", 1) is False
    assert await store.acquire_lease("ROOM01", "b", 122.0, 132.0) == 3  # its own room: a new epoch, at once
    assert await store.load_room("ROOM01") is None  # only a lease so far: no checkpoint to load
    assert await store.load_rooms() == []


@pytest_twisted.ensureDeferred
async def test_released_lease_is_taken_at_once(store: Any) -> None:
    """A released lease (SIGTERM hands rooms over) can be acquired by another node before its expiry."""
    assert await store.acquire_lease("ROOM01", "a", 100.0, 110.0) == 1
    assert await store.release_lease("ROOM01", "a", 1) is True
    assert await store.acquire_lease("ROOM01", "b", 101.0, 111.0) == 2
    await store.save_rooms([{"id": "PLAIN1", "v": 1}])  # a single node's room has no lease
    assert await store.room_lease("ROOM01") == {"id": "ROOM01", "owner": "b", "epoch": 2, "lease_expires": 111.0}
    assert await store.room_lease("PLAIN1") is None and await store.room_lease("NONE01") is None


@pytest_twisted.ensureDeferred
async def test_leases_renewed_together_and_the_claimable_ones(store: Any) -> None:
    """A node renews all its leases in one call and learns which it lost; the claimable leases are the expired
    ones and the node's own (a previous run of it)."""
    for room_id, node in (("R1", "a"), ("R2", "a"), ("R3", "b")):
        assert await store.acquire_lease(room_id, node, 100.0, 110.0) == 1
    assert await store.acquire_lease("R2", "b", 111.0, 121.0) == 2  # R2's lease ran out: b has it now
    assert await store.renew_leases("a", {"R1": 1, "R2": 1, "GONE": 1}, 130.0) == ["R2", "GONE"]
    assert (await store.room_lease("R1"))["lease_expires"] == 130.0
    assert (await store.room_lease("R2"))["lease_expires"] == 121.0
    assert await store.renew_leases("a", {}, 130.0) == []
    claimable = await store.claimable_leases("a", 115.0)
    assert sorted(lease["id"] for lease in claimable) == ["R1", "R3"]  # R3 expired at 110, R1 is a's own
    assert sorted(lease["id"] for lease in await store.claimable_leases("c", 125.0)) == ["R2", "R3"]


@pytest_twisted.ensureDeferred
async def test_checkpoints_are_fenced_by_the_epoch(store: Any) -> None:
    """A checkpoint with an epoch is written only while the lease has that epoch, and keeps the lease's fields; the
    fenced-off rooms are the result. A deletion with a stale epoch leaves the room alone."""
    await store.acquire_lease("ROOM01", "a", 100.0, 110.0)
    assert await store.save_rooms([{"id": "ROOM01", "epoch": 1, "v": 1, "entries": [{"forfeit": "x"}]}]) == []
    loaded = await store.load_room("ROOM01")
    assert loaded["v"] == 1 and loaded["entries"] == [{"forfeit": "x"}]
    assert (loaded["owner"], loaded["epoch"], loaded["lease_expires"]) == ("a", 1, 110.0)
    assert await store.acquire_lease("ROOM01", "b", 111.0, 121.0) == 2
    stale = {"id": "ROOM01", "epoch": 1, "v": 9, "entries": [{"forfeit": "y"}]}
    assert await store.save_rooms([stale]) == ["ROOM01"]
    await store.delete_room("ROOM01", epoch=1)
    loaded = await store.load_room("ROOM01")
    assert loaded["v"] == 1 and loaded["entries"] == [{"forfeit": "x"}] and loaded["owner"] == "b"
    assert await store.save_rooms([{"id": "ROOM01", "epoch": 2, "v": 2, "entries": [{"forfeit": "x"}],
                                    "stored_entries": 1}]) == []
    assert [(r["v"], r["epoch"]) for r in await store.load_rooms()] == [(2, 2)]
    await store.delete_room("ROOM01", epoch=2)
    assert await store.load_room("ROOM01") is None


@pytest_twisted.ensureDeferred
async def test_room_of_player(store: Any) -> None:
    """The room whose checkpoint seats a user is found by the user's key; a user seated nowhere has none."""
    await store.save_rooms([{"id": "ROOM01", "players": [{"key": "ann", "username": "Ann"}, {"key": "bob"}]}])
    await store.save_rooms([{"id": "ROOM02", "players": [{"key": "cy"}]}])
    assert await store.room_of_player("bob") == "ROOM01"
    assert await store.room_of_player("cy") == "ROOM02"
    assert await store.room_of_player("Ann") is None and await store.room_of_player("dan") is None

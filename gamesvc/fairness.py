"""Provably fair dice: the commit-reveal scheme of docs/fairness.md, and its verifier (`python -m gamesvc.fairness`).

Pure standard library (no Twisted, no attrs), so this one file can be copied and run by anyone who wants to check
a game without trusting the rest of gamesvc.

- Before a game the server draws a 32-byte server seed and publishes only ``commit = SHA-256(server seed)``.
- Every player adds a client seed (1-64 printable ASCII characters) when they ready up.
- Roll ``n`` of the game (0, 1, 2, ...) is the first byte ``b < 252`` of ``HMAC-SHA256(server seed, message(seeds,
  n, round))`` for round 0, 1, ..., as ``b % 6 + 1``.
- ``game.over`` and the stored record reveal the server seed, so anyone can recompute the commit and every die.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "SCHEME",
    "VERSION",
    "SEED_BYTES",
    "Dice",
    "commit_of",
    "die",
    "fairness_json",
    "main",
    "message",
    "valid_client_seed",
    "verify_record",
]

SCHEME = "gamesvc-dice-hmac"
VERSION = 1
SEED_BYTES = 32
CLIENT_SEED_MIN = 1
CLIENT_SEED_MAX = 64
# The bytes of a client seed the server draws for a player who sent none (shown as 16 hex digits).
DRAWN_CLIENT_SEED_BYTES = 8
# 252 = 42 * 6 is the largest multiple of 6 that fits a byte: bytes 252..255 are skipped, so every face has 42 of
# the 252 accepted values and none is favoured.
ACCEPT_BELOW = 252
FACES = 6
# Domain separation: an HMAC computed for this scheme can never be mistaken for one of any other message.
PREFIX = b"gamesvc-dice-hmac/1\x00"
MAX_ROLL = 2**64 - 1
MAX_ROUND = 2**32 - 1
DEFAULT_SERVER = "http://127.0.0.1:5000"


def valid_client_seed(seed: object) -> bool:
    """Tell whether a value is a client seed the scheme accepts: 1-64 printable ASCII characters (space to ~)."""
    return (
        isinstance(seed, str)
        and CLIENT_SEED_MIN <= len(seed) <= CLIENT_SEED_MAX
        and all(" " <= ch <= "~" for ch in seed)
    )


def draw_client_seed(random_bytes: Callable[[int], bytes]) -> str:
    """Draw a client seed for a player who sent none: 16 lower-case hex digits."""
    return random_bytes(DRAWN_CLIENT_SEED_BYTES).hex()


def commit_of(server_seed: bytes) -> str:
    """The published commitment to a server seed: its SHA-256, as 64 lower-case hex digits."""
    return hashlib.sha256(server_seed).hexdigest()


def message(client_seeds: Sequence[str], n: int, round_: int) -> bytes:
    """The canonical HMAC message of roll ``n``, round ``round_``, for the seat-ordered client seeds.

    ``PREFIX || u8(len(seeds)) || (u8(len(seed)) || ASCII(seed))... || u64be(n) || u32be(round)``: every part has
    a fixed size or a length before it, so two different inputs never give the same bytes.
    """
    if not 1 <= len(client_seeds) <= 255:
        raise ValueError("there must be 1 to 255 client seeds")
    if not 0 <= n <= MAX_ROLL or not 0 <= round_ <= MAX_ROUND:
        raise ValueError("roll or round number out of range")
    parts = [PREFIX, bytes([len(client_seeds)])]
    for seed in client_seeds:
        if not valid_client_seed(seed):
            raise ValueError(f"invalid client seed {seed!r}")
        parts.append(bytes([len(seed)]) + seed.encode("ascii"))
    parts.append(n.to_bytes(8, "big") + round_.to_bytes(4, "big"))
    return b"".join(parts)


def die(server_seed: bytes, client_seeds: Sequence[str], n: int) -> int:
    """The die (1-6) of roll ``n`` of a game."""
    return first_die(
        hmac.new(server_seed, message(client_seeds, n, round_), hashlib.sha256).digest()
        for round_ in range(MAX_ROUND + 1)
    )


def first_die(digests: Iterable[bytes]) -> int:
    """The die of the first accepted byte (< 252) of the rounds' digests, taken in order."""
    for digest in digests:
        for byte in digest:
            if byte < ACCEPT_BELOW:
                return byte % FACES + 1
        # All 32 bytes were 252 or more (odds of 1 in 2**160): the next round gives 32 new bytes.
    raise ValueError("no round gave an accepted byte")


class Dice:
    """The fair die of one game: each call rolls the next ``n``, starting after the rolls already made."""

    def __init__(self, server_seed: bytes, client_seeds: Sequence[str], rolled: int = 0) -> None:
        """Roll from ``server_seed`` and the seat-ordered ``client_seeds``; ``rolled`` rolls are already made."""
        if len(server_seed) != SEED_BYTES:
            raise ValueError(f"the server seed must be {SEED_BYTES} bytes")
        self._server_seed = server_seed
        self._client_seeds = tuple(client_seeds)
        self.rolled = rolled

    def __call__(self) -> int:
        """Roll the next die."""
        value = die(self._server_seed, self._client_seeds, self.rolled)
        self.rolled += 1
        return value


def fairness_json(
    commit: str, players: Sequence[str], client_seeds: Mapping[str, str], server_seed: bytes | None = None
) -> dict[str, Any]:
    """The wire's ``fairness`` object; ``server_seed`` only once it may be revealed (game.over, the record)."""
    data: dict[str, Any] = {
        "scheme": SCHEME,
        "version": VERSION,
        "commit": commit,
        "client_seeds": {name: client_seeds[name] for name in players},
    }
    if server_seed is not None:
        data["server_seed"] = server_seed.hex()
    return data


def verify_record(record: Mapping[str, Any]) -> list[str]:
    """Check a stored game record's dice against its fairness object; return the problems (none: verified fair).

    Checks: the scheme and version are known; SHA-256 of the revealed server seed is the commit; every player has a
    valid client seed; roll entries are numbered 0, 1, 2, ... in order; and every die recomputes.
    """
    if not isinstance(record, Mapping):
        return ["the record is not a JSON object"]
    fairness = record.get("fairness")
    if not isinstance(fairness, Mapping):
        return ["the record has no fairness object (a game played before provably fair dice cannot be checked)"]
    if fairness.get("scheme") != SCHEME or fairness.get("version") != VERSION:
        return [f"unknown scheme {fairness.get('scheme')!r} version {fairness.get('version')!r}"]
    problems: list[str] = []
    try:
        server_seed = bytes.fromhex(str(fairness.get("server_seed")))
    except ValueError:
        server_seed = b""
    if len(server_seed) != SEED_BYTES:
        return ["the server seed is not 32 bytes of hex"]
    if commit_of(server_seed) != fairness.get("commit"):
        problems.append("SHA-256 of the revealed server seed is not the commit published before the game")
    players = record.get("players")
    seeds = fairness.get("client_seeds")
    if not (isinstance(players, list) and players and isinstance(seeds, Mapping)):
        return problems + ["the record lacks its players or their client seeds"]
    raw = [seeds.get(name) for name in players]
    ordered = [seed for seed in raw if isinstance(seed, str) and valid_client_seed(seed)]
    if len(ordered) != len(players) or set(seeds) != set(players):
        return problems + ["the client seeds do not match the players, or one is invalid"]
    entries = record.get("entries")
    if not isinstance(entries, list):
        return problems + ["the record has no entries"]
    n = 0
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            problems.append(f"entry {index} is not an object")
            continue
        if "forfeit" in entry:
            continue
        if entry.get("n") != n:
            problems.append(f"entry {index}: roll number {entry.get('n')!r} where {n} was due")
        expected = die(server_seed, ordered, n)
        if entry.get("dice") != expected:
            problems.append(f"entry {index}: roll {n} shows {entry.get('dice')!r} but the seeds give {expected}")
        n += 1
    return problems


# The command line


def _load(target: str, server: str) -> Any:
    """Read a record from a file, or fetch the game of that id from the server's /api/games/<id>."""
    try:
        with open(target, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        url = f"{server.rstrip('/')}/api/games/{urllib.parse.quote(target, safe='')}"
        with urllib.request.urlopen(url, timeout=30) as reply:  # noqa: S310 (the user chose the URL)
            data = json.load(reply)
    # Accept both a bare record and the API's {"game": record}.
    if isinstance(data, dict) and isinstance(data.get("game"), dict):
        return data["game"]
    return data


def main(argv: Iterable[str] | None = None, out: Any = None) -> int:
    """``verify GAME_ID_OR_RECORD_FILE [--server URL]``: exit 0 when verified fair, 1 when not, 2 on usage errors."""
    out = out if out is not None else sys.stdout
    parser = argparse.ArgumentParser(
        prog="python -m gamesvc.fairness", description="Check the dice of a finished gamesvc game."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="verify one game's dice")
    verify.add_argument("game", help="a game id (fetched from --server) or a record file (JSON)")
    verify.add_argument("--server", default=DEFAULT_SERVER, help=f"the server to ask (default {DEFAULT_SERVER})")
    try:
        options = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:
        return 2 if exc.code else 0
    try:
        record = _load(options.game, options.server)
    except (OSError, ValueError, urllib.error.URLError) as exc:
        out.write(f"cannot read {options.game}: {exc}\n")
        return 1
    problems = verify_record(record)
    if problems:
        out.write("NOT VERIFIED: this game's dice do not check out.\n")
        for problem in problems:
            out.write(f"  - {problem}\n")
        return 1
    rolls = sum(1 for e in record["entries"] if isinstance(e, Mapping) and "forfeit" not in e)
    out.write(
        f"verified fair: game {record.get('id')}, {rolls} dice. SHA-256 of the revealed server seed equals the "
        "commit published before the game, and every die recomputes from the server seed and the players' seeds.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Bots: the server-side players that fill seats, and how quick play picks a room.

A bot is a seat with no connection. Its name holds a space, which usernames ([A-Za-z0-9_-]) cannot, so it never
clashes with a user's; the room state marks it `"bot": true`. It is always ready and rolls on its turn after a
delay drawn from the injected RNG around --bot-delay, so that a game against bots has a human pace. The rules of
when bots come and go live in `gamesvc.rooms`; this module holds the pure parts.
"""

from __future__ import annotations

import random
from typing import Iterable, Protocol, Sequence

# Pioneers of computing; "Bot " plus a name cannot be a username (no spaces there).
BOT_NAMES = (
    "Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Margaret", "Dennis",
    "Frances", "John", "Radia", "Ken", "Hedy", "Niklaus", "Sophie", "Tim",
)
BOT_PREFIX = "Bot "
# The key of a bot's seat: a user's key is a lower-cased username, which has no colon.
BOT_KEY_PREFIX = "bot:"


def bot_name(taken: Iterable[str], rng: random.Random) -> str:
    """A bot name that no one in `taken` holds, chosen with `rng`."""
    used = set(taken)
    free = [BOT_PREFIX + name for name in BOT_NAMES if BOT_PREFIX + name not in used]
    if free:
        return rng.choice(free)
    number = 1
    while f"{BOT_PREFIX}{number}" in used:
        number += 1
    return f"{BOT_PREFIX}{number}"


def bot_key(name: str) -> str:
    """The seat key of a bot called `name` (unique within its room, never a user's key)."""
    return BOT_KEY_PREFIX + name


def bot_delay(rng: random.Random, mean: float) -> float:
    """Seconds a bot waits before it rolls: between half and one and a half times `mean`, like a person."""
    return mean * rng.uniform(0.5, 1.5)


class QuickPlayCandidate(Protocol):
    """What quick play needs to know of a room."""

    id: str
    private: bool
    status: str
    seats: int

    def humans(self) -> int:
        """Seats held by people."""

    def bots(self) -> int:
        """Seats held by bots."""


def fullest_room(rooms: Sequence[QuickPlayCandidate], waiting: str) -> QuickPlayCandidate | None:
    """The public waiting room with a seat for one more person (free, or a bot's) and the most people in it.

    Ties go to the room with the most players, then to the oldest (the first of `rooms`).
    """
    best: QuickPlayCandidate | None = None
    best_rank = (-1, -1)
    for room in rooms:
        if room.private or room.status != waiting or room.humans() >= room.seats:
            continue
        rank = (room.humans(), room.humans() + room.bots())
        if rank > best_rank:
            best, best_rank = room, rank
    return best

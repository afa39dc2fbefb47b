"""Rooms as plain data and back: what a checkpoint holds, so that a restart (or another node) carries a room on.

A snapshot is JSON-able and never shown to clients (it holds the dice's server seed). A running game is kept as
its players, its board when not the default one, and its log of moves (`entries`, with their times): restoring
replays the log, which is the only record of the game's moves.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Mapping

from gamesvc import fairness
from gamesvc.game import DEFAULT_BOARD, DiceRace
from gamesvc.game.dicerace import Board, replay
from gamesvc.rooms import FINISHED, Room, Seat


def snapshot(room: Room, now: float, pending: Mapping[str, dict] | None = None, chat: bool = True) -> dict[str, Any]:
    """A room as plain data: seats, game, turn time left, a result not stored yet (from `pending`, the results
    waiting for the store by game id), and the chat tail when asked."""
    record = pending.get(room.game_id) if pending is not None and room.game_id and room.status == FINISHED else None
    game = room.game
    return {
        "id": room.id,
        "name": room.name,
        "seats": room.seats,
        "private": room.private,
        "status": room.status,
        "version": room.version,
        "players": [
            {
                "key": s.key, "username": s.username, "ready": s.ready, "client_seed": s.client_seed,
                "bot": s.bot, "stand_in": s.stand_in,
            }
            for s in room.players
        ],
        # The dice's secret: checkpoints are never shown to clients, and a restored game must roll the same dice.
        "server_seed": room.server_seed.hex(),
        "client_seeds": room.client_seeds,
        "bot_takeover": room.bot_takeover,
        "bots_left": max(room.bots_at - now, 0.0) if room.bots_at is not None else None,
        "chat": list(room.chat) if chat else [],
        # The game is its players and board; its moves are `entries`, replayed on restore.
        "game": _game_head(game) if game is not None else None,
        "game_id": room.game_id,
        "started": room.started,
        "entries": room.entries,
        "turn_left": max(room.deadline - now, 0.0) if room.deadline is not None else None,
        # A result not stored yet, without its entries: they are the room's.
        "record": {k: v for k, v in record.items() if k != "entries"} if record else None,
    }


def _game_head(game: DiceRace) -> dict[str, Any]:
    """What a snapshot keeps of a game besides its moves: the players in turn order, and a board of its own."""
    head: dict[str, Any] = {"players": list(game.order)}
    if game.board is not DEFAULT_BOARD:
        head["board"] = game.board.to_json()
    return head


def room_from_snapshot(
    data: Mapping[str, Any], chat_history: int, random_bytes: Callable[[int], bytes],
    dice: Callable[[Room, list[str], int], Callable[[], int]],
) -> Room:
    """The room of a snapshot, without connections or timers (the room service adds those): ValueError, KeyError
    or TypeError when the snapshot cannot be used. `dice(room, order, rolled)` gives the die of its game."""
    room = Room(
        data["id"], data["name"], data["seats"], data["private"], deque(data["chat"], maxlen=chat_history),
        status=data["status"], version=data["version"],
    )
    # A checkpoint written before fair dice has no seeds: the rest of its game rolls from fresh ones.
    seed = data.get("server_seed")
    room.server_seed = bytes.fromhex(seed) if seed else random_bytes(fairness.SEED_BYTES)
    room.client_seeds = data.get("client_seeds")
    head = data["game"]
    if head is not None:
        players = list(head["players"])
        if room.client_seeds is None:
            room.client_seeds = {name: fairness.draw_client_seed(random_bytes) for name in players}
        board = Board.from_json(head["board"]) if "board" in head else DEFAULT_BOARD
        entries = list(data["entries"])
        game = replay(players, entries, board=board)
        rolled = sum(1 for entry in entries if "forfeit" not in entry)
        game.set_die(dice(room, players, rolled))
        room.game = game
    room.game_id, room.started = data["game_id"], data["started"]
    room.bot_takeover = data.get("bot_takeover", False)
    for player in data["players"]:
        seat = Seat(player["key"], player["username"], ready=player["ready"], client_seed=player.get("client_seed"))
        if player.get("bot"):
            seat.bot, seat.stand_in = True, player.get("stand_in", False)
        room.players.append(seat)
    return room

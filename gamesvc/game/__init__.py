"""Game rules as pure code: no Twisted, no I/O, RNG injected."""

from gamesvc.game.dicerace import (
    DEFAULT_BOARD,
    Board,
    DiceRace,
    Forfeit,
    GameFinished,
    GameRuleError,
    NotYourTurn,
    Roll,
    replay,
    secure_die,
)

__all__ = [
    "DEFAULT_BOARD",
    "Board",
    "DiceRace",
    "Forfeit",
    "GameFinished",
    "GameRuleError",
    "NotYourTurn",
    "Roll",
    "replay",
    "secure_die",
]

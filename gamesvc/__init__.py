"""gamesvc: a Twisted service for real-time multiplayer board games (Dice Race)."""

__version__ = "0.1.0"

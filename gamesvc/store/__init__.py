"""Storage: interfaces, an in-memory implementation for tests, and the txmongo implementation."""

from gamesvc.store.interfaces import IStore
from gamesvc.store.memory import MemoryStore

__all__ = ["IStore", "MemoryStore"]

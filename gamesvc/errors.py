"""The errors of gamesvc: wire errors with a contract code, and store failures."""

from __future__ import annotations

# The contract's error codes and the HTTP status each maps to.
HTTP_STATUS: dict[str, int] = {
    "bad_request": 400,
    "unknown_op": 400,
    "invalid_username": 400,
    "invalid_password": 400,
    "unauthenticated": 401,
    "bad_credentials": 401,
    "not_host": 403,
    "forbidden": 403,
    "room_not_found": 404,
    "not_found": 404,
    "username_taken": 409,
    "room_full": 409,
    "already_in_room": 409,
    "not_in_room": 409,
    "not_your_turn": 409,
    "game_not_started": 409,
    "game_in_progress": 409,
    "method_not_allowed": 405,
    "too_large": 413,
    "upgrade_required": 426,
    "rate_limited": 429,
    "unavailable": 503,
    "internal": 500,
}


class GameError(Exception):
    """A request that cannot be served, answered to the client as `{"error": code, "message": ...}`."""

    def __init__(self, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra

    @property
    def status(self) -> int:
        """The HTTP status that fits this error."""
        return HTTP_STATUS.get(self.code, 400)

    def to_json(self) -> dict[str, object]:
        """The error's fields as sent to a client."""
        return {"error": self.code, "message": self.message, **self.extra}


def bad_request(message: str) -> GameError:
    """A `bad_request` error."""
    return GameError("bad_request", message)


class RateLimited(GameError):
    """Too many attempts; `retry_after` says when to try again (seconds)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__("rate_limited", message, retry_after=round(retry_after, 3))
        self.retry_after = retry_after


class Busy(GameError):
    """The server is at a capacity limit (`unavailable`); `retry_after` says when to try again (seconds)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__("unavailable", message, retry_after=round(retry_after, 3))
        self.retry_after = retry_after


class StoreUnavailable(Exception):
    """The store did not answer in time or could not be reached."""


class DuplicateKey(Exception):
    """A store insert collided with a unique key."""


class BusUnavailable(Exception):
    """The message bus between nodes is not connected: nothing was sent."""

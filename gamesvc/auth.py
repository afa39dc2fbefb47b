"""Accounts and sessions: signup, login, resume, logout, and the leaderboard.

Rules only: the store, the clock, the password hasher and the token source are injected.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Callable

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from gamesvc._defer import deferred
from gamesvc.config import Settings
from gamesvc.errors import Busy, DuplicateKey, GameError, RateLimited
from gamesvc.passwords import IHasher
from gamesvc.ratelimit import SlidingWindow
from gamesvc.sessions import LOGGED_OUT, LiveSessions
from gamesvc.store.interfaces import IStore

log = Logger()
USERNAME = re.compile(r"[A-Za-z0-9_-]{3,20}\Z")
MIN_PASSWORD_BYTES = 8
MAX_PASSWORD_BYTES = 72  # bcrypt's limit; longer passwords are refused, never truncated
HASH_RETRY_AFTER = 1.0  # seconds a client refused for hashing capacity is told to wait


@attrs.frozen
class Account:
    """A signed-in user: the normalised key and the name as typed at signup."""

    key: str
    username: str


@attrs.frozen
class SignedIn:
    """The result of signup or login: who, their public record, and a new session token."""

    account: Account
    user: dict
    token: str
    expires: float = 0.0  # clock seconds when the session ends


def user_key(username: str) -> str:
    """The case-insensitive key of a username."""
    return username.lower()


def public_user(user: dict) -> dict:
    """The contract's `user` object."""
    return {"username": user["username"], "wins": user["wins"], "games": user["games"]}


def token_hash(token: str) -> str:
    """The SHA-256 under which a session token is stored; the token itself never is."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_username(username: str) -> str:
    """Refuse a username outside 3–20 of [A-Za-z0-9_-]."""
    if not USERNAME.match(username):
        raise GameError("invalid_username", "usernames are 3 to 20 letters, digits, _ or -")
    return username


def check_password(password: str) -> bytes:
    """The password's UTF-8 bytes, refused outside 8–72 bytes."""
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from a JSON "\ud800" escape are not UTF-8
        raise GameError("invalid_password", "passwords are 8 to 72 bytes of UTF-8") from None
    if not MIN_PASSWORD_BYTES <= len(encoded) <= MAX_PASSWORD_BYTES:
        raise GameError("invalid_password", "passwords are 8 to 72 bytes of UTF-8")
    return encoded


def _count(counts: dict[str, int], key: str, change: int) -> None:
    """Add `change` to a counter, dropping the key at zero so that the dict holds only live keys."""
    value = counts.get(key, 0) + change
    if value > 0:
        counts[key] = value
    else:
        counts.pop(key, None)


class AccountService:
    """Signup, login and sessions with bcrypt hashes, hashed tokens and rate limits."""

    def __init__(
        self,
        store: IStore,
        clock: IReactorTime,
        hasher: IHasher,
        settings: Settings,
        new_token: Callable[[], str] = lambda: secrets.token_urlsafe(32),
        sessions: LiveSessions | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._hasher = hasher
        self._settings = settings
        self._new_token = new_token
        # The open connections of each session, told when it is logged out (build_services shares one).
        self.sessions = sessions if sessions is not None else LiveSessions(clock)
        self._dummy_hash: bytes | None = None
        self.failed_by_user_address = SlidingWindow(clock, settings.login_user_address_limit, settings.login_window)
        self.failed_by_user = SlidingWindow(clock, settings.login_user_limit, settings.login_user_window)
        self.failed_by_address = SlidingWindow(clock, settings.login_address_limit, settings.login_window)
        self.logins_by_user = SlidingWindow(clock, settings.login_user_attempts, settings.login_window)
        self.logins_by_address = SlidingWindow(clock, settings.login_address_attempts, settings.login_window)
        self.signups_by_address = SlidingWindow(clock, settings.signup_address_limit, settings.signup_window)
        # Password hashes in flight per client address and per username (login); a key is removed at zero.
        self.hashing: dict[str, int] = {}
        self.checking: dict[str, int] = {}

    def _admit_hash(self, address: str, key: str | None = None) -> None:
        """Refuse a password hash when the service-wide queue, this address's share or this name's is full."""
        if self._hasher.pending() >= self._settings.hash_queue_limit:
            raise Busy("the server is busy checking passwords; try again shortly", HASH_RETRY_AFTER)
        if self.hashing.get(address, 0) >= self._settings.hash_address_limit:
            raise RateLimited("too many password checks from this address at once; wait for them", HASH_RETRY_AFTER)
        if key is not None and self.checking.get(key, 0) >= self._settings.hash_user_limit:
            raise RateLimited("a password check for this name is already running; wait for it", HASH_RETRY_AFTER)
        _count(self.hashing, address, 1)
        if key is not None:
            _count(self.checking, key, 1)

    def _hash_done(self, address: str, key: str | None = None) -> None:
        _count(self.hashing, address, -1)
        if key is not None:
            _count(self.checking, key, -1)

    async def _open_session(self, user: dict) -> SignedIn:
        token = self._new_token()
        expires = self._clock.seconds() + self._settings.session_ttl
        await self._store.insert_session({"token_hash": token_hash(token), "user": user["key"], "expires": expires})
        return SignedIn(Account(user["key"], user["username"]), public_user(user), token, expires)

    @deferred
    async def signup(self, username: str, password: str, address: str) -> SignedIn:
        """Create an account and sign it in; the unique key decides races for one name."""
        check_username(username)
        encoded = check_password(password)
        wait = self.signups_by_address.retry_after(address)
        if wait is not None:
            raise RateLimited("too many signups from this address; try again later", wait)
        # Counted even when refused for capacity below, so that retrying at once cannot keep the hash queue full.
        self.signups_by_address.hit(address)
        self._admit_hash(address)
        try:
            password_hash = await self._hasher.hash(encoded)
        finally:
            self._hash_done(address)
        user = {
            "key": user_key(username),
            "username": username,
            "password_hash": password_hash,
            "wins": 0,
            "games": 0,
            "created": self._clock.seconds(),
        }
        try:
            await self._store.insert_user(user)
        except DuplicateKey:
            raise GameError("username_taken", f"the name {username} is taken") from None
        log.info("signup {username}", username=username)
        return await self._open_session(user)

    @deferred
    async def login(self, username: str, password: str, address: str) -> SignedIn:
        """Check a password; every attempt is counted per name and per address, wrong ones also per
        (name, address), per name and per address, and the hash must fit the service's and the address's share."""
        encoded = check_password(password)
        key = user_key(username)
        pair = f"{key} {address}"  # usernames hold no space
        for window, what, why in (
            (self.failed_by_user_address, pair, "too many failed logins"),
            (self.failed_by_user, key, "too many failed logins"),
            (self.failed_by_address, address, "too many failed logins"),
            (self.logins_by_user, key, "too many logins"),
            (self.logins_by_address, address, "too many logins"),
        ):
            wait = window.retry_after(what)
            if wait is not None:
                raise RateLimited(f"{why}; try again later", wait)
        # Successes count too: knowing one password must not buy an unlimited number of hashes. Counted even
        # when refused for capacity below, so that retrying at once cannot keep the hash queue full.
        self.logins_by_user.hit(key)
        self.logins_by_address.hit(address)
        self._admit_hash(address, key)
        # Count the attempt as failed before the slow check, so that guesses sent at once on many
        # connections cannot all pass the limit while their checks wait for the thread pool.
        pair_hit = self.failed_by_user_address.hit(pair)
        user_hit = self.failed_by_user.hit(key)
        address_hit = self.failed_by_address.hit(address)
        try:
            user = await self._store.find_user(key) if USERNAME.match(username) else None
            if user is None:
                # Spend one bcrypt check anyway so that timing does not tell which names exist.
                await self._hasher.check(encoded, await self._dummy())
                ok = False
            else:
                ok = await self._hasher.check(encoded, user["password_hash"])
        except BaseException:
            # Not a wrong password (the store or the hasher failed): do not count it as one.
            self.failed_by_user_address.undo(pair, pair_hit)
            self.failed_by_user.undo(key, user_hit)
            self.failed_by_address.undo(address, address_hit)
            raise
        finally:
            self._hash_done(address, key)
        if not ok or user is None:
            raise GameError("bad_credentials", "wrong username or password")
        # The owner's typos from this address are forgiven; failures from other addresses still count.
        self.failed_by_user_address.reset(pair)
        self.failed_by_user.undo(key, user_hit)
        self.failed_by_address.undo(address, address_hit)
        assert user is not None  # ok is False without a user
        return await self._open_session(user)

    async def _dummy(self) -> bytes:
        if self._dummy_hash is None:
            self._dummy_hash = await self._hasher.hash(secrets.token_bytes(16).hex().encode())
        return self._dummy_hash

    @deferred
    async def resume(self, token: str) -> tuple[Account, dict]:
        """The account and user behind a live session token; `unauthenticated` otherwise."""
        account, user, _expires = await self.resume_expiring(token)
        return account, user

    @deferred
    async def resume_expiring(self, token: str) -> tuple[Account, dict, float]:
        """`resume`, plus the clock time when the session expires (for live connections' expiry timers)."""
        session = await self._store.find_session(token_hash(token)) if token else None
        if session is None or session["expires"] <= self._clock.seconds():
            raise GameError("unauthenticated", "the session is unknown, expired or revoked")
        user = await self._store.find_user(session["user"])
        if user is None:
            raise GameError("unauthenticated", "the session's account no longer exists")
        return Account(user["key"], user["username"]), public_user(user), session["expires"]

    @deferred
    async def logout(self, token: str) -> None:
        """Revoke a session token and sign out every connection holding it (`session.ended`)."""
        hashed = token_hash(token)
        # Live connections first: a store outage must not keep them signed in.
        self.sessions.end(hashed, LOGGED_OUT)
        await self._store.delete_session(hashed)

    @deferred
    async def user(self, key: str) -> dict:
        """A user's current public record."""
        user = await self._store.find_user(key)
        if user is None:
            raise GameError("not_found", "no such user")
        return public_user(user)

    @deferred
    async def leaderboard(self, limit: int) -> list[dict]:
        """The top players."""
        return await self._store.leaderboard(limit)

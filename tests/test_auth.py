"""Unit tests of accounts and sessions: AccountService over a MemoryStore, a Clock and a PlainHasher,
the rate limiters, the typed argument readers, and the real bcrypt hasher on a thread pool."""

from __future__ import annotations

import base64
import hashlib
import threading
from typing import Any

import attrs
import bcrypt
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gamesvc import args
from gamesvc.auth import AccountService, check_password, check_username, token_hash
from gamesvc.config import Settings
from gamesvc.errors import GameError, RateLimited
from gamesvc.passwords import BcryptHasher, IHasher, PlainHasher
from gamesvc.protocol import session_token_from_cookie
from gamesvc.ratelimit import SlidingWindow, TokenBucket
from gamesvc.store.memory import MemoryStore
from tests.support import memory_services, within

START = 1_800_000_000.0
GOOD = "correct horse"


@attrs.define
class Accounts:
    """An AccountService and the fakes behind it."""

    service: AccountService
    store: MemoryStore
    clock: Clock
    hasher: Any
    settings: Settings


def accounts(hasher: Any = None, **overrides: Any) -> Accounts:
    """An AccountService over a fresh MemoryStore, a Clock at START and a PlainHasher (or `hasher`)."""
    settings = Settings(**overrides)
    clock = Clock()
    clock.advance(START)
    store = MemoryStore()
    hasher = hasher or PlainHasher()
    return Accounts(AccountService(store, clock, hasher, settings), store, clock, hasher, settings)


async def error_of(d: Deferred) -> GameError:
    """The GameError that `d` fails with (the test fails if it succeeds)."""
    try:
        result = await d
    except GameError as e:
        return e
    raise AssertionError(f"expected a GameError, got {result!r}")


# Usernames


@pytest.mark.parametrize("name", ["abc", "a" * 20, "Al_ice-9", "___", "---", "ABC"])
def test_valid_usernames(name: str) -> None:
    """Names of 3 to 20 characters from [A-Za-z0-9_-] are accepted unchanged."""
    assert check_username(name) == name


@pytest.mark.parametrize(
    "name", ["", "ab", "a" * 21, "has space", "bang!", "dot.ted", "ünï", "abc\n", "abc\x00", "ａｂｃ", "a/b", "$ne"]
)
def test_invalid_usernames(name: str) -> None:
    """Too short, too long, or any character outside [A-Za-z0-9_-] (a trailing newline included) is invalid_username."""
    with pytest.raises(GameError) as caught:
        check_username(name)
    assert caught.value.code == "invalid_username"


@pytest_twisted.ensureDeferred
async def test_signup_shows_name_as_typed_with_zero_stats() -> None:
    """Signup keeps the name as typed, starts wins and games at 0, stores the lower-case key, and signs in."""
    a = accounts()
    signed = await a.service.signup("MiXed_Name", GOOD, "10.0.0.1")
    assert signed.user == {"username": "MiXed_Name", "wins": 0, "games": 0}
    assert signed.account.key == "mixed_name" and signed.account.username == "MiXed_Name"
    assert set(a.store.users) == {"mixed_name"}
    assert a.store.users["mixed_name"]["username"] == "MiXed_Name"
    account, user = await a.service.resume(signed.token)
    assert account == signed.account and user == signed.user


@pytest_twisted.ensureDeferred
async def test_usernames_unique_without_regard_to_case() -> None:
    """A second signup differing only in case is username_taken; login works in any case and shows the first spelling."""
    a = accounts()
    await a.service.signup("Alice", GOOD, "10.0.0.1")
    for other in ("alice", "ALICE", "aLiCe"):
        assert (await error_of(a.service.signup(other, "another password", "10.0.0.2"))).code == "username_taken"
    assert len(a.store.users) == 1
    signed = await a.service.login("ALICE", GOOD, "10.0.0.3")
    assert signed.user["username"] == "Alice"


# Passwords


@pytest.mark.parametrize(
    "password, size",
    [
        ("a" * 8, 8),
        ("a" * 72, 72),
        ("é" * 4, 8),  # 4 characters, 8 bytes
        ("é" * 36, 72),
        ("€" * 24, 72),  # 3-byte characters
        ("😀" * 2, 8),  # 4-byte characters
        ("a" * 70 + "é", 72),
    ],
)
def test_password_byte_bounds_accept(password: str, size: int) -> None:
    """8 and 72 UTF-8 bytes are accepted, counted in bytes rather than characters."""
    assert check_password(password) == password.encode("utf-8")
    assert len(check_password(password)) == size


@pytest.mark.parametrize(
    "password",
    [
        "",
        "a" * 7,
        "a" * 73,
        "é" * 3 + "a",  # 7 bytes
        "é" * 36 + "a",  # 73 bytes in 37 characters
        "€" * 25,  # 75 bytes in 25 characters
        "a" * 71 + "é",  # 73 bytes
        "\ud800" * 8,  # lone surrogates are not UTF-8
        "abcdefgh\udfff",
    ],
)
def test_password_byte_bounds_refuse(password: str) -> None:
    """Fewer than 8 or more than 72 UTF-8 bytes, or text that is not UTF-8 at all, is invalid_password."""
    with pytest.raises(GameError) as caught:
        check_password(password)
    assert caught.value.code == "invalid_password"


@pytest_twisted.ensureDeferred
async def test_invalid_password_checked_before_hashing() -> None:
    """Signup and login refuse a 7- or 73-byte password without spending any hashing; 8 and 72 bytes work."""
    a = accounts()
    for bad in ("a" * 7, "é" * 36 + "a"):
        assert (await error_of(a.service.signup("bob", bad, "1.1.1.1"))).code == "invalid_password"
        assert (await error_of(a.service.login("bob", bad, "1.1.1.1"))).code == "invalid_password"
    assert (a.hasher.hashes, a.hasher.checks) == (0, 0)
    assert a.store.users == {}
    await a.service.signup("bob", "é" * 36, "1.1.1.1")
    await a.service.signup("carol", "a" * 8, "1.1.1.1")
    assert a.store.users["bob"]["password_hash"] == b"plain$" + "é".encode() * 36
    assert (await a.service.login("Bob", "é" * 36, "1.1.1.1")).user["username"] == "bob"


# Login


@pytest_twisted.ensureDeferred
async def test_unknown_user_spends_exactly_one_check() -> None:
    """Login of an unknown user spends one hasher check, like a wrong password, and both answer the same."""
    a = accounts()
    await a.service.signup("known", GOOD, "1.1.1.1")
    before = a.hasher.checks
    unknown = await error_of(a.service.login("nobody", GOOD, "1.1.1.2"))
    assert a.hasher.checks == before + 1
    wrong = await error_of(a.service.login("known", "wrong password", "1.1.1.2"))
    assert a.hasher.checks == before + 2
    malformed = await error_of(a.service.login("no such name!", GOOD, "1.1.1.2"))
    assert a.hasher.checks == before + 3
    assert unknown.code == wrong.code == malformed.code == "bad_credentials"
    assert unknown.message == wrong.message == malformed.message


@pytest_twisted.ensureDeferred
async def test_login_opens_a_new_session() -> None:
    """Login with the right password answers the user and a fresh token that resumes; signup's token stays valid."""
    a = accounts()
    first = await a.service.signup("dave", GOOD, "1.1.1.1")
    second = await a.service.login("dave", GOOD, "1.1.1.1")
    assert second.token != first.token
    assert second.user == {"username": "dave", "wins": 0, "games": 0}
    assert len(a.store.sessions) == 2
    for token in (first.token, second.token):
        assert (await a.service.resume(token))[0].key == "dave"


# Login rate limits


@pytest_twisted.ensureDeferred
async def test_failed_logins_limited_per_user_across_addresses() -> None:
    """After login_user_limit wrong passwords for one name (from any addresses) even the right one is rate_limited until the per-user window passes."""
    a = accounts(login_user_limit=3, login_address_limit=100, login_user_window=900)
    await a.service.signup("erin", GOOD, "9.9.9.9")
    for i in range(3):
        assert (await error_of(a.service.login("erin", "wrong password", f"10.0.0.{i}"))).code == "bad_credentials"
    a.clock.advance(100)
    limited = await error_of(a.service.login("ERIN", GOOD, "10.0.0.99"))
    assert limited.code == "rate_limited"
    assert isinstance(limited, RateLimited) and limited.retry_after == pytest.approx(800)
    assert limited.to_json()["retry_after"] == pytest.approx(800)
    checks = a.hasher.checks
    assert (await error_of(a.service.login("erin", GOOD, "10.0.0.99"))).code == "rate_limited"
    assert a.hasher.checks == checks, "a rate-limited attempt must not spend a bcrypt check"
    # Other names from the same addresses are not affected.
    await a.service.signup("frank", GOOD, "9.9.9.9")
    await a.service.login("frank", GOOD, "10.0.0.0")
    a.clock.advance(799)
    assert (await error_of(a.service.login("erin", GOOD, "10.0.0.99"))).code == "rate_limited"
    a.clock.advance(1)
    assert (await a.service.login("erin", GOOD, "10.0.0.99")).user["username"] == "erin"


@pytest_twisted.ensureDeferred
async def test_failed_logins_limited_per_address() -> None:
    """After login_address_limit failures from one address over many names, that address is limited; others are not."""
    a = accounts(login_user_limit=100, login_address_limit=3, login_window=60)
    await a.service.signup("gina", GOOD, "9.9.9.9")
    for name in ("x1x", "x2x", "gina"):
        assert (await error_of(a.service.login(name, "wrong password", "6.6.6.6"))).code == "bad_credentials"
    limited = await error_of(a.service.login("gina", GOOD, "6.6.6.6"))
    assert limited.code == "rate_limited"
    assert (await a.service.login("gina", GOOD, "7.7.7.7")).user["username"] == "gina"
    a.clock.advance(60)
    assert (await a.service.login("gina", GOOD, "6.6.6.6")).user["username"] == "gina"


@pytest_twisted.ensureDeferred
async def test_login_window_slides() -> None:
    """The window slides: each old failure frees one attempt exactly when it leaves the window."""
    a = accounts(login_user_address_limit=3, login_window=900)
    await a.service.signup("hank", GOOD, "9.9.9.9")
    for step in (0, 600, 100):  # failures at t=0, 600, 700
        a.clock.advance(step)
        await error_of(a.service.login("hank", "wrong password", "1.2.3.4"))
    a.clock.advance(199)  # t=899: all three still in the window
    assert (await error_of(a.service.login("hank", "wrong password", "1.2.3.4"))).retry_after == pytest.approx(1)
    a.clock.advance(1)  # t=900: the first leaves the window, one more attempt is allowed
    assert (await error_of(a.service.login("hank", "wrong password", "1.2.3.4"))).code == "bad_credentials"
    limited = await error_of(a.service.login("hank", "wrong password", "1.2.3.4"))
    assert limited.code == "rate_limited" and limited.retry_after == pytest.approx(600)


@pytest_twisted.ensureDeferred
async def test_success_resets_failures_from_its_address_only() -> None:
    """A successful login clears the name's failures from that address; failures from other addresses keep counting."""
    a = accounts(login_user_address_limit=3, login_user_limit=6, login_address_limit=100)
    await a.service.signup("ivan", GOOD, "9.9.9.9")
    for _ in range(2):
        await error_of(a.service.login("ivan", "wrong password", "1.2.3.4"))
    await error_of(a.service.login("ivan", "wrong password", "6.6.6.6"))
    await a.service.login("ivan", GOOD, "1.2.3.4")
    for _ in range(3):
        assert (await error_of(a.service.login("ivan", "wrong password", "1.2.3.4"))).code == "bad_credentials"
    assert (await error_of(a.service.login("ivan", "wrong password", "1.2.3.4"))).code == "rate_limited"
    # Across addresses the name has 2 + 1 + 3 = 6 failures: login_user_limit, from anywhere.
    assert (await error_of(a.service.login("ivan", GOOD, "5.5.5.5"))).code == "rate_limited"


@pytest_twisted.ensureDeferred
async def test_wrong_passwords_from_one_address_do_not_lock_out_the_owner() -> None:
    """login_user_address_limit failures from one address lock that address out of the name; the owner elsewhere logs in."""
    a = accounts(login_user_address_limit=5, login_user_limit=50, login_address_limit=100)
    await a.service.signup("owner", GOOD, "9.9.9.9")
    for _ in range(5):
        assert (await error_of(a.service.login("owner", "wrong password", "6.6.6.6"))).code == "bad_credentials"
    limited = await error_of(a.service.login("owner", GOOD, "6.6.6.6"))
    assert limited.code == "rate_limited" and limited.retry_after == pytest.approx(900)
    assert (await a.service.login("owner", GOOD, "1.1.1.1")).user["username"] == "owner"


@pytest_twisted.ensureDeferred
async def test_per_user_limit_across_addresses_uses_its_longer_window() -> None:
    """Failures of one name from many addresses are limited by login_user_limit over login_user_window, not login_window."""
    a = accounts(login_user_address_limit=5, login_user_limit=4, login_user_window=3600, login_window=900)
    await a.service.signup("paula", GOOD, "9.9.9.9")
    for i in range(4):
        await error_of(a.service.login("paula", "wrong password", f"10.9.0.{i}"))
    a.clock.advance(1000)  # past login_window, within login_user_window
    limited = await error_of(a.service.login("paula", GOOD, "1.1.1.1"))
    assert limited.code == "rate_limited" and limited.retry_after == pytest.approx(2600)


@pytest_twisted.ensureDeferred
async def test_successful_logins_count_toward_the_attempt_limits() -> None:
    """Right passwords count toward login_user_attempts and login_address_attempts, so one known password cannot buy unlimited hashes."""
    a = accounts(login_user_attempts=3, login_address_attempts=100)
    await a.service.signup("quinn", GOOD, "9.9.9.9")
    for i in range(3):
        await a.service.login("quinn", GOOD, f"10.1.0.{i}")
    checks = a.hasher.checks
    limited = await error_of(a.service.login("quinn", GOOD, "10.1.0.9"))
    assert limited.code == "rate_limited" and a.hasher.checks == checks
    b = accounts(login_user_attempts=100, login_address_attempts=3)
    await b.service.signup("rosa", GOOD, "9.9.9.9")
    await b.service.signup("saul", GOOD, "9.9.9.9")
    for name in ("rosa", "saul", "rosa"):
        await b.service.login(name, GOOD, "4.4.4.4")
    assert (await error_of(b.service.login("saul", GOOD, "4.4.4.4"))).code == "rate_limited"
    assert (await b.service.login("saul", GOOD, "4.4.4.5")).user["username"] == "saul"


@implementer(IHasher)
class GatedHasher(PlainHasher):
    """A PlainHasher whose checks wait until the test releases them, like bcrypt on a busy pool."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[tuple[Deferred, bool]] = []

    def check(self, password: bytes, hashed: bytes) -> Deferred:
        self.checks += 1
        d: Deferred = Deferred()
        self.gates.append((d, hashed == b"plain$" + password))
        return d

    def pending(self) -> int:
        return len(self.gates)

    def release(self) -> None:
        """Answer every waiting check."""
        gates, self.gates = self.gates, []
        for d, ok in gates:
            d.callback(ok)


@pytest_twisted.ensureDeferred
async def test_concurrent_guesses_cannot_outrun_the_limit() -> None:
    """Guesses sent at once (many connections) count while their bcrypt checks are running: only the limit reaches the hasher."""
    hasher = GatedHasher()
    a = accounts(hasher=hasher, login_user_limit=3, login_address_limit=100, hash_user_limit=100)
    await a.service.signup("judy", GOOD, "9.9.9.9")
    attempts = [a.service.login("judy", f"guess number {i}", f"10.0.1.{i}") for i in range(20)]
    assert hasher.checks == 3
    hasher.release()
    codes = [(await error_of(d)).code for d in attempts]
    assert codes.count("bad_credentials") == 3 and codes.count("rate_limited") == 17


@pytest_twisted.ensureDeferred
async def test_full_hash_queue_answers_unavailable_at_once() -> None:
    """With hash_queue_limit hashes waiting, login and signup answer unavailable (retry_after 1) without hashing, and the refusal still counts as an attempt."""
    hasher = GatedHasher()
    a = accounts(hasher=hasher, hash_queue_limit=2, hash_user_limit=100, login_user_attempts=3, login_address_limit=100)
    await a.service.signup("tess", GOOD, "9.9.9.9")
    waiting = [a.service.login("tess", GOOD, f"10.2.0.{i}") for i in range(2)]
    busy = await error_of(a.service.login("tess", GOOD, "10.2.0.9"))
    assert busy.code == "unavailable" and busy.status == 503 and busy.to_json()["retry_after"] == 1.0
    hashes = hasher.hashes
    assert (await error_of(a.service.signup("newbie", GOOD, "10.2.0.8"))).code == "unavailable"
    assert hasher.checks == 2 and hasher.hashes == hashes
    hasher.release()
    for d in waiting:
        await d
    assert a.service.hashing == {}
    # The refused attempt was counted: the name has used its 3 attempts (and nothing waits for the gate).
    assert (await error_of(a.service.login("tess", GOOD, "10.2.0.7"))).code == "rate_limited"


@pytest_twisted.ensureDeferred
async def test_hashes_in_flight_are_capped_per_address() -> None:
    """One address gets at most hash_address_limit hashes in flight (more: rate_limited); other addresses are not affected."""
    hasher = GatedHasher()
    a = accounts(hasher=hasher, hash_address_limit=2, hash_queue_limit=100)
    for name in ("uma", "vic", "walt"):
        await a.service.signup(name, GOOD, "9.9.9.9")
    first = [a.service.login(name, GOOD, "7.7.7.7") for name in ("uma", "vic")]
    limited = await error_of(a.service.login("walt", GOOD, "7.7.7.7"))
    assert limited.code == "rate_limited" and limited.retry_after == 1.0 and hasher.checks == 2
    other = a.service.login("walt", GOOD, "7.7.7.8")
    assert hasher.checks == 3 and a.service.hashing == {"7.7.7.7": 2, "7.7.7.8": 1}
    hasher.release()
    for d in [*first, other]:
        await d
    assert a.service.hashing == {}
    again = a.service.login("walt", GOOD, "7.7.7.7")
    hasher.release()
    assert (await again).user["username"] == "walt"


@pytest_twisted.ensureDeferred
async def test_login_checks_in_flight_are_capped_per_username() -> None:
    """One username gets at most hash_user_limit login checks in flight, from any addresses (more: rate_limited); other names are not affected."""
    hasher = GatedHasher()
    a = accounts(hasher=hasher, hash_user_limit=1, hash_queue_limit=100)
    for name in ("xena", "yuri"):
        await a.service.signup(name, GOOD, "9.9.9.9")
    first = a.service.login("xena", GOOD, "10.3.0.1")
    limited = await error_of(a.service.login("XENA", GOOD, "10.3.0.2"))
    assert limited.code == "rate_limited" and limited.retry_after == 1.0 and hasher.checks == 1
    other = a.service.login("yuri", GOOD, "10.3.0.2")
    assert a.service.checking == {"xena": 1, "yuri": 1}
    hasher.release()
    await first
    await other
    assert a.service.checking == {} and a.service.hashing == {}


@pytest_twisted.ensureDeferred
async def test_success_does_not_count_against_address() -> None:
    """Successful logins, however many, never rate-limit an address."""
    a = accounts(login_address_limit=2)
    await a.service.signup("kate", GOOD, "9.9.9.9")
    for _ in range(5):
        await a.service.login("kate", GOOD, "5.5.5.5")
    assert (await error_of(a.service.login("kate", "wrong password", "5.5.5.5"))).code == "bad_credentials"


@pytest_twisted.ensureDeferred
async def test_store_failure_is_not_counted_as_a_failed_login() -> None:
    """A login that fails because the store is down does not use up the user's attempts."""
    a = accounts(login_user_limit=1)
    await a.service.signup("liam", GOOD, "9.9.9.9")
    a.store.down = True
    for _ in range(3):
        with pytest.raises(Exception) as caught:
            await a.service.login("liam", GOOD, "1.2.3.4")
        assert not isinstance(caught.value, GameError)
    a.store.down = False
    assert (await a.service.login("liam", GOOD, "1.2.3.4")).user["username"] == "liam"


# Signup rate limit


@pytest_twisted.ensureDeferred
async def test_signups_limited_per_address() -> None:
    """The signup_address_limit+1-th signup from one address is rate_limited without hashing; other addresses and a later window are fine."""
    a = accounts(signup_address_limit=2, signup_window=3600)
    await a.service.signup("user1", GOOD, "3.3.3.3")
    await a.service.signup("user2", GOOD, "3.3.3.3")
    hashes = a.hasher.hashes
    limited = await error_of(a.service.signup("user3", GOOD, "3.3.3.3"))
    assert limited.code == "rate_limited" and limited.retry_after == pytest.approx(3600)
    assert a.hasher.hashes == hashes and "user3" not in a.store.users
    await a.service.signup("user3", GOOD, "4.4.4.4")
    a.clock.advance(3600)
    await a.service.signup("user4", GOOD, "3.3.3.3")


# Sessions


@pytest_twisted.ensureDeferred
async def test_token_is_256_bits_and_stored_only_as_sha256() -> None:
    """Tokens carry 256 random bits; the store keeps their SHA-256 and never the token itself."""
    a = accounts()
    tokens = [(await a.service.signup(f"tok{i}", GOOD, f"8.8.8.{i}")).token for i in range(3)]
    tokens.append((await a.service.login("tok0", GOOD, "8.8.8.8")).token)
    assert len(set(tokens)) == 4
    for token in tokens:
        assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) == 32
        digest = hashlib.sha256(token.encode()).hexdigest()
        assert token_hash(token) == digest
        assert a.store.sessions[digest]["token_hash"] == digest
    dump = repr(a.store.sessions) + repr(a.store.users)
    assert not any(token in dump for token in tokens)


@pytest_twisted.ensureDeferred
async def test_session_expires_after_seven_days_by_default() -> None:
    """By default a session lives 7 days: it resumes one second before and is unauthenticated at expiry."""
    a = accounts()
    assert a.settings.session_ttl == 7 * 86400
    signed = await a.service.signup("mona", GOOD, "1.1.1.1")
    assert a.store.sessions[token_hash(signed.token)]["expires"] == START + 7 * 86400
    a.clock.advance(7 * 86400 - 1)
    assert (await a.service.resume(signed.token))[0].key == "mona"
    a.clock.advance(1)
    assert (await error_of(a.service.resume(signed.token))).code == "unauthenticated"


@pytest_twisted.ensureDeferred
async def test_session_ttl_setting() -> None:
    """A configured session_ttl is the session's life."""
    a = accounts(session_ttl=120)
    signed = await a.service.signup("nick", GOOD, "1.1.1.1")
    a.clock.advance(119.5)
    await a.service.resume(signed.token)
    a.clock.advance(0.5)
    assert (await error_of(a.service.resume(signed.token))).code == "unauthenticated"


@pytest_twisted.ensureDeferred
async def test_logout_revokes_only_that_session() -> None:
    """Logout deletes the session from the store; resuming it is unauthenticated; the user's other sessions live on."""
    a = accounts()
    first = await a.service.signup("olga", GOOD, "1.1.1.1")
    second = await a.service.login("olga", GOOD, "1.1.1.1")
    await a.service.logout(first.token)
    assert token_hash(first.token) not in a.store.sessions
    assert (await error_of(a.service.resume(first.token))).code == "unauthenticated"
    assert (await a.service.resume(second.token))[0].key == "olga"
    await a.service.logout(first.token)  # twice is harmless


@pytest_twisted.ensureDeferred
async def test_resume_with_unknown_tokens() -> None:
    """Empty, made-up, and hash-instead-of-token values never resume a session."""
    a = accounts()
    signed = await a.service.signup("pete", GOOD, "1.1.1.1")
    for token in ("", "nope", signed.token + "x", token_hash(signed.token), signed.token.upper()):
        assert (await error_of(a.service.resume(token))).code == "unauthenticated"


@pytest.mark.parametrize(
    "header, token",
    [
        ("gamesvc_session=abc-DEF_123", "abc-DEF_123"),
        ("theme=dark; gamesvc_session=abc; lang=en", "abc"),
        ('prefs={"a":1}; gamesvc_session=abc', "abc"),
        ("note=two words; gamesvc_session=abc", "abc"),
        ('gamesvc_session="abc"', "abc"),
        ("other_gamesvc_session=abc", None),
        ("gamesvc_session=", None),
        ("gamesvc_session=abc; gamesvc_session=def", None),
        ("gamesvc_session=abc, gamesvc_session=def", None),
        ("", None),
        (None, None),
    ],
)
def test_session_token_from_cookie(header: str | None, token: str | None) -> None:
    """The session cookie is found among any other cookies a browser sends, even ones a strict parser rejects."""
    assert session_token_from_cookie(header) == token


# Leaderboard


@pytest_twisted.ensureDeferred
async def test_leaderboard_order_and_limit() -> None:
    """The leaderboard sorts by wins desc, then games asc, then name, and honours the limit."""
    a = accounts(signup_address_limit=100)
    stats = {"zed": (5, 9), "amy": (5, 9), "Bob": (5, 7), "cat": (9, 20), "dan": (0, 0), "eve": (0, 3)}
    for name, (wins, games) in stats.items():
        await a.service.signup(name, GOOD, "1.1.1.1")
        a.store.users[name.lower()].update(wins=wins, games=games)
    board = await a.service.leaderboard(100)
    assert [p["username"] for p in board] == ["cat", "Bob", "amy", "zed", "dan", "eve"]
    assert board[0] == {"username": "cat", "wins": 9, "games": 20}
    assert [p["username"] for p in await a.service.leaderboard(2)] == ["cat", "Bob"]


@pytest_twisted.ensureDeferred
async def test_memory_services_wire_accounts() -> None:
    """memory_services() wires an AccountService over the memory store: signup there is visible in raw_store."""
    services = memory_services()
    signed = await services.accounts.signup("wired", GOOD, "1.1.1.1")
    assert "wired" in services.raw_store.users
    assert token_hash(signed.token) in services.raw_store.sessions
    assert await services.accounts.leaderboard(20) == [{"username": "wired", "wins": 0, "games": 0}]


# Typed arguments


INJECTIONS = [{"$ne": None}, {"$gt": ""}, ["a", "b"], 12345, 1.5, True, None]


@pytest.mark.parametrize("value", INJECTIONS)
def test_text_refuses_non_strings(value: Any) -> None:
    """A required text argument that is an operator object, array, number, boolean or null is bad_request."""
    with pytest.raises(GameError) as caught:
        args.text({"username": value}, "username")
    assert caught.value.code == "bad_request"


@pytest.mark.parametrize("value", [{"$ne": None}, ["1"], "10", 1.0, True, False])
def test_integer_refuses_non_integers(value: Any) -> None:
    """An integer argument that is an object, array, string, float or boolean is bad_request."""
    with pytest.raises(GameError) as caught:
        args.integer({"limit": value}, "limit", low=1, high=100, default=20)
    assert caught.value.code == "bad_request"


def test_integer_bounds_and_default() -> None:
    """Integers outside [low, high] are bad_request; absent or null takes the default."""
    assert args.integer({}, "limit", low=1, high=100, default=20) == 20
    assert args.integer({"limit": None}, "limit", low=1, high=100, default=20) == 20
    assert args.integer({"limit": 1}, "limit", low=1, high=100) == 1
    assert args.integer({"limit": 100}, "limit", low=1, high=100) == 100
    for bad in (0, 101, -1):
        with pytest.raises(GameError):
            args.integer({"limit": bad}, "limit", low=1, high=100)


def test_boolean_refuses_non_booleans() -> None:
    """A boolean argument that is 0, 1, "true" or an object is bad_request."""
    for bad in (0, 1, "true", {"$ne": None}):
        with pytest.raises(GameError):
            args.boolean({"ready": bad}, "ready")


# SlidingWindow


def test_sliding_window_limit_and_expiry() -> None:
    """A key may act `limit` times per window; each event stops counting exactly `window` seconds later."""
    clock = Clock()
    window = SlidingWindow(clock, limit=2, window=10)
    assert window.retry_after("k") is None
    window.hit("k")
    clock.advance(4)
    window.hit("k")
    assert window.retry_after("k") == pytest.approx(6)
    assert window.retry_after("other") is None
    clock.advance(6)
    assert window.retry_after("k") is None
    window.hit("k")
    assert window.retry_after("k") == pytest.approx(4)
    window.reset("k")
    assert window.retry_after("k") is None and len(window) == 0


def test_sliding_window_retry_after_when_over_limit() -> None:
    """With more events than the limit, retry_after waits until enough have left the window, not just the oldest."""
    clock = Clock()
    window = SlidingWindow(clock, limit=2, window=10)
    for _ in range(3):
        window.hit("k")
        clock.advance(1)
    # Events at 0, 1, 2; now 3. The count drops below 2 only when the event at 1 leaves, at t=11.
    assert window.retry_after("k") == pytest.approx(8)
    clock.advance(8)
    assert window.retry_after("k") is None


def test_sliding_window_forgets_idle_keys() -> None:
    """Many one-off keys do not grow memory without bound: idle keys are swept."""
    clock = Clock()
    window = SlidingWindow(clock, limit=5, window=1)
    for i in range(SlidingWindow.SWEEP_EVERY - 1):
        window.hit(f"k{i}")
    assert len(window) == SlidingWindow.SWEEP_EVERY - 1
    clock.advance(2)
    window.hit("last")
    assert len(window) == 1


# TokenBucket


def test_token_bucket_burst_and_refill() -> None:
    """A bucket allows `burst` at once, then refills at `rate` per second, never above `burst`."""
    clock = Clock()
    bucket = TokenBucket(clock, rate=2, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(0.5)
    clock.advance(0.5)
    assert bucket.take() is True and bucket.take() is False
    clock.advance(100)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


# The real bcrypt hasher


@pytest_twisted.ensureDeferred
async def test_bcrypt_hasher_works_off_the_reactor_thread(reactor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """BcryptHasher hashes and checks with real bcrypt (cost 4) on the pool's threads, never the reactor's."""
    threads: list[tuple[str, int]] = []
    real_hashpw, real_checkpw = bcrypt.hashpw, bcrypt.checkpw

    def hashpw(password: bytes, salt: bytes) -> bytes:
        threads.append(("hash", threading.get_ident()))
        return real_hashpw(password, salt)

    def checkpw(password: bytes, hashed: bytes) -> bool:
        threads.append(("check", threading.get_ident()))
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "hashpw", hashpw)
    monkeypatch.setattr(bcrypt, "checkpw", checkpw)
    pool = ThreadPool(minthreads=0, maxthreads=2, name="test-bcrypt")
    pool.start()
    try:
        hasher = BcryptHasher(reactor, pool, cost=4)
        verifyObject(IHasher, hasher)
        password = ("é" * 36).encode()
        d = hasher.hash(password)
        assert hasher.pending() == 1
        hashed = await within(reactor, d)
        assert hasher.pending() == 0
        assert hashed.startswith(b"$2b$04$") and password not in hashed
        assert await within(reactor, hasher.check(password, hashed)) is True
        assert await within(reactor, hasher.check(("é" * 35 + "e").encode(), hashed)) is False
        assert await within(reactor, hasher.check(password, real_hashpw(b"other password", bcrypt.gensalt(4)))) is False
    finally:
        pool.stop()
    reactor_thread = threading.get_ident()
    assert [kind for kind, _ in threads] == ["hash", "check", "check", "check"]
    assert all(ident != reactor_thread for _, ident in threads)


@pytest_twisted.ensureDeferred
async def test_account_service_with_real_bcrypt(reactor: Any) -> None:
    """Signup and login work end to end with the real hasher; the stored hash is bcrypt, not the password."""
    pool = ThreadPool(minthreads=0, maxthreads=2, name="test-bcrypt")
    pool.start()
    try:
        store = MemoryStore()
        service = AccountService(store, reactor, BcryptHasher(reactor, pool, cost=4), Settings())
        await within(reactor, service.signup("realbc", "a" * 72, "1.1.1.1"))
        stored = store.users["realbc"]["password_hash"]
        assert bcrypt.checkpw(b"a" * 72, stored)
        await within(reactor, service.login("realbc", "a" * 72, "1.1.1.1"))
        with pytest.raises(GameError) as caught:
            await within(reactor, service.login("realbc", "a" * 71 + "b", "1.1.1.1"))
        assert caught.value.code == "bad_credentials"
        with pytest.raises(GameError) as caught:
            await within(reactor, service.login("nobody", "a" * 72, "1.1.1.1"))
        assert caught.value.code == "bad_credentials"
    finally:
        pool.stop()


@pytest.mark.parametrize(
    "peer, host",
    [("tcp:1.2.3.4:5678", "1.2.3.4"), ("tcp6:::1:5678", "::1"), ("tcp6:2001:db8::7:443", "2001:db8::7"), ("unix", "unix")],
)
def test_peer_host_keeps_whole_ipv6_addresses(peer: str, host: str) -> None:
    """Per-address limits key on the whole client address, IPv6 included, not on its first group."""
    from gamesvc.protocol import peer_host

    assert peer_host(peer) == host


def test_hash_threads_run_at_a_lower_priority() -> None:
    """A hashing thread raises its own niceness once, leaving the reactor thread's priority alone."""
    import os
    import threading

    from gamesvc.passwords import lower_thread_priority

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def hashing_thread() -> None:
        lower_thread_priority(before + 5)
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    worker = threading.Thread(target=hashing_thread)
    worker.start()
    worker.join()
    assert seen == [before + 5]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before

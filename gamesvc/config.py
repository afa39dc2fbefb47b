"""Every tunable of gamesvc in one table: defaults, help text, parsing and checks.

`Settings` is what the services receive. Its fields are the single source of the
command-line options (`gamesvc.tap.Options`) and of the `GAMESVC_*` environment
variables, so an option cannot exist in one place and be missing in another.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs

from gamesvc.addresses import parse_trusted_proxy
from gamesvc.origins import parse_pattern
from gamesvc.redisbus import parse_redis_uri

ENV_PREFIX = "GAMESVC_"


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """Parse an integer and check that it lies in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value

    return parse


def _float_in(low: float, high: float) -> Callable[[str], float]:
    """Parse a number and check that it lies in [low, high]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise ValueError(f"{value:g} is outside {low:g}..{high:g}")
        return value

    return parse


def _text(text: str) -> str:
    """Accept any non-empty text."""
    if not text:
        raise ValueError("must not be empty")
    return text


def _optional_float_in(low: float, high: float) -> Callable[[str], float | None]:
    """Parse a number in [low, high], or empty text for none."""
    parse = _float_in(low, high)
    return lambda text: parse(text) if text else None


def _optional_int(text: str) -> int | None:
    """Parse an integer, or empty text for none."""
    return int(text) if text else None


def _gc_threshold(text: str) -> tuple[int, ...]:
    """Parse the collector's thresholds: one to three whole numbers, comma-separated, e.g. ``700,10,10``."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r} is not like 700,10,10") from None
    if not 1 <= len(values) <= 3 or any(v < 0 for v in values):
        raise ValueError(f"{text!r} is not one to three whole numbers like 700,10,10")
    return values


def _repeated(text: str, parse: Callable[[str], Any]) -> tuple[Any, ...]:
    """Parse a comma-separated list of a repeatable option's values (used for the environment variable)."""
    return tuple(parse(part.strip()) for part in text.split(",") if part.strip())


def _check_origin(origin: str) -> str:
    """Check an allowed-origin pattern: scheme://host[:port], `*` only as a whole leading label."""
    parse_pattern(origin)
    return origin


def _redis_uri(text: str) -> str:
    """Check that a Redis URI looks like redis://[:password@]host[:port][/db]."""
    parse_redis_uri(text)
    return text


def _node_id(text: str) -> str:
    """Check a node id: 1..64 letters, digits, dots, dashes or underscores."""
    if not 1 <= len(text) <= 64 or not all(c.isascii() and (c.isalnum() or c in "._-") for c in text):
        raise ValueError(f"{text!r} is not 1..64 letters, digits, '.', '-' or '_'")
    return text


def option(
    default: Any,
    parse: Callable[[str], Any],
    help: str,
    *,
    flag: bool = False,
    repeatable: bool = False,
) -> Any:
    """Declare one setting: its default, how to parse it from text, and its help line."""
    return attrs.field(
        default=default,
        metadata={"parse": parse, "help": help, "flag": flag, "repeatable": repeatable},
    )


@attrs.frozen
class Settings:
    """The service's configuration; every limit has a documented default."""

    # Network
    port: int = option(5000, _int_in(0, 65535), "TCP port for the web site and WebSocket (0 picks a free one)")
    interface: str = option("127.0.0.1", str, "interface to listen on (0.0.0.0 for all IPv4 interfaces)")
    allowed_origins: tuple[str, ...] = option(
        (),
        _check_origin,
        "allowed WebSocket Origin, repeatable; `*` only as a whole leading label (default: the server's own origin)",
        repeatable=True,
    )
    trusted_proxies: tuple[str, ...] = option(
        (),
        parse_trusted_proxy,
        "address or CIDR of a reverse proxy whose X-Forwarded-For is believed, repeatable (default: none)",
        repeatable=True,
    )
    behind_tls: bool = option(
        False, bool, "the service is reached over HTTPS through a proxy: mark cookies Secure", flag=True
    )
    max_connections: int = option(10000, _int_in(1, 1_000_000), "most WebSocket connections at once")
    max_message_bytes: int = option(65536, _int_in(1024, 16 * 1024 * 1024), "largest WebSocket message accepted")
    max_body_bytes: int = option(16384, _int_in(1024, 1024 * 1024), "largest HTTP API request body accepted")
    ping_interval: float = option(30.0, _float_in(0, 3600), "seconds between WebSocket pings (0: never)")
    ping_timeout: float = option(10.0, _float_in(0, 3600), "seconds to wait for a pong before dropping")
    handshake_timeout: float = option(10.0, _float_in(0.1, 600), "seconds allowed for the WebSocket handshake")
    http_header_timeout: float = option(
        10.0, _float_in(0.1, 600), "seconds an HTTP request's line and headers may take in all (not reset by each byte)"
    )
    http_body_timeout: float = option(
        30.0, _float_in(0.1, 3600), "seconds an HTTP request's body may take in all, from the end of its headers"
    )
    send_buffer_bytes: int = option(
        1024 * 1024, _int_in(4096, 1024 * 1024 * 1024), "unsent bytes a slow client may have queued before it is dropped"
    )

    metrics_port: int | None = option(
        None, _int_in(0, 65535), "serve /metrics on this separate port only (default: on the main port)"
    )
    metrics_interface: str = option("127.0.0.1", str, "interface of the separate metrics port")

    # Storage
    mongo_uri: str | None = option(None, _text, "MongoDB URI (absent: run the embedded store in --data-dir)")
    data_dir: str = option("./gamesvc-data", _text, "folder of the embedded store's data")
    store_timeout: float = option(5.0, _float_in(0.1, 600), "seconds before a store call fails as unavailable")

    # Accounts
    bcrypt_cost: int = option(12, _int_in(4, 31), "bcrypt work factor for password hashes")
    hash_threads: int = option(2, _int_in(1, 64), "threads that run bcrypt off the reactor")
    hash_nice: int = option(
        10, _int_in(0, 19), "niceness of the bcrypt threads, so hashing yields the CPU to the reactor (0: none)"
    )
    hash_queue_limit: int = option(
        16, _int_in(1, 100_000), "password hashes queued or running, service-wide, beyond which signup and login answer unavailable"
    )
    hash_address_limit: int = option(
        2, _int_in(1, 1000), "password hashes in flight per client address (more: rate_limited)"
    )
    hash_user_limit: int = option(1, _int_in(1, 1000), "login password checks in flight per username (more: rate_limited)")
    session_ttl: float = option(7 * 86400.0, _float_in(60, 365 * 86400), "seconds a session token lives")
    login_user_address_limit: int = option(
        5, _int_in(1, 1_000_000), "failed logins per username from one client address per --login-window"
    )
    login_user_limit: int = option(
        50, _int_in(1, 1_000_000), "failed logins per username from all addresses together per --login-user-window"
    )
    login_user_window: float = option(3600.0, _float_in(1, 7 * 86400), "seconds of the per-username failed-login window")
    login_address_limit: int = option(20, _int_in(1, 1_000_000), "failed logins per client address per window")
    login_user_attempts: int = option(
        20, _int_in(1, 1_000_000), "logins, right or wrong, per username per --login-window"
    )
    login_address_attempts: int = option(
        60, _int_in(1, 1_000_000), "logins, right or wrong, per client address per --login-window"
    )
    login_window: float = option(900.0, _float_in(1, 86400), "seconds of the failed-login window")
    signup_address_limit: int = option(10, _int_in(1, 1_000_000), "signups per client address per window")
    signup_window: float = option(3600.0, _float_in(1, 86400), "seconds of the signup window")

    # Per-connection message limits
    message_rate: float = option(20.0, _float_in(0.01, 100_000), "WebSocket messages per second per connection")
    message_burst: int = option(40, _int_in(1, 1_000_000), "WebSocket message burst per connection")
    chat_rate: float = option(1.0, _float_in(0.01, 100_000), "chat messages per second per connection")
    chat_burst: int = option(5, _int_in(1, 1_000_000), "chat message burst per connection")
    flood_strikes: int = option(
        50, _int_in(1, 1_000_000), "rate-limited messages in a row before the connection is closed (1008)"
    )
    max_queued_requests: int = option(
        32, _int_in(1, 100_000), "requests waiting behind one that awaits the store; when full, reading pauses"
    )
    max_queued_bytes: int = option(
        131072, _int_in(1024, 1024 * 1024 * 1024), "bytes of waiting requests; when full, reading pauses (1008 if more comes)"
    )
    max_connections_per_address: int = option(
        100, _int_in(1, 1_000_000), "most WebSocket connections at once from one client address (more: HTTP 429)"
    )
    signin_timeout: float = option(
        30.0, _float_in(0, 86400), "seconds a WebSocket may stay open without signing in (then close 4408; 0: forever)"
    )

    # Rooms and games
    max_rooms: int = option(5000, _int_in(1, 1_000_000), "most rooms open at once")
    bot_delay: float = option(1.5, _float_in(0, 60), "average seconds a bot waits before it rolls (0.5 to 1.5 times this)")
    quick_play_wait: float = option(
        10.0, _float_in(0, 3600), "seconds a room made by quick play waits for people before bots fill its free seats"
    )
    quick_play_seats: int = option(4, _int_in(2, 4), "seats of a room made by quick play")
    bot_limit: int = option(30, _int_in(1, 1_000_000), "bots one account may add (by hand or by quick play) per window")
    bot_window: float = option(600.0, _float_in(1, 86400), "seconds of the window of --bot-limit")
    grace_seconds: float = option(60.0, _float_in(0, 86400), "seconds a dropped player keeps the seat")
    turn_seconds: float = option(20.0, _float_in(1, 86400), "seconds a player has to roll before the server rolls")
    chat_history: int = option(50, _int_in(0, 10000), "chat messages a room keeps for players who join")
    result_retry: float = option(2.0, _float_in(0.01, 3600), "seconds between retries of a failed result write")
    checkpoint_interval: float = option(
        0.0, _float_in(0, 600),
        "seconds a changed room may wait for its checkpoint write (0: at once; a crash loses at most this much play)",
    )
    room_create_limit: int = option(10, _int_in(1, 1_000_000), "rooms one account may create per --room-limit-window")
    room_churn_limit: int = option(
        30, _int_in(1, 1_000_000), "joins, leaves and spectates of one account per --room-limit-window"
    )
    room_limit_window: float = option(60.0, _float_in(1, 86400), "seconds of the room create and churn windows")
    max_spectators: int = option(100, _int_in(0, 1_000_000), "most spectators in one room (more: room_full)")
    coalesce_seconds: float = option(
        0.25, _float_in(0, 60),
        "seconds over which a room's spectator-count changes and lobby updates are merged into one (0: none)",
    )
    room_miss_limit: int = option(
        10, _int_in(1, 1_000_000), "joins of unknown room codes per account per --room-miss-window"
    )
    room_miss_address_limit: int = option(
        30, _int_in(1, 1_000_000), "joins of unknown room codes per client address per --room-miss-window"
    )
    room_miss_window: float = option(600.0, _float_in(1, 86400), "seconds of the unknown-room-code window")
    result_journal: str | None = option(
        None, _text, "file where finished results wait for the store (default: results.journal in --data-dir)"
    )
    dice_seed: int | None = option(
        None, _optional_int, "TESTING ONLY: draw the fair dice's server seeds (and drawn client seeds) from a seeded PRNG"
    )

    # Runtime
    gc_threshold: tuple[int, ...] = option(
        (10000, 20, 10),
        _gc_threshold,
        "garbage collector thresholds gen0,gen1,gen2 set after start-up (Python's own: 700,10,10; see bench/README.md)",
    )

    # Cluster
    redis_uri: str | None = option(
        None, _redis_uri,
        "Redis for messages between nodes, redis://[:password@]host[:port][/db] (absent: run alone; its connect, reply "
        "and heartbeat timeout is --store-timeout)",
    )
    node_id: str | None = option(
        None, _node_id, "this node's name in the cluster, unique (default: <host>-<pid>-<4 random hex digits>)"
    )
    reuse_port: bool = option(
        False, bool, "listen with SO_REUSEPORT so that several processes share --port (the kernel spreads connections)",
        flag=True,
    )
    lease_seconds: float = option(
        10.0, _float_in(1, 3600),
        "with --redis-uri: seconds a node owns a room without renewing; a dead node's rooms are taken over after it",
    )
    lease_renew_seconds: float | None = option(
        None, _optional_float_in(0.1, 1200),
        "with --redis-uri: seconds between lease renewals and between looks for rooms to take over "
        "(less than a third of --lease-seconds; default: a quarter of it)",
    )


def setting_fields() -> tuple[attrs.Attribute, ...]:
    """The fields of `Settings`, in declaration order."""
    return attrs.fields(Settings)


def option_name(field: attrs.Attribute) -> str:
    """The command-line name of a setting, e.g. ``bcrypt-cost``."""
    name = field.name.replace("_", "-")
    return {"allowed-origins": "allowed-origin", "trusted-proxies": "trusted-proxy"}.get(name, name)


def env_name(field: attrs.Attribute) -> str:
    """The environment variable of a setting, e.g. ``GAMESVC_BCRYPT_COST``."""
    return ENV_PREFIX + field.name.upper()


def parse_env(field: attrs.Attribute, text: str) -> Any:
    """Parse a setting's environment variable text."""
    if field.metadata["flag"]:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{text!r} is not a yes/no value")
    if field.metadata["repeatable"]:
        return _repeated(text, field.metadata["parse"])
    return field.metadata["parse"](text)

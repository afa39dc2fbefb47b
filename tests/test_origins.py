"""Allowed-origin patterns (gamesvc.origins) and the handshake's origin check that uses them."""

from __future__ import annotations

import pytest
from twisted.python import usage

from gamesvc.origins import allowed, parse_pattern
from gamesvc.protocol import origin_allowed
from gamesvc.tap import Options


@pytest.mark.parametrize(
    "pattern",
    [
        "https://*example.com",
        "https://ex*ample.com",
        "https://example.*",
        "https://*.*.example.com",
        "https://a.*.example.com",
        "https://*.com",
        "https://*",
        "*://example.com",
        "ftp://example.com",
        "https://example.com/",
        "https://example.com/path",
        "https://user@example.com",
        "https://example.com:*",
        "https://example.com:0",
        "https://example.com:70000",
        "https://exa mple.com",
        "https://-bad.example.com",
        "https://[::1",
        "example.com",
    ],
)
def test_bad_patterns_are_refused(pattern: str) -> None:
    """A pattern that is not scheme://host[:port], or uses `*` other than as a whole leading label, is a ValueError."""
    with pytest.raises(ValueError):
        parse_pattern(pattern)


@pytest.mark.parametrize(
    "pattern, origin, expected",
    [
        ("https://*.example.com", "https://a.example.com", True),
        ("https://*.example.com", "https://a.b.example.com", True),
        ("https://*.example.com", "https://evilexample.com", False),
        ("https://*.example.com", "https://example.com", False),
        ("https://*.example.com", "https://a.example.com.evil.net", False),
        ("https://*.example.com", "http://a.example.com", False),
        ("https://*.example.com", "https://a.example.com:8443", False),
        ("https://*.example.com:8443", "https://a.example.com:8443", True),
        ("https://example.com", "https://example.com:443", True),
        ("https://example.com:443", "https://example.com", True),
        ("https://example.com", "https://EXAMPLE.com", True),
        ("https://example.com", "http://example.com", False),
        ("http://example.com", "http://example.com:8080", False),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000", True),
        ("http://[::1]:5000", "http://[0:0::1]:5000", True),
        ("https://example.com", "null", False),
        ("https://example.com", "https://example.com/", False),
        ("https://example.com", "https://*.example.com", False),
    ],
)
def test_matching_is_exact_on_scheme_host_and_port(pattern: str, origin: str, expected: bool) -> None:
    """`*.` stands for one or more whole labels; the scheme and the (default) port must be equal."""
    assert allowed(origin, (parse_pattern(pattern),)) is expected


def test_handshake_check_uses_the_patterns() -> None:
    """origin_allowed with patterns admits what they match and nothing like `*example` globbing admitted."""
    patterns = ("https://*.example.com",)
    assert origin_allowed("https://games.example.com", "ignored", True, patterns)
    assert not origin_allowed("https://evilexample.com", "ignored", True, patterns)


@pytest.mark.parametrize(
    "origin, host, secure, expected",
    [
        ("http://127.0.0.1:5000", "127.0.0.1:5000", False, True),
        ("http://localhost", "localhost:80", False, True),
        ("https://games.example.com", "games.example.com", True, True),
        ("http://games.example.com", "games.example.com", True, False),
        ("http://evil@127.0.0.1:5000", "127.0.0.1:5000", False, False),
        ("http://127.0.0.1:5001", "127.0.0.1:5000", False, False),
        ("null", "127.0.0.1:5000", False, False),
        (None, "127.0.0.1:5000", False, True),
    ],
)
def test_own_origin_without_patterns(origin: str | None, host: str, secure: bool, expected: bool) -> None:
    """Without patterns only the server's own scheme, host and port pass (no user part, no other port)."""
    assert origin_allowed(origin, host, secure, ()) is expected


def test_bad_pattern_is_a_usage_error_at_start() -> None:
    """`--allowed-origin https://*example.com` (and the same in the environment) stops start-up with a usage error."""
    options = Options(environ={})
    with pytest.raises(usage.UsageError, match="allowed-origin"):
        options.parseOptions(["--allowed-origin", "https://*example.com"])
    options = Options(environ={"GAMESVC_ALLOWED_ORIGINS": "https://ok.example, https://*evil.example"})
    with pytest.raises(usage.UsageError, match="GAMESVC_ALLOWED_ORIGINS"):
        options.parseOptions([])

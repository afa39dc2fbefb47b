"""Client addresses (gamesvc.addresses): X-Forwarded-For only from trusted proxies, IPv6 keyed by its /64."""

from __future__ import annotations

import pytest
from twisted.python import usage

from gamesvc.addresses import client_address, parse_trusted_proxy, trusted_networks
from gamesvc.tap import Options

PROXIES = trusted_networks(["10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(
    "peer, forwarded, expected",
    [
        # Without a trusted peer the header is ignored.
        ("203.0.113.5", "1.2.3.4", "203.0.113.5"),
        # A trusted peer: the rightmost untrusted entry is the client.
        ("10.0.0.1", "1.2.3.4", "1.2.3.4"),
        ("10.0.0.1", "6.6.6.6, 1.2.3.4", "1.2.3.4"),
        ("10.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.7", "1.2.3.4"),
        ("10.0.0.1", "10.0.0.9, 10.0.0.7", "10.0.0.9"),
        ("10.0.0.1", "1.2.3.4:5678", "1.2.3.4"),
        ("10.0.0.1", "[2001:db8::1]:443", "2001:db8::/64"),
        # Garbage stops the walk at the hop that handed it over.
        ("10.0.0.1", "1.2.3.4, not-an-address", "10.0.0.1"),
        ("10.0.0.1", "not-an-address, 10.0.0.7", "10.0.0.7"),
        ("10.0.0.1", "", "10.0.0.1"),
        ("10.0.0.1", None, "10.0.0.1"),
        # IPv6 clients are keyed by their /64; IPv4-mapped addresses are IPv4.
        ("2001:db8:1:2:3:4:5:6", None, "2001:db8:1:2::/64"),
        ("fd00::1", "2001:db8:aa:bb::99", "2001:db8:aa:bb::/64"),
        ("::ffff:1.2.3.4", None, "1.2.3.4"),
        # Not an IP address (a Unix socket): as it is.
        ("unknown", "1.2.3.4", "unknown"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    """The key limits and logs use for a client, with 10.0.0.0/8 and fd00::/8 trusted."""
    assert client_address(peer, forwarded, PROXIES) == expected


def test_nothing_changes_without_trusted_proxies() -> None:
    """With no --trusted-proxy the header is never read, whoever the peer is."""
    assert client_address("127.0.0.1", "1.2.3.4", ()) == "127.0.0.1"


def test_a_long_header_costs_only_its_rightmost_entries() -> None:
    """A forged header of thousands of trusted-looking entries is walked only from the right, a bounded number."""
    forwarded = ", ".join(["10.0.0.3"] * 5000 + ["10.0.0.4"] * 40)
    assert client_address("10.0.0.1", forwarded, PROXIES) == "10.0.0.4"


@pytest.mark.parametrize("text", ["10.0.0.0/33", "10.0.0.1/8", "proxy.example", "", "::1/129"])
def test_bad_trusted_proxy_is_refused(text: str) -> None:
    """A --trusted-proxy value that is not an address or a CIDR network (no host bits) is a ValueError."""
    with pytest.raises(ValueError):
        parse_trusted_proxy(text)


def test_trusted_proxy_option_and_environment() -> None:
    """--trusted-proxy repeats; GAMESVC_TRUSTED_PROXIES is comma-separated; the command line wins; bad ones are usage errors."""
    options = Options(environ={"GAMESVC_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1"})
    options.parseOptions([])
    assert options.settings.trusted_proxies == ("10.0.0.0/8", "192.168.1.1/32")
    options = Options(environ={"GAMESVC_TRUSTED_PROXIES": "10.0.0.0/8"})
    options.parseOptions(["--trusted-proxy", "127.0.0.1/32", "--trusted-proxy", "::1"])
    assert options.settings.trusted_proxies == ("127.0.0.1/32", "::1/128")
    with pytest.raises(usage.UsageError, match="--trusted-proxy"):
        Options(environ={}).parseOptions(["--trusted-proxy", "everyone"])

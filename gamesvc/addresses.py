"""Client addresses as limits and logs key them: X-Forwarded-For from trusted proxies only, IPv6 by its /64."""

from __future__ import annotations

import ipaddress
from typing import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# At most this many X-Forwarded-For entries are walked from the right (no proxy chain is that long).
MAX_FORWARDED_ENTRIES = 32


def parse_trusted_proxy(text: str) -> str:
    """Check a --trusted-proxy value (an address or a CIDR network) and return it normalised."""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=True))
    except ValueError as e:
        raise ValueError(f"{text!r} is not an address or CIDR network like 10.0.0.0/8 or fd00::/8 ({e})") from None


def trusted_networks(texts: Sequence[str]) -> tuple[Network, ...]:
    """The networks of already checked --trusted-proxy values."""
    return tuple(ipaddress.ip_network(text) for text in texts)


def _parse_ip(text: str) -> IPAddress | None:
    """An address from a peer or X-Forwarded-For entry (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has two colons or more
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_key(address: IPAddress) -> str:
    """The key limits use for a client: the IPv4 address, or the /64 network of an IPv6 address
    (one subscriber usually holds a whole /64, so single IPv6 addresses are free to them)."""
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


def _trusted(address: IPAddress, trusted: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)


def client_address(peer_host: str, x_forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's key: the peer, or, when the peer is a trusted proxy, the rightmost untrusted
    X-Forwarded-For entry (all headers joined with commas); an unparsable entry stops the walk at the
    hop that handed it over. A peer that is not an IP address (a Unix socket) is returned as it is."""
    peer = _parse_ip(peer_host)
    if peer is None:
        return peer_host
    client = peer
    if x_forwarded_for is not None and trusted and _trusted(peer, trusted):
        # Only the rightmost entries matter: the left part is whatever the client chose to send.
        for entry in reversed(x_forwarded_for.rsplit(",", MAX_FORWARDED_ENTRIES)[-MAX_FORWARDED_ENTRIES:]):
            hop = _parse_ip(entry)
            if hop is None:
                break
            client = hop
            if not _trusted(hop, trusted):
                break
    return address_key(client)

"""Allowed-origin patterns: parsed once at start, matched exactly (scheme, host, port); no shell globbing.

A pattern is ``scheme://host[:port]`` with scheme ``http`` or ``https``. The host is a DNS name, an IPv4
address or a bracketed IPv6 address; a DNS name may start with ``*.`` as its whole first label, which matches
one or more labels in its place (``https://*.example.com`` admits ``https://a.example.com`` and
``https://a.b.example.com``, never ``https://example.com`` nor ``https://evilexample.com``). A missing port
means the scheme's default (443 or 80), so ``https://example.com`` and ``https://example.com:443`` are equal.
"""

from __future__ import annotations

import functools
import ipaddress
import re

import attrs

DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")


@attrs.frozen
class OriginPattern:
    """One parsed allowed-origin pattern: the scheme, the host (without ``*.``), the port, and whether
    the host is a wildcard's suffix."""

    scheme: str
    host: str
    port: int
    wildcard: bool = False

    def matches(self, origin: "Origin") -> bool:
        """Whether `origin` is admitted by this pattern."""
        if origin.scheme != self.scheme or origin.port != self.port:
            return False
        if self.wildcard:
            return origin.host.endswith("." + self.host) and not origin.literal
        return origin.host == self.host


@attrs.frozen
class Origin:
    """A browser origin as sent in the Origin header, normalised: scheme, host (lower case) and port."""

    scheme: str
    host: str
    port: int
    literal: bool = False  # an IP address rather than a DNS name


def _split(text: str) -> tuple[str, str, int, bool]:
    """Split ``scheme://host[:port]`` into its lower-cased parts; ValueError when it is not exactly that."""
    scheme, sep, rest = text.strip().lower().partition("://")
    if not sep or scheme not in DEFAULT_PORTS:
        raise ValueError("the scheme must be http or https")
    if not rest or any(c in rest for c in "/?#@\\ \t"):
        raise ValueError("an origin has no path, query, user or spaces")
    port_text: str | None = None
    if rest.startswith("["):
        host, bracket, after = rest[1:].partition("]")
        if not bracket:
            raise ValueError("an IPv6 host needs its closing ]")
        if after:
            if not after.startswith(":"):
                raise ValueError("only :port may follow the host")
            port_text = after[1:]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        literal = True
    else:
        host, colon, port_part = rest.partition(":")
        if colon:
            port_text = port_part
        literal = _is_ipv4(host)
        if not literal and not host.startswith("*."):
            _check_name(host)
    if port_text is None:
        port = DEFAULT_PORTS[scheme]
    else:
        if not _PORT.match(port_text) or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{port_text!r} is not a port 1-65535")
        port = int(port_text)
    return scheme, host, port, literal


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _check_name(host: str) -> None:
    labels = host.split(".")
    if host.endswith("."):
        labels = labels[:-1]
    if not labels or not all(_LABEL.match(label) for label in labels) or len(host) > 253:
        raise ValueError(f"{host!r} is not a host name (letters, digits and -, dot-separated)")


def parse_pattern(text: str) -> OriginPattern:
    """Parse an allowed-origin pattern; ValueError explains what is wrong (a usage error at start)."""
    try:
        scheme, host, port, literal = _split(text)
    except ValueError as e:
        raise ValueError(
            f"{text!r} is not an origin like https://games.example.com or https://*.example.com:8443 ({e})"
        ) from None
    if host.startswith("*."):
        suffix = host[2:]
        if "*" in suffix:
            raise ValueError(f"{text!r}: '*' is allowed only once, as the whole first label (https://*.example.com)")
        try:
            _check_name(suffix)
        except ValueError as e:
            raise ValueError(f"{text!r}: {e}") from None
        if _is_ipv4(suffix) or "." not in suffix.rstrip("."):
            raise ValueError(f"{text!r}: a wildcard needs a domain of at least two labels (https://*.example.com)")
        return OriginPattern(scheme, suffix, port, wildcard=True)
    if literal:
        return OriginPattern(scheme, host, port)
    if "*" in host:
        raise ValueError(f"{text!r}: '*' is allowed only as the whole first label (https://*.example.com)")
    return OriginPattern(scheme, host, port)


def parse_origin(text: str) -> Origin | None:
    """Parse an Origin header; None when it is not a usable ``scheme://host[:port]`` (``null`` included)."""
    try:
        scheme, host, port, literal = _split(text)
    except ValueError:
        return None
    if "*" in host:
        return None
    return Origin(scheme, host, port, literal)


def allowed(origin: str, patterns: tuple[OriginPattern, ...]) -> bool:
    """Whether the Origin header text `origin` matches one of `patterns`."""
    parsed = parse_origin(origin)
    return parsed is not None and any(p.matches(parsed) for p in patterns)


@functools.lru_cache(maxsize=16)
def compile_patterns(texts: tuple[str, ...]) -> tuple[OriginPattern, ...]:
    """The parsed form of configured patterns (cached: the settings' tuple is the same on every handshake)."""
    return tuple(parse_pattern(text) for text in texts)

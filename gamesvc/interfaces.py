"""Interfaces between the services and the connections they push to."""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IMind(Interface):
    """A client connection as the services see it: who it is, and where events go."""

    account = Attribute("the signed-in `gamesvc.auth.Account`, or None")
    address = Attribute("the client's address (a string), for per-address limits")

    def deliver(outgoing: object) -> None:
        """Send one pre-encoded `gamesvc.wire.Outgoing` message; never raises."""

"""Interfaces between the services, the connections they push to, and what listens to the rooms."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface, implementer

if TYPE_CHECKING:
    from gamesvc.wire import Outgoing


class IMind(Interface):
    """A client connection as the services see it: who it is, and where events go."""

    account = Attribute("the signed-in `gamesvc.auth.Account`, or None")
    address = Attribute("the client's address (a string), for per-address limits")

    def deliver(outgoing: Outgoing) -> None:
        """Send one pre-encoded `gamesvc.wire.Outgoing` message; never raises."""


class IRoomListener(Interface):
    """Told of every change of a room and of its closing (the checkpoints write rooms to the store)."""

    def room_changed(room: object) -> None:
        """A room's state changed (a new `version`)."""

    def room_closed(room: object) -> None:
        """A room closed: its players all left."""


@implementer(IRoomListener)
class NoRoomListener:
    """The listener of a room service that keeps nothing (rules tests)."""

    def room_changed(self, room: object) -> None:
        """Ignore the change."""

    def room_closed(self, room: object) -> None:
        """Ignore the closing."""

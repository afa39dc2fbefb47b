"""twistd plugin support: `Options` and `makeService`. The only module that touches the global reactor."""

from __future__ import annotations

import os
from typing import Any, Mapping

import attrs
from twisted.application.service import IService
from twisted.python import usage

from gamesvc.config import Settings, env_name, option_name, parse_env, setting_fields


def _describe(field: attrs.Attribute) -> str:
    default = field.default
    if default in (None, ()):
        shown: object = "none"
    elif default is False:
        shown = "off"
    elif isinstance(default, tuple):
        shown = ",".join(str(part) for part in default)
    else:
        shown = default
    return f"{field.metadata['help']} [env {env_name(field)}; default {shown}]"


class Options(usage.Options):
    """Command-line options of `twistd gamesvc`; each can also come from a GAMESVC_* environment variable."""

    synopsis = "[options]"
    longdesc = "Serve gamesvc (web client, JSON API and WebSocket) on one TCP port."
    optFlags = [[option_name(f), None, _describe(f)] for f in setting_fields() if f.metadata["flag"]]
    optParameters = [
        [option_name(f), None, None, _describe(f)]
        for f in setting_fields()
        if not f.metadata["flag"] and not f.metadata["repeatable"]
    ]

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._environ = os.environ if environ is None else environ
        self["allowed-origin"] = []
        self["trusted-proxy"] = []

    def opt_allowed_origin(self, origin: str) -> None:
        """Allowed WebSocket Origin (repeatable; `*` only as a whole leading label: https://*.example.com) [env GAMESVC_ALLOWED_ORIGINS, comma-separated; default: the server's own origin]"""
        self["allowed-origin"].append(origin)

    def opt_trusted_proxy(self, network: str) -> None:
        """Address or CIDR of a reverse proxy whose X-Forwarded-For is believed (repeatable) [env GAMESVC_TRUSTED_PROXIES, comma-separated; default: none]"""
        self["trusted-proxy"].append(network)

    def postOptions(self) -> None:
        """Merge defaults, environment and command line (in that order) and validate into `self.settings`."""
        values: dict[str, Any] = {}
        for field in setting_fields():
            name = option_name(field)
            given = self[name]
            try:
                if field.metadata["repeatable"]:
                    if given:
                        values[field.name] = tuple(field.metadata["parse"](o) for o in given)
                    elif env_name(field) in self._environ:
                        values[field.name] = parse_env(field, self._environ[env_name(field)])
                elif field.metadata["flag"]:
                    if given:
                        values[field.name] = True
                    elif env_name(field) in self._environ:
                        values[field.name] = parse_env(field, self._environ[env_name(field)])
                elif given is not None:
                    values[field.name] = field.metadata["parse"](given)
                elif env_name(field) in self._environ:
                    values[field.name] = parse_env(field, self._environ[env_name(field)])
            except ValueError as e:
                source = f"--{name}" if given else env_name(field)
                raise usage.UsageError(f"{source}: {e}") from None
        settings = Settings(**values)
        if settings.dice_seed is not None and settings.behind_tls:
            # A seeded die is predictable: it must never face real players.
            raise usage.UsageError("--dice-seed is for testing only and is refused together with --behind-tls")
        renew = settings.lease_renew_seconds
        if renew is not None and renew * 3 >= settings.lease_seconds:
            raise usage.UsageError("--lease-renew-seconds must be less than a third of --lease-seconds")
        self.settings = settings


def makeService(options: Options) -> IService:
    """Build the root service; synchronous and free of I/O (the store connects when the service starts)."""
    from twisted.internet import reactor

    from gamesvc.service import GameService

    return GameService(reactor, options.settings)

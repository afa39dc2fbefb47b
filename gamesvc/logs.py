"""JSON-lines logging for log shippers: `twistd --logger=gamesvc.logs.json_lines -n gamesvc ...`.

Each event becomes one line of JSON on standard output with `time` (ISO 8601 UTC), `level`, `namespace`,
`message` (the formatted text), the event's own fields (user, room, op, latency, ...) and, for failures,
`traceback`. gamesvc never logs passwords, tokens or chat text, so none can appear here.
"""

from __future__ import annotations

import datetime
import json
import sys
from typing import IO, Any

from twisted.logger import ILogObserver, formatEvent
from zope.interface import implementer

# Keys of twisted.logger's own bookkeeping, left out of the line.
_INTERNAL = {"log_logger", "log_source", "log_format", "log_io", "log_text", "log_trace", "log_flattened",
             "log_legacy", "log_time", "log_level", "log_namespace", "log_failure", "log_system", "format",
             "message", "isError", "system", "time", "why", "failure"}


def _plain(value: Any) -> Any:
    """A JSON-friendly form of a field value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def event_as_json(event: dict[str, Any]) -> dict[str, Any]:
    """One log event as the JSON object written on its line."""
    when = datetime.datetime.fromtimestamp(event.get("log_time", 0.0), datetime.timezone.utc)
    level = event.get("log_level")
    line: dict[str, Any] = {
        "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace", "-"),
        "message": formatEvent(event),
    }
    for key, value in event.items():
        if key not in _INTERNAL and not key.startswith("log_"):
            line[key] = _plain(value)
    failure = event.get("log_failure")
    if failure is not None:
        line["traceback"] = failure.getTraceback()
    return line


@implementer(ILogObserver)
class JsonLinesObserver:
    """Writes every event as a line of JSON."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: dict[str, Any]) -> None:
        self._out.write(json.dumps(event_as_json(event), ensure_ascii=False, default=repr) + "\n")
        self._out.flush()


def json_lines() -> JsonLinesObserver:
    """The log observer factory for twistd's `--logger` option: JSON lines on standard output."""
    return JsonLinesObserver(sys.stdout)

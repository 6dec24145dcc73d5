"""Structured logs: one line per event, `key=value` fields after the event name.

log = get_logger(__name__)
log.info("job.matched", job_id=12, pilot_id="p-3f2a")
# 2026-11-25T10:00:00.123Z INFO central.matcher job.matched job_id=12 pilot_id=p-3f2a
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

_HANDLER_ATTR = "_gridpilot_handler"


def _render(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        stamp = f"{ts}.{int(record.msecs):03d}Z"
        line = f"{stamp} {record.levelname} {record.name} {record.getMessage()}"
        fields: dict[str, Any] = getattr(record, "fields", {})
        if fields:
            line += " " + " ".join(f"{k}={_render(v)}" for k, v in fields.items())
        if record.exc_info:
            line += " exc=" + _render(self.formatException(record.exc_info))
        return line


class StructLogger:
    """A logger whose calls take an event name and keyword fields."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, event: str, exc_info: bool, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, exc_info=exc_info, extra={"fields": fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, False, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, False, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, False, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, False, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, True, fields)

    def is_debug(self) -> bool:
        return self._logger.isEnabledFor(logging.DEBUG)


def get_logger(name: str) -> StructLogger:
    return StructLogger(logging.getLogger(name))


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    """Send every gridpilot log line to `stream` (stderr by default). Idempotent."""
    root = logging.getLogger()
    if not any(getattr(h, _HANDLER_ATTR, False) for h in root.handlers):
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(_Formatter())
        setattr(handler, _HANDLER_ATTR, True)
        root.addHandler(handler)
    root.setLevel(level.upper())

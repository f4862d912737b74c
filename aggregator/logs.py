"""Log lines for people (`text`) and for log shippers (`json`), to stderr.

Each event is one line. Callers pass the facts as keyword fields; the text format
renders them as `key=value` after the message, the JSON format as object members.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from aggregator.clock import stamp

LOGGER_NAME = "aggregator"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = stamp(datetime.fromtimestamp(record.created, UTC))
        fields = " ".join(f"{k}={_text(v)}" for k, v in getattr(record, "fields", {}).items())
        line = f"{when} {record.levelname.lower():<7} {record.getMessage()}"
        return f"{line} {fields}".rstrip()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        body = {
            "time": when.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str, ensure_ascii=False)


def _text(value: object) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if (" " in text or not text) else text


def setup(level: str = "info", fmt: str = "text") -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter (httpx request lines, APScheduler job lines) only when debugging.
    for noisy in ("httpx", "httpcore", "apscheduler", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    return logging.getLogger(LOGGER_NAME)


def event(logger: logging.Logger, message: str, level: int = logging.INFO, **fields) -> None:
    logger.log(level, message, extra={"fields": fields})

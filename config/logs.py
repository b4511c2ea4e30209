"""Log lines as JSON objects (``LOG_FORMAT=json``), one per line, for log collectors that index fields.

Each object has ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` and any structured fields the call
passed in ``extra`` (a delivery attempt's ``delivery_id``, ``status_code``, ``verdict``...), plus ``exception``
when there is one. Web processes get it from LOGGING (config/settings.py); Celery processes, whose logging Celery
sets up itself, from the signal receivers in config/celery.py.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Attributes every LogRecord has: anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def json_handlers(logger: logging.Logger) -> None:
    """Give the logger's handlers the JSON format (Celery's loggers, once Celery has set them up)."""
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())

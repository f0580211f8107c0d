"""One log line format for every streamrec process: time, level, component[pid], logger.

``up`` starts five workers that write into the same terminal; every line therefore
names its component (``serve``, ``enrich``… or ``up`` for the supervisor) and its pid,
and carries a UTC timestamp. Each component also appends to its own file under
``<home>/logs/`` (reopened when a log rotator moves it). ``json`` writes one object per
line for log shippers (Loki, Fluent Bit, Vector). Uncaught exceptions and Python warnings
go through logging too, so that a crashing worker's traceback lands in its file with
the same prefix instead of as bare lines on stderr.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Literal

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging"]

#: Libraries whose INFO lines drown ours; they log at WARNING and above.
NOISY_LOGGERS = ("librdkafka", "httpx", "httpcore", "openai", "implicit", "urllib3", "selenium")


class _Component(logging.Filter):
    """Stamps every record with the process's component name."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def filter(self, record: logging.LogRecord) -> bool:
        record.component = self.component
        return True


def _utc(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """``2025-01-05T10:11:12.345Z INFO    serve[4242] streams.consumer_loop: message``."""

    def format(self, record: logging.LogRecord) -> str:
        component = getattr(record, "component", "streamrec")
        line = (
            f"{_utc(record)} {record.levelname:<7} {component}[{record.process}] "
            f"{record.name}: {record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, component, pid, logger, message, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": _utc(record),
            "level": record.levelname,
            "component": getattr(record, "component", "streamrec"),
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("streamrec").critical("uncaught exception", exc_info=(kind, exc, tb))


def configure_logging(
    component: str,
    *,
    level: str = "INFO",
    fmt: Literal["text", "json"] = "text",
    log_dir: Path | None = None,
) -> Path | None:
    """Route every logger of the process to stderr (and ``log_dir/<component>.log``).

    Returns:
        The log file's path, when one is written.
    """
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    stamp = _Component(component)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    path: Path | None = None
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            path = log_dir / f"{component}.log"
            handlers.append(logging.handlers.WatchedFileHandler(path, encoding="utf-8"))
        except OSError as exc:  # a read-only home must not stop the process
            print(f"cannot write {log_dir}/{component}.log: {exc}", file=sys.stderr)
            path = None
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(stamp)
    logging.basicConfig(level=level, handlers=handlers, force=True)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.captureWarnings(True)
    sys.excepthook = _excepthook
    return path

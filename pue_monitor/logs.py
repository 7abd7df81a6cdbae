"""Logging that never shows a secret.

Every configured secret value (registered by :meth:`pue_monitor.config.models.Secret.read`
when it resolves one, or by :func:`register_secret`) and the password part of any URL
(``http://user:pass@host`` -> ``http://***@host``) is replaced by ``***`` in every log
record, whichever library produced it (aiohttp, influxdb-client, pysnmp, paho, ours).

Two layers, so nothing depends on who configured logging or when:

* :func:`install_redaction` wraps the process's log-record factory: every record is
  redacted when it is created — message, arguments, exception text and stack — before
  any handler (also one added later, or one of a library) sees it;
* :class:`RedactingFilter` does the same as a handler filter, for applications that
  manage their own record factory; :func:`install_redaction` also puts it on every
  handler of the root logger.

Library users call ``install_redaction()`` once after configuring logging; the ``pue``
command line does it for you. :func:`redact` is for text that does not go through
logging (error messages printed by the CLI).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import traceback
from collections.abc import Callable
from typing import Any

__all__ = [
    "JsonFormatter",
    "RedactingFilter",
    "UtcFormatter",
    "install_redaction",
    "redact",
    "register_secret",
    "registered_secrets",
]

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

#: ``scheme://userinfo@``: the userinfo (``user`` or ``user:password``) goes, the host stays
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/@?#'\"<>]+)@")


def register_secret(value: str | None) -> None:
    """Redact ``value`` from every log record from now on (also its URL-encoded form)."""
    global _pattern
    if not value:
        return
    from urllib.parse import quote, quote_plus

    # as URL-encoders write it in paths and query strings (yarl/aiohttp keep "?/:@" and more)
    safes = ("", "/", "/?:@!$'()*,;", "/?:@!$'()*,;=+&")
    forms = {value, *(quote(value, safe=s) for s in safes), *(quote_plus(value, safe=s) for s in safes)}
    with _lock:
        if forms <= _secrets:
            return
        _secrets.update(forms)
        # longest first, so a secret containing another is removed whole
        _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def registered_secrets() -> int:
    """How many secret forms are registered (for tests and diagnostics; never the values)."""
    with _lock:
        return len(_secrets)


def redact(text: str) -> str:
    """``text`` without any registered secret and without URL userinfo."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if "@" in text:
        text = _USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", text)
    return text


def _redact_record(record: logging.LogRecord) -> None:
    if getattr(record, "_pue_redacted", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # a library's bad format string: keep what there is, redacted
        message = f"{record.msg!r} % {record.args!r}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        # the formatter would print the exception again from exc_info (unredacted) if the
        # text were missing; keep only the (already redacted) text
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._pue_redacted = True


class RedactingFilter(logging.Filter):
    """Handler (or logger) filter removing registered secrets and URL userinfo from records."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


_installed_factory: Callable[..., logging.LogRecord] | None = None


def install_redaction() -> None:
    """Redact every log record of the process from now on (idempotent).

    Wraps the record factory (covers every logger and every handler, also those added
    later) and adds :class:`RedactingFilter` to the root logger's current handlers.
    """
    global _installed_factory
    current = logging.getLogRecordFactory()
    if current is not _installed_factory:
        previous = current

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _redact_record(record)
            return record

        _installed_factory = factory
        logging.setLogRecordFactory(factory)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def utc_timestamp(created: float) -> str:
    """A log record's time in UTC, ISO 8601 with its offset: ``2026-11-24T13:58:17.822+00:00``."""
    return dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="milliseconds")


class UtcFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE``, the time in UTC (ISO 8601 with offset) whatever the
    machine's timezone, so lines from hosts in different zones sort and compare."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_timestamp(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601 with offset), ``level``, ``logger``,
    ``message`` and, when there is one, ``exception`` (the traceback text). Records are
    redacted before they reach a formatter (:func:`install_redaction`); this one redacts
    again, so it is safe on a handler of its own too."""

    def format(self, record: logging.LogRecord) -> str:
        _redact_record(record)
        obj: dict[str, Any] = {
            "time": utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            obj["exception"] = record.exc_text
        if record.stack_info:
            obj["stack"] = record.stack_info
        return json.dumps(obj, ensure_ascii=False)

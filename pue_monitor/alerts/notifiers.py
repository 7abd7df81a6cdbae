"""Notifiers: deliver alerts to Alertmanager, a signed JSON webhook, e-mail or the log.

One small interface (:class:`Notifier`): ``await send(alerts) -> SendResult``, ``name``,
``health()``. The engine hands each notifier one group of alerts per call (one site's alerts;
an e-mail notifier sends one mail per call). Every notifier retries a failed delivery with
exponential backoff and a cap (``retries``, ``backoff_s``, ``backoff_max_s`` in its config), does
not retry what retrying cannot fix (HTTP 4xx other than 408/429, SMTP authentication, a
refused certificate), counts each send's result in :class:`NotifierStats` and logs an outage
once: the first failed send with the notifier's name and target (no user info, no query, no
secret), then nothing until a send succeeds again ("delivering again").

Network I/O uses the standard library (urllib, smtplib) in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from prometheus_client.core import CounterMetricFamily, Metric

from pue_monitor import __version__
from pue_monitor.alerts.model import Alert, rfc3339
from pue_monitor.config.models import (
    AlertmanagerNotifier,
    AlertsConfig,
    ConsoleNotifier,
    EmailNotifier,
    WebhookNotifier,
)
from pue_monitor.config.models import Notifier as NotifierConfig

log = logging.getLogger("pue_monitor.alerts")

SIGNATURE_HEADER = "X-PUE-Signature"
TIMESTAMP_HEADER = "X-PUE-Timestamp"
#: a receiver should reject a webhook whose timestamp is further than this from its clock
REPLAY_TOLERANCE_S = 300


class DeliveryError(Exception):
    """One delivery attempt failed. ``permanent``: retrying cannot help (not retried)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class SendResult:
    notifier: str
    ok: bool
    attempts: int
    error: str | None = None


@dataclass
class NotifierStats:
    """Counts for Prometheus, shared by all notifiers of a service:

    - ``results[(notifier, result)]`` with result ``success`` or ``failure`` (after all
      retries): ``pue_alert_notifications_total{notifier, result}``;
    - ``attempts[notifier]``: delivery attempts including retries,
      ``pue_alert_notification_attempts_total{notifier}``.
    """

    results: Counter[tuple[str, str]] = field(default_factory=Counter)
    attempts: Counter[str] = field(default_factory=Counter)

    def metrics(self, site: str, notifiers: Sequence[str] = ()) -> list[Metric]:
        """The counters as Prometheus metric families; every name in ``notifiers`` is exported
        from the start with both results at 0 (so ``increase()`` sees the first failure)."""
        results = CounterMetricFamily(
            "pue_alert_notifications",
            "Alert groups sent per notifier by result: success, or failure after all retries.",
            labels=["site", "notifier", "result"],
        )
        attempts = CounterMetricFamily(
            "pue_alert_notification_attempts",
            "Delivery attempts per notifier, retries included.",
            labels=["site", "notifier"],
        )
        names = sorted({*notifiers, *(n for n, _ in self.results), *self.attempts})
        for name in names:
            for result in ("success", "failure"):
                results.add_metric([site, name, result], self.results[(name, result)])
            attempts.add_metric([site, name], self.attempts[name])
        return [results, attempts]


def public_url(url: str) -> str:
    """``url`` without user info, query or fragment: safe to log."""
    p = urlsplit(url)
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{p.port}" if p.port is not None else host
    return urlunsplit((p.scheme, netloc, p.path, "", ""))


def backoff_delays(retries: int, base_s: float, cap_s: float) -> list[float]:
    """Waits before retry 1..retries: base, 2 base, 4 base, ..., each at most cap."""
    return [min(base_s * 2**i, cap_s) for i in range(retries)]


class Notifier(ABC):
    """Delivers groups of alerts to one destination, with retries and outage logging."""

    kind: ClassVar[str]

    def __init__(
        self,
        name: str,
        *,
        retries: int = 3,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        timeout_s: float = 10.0,
        stats: NotifierStats | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.retries, self.backoff_s, self.backoff_max_s = retries, backoff_s, backoff_max_s
        self.timeout_s = timeout_s
        self.stats = stats if stats is not None else NotifierStats()
        self._sleep = sleep
        self._down = False
        self._last_error: str | None = None
        self._last_success: float | None = None
        self._failed_sends = 0

    @property
    @abstractmethod
    def target(self) -> str:
        """Where it delivers, safe to log (no user info, no secret)."""

    @abstractmethod
    async def _deliver(self, alerts: Sequence[Alert], done: set[str]) -> None:
        """One attempt; raise :class:`DeliveryError`. ``done`` persists across the attempts of
        one send (a notifier with several destinations records those that succeeded)."""

    async def send(self, alerts: Sequence[Alert]) -> SendResult:
        """Deliver ``alerts`` (one group), retrying with backoff. Never raises for a delivery failure."""
        if not alerts:
            return SendResult(self.name, True, 0)
        delays = backoff_delays(self.retries, self.backoff_s, self.backoff_max_s)
        done: set[str] = set()
        attempts = 0
        error = ""
        while True:
            attempts += 1
            self.stats.attempts[self.name] += 1
            try:
                await self._deliver(alerts, done)
            except DeliveryError as exc:
                error = str(exc)
                if exc.permanent or attempts > len(delays):
                    break
                log.debug("notifier %s (%s): attempt %d failed: %s", self.name, self.target, attempts, error)
                await self._sleep(delays[attempts - 1])
                continue
            self._succeeded(attempts)
            return SendResult(self.name, True, attempts)
        self._failed(attempts, error)
        return SendResult(self.name, False, attempts, error)

    def _succeeded(self, attempts: int) -> None:
        self.stats.results[(self.name, "success")] += 1
        self._last_success = time.time()
        if self._down:
            log.warning(
                "notifier %s (%s): delivering again (after %d failed sends)", self.name, self.target, self._failed_sends
            )
        self._down, self._failed_sends = False, 0

    def _failed(self, attempts: int, error: str) -> None:
        self.stats.results[(self.name, "failure")] += 1
        self._last_error = error
        self._failed_sends += 1
        if not self._down:  # once per outage
            log.error(
                "notifier %s (%s): delivery failed after %d attempt%s: %s (not logged again until it recovers)",
                self.name,
                self.target,
                attempts,
                "" if attempts == 1 else "s",
                error,
            )
        self._down = True

    def health(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "target": self.target,
            "up": not self._down,
            "last_success": self._last_success,
            "last_error": self._last_error,
            "failed_sends": self._failed_sends,
        }


# ---------------------------------------------------------------------------- HTTP


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        # 4xx: the request is wrong (bad signature, bad payload) and stays wrong; 408/429 and 5xx pass
        permanent = 400 <= exc.code < 500 and exc.code not in (408, 429)
        raise DeliveryError(f"HTTP {exc.code} {exc.reason}", permanent=permanent) from None
    except urllib.error.URLError as exc:
        raise DeliveryError(str(exc.reason)) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, resets, a malformed answer
        raise DeliveryError(str(exc) or type(exc).__name__) from None


_USER_AGENT = f"pue-monitor/{__version__}"


class Alertmanager(Notifier):
    """Alertmanager v2: ``POST <url>/api/v2/alerts`` with a list of postableAlert, to every
    URL (an HA pair gets each alert from us, as Prometheus does). A send succeeds when every
    URL accepted it; a retry goes only to the URLs that have not."""

    kind = "alertmanager"

    def __init__(self, name: str, urls: Sequence[str], **kw: Any) -> None:
        super().__init__(name, **kw)
        self.urls = [u.rstrip("/") for u in urls]

    @property
    def target(self) -> str:
        return ", ".join(public_url(u) for u in self.urls)

    async def _deliver(self, alerts: Sequence[Alert], done: set[str]) -> None:
        now = time.time()
        # resolved: endsAt as given (at most now: a future endsAt would mean still firing)
        body = json.dumps([(a if a.ends_at is None else a.resolved(min(a.ends_at, now))).postable() for a in alerts])
        headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
        errors = []
        permanent = True
        for url in self.urls:
            if url in done:
                continue
            try:
                await asyncio.to_thread(_post, f"{url}/api/v2/alerts", body.encode(), headers, self.timeout_s)
                done.add(url)
            except DeliveryError as exc:
                permanent &= exc.permanent
                errors.append(f"{public_url(url)}: {exc}")
        if errors:
            raise DeliveryError("; ".join(errors), permanent=permanent)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, timestamp + "." + body): the ``X-PUE-Signature``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, body: bytes, timestamp: str, sig: str, *, now: float | None = None) -> bool:
    """A receiver's check: the signature matches and the timestamp is within
    :data:`REPLAY_TOLERANCE_S` of ``now``."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > REPLAY_TOLERANCE_S:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), sig)


class Webhook(Notifier):
    """A JSON POST: ``{"version": "1", "status", "alerts": [...]}`` (each alert
    :meth:`Alert.to_json`), signed: ``X-PUE-Timestamp: <unix seconds>`` and ``X-PUE-Signature:
    sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""

    kind = "webhook"

    def __init__(self, name: str, url: str, secret: str, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.url = url
        self._secret = secret

    @property
    def target(self) -> str:
        return public_url(self.url)

    def __repr__(self) -> str:
        return f"Webhook({self.name!r}, {self.target!r})"

    @staticmethod
    def body(alerts: Sequence[Alert]) -> bytes:
        status = "firing" if any(a.status == "firing" for a in alerts) else "resolved"
        doc = {"version": "1", "status": status, "alerts": [a.to_json() for a in alerts]}
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()

    async def _deliver(self, alerts: Sequence[Alert], done: set[str]) -> None:
        body = self.body(alerts)
        ts = str(int(time.time()))  # signed per attempt: a retry carries a fresh timestamp
        headers = {
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: signature(self._secret, ts, body),
        }
        await asyncio.to_thread(_post, self.url, body, headers, self.timeout_s)


# ---------------------------------------------------------------------------- e-mail


def mail_subject(alerts: Sequence[Alert]) -> str:
    """``[FIRING:2] taiyuan-dc1: PueCritical, PueDeviceDown`` (resolved ones: ``[RESOLVED]``)."""
    firing = [a for a in alerts if a.status == "firing"]
    shown = firing or list(alerts)
    status = f"FIRING:{len(firing)}" if firing else "RESOLVED"
    sites = sorted({a.labels.get("site", "") for a in alerts} - {""})
    names = sorted({a.name for a in shown})
    where = f"{', '.join(sites)}: " if sites else ""
    return f"[{status}] {where}{', '.join(names)}"


def mail_body(alerts: Sequence[Alert]) -> str:
    """Plain English text, firing alerts first."""
    lines = []
    for a in sorted(alerts, key=lambda a: (a.status != "firing", a.name, a.fingerprint)):
        lines.append(f"{a.status.upper()}: {a.name}")
        if summary := a.annotations.get("summary"):
            lines.append(f"  {summary}")
        if description := a.annotations.get("description"):
            lines.append(f"  {description}")
        lines.append(f"  since:    {rfc3339(a.starts_at)}")
        if a.ends_at is not None:
            lines.append(f"  resolved: {rfc3339(a.ends_at)}")
        lines.append("  labels:   " + ", ".join(f"{k}={v}" for k, v in a.labels.items()))
        if a.generator_url:
            lines.append(f"  source:   {a.generator_url}")
        lines.append("")
    lines.append(f"-- pue-monitor {__version__}")
    return "\n".join(lines) + "\n"


class Email(Notifier):
    """One mail per group over SMTP, STARTTLS required (a server without it gets nothing),
    the certificate verified (system CAs or ``ca_file``), AUTH when a user is configured."""

    kind = "email"

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int,
        sender: str,
        to: Sequence[str],
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, **kw)
        self.host, self.port, self.sender, self.to = host, port, sender, list(to)
        self.username, self._password, self.ca_file = username, password, ca_file

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"smtp://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"Email({self.name!r}, {self.target!r})"

    def message(self, alerts: Sequence[Alert]) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = mail_subject(alerts)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2])
        msg.set_content(mail_body(alerts))
        return msg

    def _send_blocking(self, msg: EmailMessage) -> None:
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryError(f"CA file {self.ca_file}: {exc}", permanent=True) from None
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    raise DeliveryError("the server does not offer STARTTLS; not sending in clear", permanent=True)
                smtp.starttls(context=context)
                smtp.ehlo()
                if self.username is not None and self._password is not None:
                    smtp.login(self.username, self._password)
                smtp.send_message(msg, to_addrs=self.to)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"authentication refused: {exc.smtp_code}", permanent=True) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"recipients refused: {', '.join(exc.recipients)}", permanent=True) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(f"TLS certificate refused: {exc.verify_message}", permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP {exc.smtp_code}", permanent=500 <= exc.smtp_code < 600) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(str(exc) or type(exc).__name__) from None

    async def _deliver(self, alerts: Sequence[Alert], done: set[str]) -> None:
        await asyncio.to_thread(self._send_blocking, self.message(alerts))


# ---------------------------------------------------------------------------- console


class Console(Notifier):
    """One log line per alert on ``pue_monitor.alerts``: WARNING while firing, INFO resolved."""

    kind = "console"

    @property
    def target(self) -> str:
        return "log"

    async def _deliver(self, alerts: Sequence[Alert], done: set[str]) -> None:
        for a in alerts:
            summary = a.annotations.get("summary", "")
            labels = " ".join(f"{k}={v}" for k, v in a.labels.items() if k != "alertname")
            level = logging.WARNING if a.status == "firing" else logging.INFO
            log.log(level, "alert %s %s %s%s", a.status.upper(), a.name, labels, f": {summary}" if summary else "")


# ---------------------------------------------------------------------------- from config


def build_notifier(
    cfg: NotifierConfig, *, base_dir: str | Path | None = None, stats: NotifierStats | None = None
) -> Notifier:
    """A notifier from its config; secrets are read here (env or file) and registered for redaction."""
    base = str(base_dir) if base_dir is not None else None
    kw: dict[str, Any] = {
        "retries": cfg.retries,
        "backoff_s": cfg.backoff_s,
        "backoff_max_s": cfg.backoff_max_s,
        "timeout_s": cfg.timeout_s,
        "stats": stats,
    }
    if isinstance(cfg, AlertmanagerNotifier):
        return Alertmanager(cfg.name, cfg.urls, **kw)
    if isinstance(cfg, WebhookNotifier):
        return Webhook(cfg.name, cfg.url, cfg.secret.read(base), **kw)
    if isinstance(cfg, EmailNotifier):
        ca = cfg.ca_file
        if ca is not None and base is not None and not Path(ca).is_absolute():
            ca = str(Path(base) / ca)
        return Email(
            cfg.name,
            host=cfg.host,
            port=cfg.port,
            sender=cfg.sender,
            to=cfg.to,
            username=cfg.username,
            password=cfg.password.read(base) if cfg.password is not None else None,
            ca_file=ca,
            **kw,
        )
    assert isinstance(cfg, ConsoleNotifier)
    return Console(cfg.name, **kw)


def build_notifiers(
    cfg: AlertsConfig, *, base_dir: str | Path | None = None, stats: NotifierStats | None = None
) -> list[Notifier]:
    stats = stats if stats is not None else NotifierStats()
    return [build_notifier(n, base_dir=base_dir, stats=stats) for n in cfg.notifiers]


async def notify_all(notifiers: Sequence[Notifier], alerts: Sequence[Alert]) -> list[SendResult]:
    """Send one group to every notifier concurrently; one slow or failing notifier delays no other."""
    return list(await asyncio.gather(*(n.send(alerts) for n in notifiers)))

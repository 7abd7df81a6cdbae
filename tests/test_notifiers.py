"""Notifiers against real receivers: Debian's Alertmanager, an aiosmtpd server with STARTTLS
and AUTH, and a local HTTP receiver that checks the webhook signature as the README says."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from subprocess import PIPE, STDOUT
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from pue_monitor.alerts.model import Alert
from pue_monitor.alerts.notifiers import (
    Alertmanager,
    Console,
    Email,
    NotifierStats,
    Webhook,
    backoff_delays,
    build_notifiers,
    notify_all,
    public_url,
)
from pue_monitor.config.loader import site_from_dict
from pue_monitor.errors import ConfigError
from tests.servers import Alertmanager as AlertmanagerServer
from tests.servers import free_port

SITE = "sim-taiyuan"


def pue_alert(starts: float, severity: str = "critical", **extra: str) -> Alert:
    return Alert(
        labels={"alertname": "PueHigh", "site": SITE, "severity": severity, **extra},
        annotations={"summary": f"PUE over the {severity} limit at {SITE}", "description": "15-minute PUE is 1.612"},
        starts_at=starts,
        generator_url="http://grafana.example/d/pue",
    )


def down_alert(starts: float, device: str = "meter-1") -> Alert:
    return Alert(
        labels={"alertname": "PueDeviceDown", "site": SITE, "severity": "warning", "device": device},
        annotations={"summary": f"Device {device} down at {SITE}"},
        starts_at=starts,
    )


async def no_sleep(_: float) -> None:
    return None


# ------------------------------------------------------------------------- the model


def test_alert_postable_and_fingerprint() -> None:
    a = pue_alert(1_790_000_000.25)
    assert a.status == "firing"
    p = a.postable()
    assert p == {
        "labels": {"alertname": "PueHigh", "severity": "critical", "site": SITE},
        "annotations": {"description": "15-minute PUE is 1.612", "summary": f"PUE over the critical limit at {SITE}"},
        "startsAt": "2026-09-21T14:13:20.250Z",
        "generatorURL": "http://grafana.example/d/pue",
    }
    r = a.resolved(1_790_000_600.0)
    assert r.status == "resolved" and r.postable()["endsAt"] == "2026-09-21T14:23:20.000Z"
    assert r.fingerprint == a.fingerprint  # labels only
    assert pue_alert(1.0, severity="warning").fingerprint != a.fingerprint
    with pytest.raises(ValueError, match="alertname"):
        Alert(labels={"site": SITE})


def test_backoff_doubles_up_to_the_cap() -> None:
    assert backoff_delays(5, 1.0, 3.0) == [1.0, 2.0, 3.0, 3.0, 3.0]
    assert backoff_delays(0, 1.0, 3.0) == []


def test_public_url_drops_userinfo_and_query() -> None:
    assert public_url("https://bob:hunter2@hooks.example:8443/pue?token=abc") == "https://hooks.example:8443/pue"


# ---------------------------------------------------------------------- Alertmanager


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertmanagerServer]:
    am = AlertmanagerServer(tmp_path_factory.mktemp("am"))
    am.start()
    yield am
    am.stop()


def _am_alerts(am: AlertmanagerServer, **params: str) -> dict[str, dict[str, Any]]:
    return {a["labels"]["device"]: a for a in am.alerts(filter=f'site="{SITE}"', **params)}  # type: ignore[index]


async def test_alertmanager_receives_firing_then_resolved(alertmanager: AlertmanagerServer) -> None:
    stats = NotifierStats()
    n = Alertmanager("am", [alertmanager.url], stats=stats, backoff_s=0.01)
    t0 = time.time() - 120
    a1, a2 = down_alert(t0, "meter-1"), down_alert(t0, "meter-2")
    result = await n.send([a1, a2])
    assert result.ok and result.attempts == 1
    got = _am_alerts(alertmanager)
    assert set(got) == {"meter-1", "meter-2"}
    m1 = got["meter-1"]
    assert m1["status"]["state"] == "active"
    assert m1["labels"] == dict(a1.labels)
    assert m1["annotations"] == {"summary": f"Device meter-1 down at {SITE}"}
    assert abs(_ts(m1["startsAt"]) - t0) < 0.002
    # no endsAt sent: Alertmanager keeps it firing for its resolve_timeout (5 minutes)
    assert _ts(m1["endsAt"]) > time.time() + 240
    assert m1["fingerprint"]  # Alertmanager's own

    result = await n.send([a1.resolved(time.time())])
    assert result.ok
    active = _am_alerts(alertmanager)
    assert set(active) == {"meter-2"}  # meter-1 resolved: gone from the active list
    assert set(_am_alerts(alertmanager, active="false")) == set()  # and not kept as inactive either
    assert stats.results[("am", "success")] == 2 and stats.results[("am", "failure")] == 0
    await n.send([a2.resolved(time.time())])
    assert _am_alerts(alertmanager) == {}


def _ts(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_alertmanager_pair_with_one_dead_retries_only_the_dead(
    alertmanager: AlertmanagerServer, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    sleeps: list[float] = []

    async def record(d: float) -> None:
        sleeps.append(d)

    stats = NotifierStats()
    n = Alertmanager("am-ha", [alertmanager.url, dead], retries=2, backoff_s=0.5, stats=stats, sleep=record)
    with caplog.at_level(logging.DEBUG, logger="pue_monitor.alerts"):
        result = await n.send([down_alert(time.time(), "meter-9")])
    assert not result.ok and result.attempts == 3 and sleeps == [0.5, 1.0]
    assert result.error is not None and dead in result.error and alertmanager.url not in result.error
    assert "meter-9" in _am_alerts(alertmanager)  # the live one got it
    assert stats.results[("am-ha", "failure")] == 1 and stats.attempts["am-ha"] == 3
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "am-ha" in errors[0] and dead in errors[0]
    assert not n.health()["up"]
    await n.send([down_alert(time.time(), "meter-9").resolved(time.time())])


# --------------------------------------------------------------------------- webhook


class Receiver:
    """An HTTP receiver that verifies ``X-PUE-Signature`` as the README's recipe does."""

    def __init__(self, secret: str, fail_first: int = 0) -> None:
        self.secret, self.fail_first = secret.encode(), fail_first
        self.requests = 0
        self.accepted: list[dict[str, Any]] = []
        self.rejected = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests += 1
                if outer.requests <= outer.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                ts = self.headers.get("X-PUE-Timestamp", "")
                expected = "sha256=" + hmac.new(outer.secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
                fresh = ts.isdigit() and abs(time.time() - int(ts)) <= 300
                if not fresh or not hmac.compare_digest(expected, self.headers.get("X-PUE-Signature", "")):
                    outer.rejected += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                outer.accepted.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/pue"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_webhook_signed_body_is_verified() -> None:
    with Receiver("s3cret-key") as rx:
        n = Webhook("hook", rx.url, "s3cret-key")
        a = pue_alert(1_790_000_000.0)
        result = await n.send([a, down_alert(1_790_000_060.0)])
        assert result.ok and result.attempts == 1
        assert rx.rejected == 0 and len(rx.accepted) == 1
        doc = rx.accepted[0]
        assert doc["version"] == "1" and doc["status"] == "firing"
        assert [x["labels"]["alertname"] for x in doc["alerts"]] == ["PueHigh", "PueDeviceDown"]
        assert doc["alerts"][0]["fingerprint"] == a.fingerprint
        assert doc["alerts"][0]["startsAt"] == "2026-09-21T14:13:20.000Z" and "endsAt" not in doc["alerts"][0]
        await n.send([a.resolved(1_790_000_900.0)])
        assert rx.accepted[1]["status"] == "resolved"
        assert rx.accepted[1]["alerts"][0]["endsAt"] == "2026-09-21T14:28:20.000Z"


async def test_webhook_wrong_secret_is_rejected_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with Receiver("right-key") as rx:
        stats = NotifierStats()
        n = Webhook("hook", rx.url, "wrong-key-xyz", retries=3, backoff_s=0.01, stats=stats)
        with caplog.at_level(logging.DEBUG, logger="pue_monitor.alerts"):
            r1 = await n.send([pue_alert(time.time())])
            r2 = await n.send([pue_alert(time.time())])
        assert not r1.ok and r1.attempts == 1 and r1.error == "HTTP 401 Unauthorized"  # a 4xx is not retried
        assert not r2.ok
        assert rx.rejected == 2 and rx.accepted == []
        assert stats.results[("hook", "failure")] == 2 and stats.results[("hook", "success")] == 0
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1  # once per outage
        assert "hook" in errors[0] and rx.url in errors[0] and "401" in errors[0]
        assert all("wrong-key-xyz" not in r.getMessage() for r in caplog.records)


async def test_webhook_retries_with_backoff_then_delivers_once(caplog: pytest.LogCaptureFixture) -> None:
    sleeps: list[float] = []

    async def record(d: float) -> None:
        sleeps.append(d)

    with Receiver("k", fail_first=2) as rx:
        stats = NotifierStats()
        n = Webhook("hook", rx.url, "k", retries=4, backoff_s=0.2, backoff_max_s=0.3, stats=stats, sleep=record)
        with caplog.at_level(logging.WARNING, logger="pue_monitor.alerts"):
            result = await n.send([pue_alert(time.time())])
        assert result.ok and result.attempts == 3
        assert sleeps == [0.2, 0.3]  # doubled, then capped
        assert rx.requests == 3 and len(rx.accepted) == 1
        assert stats.attempts["hook"] == 3 and stats.results[("hook", "success")] == 1
        assert stats.results[("hook", "failure")] == 0
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []  # a retried success is no outage


async def test_outage_logged_once_then_recovery(caplog: pytest.LogCaptureFixture) -> None:
    with Receiver("k", fail_first=3) as rx:
        n = Webhook("hook", rx.url, "k", retries=0)
        with caplog.at_level(logging.WARNING, logger="pue_monitor.alerts"):
            for _ in range(3):
                assert not (await n.send([pue_alert(time.time())])).ok
            assert (await n.send([pue_alert(time.time())])).ok
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 2
        assert "HTTP 503" in lines[0] and "delivering again (after 3 failed sends)" in lines[1]
        assert n.health()["up"] and n.health()["failed_sends"] == 0


# ---------------------------------------------------------------------------- e-mail


def self_signed(d: Path, cn: str) -> tuple[Path, Path]:
    """A self-signed certificate (for 127.0.0.1 and localhost) and its key, made by openssl."""
    key, crt = d / f"{cn}.key", d / f"{cn}.pem"
    opts = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"]
    san = ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
    cmd = ["openssl", "req", "-x509", *opts, "-keyout", str(key), "-out", str(crt), "-subj", f"/CN={cn}", *san]
    subprocess.run(cmd, check=True, capture_output=True)
    return crt, key


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"), "localhost")


@pytest.fixture
def other_cert(tmp_path: Path) -> Path:
    return self_signed(tmp_path, "other")[0]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes, bool, bool]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.content,
                session.ssl is not None,
                session.authenticated,
            )
        )
        return "250 OK"


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"pue", b"mail-pass-7")
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself


@pytest.fixture
def smtp(cert: tuple[Path, Path]) -> Iterator[tuple[Controller, Mailbox]]:
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert[0], cert[1])
    box = Mailbox()
    c = Controller(
        box,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=ctx,
        require_starttls=True,
        authenticator=_auth,
        auth_require_tls=True,
    )
    c.start()
    yield c, box
    c.stop()


def _email(port: int, ca: Path, password: str = "mail-pass-7") -> Email:
    return Email(
        "mail",
        host="127.0.0.1",
        port=port,
        sender="pue@dc.example",
        to=["oncall@dc.example", "energy@dc.example"],
        username="pue",
        password=password,
        ca_file=str(ca),
        backoff_s=0.01,
        timeout_s=5,
    )


async def test_email_over_starttls_with_auth(smtp: tuple[Controller, Mailbox], cert: tuple[Path, Path]) -> None:
    c, box = smtp
    n = _email(c.port, cert[0])
    result = await n.send([pue_alert(1_790_000_000.0), down_alert(1_790_000_060.0), down_alert(1.0).resolved(2.0)])
    assert result.ok and result.attempts == 1
    assert len(box.messages) == 1  # one mail per group
    sender, rcpts, raw, tls, authed = box.messages[0]
    assert tls and authed
    assert sender == "pue@dc.example" and rcpts == ["oncall@dc.example", "energy@dc.example"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == f"[FIRING:2] {SITE}: PueDeviceDown, PueHigh"
    body = msg.get_body().get_content()  # type: ignore[union-attr]
    assert body.index("FIRING: PueDeviceDown") < body.index("FIRING: PueHigh") < body.index("RESOLVED: PueDeviceDown")
    assert f"PUE over the critical limit at {SITE}" in body and "15-minute PUE is 1.612" in body
    assert "since:    2026-09-21T14:13:20.000Z" in body and "resolved: 1970-01-01T00:00:02.000Z" in body
    assert "source:   http://grafana.example/d/pue" in body


async def test_email_wrong_password_is_not_retried(smtp: tuple[Controller, Mailbox], cert: tuple[Path, Path]) -> None:
    c, box = smtp
    stats = NotifierStats()
    n = _email(c.port, cert[0], password="nope")
    n.stats = stats
    result = await n.send([pue_alert(time.time())])
    assert not result.ok and result.attempts == 1 and result.error == "authentication refused: 535"
    assert box.messages == [] and stats.results[("mail", "failure")] == 1


async def test_email_refuses_a_server_without_starttls(cert: tuple[Path, Path]) -> None:
    box = Mailbox()
    c = Controller(box, hostname="127.0.0.1", port=free_port())
    c.start()
    try:
        result = await _email(c.port, cert[0]).send([pue_alert(time.time())])
    finally:
        c.stop()
    assert not result.ok and result.attempts == 1 and result.error is not None and "STARTTLS" in result.error
    assert box.messages == []


async def test_email_refuses_an_unknown_certificate(smtp: tuple[Controller, Mailbox], other_cert: Path) -> None:
    c, box = smtp
    result = await _email(c.port, other_cert).send([pue_alert(time.time())])
    assert not result.ok and result.error is not None and result.error.startswith("TLS certificate refused")
    assert box.messages == []


# ---------------------------------------------------------------------------- console


async def test_console_logs_one_line_per_alert(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pue_monitor.alerts"):
        r = await Console("console").send([pue_alert(1.0), down_alert(1.0).resolved(5.0)])
    assert r.ok
    assert [(x.levelname, x.getMessage()) for x in caplog.records] == [
        ("WARNING", f"alert FIRING PueHigh severity=critical site={SITE}: PUE over the critical limit at {SITE}"),
        (
            "INFO",
            f"alert RESOLVED PueDeviceDown device=meter-1 severity=warning site={SITE}: Device meter-1 down at {SITE}",
        ),
    ]


# ---------------------------------------------------------------------------- config


def _site(alerts: dict[str, Any]) -> dict[str, Any]:
    import pue_monitor.config as config_pkg

    site = yaml.safe_load((Path(config_pkg.__file__).parent / "examples" / "site.yaml").read_text())
    return {**site, "alerts": alerts}


async def test_config_builds_notifiers_with_secrets_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PUE_HOOK_SECRET", "from-env-123")
    (tmp_path / "smtp.pass").write_text("mail-pass-7\n")
    cfg = {
        "notifiers": [
            {"name": "am", "type": "alertmanager", "urls": ["http://127.0.0.1:9093", "http://127.0.0.1:9094/"]},
            {
                "name": "hook",
                "type": "webhook",
                "url": "https://hooks.example/pue",
                "secret": {"env": "PUE_HOOK_SECRET"},
            },
            {
                "name": "mail",
                "type": "email",
                "host": "smtp.example",
                "from": "pue@dc.example",
                "to": ["oncall@dc.example"],
                "username": "pue",
                "password": {"file": "smtp.pass"},
                "retries": 5,
                "backoff_s": 2,
            },
            {"name": "log", "type": "console"},
        ]
    }
    loaded = site_from_dict(_site(cfg), source=str(tmp_path / "site.yaml"))
    ns = build_notifiers(loaded.config.alerts, base_dir=tmp_path)
    assert [(n.name, n.kind) for n in ns] == [
        ("am", "alertmanager"),
        ("hook", "webhook"),
        ("mail", "email"),
        ("log", "console"),
    ]
    assert ns[0].target == "http://127.0.0.1:9093, http://127.0.0.1:9094"
    assert ns[1]._secret == "from-env-123"  # type: ignore[attr-defined]
    assert ns[2]._password == "mail-pass-7" and ns[2].retries == 5 and ns[2].backoff_s == 2  # type: ignore[attr-defined]
    assert ns[0].stats is ns[3].stats  # one structure for the metrics
    assert "from-env-123" not in repr(ns[1]) and "mail-pass-7" not in repr(ns[2])
    results = await notify_all([ns[3]], [pue_alert(1.0)])
    assert [r.ok for r in results] == [True]


@pytest.mark.parametrize(
    ("notifier", "message"),
    [
        ({"name": "hook", "type": "webhook", "url": "https://hooks.example/pue"}, "secret"),
        ({"name": "am", "type": "alertmanager", "urls": []}, "urls"),
        ({"name": "am", "type": "alertmanager", "urls": ["http://u:p@127.0.0.1:9093"]}, "no user or password"),
        ({"name": "x", "type": "pager"}, "type"),
        ({"name": "m", "type": "email", "host": "h", "from": "a@b", "to": ["c@d"], "username": "u"}, "both"),
    ],
)
def test_config_errors_name_the_field(notifier: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        site_from_dict(_site({"notifiers": [notifier]}), source="site.yaml")
    text = str(exc.value)
    assert "alerts" in text and "notifiers" in text and message in text
    assert "Traceback" not in text


def test_config_refuses_duplicate_names() -> None:
    with pytest.raises(ConfigError, match="notifier name 'log' used twice"):
        site_from_dict(
            _site({"notifiers": [{"name": "log", "type": "console"}, {"name": "log", "type": "console"}]}),
            source="site.yaml",
        )


def test_readme_notifiers_example_validates() -> None:
    import re

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if b.startswith("alerts:"))
    loaded = site_from_dict(_site(yaml.safe_load(block)["alerts"]), source="README.md")
    kinds = [n.type for n in loaded.config.alerts.notifiers]
    assert kinds == ["alertmanager", "webhook", "email", "console"]


def test_verify_helper_matches_the_recipe() -> None:
    from pue_monitor.alerts.notifiers import signature, verify

    body = Webhook.body([pue_alert(1.0)])
    now = 1_790_000_000
    sig = signature("k", str(now), body)
    expected = "sha256=" + hmac.new(b"k", f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert sig == expected
    assert verify("k", body, str(now), sig, now=now + 299)
    assert not verify("k", body, str(now), sig, now=now + 301)  # stale: a replay
    assert not verify("other", body, str(now), sig, now=now)
    assert not verify("k", body + b" ", str(now), sig, now=now)
    assert not verify("k", body, "soon", sig, now=now)


async def test_stats_as_prometheus_metrics_pass_promtool() -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.registry import Collector

    from tests.servers import _binary

    with Receiver("k", fail_first=1) as rx:
        stats = NotifierStats()
        n = Webhook("hook", rx.url, "k", retries=0, stats=stats)
        assert not (await n.send([pue_alert(1.0)])).ok
        assert (await n.send([pue_alert(1.0)])).ok

    class C(Collector):
        def collect(self) -> Any:
            return stats.metrics(SITE, ["hook", "mail"])

    reg = CollectorRegistry()
    reg.register(C())
    text = generate_latest(reg).decode()
    assert f'pue_alert_notifications_total{{notifier="hook",result="failure",site="{SITE}"}} 1.0' in text
    assert f'pue_alert_notifications_total{{notifier="hook",result="success",site="{SITE}"}} 1.0' in text
    assert f'pue_alert_notifications_total{{notifier="mail",result="failure",site="{SITE}"}} 0.0' in text
    assert f'pue_alert_notification_attempts_total{{notifier="hook",site="{SITE}"}} 2.0' in text
    proc = await asyncio.create_subprocess_exec(
        _binary("promtool"), "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    out, _ = await proc.communicate(text.encode())
    assert proc.returncode == 0, out.decode()


def test_check_config_names_an_unset_notifier_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pue_monitor.config.loader import check_site

    monkeypatch.delenv("PUE_TEST_HOOK_SECRET", raising=False)
    site = _site(
        {
            "notifiers": [
                {
                    "name": "hook",
                    "type": "webhook",
                    "url": "https://h.example/x",
                    "secret": {"env": "PUE_TEST_HOOK_SECRET"},
                }
            ]
        }
    )
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    errors = check_site(path, directories=False).errors
    assert len(errors) == 1
    assert "alerts.notifiers[0].secret" in errors[0] and "PUE_TEST_HOOK_SECRET" in errors[0]

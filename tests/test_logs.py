"""No secret in any log line (issue 7, scope 6): the library errors that printed the InfluxDB
token, the 1.x password and URL userinfo are provoked for real, and the captured output must
not contain the secret while still naming the host and port.

The HTTP peers here are tiny local servers (aiohttp.web on loopback ports): a redirect loop
(a proxy sending http to itself) and an echo service answering 401 with the request's
headers in its body (httpbin-like). No real InfluxDB behaves like that; they are real HTTP
peers spoken to over real sockets by the real client libraries."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import sys
import textwrap

import aiohttp
import pytest
from aiohttp import web

from pue_monitor.config.models import InfluxConfig
from pue_monitor.logs import RedactingFilter, install_redaction, redact, register_secret
from pue_monitor.readings import Reading
from pue_monitor.sinks.influx import InfluxSink
from pue_monitor.sinks.lineprotocol import LineBuilder
from pue_monitor.sinks.spool import Spool

TOKEN = "tok-Zq8w-S3CRET-influx-7781"
PASSWORD = "pw-S3CRET-1x-ä&=?"  # characters that URL encoding changes


class Peer:
    """mode: "redirect" (302 to itself, forever) or "echo" (401, body = the request's headers)."""

    def __init__(self, mode: str, version: str | None = None) -> None:
        self.mode, self.version, self.url, self.hostport = mode, version, "", ""

    async def __aenter__(self) -> Peer:
        async def handle(request: web.Request) -> web.StreamResponse:
            if request.path == "/ping":
                return web.Response(status=204, headers={"X-Influxdb-Version": self.version} if self.version else {})
            if self.mode == "redirect":
                raise web.HTTPFound(str(request.url))
            await request.read()
            return web.Response(
                status=401, text=json.dumps({"error": "unauthorized", "headers": dict(request.headers)})
            )

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.hostport = f"127.0.0.1:{self._runner.addresses[0][1]}"
        self.url = f"http://{self.hostport}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


@pytest.fixture
def captured():
    """Redaction installed as the CLI does it; a handler added *afterwards* collects the output."""
    old_factory = logging.getLogRecordFactory()
    install_redaction()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield out
    root.removeHandler(handler)
    root.setLevel(old_level)
    logging.setLogRecordFactory(old_factory)


def lines(n: int = 5) -> list[str]:
    return LineBuilder().readings([Reading(1.78e9 + 60 * i, "dc1", "pdu-1", "e", float(i), "kWh") for i in range(n)])


async def run_sink(cfg: InfluxConfig) -> InfluxSink:
    sink = InfluxSink(cfg)
    await sink.start()
    sink.submit(lines())
    await sink.flush()
    for _ in range(200):
        if sink.stats.write_failures >= 1:
            break
        await asyncio.sleep(0.05)
    await sink.close(deadline=0.2)
    assert sink.stats.write_failures >= 1 and sink.stats.points_written == 0
    return sink


async def test_influxdb_token_in_influxdb_client_errors_is_redacted(captured, tmp_path, monkeypatch):
    from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

    monkeypatch.setenv("PUE_TEST_TOKEN", TOKEN)
    async with Peer("redirect") as loop_peer, Peer("echo") as echo:
        # 1. influxdb-client's own error: aiohttp's TooManyRedirects carries the request headers
        client = InfluxDBClientAsync(url=loop_peer.url, token=TOKEN, org="-")
        with pytest.raises(aiohttp.TooManyRedirects) as ei:
            await client.write_api().write(bucket="pue", org="-", record=b"m v=1 1")
        await client.close()
        assert f"Token {TOKEN}" in repr(ei.value)  # the leak is real
        register_secret(TOKEN)  # what Secret.read does when the sink resolves the token
        logging.getLogger("influxdb_client.client.write_api").error("write failed: %r", ei.value, exc_info=ei.value)
        # 2. the sink against a server that echoes the Authorization header into its 401 body
        cfg = InfluxConfig(url=echo.url, api="v2", token={"env": "PUE_TEST_TOKEN"},
                           spool={"path": str(tmp_path / "s.sqlite")})  # fmt: skip
        sink = await run_sink(cfg)
    text = captured.getvalue()
    assert "TooManyRedirects" in text and "unauthorized" in text  # both errors were logged
    assert TOKEN not in text and TOKEN not in (sink.stats.last_error or "")
    assert loop_peer.hostport in text and echo.hostport in text  # still names host and port
    assert "Token ***" in text


async def test_1x_password_in_basic_auth_and_query_string_is_redacted(captured, tmp_path, monkeypatch):
    monkeypatch.setenv("PUE_TEST_1X_PASSWORD", PASSWORD)
    basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    async with Peer("redirect", version="1.6.7") as peer:
        # the sink sends 1.x credentials as Basic auth; the redirect error's repr shows the header
        cfg = InfluxConfig(url=peer.url, username="admin", password={"env": "PUE_TEST_1X_PASSWORD"},
                           spool={"path": str(tmp_path / "s.sqlite")})  # fmt: skip
        sink = await run_sink(cfg)
        async with aiohttp.ClientSession() as session:
            # as 1.x clients commonly send it (u=, p= in the query string): the error's URL shows it
            with pytest.raises(aiohttp.TooManyRedirects) as q_err:
                await session.post(
                    f"{peer.url}/write", params={"db": "pue", "u": "admin", "p": PASSWORD}, data=b"m v=1"
                )
            with pytest.raises(aiohttp.TooManyRedirects) as b_err:
                headers = {"Authorization": aiohttp.encode_basic_auth("admin", PASSWORD)}
                await session.post(f"{peer.url}/write", headers=headers, data=b"m v=1")
    assert "p=pw-S3CRET" in str(q_err.value) and basic in repr(b_err.value)  # the leaks are real
    log = logging.getLogger("aiohttp.client")
    log.warning("1.x write failed: %s", q_err.value)
    log.warning("1.x write failed: %r", b_err.value)
    text = captured.getvalue()
    assert sink.stats.api == "v1" and "unavailable" in text
    for secret in (PASSWORD, basic, "pw-S3CRET"):
        assert secret not in text
    assert text.count(peer.hostport) >= 3


async def test_url_userinfo_is_redacted(captured, tmp_path):
    async with Peer("echo") as peer:
        url = f"http://admin:pw-S3CRET-url-77@{peer.hostport}"
        cfg = InfluxConfig(url=url, api="v1", spool={"path": str(tmp_path / "s.sqlite")})
        sink = await run_sink(cfg)
    assert sink.url == peer.url  # the sink's printable URL has no userinfo
    logging.getLogger("paho.mqtt.client").info("connecting to mqtt://ops:hunter2@%s", peer.hostport)
    text = captured.getvalue()
    assert "pw-S3CRET" not in text and "hunter2" not in text
    assert base64.b64encode(b"admin:pw-S3CRET-url-77").decode() not in text
    assert f"mqtt://***@{peer.hostport}" in text and peer.hostport in text


def test_filter_alone_and_redact():
    register_secret("s3cr3t-value-xyz")
    record = logging.LogRecord(
        "pysnmp", logging.ERROR, __file__, 1, "auth key %s rejected by %s", ("s3cr3t-value-xyz", "10.0.0.5:161"), None
    )
    RedactingFilter().filter(record)
    assert record.getMessage() == "auth key *** rejected by 10.0.0.5:161"
    assert redact("https://u:p@h:8086/x?q=1") == "https://***@h:8086/x?q=1"
    assert redact("no secrets at host:8086") == "no secrets at host:8086"


async def test_pue_run_never_logs_the_token(tmp_path):
    """The CLI's logging setup: `pue run` against an echo server that puts the token in its error."""
    site = tmp_path / "site.yaml"
    async with Peer("echo") as peer:
        site.write_text(
            textwrap.dedent(f"""\
            site: {{id: t1}}
            devices:
              - {{id: inc, protocol: modbus, host: 127.0.0.1, port: 1, profile: schneider-iem3000,
                 meter: {{role: facility_input, energy: import_energy}}}}
              - {{id: pdu, protocol: modbus, host: 127.0.0.1, port: 2, profile: eastron-sdm630,
                 meter: {{role: it, it_location: ups_output, energy: import_energy}}}}
            influxdb: {{url: '{peer.url}', api: v2, token: {{env: PUE_TEST_TOKEN}}, spool: {{path: spool.sqlite}}}}
            """)
        )
        spool = Spool(tmp_path / "spool.sqlite")  # a batch left from an earlier run: replayed at start
        spool.append(lines())
        spool.close()
        env = {**__import__("os").environ, "PUE_TEST_TOKEN": TOKEN}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pue_monitor", "run", "--config", str(site), "--duration", "3", "-q",
            "--no-prometheus", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
    text = err.decode()
    assert proc.returncode == 0, text
    assert "unauthorized" in text and peer.hostport in text  # the 401 with the echo was logged
    assert TOKEN not in text and TOKEN not in out.decode()

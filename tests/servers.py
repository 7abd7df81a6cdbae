"""Real database and monitoring servers for tests, each a child process on a free
loopback port with its own temp dir (see ../shared/docs/infra.md). A missing binary
fails the test loudly: `.ci/run` installs them; nothing here is mocked or skipped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        # fails the test (an error, never a skip); `./scripts/test` installs the servers
        raise RuntimeError(f"{name} is not installed: run ./scripts/test (it installs the test servers)")
    return path


def _wait(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout} s")


class Server:
    """A child-process server that can be stopped and started again on the same port and data."""

    def __init__(self, argv: list[str], ready_url: str, name: str, log: Path) -> None:
        self.argv, self.ready_url, self.name, self.log = argv, ready_url, name, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        _wait(self.ready_url, self.proc, self.name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class InfluxDB1(Server):
    """Debian's influxd (1.6.x): 1.x API only (/write, /query)."""

    def __init__(self, tmp: Path) -> None:
        self.port, rpc = free_port(), free_port()
        conf = tmp / "influxdb.conf"
        conf.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
            f'[meta]\n  dir = "{tmp}/meta"\n[data]\n  dir = "{tmp}/data"\n  wal-dir = "{tmp}/wal"\n'
            f'  query-log-enabled = false\n[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
        )
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__([_binary("influxd"), "run", "-config", str(conf)], f"{self.url}/ping", "influxd", tmp / "log")

    def query(self, q: str, db: str = "pue") -> list[dict[str, object]]:
        url = f"{self.url}/query?" + urllib.parse.urlencode({"db": db, "q": q, "epoch": "ns"})
        body = json.loads(urllib.request.urlopen(url, timeout=10).read())
        result = body["results"][0]
        if "error" in result:
            raise RuntimeError(result["error"])
        return result.get("series", [])  # type: ignore[no-any-return]

    def create_db(self, db: str = "pue") -> None:
        data = urllib.parse.urlencode({"q": f"CREATE DATABASE {db}"}).encode()
        urllib.request.urlopen(f"{self.url}/query", data=data, timeout=10).read()


class VictoriaMetrics(Server):
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [
                _binary("victoria-metrics"),
                f"-storageDataPath={tmp}/vm",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-search.latencyOffset=0s",
                "-retentionPeriod=100y",  # backfilled history is accepted, not dropped
                "-dedup.minScrapeInterval=1ms",  # same series + timestamp = one sample (idempotent replay)
            ],
            f"{self.url}/health",
            "victoria-metrics",
            tmp / "vm.log",
        )

    def export(self, match: str) -> list[dict[str, object]]:
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()
        url = f"{self.url}/api/v1/export?" + urllib.parse.urlencode({"match[]": match})
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        return [json.loads(line) for line in text.splitlines() if line]


class Prometheus(Server):
    def __init__(self, tmp: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = tmp / "prometheus.yml"
        conf.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"scrape_configs:\n  - job_name: pue\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        super().__init__(
            [
                _binary("prometheus"),
                f"--config.file={conf}",
                f"--storage.tsdb.path={tmp}/prom",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            f"{self.url}/-/ready",
            "prometheus",
            tmp / "prom.log",
        )

    def query(self, q: str) -> list[dict[str, object]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        body = json.loads(urllib.request.urlopen(url, timeout=10).read())
        return body["data"]["result"]  # type: ignore[no-any-return]


class Alertmanager(Server):
    """Debian's prometheus-alertmanager, one instance (gossip off), a route to nowhere."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = tmp / "alertmanager.yml"
        conf.write_text("route: {receiver: blackhole}\nreceivers: [{name: blackhole}]\n")
        super().__init__(
            [
                _binary("prometheus-alertmanager"),
                f"--config.file={conf}",
                f"--storage.path={tmp}/am",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip (it wants a second port)
            ],
            f"{self.url}/-/ready",
            "prometheus-alertmanager",
            tmp / "am.log",
        )

    def alerts(self, **params: str) -> list[dict[str, object]]:
        """``GET /api/v2/alerts`` with filters (active, silenced, inhibited, unprocessed, filter)."""
        url = f"{self.url}/api/v2/alerts?" + urllib.parse.urlencode(params)
        return json.loads(urllib.request.urlopen(url, timeout=10).read())  # type: ignore[no-any-return]

"""Launchers for the C/Go peers the benchmarks measure pue-monitor against.

Each launcher starts the peer as its own process on loopback and returns a :class:`Peer`
whose :meth:`Peer.cpu_seconds` is the CPU time (user + system, all threads) the process has
used so far, so a benchmark takes the difference over its measuring window.

- :func:`start_collectd`: collectd 5.12 (Debian package ``collectd-core``) with one plugin
  configuration (``snmp``, ``modbus``, ...) and a writer: ``network`` (default: collectd's
  binary protocol to a UDP socket of this process, which counts the values by their time
  stamps; the cheapest writer for collectd, as a site sending to a central collectd would
  run it) or ``csv`` (one file per value list, opened and closed on every write: it costs
  collectd about 2x the CPU of the snmp plugin itself). :meth:`Collectd.values` counts the
  values collectd dispatched in a time window.
- :func:`start_snmp_exporter`: Prometheus snmp_exporter 0.21 (Debian package
  ``prometheus-snmp-exporter``) with a given ``snmp.yml``; :func:`scrape_values` scrapes one
  target and counts the samples that are not snmp_exporter's own ``snmp_scrape_*`` series.

Debian packages (benchmarks only, never needed by the tests, so scripts/test does not install
them)::

    apt-get install -y --no-install-recommends collectd-core prometheus-snmp-exporter
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

COLLECTD_PLUGIN_DIR = "/usr/lib/collectd"
COLLECTD_TYPES_DB = "/usr/share/collectd/types.db"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free loopback port (TCP by default; ``socket.SOCK_DGRAM`` for UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _exe(name: str, *fallbacks: str, package: str) -> str:
    for cand in (shutil.which(name), *fallbacks):
        if cand and os.path.exists(cand):
            return cand
    raise RuntimeError(f"{name} is required for this benchmark (Debian package {package})")


@dataclass
class Peer:
    """A peer process (its own process group) and the log file it writes."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the process so far (all its threads, not children)."""
        t = psutil.Process(self.proc.pid).cpu_times()
        return float(t.user + t.system)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NetworkCounter(threading.Thread):
    """Receives collectd's binary network protocol on a loopback UDP port; counts values by time.

    Only the part headers are read (type, length): TIME/TIME_HR set the time of the VALUES
    parts after them, whose first two bytes are their number of values.
    """

    TIME, VALUES, TIME_HR = 0x0001, 0x0006, 0x0008

    def __init__(self) -> None:
        super().__init__(daemon=True, name="collectd-network-counter")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.counts: list[tuple[float, int]] = []  # (time stamp, values)
        self._stop_flag = threading.Event()

    def run(self) -> None:
        while not self._stop_flag.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self._parse(data)

    def _parse(self, data: bytes) -> None:
        off, stamp = 0, 0.0
        while off + 4 <= len(data):
            ptype, plen = struct.unpack_from("!HH", data, off)
            if plen < 4:
                return
            if ptype == self.TIME_HR:
                stamp = struct.unpack_from("!Q", data, off + 4)[0] / 2**30
            elif ptype == self.TIME:
                stamp = float(struct.unpack_from("!Q", data, off + 4)[0])
            elif ptype == self.VALUES:
                self.counts.append((stamp, struct.unpack_from("!H", data, off + 4)[0]))
            off += plen

    def close(self) -> None:
        self._stop_flag.set()
        self.join(timeout=2)
        self.sock.close()


@dataclass
class Collectd(Peer):
    csv_dir: Path = field(default=Path())
    counter: NetworkCounter | None = None

    def stop(self) -> None:
        super().stop()
        if self.counter is not None:
            self.counter.close()

    def values(self, t0: float, t1: float) -> int:
        """Values collectd dispatched with a time stamp in [t0, t1) (wall clock, epoch seconds).

        Wait about two intervals after ``t1`` first: collectd buffers network packets and the
        reads of the window's last second may still be in flight."""
        if self.counter is not None:
            return sum(n for ts, n in list(self.counter.counts) if t0 <= ts < t1)
        n = 0
        for path in self.csv_dir.rglob("*"):
            if not path.is_file():
                continue
            with path.open() as f:
                header = f.readline()
                sources = max(1, header.count(","))
                for line in f:
                    stamp = line.split(",", 1)[0]
                    try:
                        ts = float(stamp)
                    except ValueError:
                        continue
                    if t0 <= ts < t1:
                        n += sources
        return n


def start_collectd(
    tmp: Path, plugin: str, plugin_config: str, *, interval: float = 1.0, writer: str = "network"
) -> Collectd:
    """collectd with ``LoadPlugin plugin`` + ``plugin_config`` (the ``<Plugin ...>`` block) and
    ``writer`` (``network``, counted by this process, or ``csv``).

    ``tmp`` is an empty directory for the configuration, log (and CSV) files.
    """
    if writer not in ("network", "csv"):
        raise ValueError(f"collectd writer {writer!r}: network or csv")
    exe = _exe("collectd", "/usr/sbin/collectd", package="collectd-core")
    tmp.mkdir(parents=True, exist_ok=True)
    csv_dir = tmp / "csv"
    log = tmp / "collectd.log"
    conf = tmp / "collectd.conf"
    conf.write_text(
        f"""Hostname "bench"
FQDNLookup false
Interval {interval:g}
BaseDir "{tmp}"
PIDFile "{tmp / "collectd.pid"}"
PluginDir "{COLLECTD_PLUGIN_DIR}"
TypesDB "{COLLECTD_TYPES_DB}"
WriteThreads 1
LoadPlugin logfile
<Plugin logfile>
  LogLevel "info"
  File "{log}"
  Timestamp true
</Plugin>
{{WRITER}}
LoadPlugin {plugin}
{plugin_config}
"""
    )
    counter = NetworkCounter() if writer == "network" else None
    if counter is not None:
        out_conf = f'LoadPlugin network\n<Plugin network>\n  Server "127.0.0.1" "{counter.port}"\n</Plugin>'
    else:
        out_conf = f'LoadPlugin csv\n<Plugin csv>\n  DataDir "{csv_dir}"\n  StoreRates false\n</Plugin>'
    conf.write_text(conf.read_text().replace("{WRITER}", out_conf))
    check = subprocess.run([exe, "-t", "-C", str(conf)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        if counter is not None:
            counter.sock.close()
        raise RuntimeError(f"collectd rejects {conf}: {(check.stdout + check.stderr).strip()}")
    out = log.open("ab")
    proc = subprocess.Popen([exe, "-f", "-C", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    out.close()
    peer = Collectd("collectd", proc, log, csv_dir, counter)
    if counter is not None:
        counter.start()
    time.sleep(0.5)
    try:
        peer.check_alive()
    except RuntimeError:
        peer.stop()
        raise
    return peer


def start_snmp_exporter(tmp: Path, snmp_yml: str) -> tuple[Peer, int]:
    """snmp_exporter serving ``snmp_yml`` (0.21 format: module -> walk/get/metrics/version/auth); its HTTP port."""
    exe = _exe("prometheus-snmp-exporter", "snmp_exporter", package="prometheus-snmp-exporter")
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "snmp.yml"
    conf.write_text(snmp_yml)
    log = tmp / "snmp_exporter.log"
    port = free_port()
    out = log.open("ab")
    proc = subprocess.Popen(
        [exe, f"--config.file={conf}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()
    peer = Peer("snmp_exporter", proc, log)
    deadline = time.monotonic() + 10
    while True:
        peer.check_alive()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                peer.stop()
                raise RuntimeError(f"snmp_exporter did not listen on 127.0.0.1:{port}") from None
            time.sleep(0.1)
    return peer, port


def count_samples(text: str) -> int:
    """Samples in a Prometheus text exposition, leaving out snmp_exporter's own snmp_scrape_* series."""
    return sum(1 for line in text.splitlines() if line and not line.startswith(("#", "snmp_scrape_")))


def scrape_values(port: int, target: str, module: str, *, timeout: float = 5.0) -> int:
    """Scrape one target through snmp_exporter (a blocking HTTP GET); the samples it returned."""
    url = f"http://127.0.0.1:{port}/snmp?target={target}&module={module}"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return count_samples(resp.read().decode())

"""An MQTT broker for the simulator and the tests, on a free loopback port.

Mosquitto when it is installed (a child process with its own config, persistence folder
and log file in a temp dir): MQTT 5, persistent sessions that survive a restart.
Otherwise an in-process amqtt broker (a dependency of pue-monitor, so ``pip install
pue-monitor && pue demo`` needs nothing else; MQTT 3.1.1 only, sessions kept in memory).
``PUE_MOSQUITTO`` names the mosquitto binary, or hides it when empty.

``stop()`` / ``start()`` take the broker down and up again on the same port: mosquitto
writes its persistence file on SIGTERM and reloads it on start, so queued QoS 1 messages
and persistent sessions survive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

log = logging.getLogger(__name__)

MOSQUITTO_FALLBACK = "/usr/sbin/mosquitto"  # Debian installs it outside a user's PATH


def mosquitto_binary() -> str | None:
    """Path of the mosquitto executable, or None.

    ``PUE_MOSQUITTO`` overrides the search: a path to the binary, or empty for "no
    Mosquitto here" (the embedded amqtt broker is used).
    """
    override = os.environ.get("PUE_MOSQUITTO")
    if override is not None:
        return override if override and os.access(override, os.X_OK) else None
    found = shutil.which("mosquitto")
    if found:
        return found
    return MOSQUITTO_FALLBACK if os.access(MOSQUITTO_FALLBACK, os.X_OK) else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Broker:
    """``async with Broker() as b: ...`` — ``b.host``, ``b.port``, ``b.kind``.

    ``kind``: "auto" (mosquitto if installed, else amqtt), "mosquitto" (fails loudly if
    missing) or "amqtt". ``users`` (mosquitto only) turns anonymous access off and writes
    a password file with ``mosquitto_passwd``.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        kind: Literal["auto", "mosquitto", "amqtt"] = "auto",
        users: dict[str, str] | None = None,
        max_queued_messages: int = 100_000,
    ) -> None:
        if kind == "auto":
            kind = "mosquitto" if mosquitto_binary() else "amqtt"
        if kind == "mosquitto" and mosquitto_binary() is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        if users and kind != "mosquitto":
            raise ValueError("users are supported with mosquitto only")
        self.kind: Literal["mosquitto", "amqtt"] = kind
        self.host = host
        self.port = port or free_port(host)
        self.users = dict(users or {})
        self.max_queued_messages = max_queued_messages
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._amqtt: Any = None
        self._log_file: Any = None

    @property
    def running(self) -> bool:
        if self.kind == "mosquitto":
            return self._proc is not None and self._proc.returncode is None
        return self._amqtt is not None

    @property
    def dir(self) -> Path:
        """The broker's temp dir (config, persistence, ``mosquitto.log``)."""
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pue-broker-")
        return Path(self._tmp.name)

    def log_text(self) -> str:
        """Mosquitto's log so far ("" for amqtt)."""
        p = self.dir / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""

    async def __aenter__(self) -> Broker:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def start(self) -> None:
        if self.running:
            return
        if self.kind == "mosquitto":
            await self._start_mosquitto()
        else:
            await self._start_amqtt()

    async def stop(self) -> None:
        """Stop the broker (mosquitto saves its persistence file on SIGTERM)."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), timeout=10.0)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
        if self._amqtt is not None:
            broker, self._amqtt = self._amqtt, None
            await broker.shutdown()

    # ------------------------------------------------------------------ mosquitto

    def _config(self) -> Path:
        d = self.dir
        (d / "data").mkdir(exist_ok=True)
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'false' if self.users else 'true'}",
            "persistence true",
            f"persistence_location {d / 'data'}/",
            "autosave_interval 1",  # also saved on SIGTERM; this bounds loss on a crash
            f"max_queued_messages {self.max_queued_messages}",
            "max_inflight_messages 100",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto', who cannot write our temp dir
        if self.users:
            pw = d / "passwd"
            pw.write_text("")
            tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
            for user, password in self.users.items():
                subprocess.run([tool, "-b", str(pw), user, password], check=True, capture_output=True)
            pw.chmod(0o600)
            lines.append(f"password_file {pw}")
        conf = d / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    async def _start_mosquitto(self) -> None:
        binary = mosquitto_binary()
        assert binary is not None
        conf = self._config()
        self._log_file = (self.dir / "mosquitto.log").open("ab")
        self._proc = await asyncio.create_subprocess_exec(
            binary, "-c", str(conf), stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10.0
        while True:
            if self._proc.returncode is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}:\n{self.log_text()[-2000:]}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(self.host, self.port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return
            if time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port} within 10 s")
            await asyncio.sleep(0.02)

    # ---------------------------------------------------------------------- amqtt

    async def _start_amqtt(self) -> None:
        try:
            from amqtt.broker import Broker as AmqttBroker  # type: ignore[import-untyped]
        except ImportError as exc:
            raise RuntimeError("no MQTT broker: install mosquitto, or amqtt (pip install amqtt)") from exc
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        _quiet_amqtt_disconnects(asyncio.get_running_loop())
        broker = AmqttBroker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
        )
        await broker.start()
        self._amqtt = broker


def _quiet_amqtt_disconnects(loop: asyncio.AbstractEventLoop) -> None:
    """Log a client that hangs up during its CONNECT at debug level, not as a traceback.

    amqtt (0.12) closes such a connection with ``write_eof()`` on a socket that is already
    gone; the ``OSError`` escapes its ``client_connected_cb`` and asyncio prints it with a
    traceback ("Unhandled exception in client_connected_cb"). The client is gone either
    way; nothing is lost. Every other exception goes to the previous handler.
    """
    previous = loop.get_exception_handler()
    if getattr(previous, "_pue_amqtt", False):
        return

    def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and "client_connected_cb" in str(context.get("message", "")):
            log.debug("embedded MQTT broker: a client hung up while connecting (%s)", exc)
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    handler._pue_amqtt = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)

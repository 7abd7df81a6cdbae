"""Issue 8 acceptance: a fresh venv with a plain ``pip install`` of the checkout runs the demo.

No Mosquitto (hidden from the broker lookup), default speed (60x), 60 wall seconds: exit 0,
the ground-truth line within 0.5 %, no "down" line, no traceback, no temp dir left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env_without_mosquitto(tmp: Path) -> dict[str, str]:
    """The environment of a user who never installed Mosquitto.

    PATH loses every directory holding a ``mosquitto`` binary, and ``PUE_MOSQUITTO=""``
    hides the Debian location outside PATH (``/usr/sbin/mosquitto``) that the broker
    lookup also tries (pue_monitor.simulator.broker.mosquitto_binary).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PUE_MOSQUITTO")}
    env["PATH"] = os.pathsep.join(
        d for d in env.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "mosquitto").exists()
    )
    env["PUE_MOSQUITTO"] = ""
    env["TMPDIR"] = str(tmp)
    return env


def _copy_checkout(dest: Path) -> Path:
    """What a source distribution holds, so the build leaves nothing (build/, *.egg-info) in the worktree."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "pue_monitor", dest / "pue_monitor", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_fresh_venv_pip_install_runs_demo_without_mosquitto(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    src = _copy_checkout(tmp_path / "src")
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    install_s = time.monotonic() - t0
    assert pip.returncode == 0, pip.stderr[-3000:]
    print(f"fresh venv + pip install of the checkout: {install_s:.1f} s")

    work = tmp_path / "cwd"  # not the checkout: the installed package must be the one imported
    work.mkdir()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = _env_without_mosquitto(tmp)
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import pue_monitor, amqtt; print(pue_monitor.__file__)"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout

    demo = subprocess.run(
        [str(venv / "bin" / "pue"), "demo", "--duration", "60"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=180,
    )
    out = demo.stdout + demo.stderr
    assert demo.returncode == 0, out[-3000:]
    assert "MQTT broker: amqtt" in demo.stdout.splitlines()[0]
    assert "Traceback" not in out
    downs = [line for line in out.splitlines() if re.search(r"\bdown\b", line, re.IGNORECASE)]
    assert downs == [], downs
    assert "recovered" not in out
    status = [line for line in demo.stdout.splitlines() if "devices " in line and " up |" in line]
    assert len(status) >= 20 and "devices 18/18 up" in status[-1], status[-3:]
    assert "readings: modbus" in status[-1] and " mqtt " in status[-1] and " snmp " in status[-1]

    m = re.search(
        r"PUE (\d\.\d{4}) measured from energy .*; simulator ground truth (\d\.\d{4}); difference ([+-]\d+\.\d+) %",
        demo.stdout,
    )
    assert m, demo.stdout[-2000:]
    measured, truth, diff = float(m[1]), float(m[2]), float(m[3])
    assert 1.1 < truth < 1.6
    assert abs(diff) < 0.5
    assert abs(100 * (measured - truth) / truth - diff) < 0.02  # the printed difference is the printed values'
    # the demo's store and the broker's temp dirs are gone
    assert "temporary store removed" in demo.stdout
    assert list(tmp.iterdir()) == []


def _connect_v5(client_id: bytes) -> bytes:
    """An MQTT 5 CONNECT packet (clean start, keepalive 60, no properties)."""
    body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + struct.pack("!H", len(client_id)) + client_id
    return bytes([0x10, len(body)]) + body


async def test_embedded_broker_refuses_mqtt5_clients_without_a_traceback() -> None:
    """The demo's asyncio traceback: our MQTT source tries MQTT 5 first; amqtt (3.1.1 only)
    answers "unacceptable protocol version" and closes a socket the client already dropped,
    and the OSError escaped amqtt's connection callback. Now: no unhandled exception, and the
    broker keeps serving."""
    import asyncio
    import socket

    from pue_monitor.simulator.broker import Broker

    loop = asyncio.get_running_loop()
    unhandled: list[str] = []
    loop.set_exception_handler(lambda _loop, ctx: unhandled.append(str(ctx.get("message"))))
    try:
        async with Broker(kind="amqtt") as broker:
            # the refusal a polite MQTT 5 client reads: CONNACK, return code 1 (unacceptable protocol)
            reader, writer = await asyncio.open_connection(broker.host, broker.port)
            writer.write(_connect_v5(b"polite"))
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"\x20\x02\x00\x01"
            writer.close()
            await writer.wait_closed()
            # clients that hang up (RST) right after their CONNECT, as a falling-back client may
            for n in range(20):
                s = socket.create_connection((broker.host, broker.port))
                s.sendall(_connect_v5(b"rude%d" % n))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            await asyncio.sleep(0.5)
            # still serving MQTT 3.1.1
            import aiomqtt

            async with aiomqtt.Client(
                broker.host, broker.port, identifier="after", protocol=aiomqtt.ProtocolVersion.V311
            ) as client:
                await client.publish("still/up", b"1", qos=1)
            await asyncio.sleep(0.2)  # amqtt ends the session's tasks
    finally:
        loop.set_exception_handler(None)
    assert unhandled == []

"""`pue simulate`: the simulator's devices alone, for `pue run`."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

from pue_monitor.cli.common import EXIT_OK, Subparsers, install_stop, positive, stop_after
from pue_monitor.errors import UsageError, UserError


def _check_ports(host: str, first: int, count: int, udp: range) -> None:
    """Every port of ``first .. first+count-1`` free (UDP for ``udp``, TCP otherwise), before
    anything starts: one line naming the taken ones instead of a server's traceback."""
    taken = []
    for port in range(first, first + count):
        kind = socket.SOCK_DGRAM if port in udp else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as s:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            try:
                s.bind((host, port))
            except OSError as exc:
                taken.append(f"{port}/{'udp' if port in udp else 'tcp'} ({exc.strerror})")
    if taken:
        raise UserError(
            f"--ports-from {first}: the simulator needs {host} ports {first}-{first + count - 1}; "
            f"not free: {', '.join(taken)}",
            "choose another --ports-from, or leave it out for free ports",
        )


def ready_record(sim: Any, config: str | None) -> dict[str, Any]:
    """The machine-readable line printed once every device serves."""
    ports: dict[str, dict[str, Any]] = {}
    for dev, (_, port, unit) in sim.modbus.ports.items():
        ports[dev] = {"protocol": "modbus", "port": port, "unit_id": unit}
    for dev, (_, port) in sim.snmp.ports.items():
        ports[dev] = {"protocol": "snmp", "port": port}
    return {
        "ready": True,
        "config": config,
        "host": sim.host,
        "devices": ports,
        "mqtt_broker": {"port": sim.broker.port, "kind": sim.broker.kind},
    }


def cmd_simulate(args: argparse.Namespace) -> int:
    import yaml

    from pue_monitor.clock import WallClock
    from pue_monitor.simulator import SimulatedDataCentre
    from pue_monitor.simulator.servers import SimulatorServers
    from pue_monitor.simulator.site import SimulatedSite
    from pue_monitor.simulator.snmp_agent import SnmpAgents

    host = "127.0.0.1"
    if args.ports_from is not None:
        count = SimulatedSite.port_count()
        if args.ports_from + count - 1 > 65535:
            raise UsageError(f"--ports-from {args.ports_from}: the simulator needs {count} ports, up to 65535")
        snmp_first = args.ports_from + SimulatorServers.PORTS
        _check_ports(host, args.ports_from, count, range(snmp_first, snmp_first + len(SnmpAgents.DEVICES)))

    async def main() -> None:
        clock = WallClock()
        world = SimulatedDataCentre(start=clock.now(), seed=args.seed)
        async with SimulatedSite(
            world, clock, host=host, publish_interval=args.interval, ports_from=args.ports_from
        ) as sim:
            cfg = sim.site_config(interval=args.interval, timeout=min(2.0, args.interval / 2))
            text = yaml.safe_dump(cfg, sort_keys=False)
            ready = json.dumps(ready_record(sim, args.write_config))
            if args.write_config:
                await asyncio.to_thread(Path(args.write_config).write_text, text)
                print(
                    f"site configuration written to {args.write_config}; run: pue run --config {args.write_config}",
                    flush=True,
                )
                print(ready, flush=True)
            else:  # stdout stays one YAML document (`pue simulate > site.yaml`): the ready line on stderr
                print(text, flush=True)
                print(ready, file=sys.stderr, flush=True)
            stop = asyncio.Event()
            install_stop(stop)
            await stop_after(stop, args.duration)
            if args.duration is None:
                await stop.wait()

    asyncio.run(main())
    return EXIT_OK


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"{v} is not a port (1-65535)")
    return v


def add_parsers(sub: Subparsers) -> None:
    sim = sub.add_parser(
        "simulate",
        help="run only the simulator's devices (for `pue run`)",
        description="Serve the simulated site's meters on loopback in real time and "
        "print (or write) a site configuration pointing at them. When every device serves, "
        'one JSON line {"ready": true, ...} names the ports (on stdout after --write-config\'s '
        "line; on stderr when the configuration itself goes to stdout).",
    )
    sim.add_argument("--write-config", metavar="FILE")
    sim.add_argument("--interval", type=positive, default=10.0)
    sim.add_argument("--duration", type=positive, metavar="SECONDS")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument(
        "--ports-from",
        type=_port,
        metavar="N",
        help="stable ports N, N+1, ...: Modbus (TCP), then SNMP agents (UDP), then the MQTT broker "
        "(default: free ports, new each run)",
    )
    sim.set_defaults(func=cmd_simulate)

"""`pue simulate`: the simulator's devices alone, for `pue run`."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from pue_monitor.cli.common import EXIT_OK, Subparsers, install_stop, positive, stop_after


def cmd_simulate(args: argparse.Namespace) -> int:
    import yaml

    from pue_monitor.clock import WallClock
    from pue_monitor.simulator import SimulatedDataCentre
    from pue_monitor.simulator.site import SimulatedSite

    async def main() -> None:
        clock = WallClock()
        world = SimulatedDataCentre(start=clock.now(), seed=args.seed)
        async with SimulatedSite(world, clock, publish_interval=args.interval) as sim:
            cfg = sim.site_config(interval=args.interval, timeout=min(2.0, args.interval / 2))
            text = yaml.safe_dump(cfg, sort_keys=False)
            if args.write_config:
                await asyncio.to_thread(Path(args.write_config).write_text, text)
                print(
                    f"site configuration written to {args.write_config}; run: pue run --config {args.write_config}",
                    flush=True,
                )
            else:
                print(text, flush=True)
            stop = asyncio.Event()
            install_stop(stop)
            await stop_after(stop, args.duration)
            if args.duration is None:
                await stop.wait()

    asyncio.run(main())
    return EXIT_OK


def add_parsers(sub: Subparsers) -> None:
    sim = sub.add_parser(
        "simulate",
        help="run only the simulator's devices (for `pue run`)",
        description="Serve the simulated site's meters on loopback in real time and "
        "print (or write) a site configuration pointing at them.",
    )
    sim.add_argument("--write-config", metavar="FILE")
    sim.add_argument("--interval", type=positive, default=10.0)
    sim.add_argument("--duration", type=positive, metavar="SECONDS")
    sim.add_argument("--seed", type=int, default=1)
    sim.set_defaults(func=cmd_simulate)

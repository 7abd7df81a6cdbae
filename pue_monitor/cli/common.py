"""What every `pue` command group shares: exit codes, argument types, formatting, signals."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def finite(text: str) -> float:
    """argparse type: a finite number (no inf, no nan)."""
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def positive(text: str) -> float:
    v = finite(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return v


def fmt(v: float | None, spec: str = ".3f", none: str = "  n/a") -> str:
    return none if v is None else format(v, spec)


def kpi_summary(values: dict[str, Any], basis: dict[str, Any]) -> str:
    """One line of companion KPIs, each with its standard; ``not measured`` when None.

    ``values``: wue/cue/erf/ref; ``basis``: a stored row's co2_factor_* and water_definition."""
    from pue_monitor.pipeline.kpi import KPI_STANDARDS

    def one(kpi: str, spec: str, unit: str, note: str = "") -> str:
        v = values.get(kpi)
        shown = "not measured" if v is None else format(v, spec) + unit
        return f"{kpi.upper()} {shown} ({KPI_STANDARDS[kpi]}{note})"

    factor = basis.get("co2_factor_kg_per_kwh")
    ef = f"; grid factor {factor} kg/kWh, {basis.get('co2_factor_year')}" if factor is not None else ""
    water = f"; {basis['water_definition']}" if basis.get("water_definition") else ""
    return ", ".join(
        (one("wue", ".3f", " L/kWh", water), one("cue", ".3f", " kg/kWh", ef), one("erf", ".3f", ""),
         one("ref", ".3f", ""))
    )  # fmt: skip


def iso(ts: float, tz: str = "UTC") -> str:
    from zoneinfo import ZoneInfo

    return dt.datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


def install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


def install_reload(reload: Callable[[], Awaitable[object]]) -> None:
    """SIGHUP runs ``reload()`` (one at a time; the service serialises them)."""
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[object]] = set()  # a reference, so a task is not collected mid-run

    def hup() -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(reload())
        running.add(task)
        task.add_done_callback(running.discard)

    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):  # no SIGHUP on Windows
        loop.add_signal_handler(signal.SIGHUP, hup)


async def stop_after(stop: asyncio.Event, seconds: float | None) -> None:
    if seconds is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        stop.set()

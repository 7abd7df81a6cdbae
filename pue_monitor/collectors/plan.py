"""Compile a device's points into an immutable read plan (parse, compile, run).

Contiguous registers of one function are merged into as few requests as the
device allows; a value is never split across two requests.
"""

from __future__ import annotations

from dataclasses import dataclass

from pue_monitor.config.models import ProfilePoint


@dataclass(frozen=True, slots=True)
class PlannedPoint:
    name: str
    offset: int  # register offset inside the request
    spec: ProfilePoint


@dataclass(frozen=True, slots=True)
class ReadRequest:
    function: str  # "holding" | "input"
    address: int
    count: int
    points: tuple[PlannedPoint, ...]


def compile_plan(
    points: dict[str, ProfilePoint], *, max_registers: int = 125, one_point_per_request: bool = False
) -> tuple[ReadRequest, ...]:
    """Merge ``points`` into read requests.

    Only registers that touch are merged (no reading across holes: many meters
    answer "illegal data address" for an unmapped register).
    """
    if max_registers < 1:
        raise ValueError("max_registers must be >= 1")
    order = sorted(points.items(), key=lambda kv: (kv[1].function, kv[1].address))
    requests: list[ReadRequest] = []
    cur: list[tuple[str, ProfilePoint]] = []

    def flush() -> None:
        if cur:
            start = cur[0][1].address
            end = max(p.address + p.count for _, p in cur)
            requests.append(
                ReadRequest(
                    function=cur[0][1].function,
                    address=start,
                    count=end - start,
                    points=tuple(PlannedPoint(n, p.address - start, p) for n, p in cur),
                )
            )
            cur.clear()

    for name, p in order:
        if p.count > max_registers:
            raise ValueError(f"point {name!r} needs {p.count} registers, above the cap of {max_registers}")
        if cur:
            first = cur[0][1]
            end = max(q.address + q.count for _, q in cur)
            fits = (
                not one_point_per_request
                and p.function == first.function
                and p.address == end
                and p.address + p.count - first.address <= max_registers
            )
            if not fits:
                flush()
        cur.append((name, p))
    flush()
    return tuple(requests)

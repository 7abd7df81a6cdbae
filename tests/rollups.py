"""Checks shared by the restart and store-fault tests: every 15m/1h/1d row is the aggregate of
the stored 1-minute rows of its bucket, with coverage that admits absent minutes."""

from __future__ import annotations

import math
import zoneinfo
from datetime import datetime, timedelta

import pytest

RES = {"15m": 900, "1h": 3600}


def bucket_of(ts: float, res: str, tz: str) -> tuple[float, float]:
    zone = zoneinfo.ZoneInfo(tz)
    local = datetime.fromtimestamp(ts, zone)
    if res == "1d":
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return day.timestamp(), datetime.combine(day.date() + timedelta(days=1), day.time(), tzinfo=zone).timestamp()
    b = local.replace(minute=(local.minute // 15) * 15 if res == "15m" else 0, second=0, microsecond=0)
    return b.timestamp(), b.timestamp() + RES[res]


def assert_rollups_are_sums_of_minutes(minutes: list[dict], rows: dict[str, list[dict]], tz: str) -> int:
    """``minutes``: stored 1m rows; ``rows``: resolution -> stored rows. Returns rows checked."""
    until = max(m["end"] for m in minutes)
    checked = 0
    for res, got in rows.items():
        expected: dict[float, list[dict]] = {}
        for m in minutes:
            expected.setdefault(bucket_of(m["start"], res, tz)[0], []).append(m)
        assert sorted(r["start"] for r in got) == sorted(expected), res
        for r in got:
            mins = expected[r["start"]]
            used = [m for m in mins if m["pue"] is not None]
            span = min(r["end"], until) - r["start"]
            assert r["e_facility_kwh"] == pytest.approx(math.fsum(m["e_facility_kwh"] for m in used), rel=1e-12)
            assert r["e_it_kwh"] == pytest.approx(math.fsum(m["e_it_kwh"] for m in used), rel=1e-12)
            assert r["pue"] == pytest.approx(r["e_facility_kwh"] / r["e_it_kwh"], rel=1e-12)
            # coverage: covered seconds of the minutes used over the part of the bucket elapsed
            covered = math.fsum(60.0 * m["coverage"] for m in used)
            assert r["coverage"] == pytest.approx(covered / span, rel=1e-9), (res, r["start"])
            assert r["measured"] + r["estimated"] + r["missing"] == pytest.approx(1.0)
            checked += 1
    return checked

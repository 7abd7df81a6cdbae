from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (modbus_server)

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


@pytest.fixture
def influx1(tmp_path):
    """Debian's InfluxDB 1.6 on a free port with database ``pue`` (see servers.py)."""
    from servers import InfluxDB1

    (tmp_path / "influx").mkdir()
    server = InfluxDB1(tmp_path / "influx")
    server.start()
    server.create_db("pue")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
async def no_leaked_tasks():
    """Fail any async test that leaves tasks running (pymodbus' own test suite does this)."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    if leaked:
        for t in leaked:
            t.cancel()
        pytest.fail(f"test leaked tasks: {[t.get_name() for t in leaked]}")

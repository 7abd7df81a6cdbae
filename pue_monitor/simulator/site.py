"""The whole simulated site: Modbus meters, SNMP UPS and rack PDUs, MQTT sensors.

One async context manager starts every part on free loopback ports (and an MQTT broker
when none is given) and writes the site configuration that points at them.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Any

from pue_monitor.clock import Clock
from pue_monitor.simulator.servers import SimulatorServers
from pue_monitor.simulator.world import SimulatedDataCentre


class SimulatedSite:
    """``async with SimulatedSite(world, clock) as site: cfg = site.site_config(...)``."""

    def __init__(
        self,
        world: SimulatedDataCentre,
        clock: Clock,
        *,
        host: str = "127.0.0.1",
        publish_interval: float = 15.0,
        ports_from: int | None = None,
    ) -> None:
        self.ports_from = ports_from  # stable ports: Modbus, then SNMP (UDP), then the broker
        self.world = world
        self.clock = clock
        self.host = host
        self.publish_interval = publish_interval
        self._stack = contextlib.AsyncExitStack()
        self.modbus: SimulatorServers | None = None
        self.snmp: Any = None
        self.broker: Any = None
        self.publishers: Any = None

    async def __aenter__(self) -> SimulatedSite:
        from pue_monitor.simulator.broker import Broker
        from pue_monitor.simulator.mqtt_publishers import SensorPublishers
        from pue_monitor.simulator.snmp_agent import SnmpAgents

        try:
            first = self.ports_from
            snmp_first = None if first is None else first + SimulatorServers.PORTS
            self.modbus = await self._stack.enter_async_context(
                SimulatorServers(self.world, self.clock, host=self.host, first_port=first)
            )
            self.snmp = await self._stack.enter_async_context(
                SnmpAgents(self.world, self.clock, host=self.host, first_port=snmp_first)
            )
            broker_port = None if snmp_first is None else snmp_first + len(SnmpAgents.DEVICES)
            self.broker = await self._stack.enter_async_context(Broker(port=broker_port))
            self.publishers = await self._stack.enter_async_context(
                SensorPublishers(
                    self.world, self.clock, host=self.broker.host, port=self.broker.port, interval=self.publish_interval
                )
            )
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    @staticmethod
    def port_count() -> int:
        """How many consecutive ports ``ports_from`` takes: Modbus (TCP), SNMP (UDP), broker (TCP)."""
        from pue_monitor.simulator.snmp_agent import SnmpAgents

        return SimulatorServers.PORTS + len(SnmpAgents.DEVICES) + 1

    def site_config(self, *, interval: float, timeout: float) -> dict[str, Any]:
        """A site configuration dict for every simulated device (validates as SiteConfig)."""
        assert self.modbus is not None, "use inside `async with`"
        cfg = self.modbus.site_config(interval=interval, timeout=timeout)
        cfg["devices"] = [
            *cfg["devices"],
            # SNMP is polled 4x less often, as sites do (UPS/PDU agents are slow, pysnmp costs
            # ~8 ms of CPU per message on each side, and both sides share this process)
            *self.snmp.devices_config(interval=4 * interval, timeout=timeout),
            *self.publishers.devices_config(),
        ]
        cfg["mqtt"] = self.publishers.broker_config()
        cfg["cooling"] = self.publishers.cooling_config(self.world.params)
        return cfg

"""Simulated MQTT sensors of the site, publishing at QoS 1 on the simulated clock.

- a weather station: JSON on ``dc/sim/weather``
  (``{"ts": epoch ms, "temperature": °C, "humidity": %, "pressure": hPa}``);
- the CRAH supply/return air temperatures behind a Sparkplug B edge node (group
  ``dc-sim``, edge node ``crah-gw``, devices ``crah-1`` and ``crah-2``): NBIRTH/DBIRTH with
  names, aliases and ``engUnit``, then DDATA by alias only; NDEATH as the MQTT will; an
  NCMD ``Node Control/Rebirth`` is answered by publishing the births again;
- the cooling towers' make-up water meter: cumulative litres as a plain number on
  ``dc/sim/water/total_l`` — the world's ``tower-water`` meter (its physics, counter and ground
  truth: :func:`pue_monitor.simulator.physics.kpi_meters`), the site's WUE source (role ``water``).
- the chiller plant controller: JSON on ``dc/sim/plant/economiser``
  (``{"ts": epoch ms, "mode": 0 mechanical / 1 partial / 2 full free cooling,
  "chiller_kw": compressor power}``), from the world's own free-cooling rule
  (:func:`pue_monitor.simulator.physics.free_cooling_fraction`).

Values derive from the world (:meth:`SimulatedDataCentre.weather_at`, ``loads_at``) with
the small pure helpers below; their numbers are [u] and live in :class:`SensorParams`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiomqtt

from pue_monitor.clock import Clock
from pue_monitor.collectors import sparkplug as sp
from pue_monitor.simulator.physics import economiser_mode
from pue_monitor.simulator.world import SimulatedDataCentre

log = logging.getLogger(__name__)

WEATHER_TOPIC = "dc/sim/weather"
WATER_TOPIC = "dc/sim/water/total_l"
PLANT_TOPIC = "dc/sim/plant/economiser"
GROUP = "dc-sim"
EDGE_NODE = "crah-gw"
CRAH_UNITS = ("crah-1", "crah-2")
SUPPLY, RETURN = "Supply Temperature", "Return Temperature"


@dataclass(frozen=True)
class SensorParams:
    """Numbers of the simulated sensors (all [u]: plausible, not from a source)."""

    #: CRAH supply-air set point, °C: chilled water 15 °C + ~6 K coil approach
    crah_supply_c: float = 21.0
    #: each unit's offset from the set point (sensor/controller spread), K
    crah_supply_offset_k: tuple[float, ...] = (-0.3, 0.4)
    #: air ΔT across a CRAH at the room's design heat load, K (hot-aisle containment: 10-15 K)
    crah_design_dt_k: float = 12.0
    #: room design heat load, kW thermal: design IT x 1.1 (losses, fans, lights); the
    #: CRAHs share it in proportion to their design airflow, so all see the same ΔT
    design_heat_kw: float = 1100.0


def crah_temperatures(heat_load_kw: float, p: SensorParams) -> list[tuple[float, float]]:
    """(supply, return) air temperature of each CRAH, °C: return = supply + ΔT, with ΔT
    proportional to the heat the unit removes (constant airflow: Q = m·cp·ΔT)."""
    dt_k = p.crah_design_dt_k * heat_load_kw / p.design_heat_kw
    return [(p.crah_supply_c + off, p.crah_supply_c + off + dt_k) for off in p.crah_supply_offset_k]


def make_up_litres(world: SimulatedDataCentre, t0: float, t1: float) -> float:
    """Make-up water used over [t0, t1], L: the world's true ``tower-water`` volume."""
    return world.true_energy("tower-water", t0, t1) if t1 > t0 else 0.0


def plant_status(world: SimulatedDataCentre, t: float) -> dict[str, Any]:
    """The chiller plant controller's message at ``t``: economiser mode code and chiller
    compressor power (kW), from the world's loads."""
    ld = world.loads_at(t)
    return {
        "ts": round(t * 1000),
        "mode": int(economiser_mode(float(ld["free_cooling_fraction"]))),
        "chiller_kw": round(float(ld["chillers"]), 3),
    }


class SensorPublishers:
    """``async with SensorPublishers(world, clock, host=..., port=..., interval=15) as pubs:``

    Publishes every ``interval`` simulated seconds (aligned to the clock) until exit;
    reconnects with backoff if the broker goes away (samples due meanwhile are skipped).
    """

    def __init__(
        self,
        world: SimulatedDataCentre,
        clock: Clock,
        *,
        host: str,
        port: int,
        interval: float,
        params: SensorParams | None = None,
        client_id: str = "pue-sim-sensors",
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.world = world
        self.clock = clock
        self.host = host
        self.port = port
        self.interval = interval
        self.params = params or SensorParams()
        self.client_id = client_id
        self.sent: Counter[str] = Counter()  # messages published, by topic
        self.births = 0  # NBIRTH messages published (1 + rebirths per connection)
        self.bd_seq = -1
        self._seq = 0
        self._water_t = -math.inf
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._rebirth = False
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------- config

    def devices_config(self) -> list[dict[str, Any]]:
        """Site-config device entries for the published sensors."""
        iv = self.interval
        return [
            {
                "id": "weather",
                "protocol": "mqtt",
                "interval": iv,
                "subscriptions": [
                    {
                        "topic": WEATHER_TOPIC,
                        "qos": 1,
                        "timestamp": "ts",
                        "points": [
                            {"point": "outdoor_temperature", "path": "temperature", "unit": "degC"},
                            {"point": "relative_humidity", "path": "humidity", "unit": "%"},
                            {"point": "pressure", "path": "pressure", "unit": "hPa"},
                        ],
                    }
                ],
            },
            {
                "id": "crah-sensors",
                "protocol": "sparkplug",
                "group": GROUP,
                "edge_node": EDGE_NODE,
                "interval": iv,
                "metrics": {
                    SUPPLY: {"point": "supply_temperature", "unit": "degC"},
                    RETURN: {"point": "return_temperature", "unit": "degC"},
                },
            },
            {
                "id": "water-meter",
                "protocol": "mqtt",
                "interval": iv,
                "subscriptions": [
                    {"topic": WATER_TOPIC, "qos": 1, "points": [{"point": "make_up_water", "unit": "L"}]}
                ],
                "meter": {"role": "water", "volume": "make_up_water"},  # WUE (ISO/IEC 30134-9)
            },
            {
                "id": "plant-controls",
                "protocol": "mqtt",
                "interval": iv,
                "subscriptions": [
                    {
                        "topic": PLANT_TOPIC,
                        "qos": 1,
                        "timestamp": "ts",
                        "points": [
                            {"point": "economiser_mode", "path": "mode"},
                            {"point": "chiller_power", "path": "chiller_kw", "unit": "kW"},
                        ],
                    }
                ],
            },
        ]

    @staticmethod
    def cooling_config(params: Any) -> dict[str, Any]:
        """The site config's ``cooling:`` section: the world's water-side economiser (its
        set points and approaches from ``params``, a :class:`~pue_monitor.simulator.physics.SimParams`),
        fed by the weather station and the plant controller."""
        return {
            "altitude_m": 800.0,  # Taiyuan ≈ 780 m; the station pressure is used when known
            "economisers": [
                {
                    "id": "water-side",
                    "type": "water_side",
                    "chw_supply_c": params.chw_supply_c,
                    "chw_return_c": params.chw_return_c,
                    "tower_approach_k": params.tower_approach_k,
                    "hx_approach_k": params.hx_approach_k,
                },
                {"id": "dry-cooler", "type": "dry_cooler"},
            ],
            "points": {
                "outdoor_temperature": {"device": "weather", "point": "outdoor_temperature"},
                "relative_humidity": {"device": "weather", "point": "relative_humidity"},
                "pressure": {"device": "weather", "point": "pressure"},
                "chiller_power": {"device": "plant-controls", "point": "chiller_power"},
                "economiser_mode": {"device": "plant-controls", "point": "economiser_mode"},
            },
        }

    def broker_config(self) -> dict[str, Any]:
        """The site config's ``mqtt:`` section."""
        return {"host": self.host, "port": self.port, "client_id": "pue-monitor"}

    # ------------------------------------------------------------------ values

    def water_total_at(self, t: float) -> float:
        """The make-up water meter's counter at ``t`` (never backwards), L."""
        self._water_t = max(self._water_t, t)
        return self.world.counter_at("tower-water", self._water_t)

    @staticmethod
    def _aliases(unit: int) -> tuple[int, int]:
        return 10 * (unit + 1) + 1, 10 * (unit + 1) + 2

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % 256
        return self._seq

    def _births(self, t: float) -> list[tuple[str, bytes]]:
        ms = round(t * 1000)
        self._seq = 0
        node = sp.encode_payload(
            [(sp.BDSEQ_METRIC, None, sp.UINT64, self.bd_seq), (sp.REBIRTH_METRIC, None, sp.BOOLEAN, False)],
            ts_ms=ms,
            seq=0,
        )
        out = [(f"{sp.NAMESPACE}/{GROUP}/NBIRTH/{EDGE_NODE}", node)]
        temps = crah_temperatures(float(self.world.loads_at(t)["heat_load"]), self.params)
        for i, dev in enumerate(CRAH_UNITS):
            a_s, a_r = self._aliases(i)
            payload = sp.encode_payload(
                [(SUPPLY, a_s, sp.FLOAT, temps[i][0]), (RETURN, a_r, sp.FLOAT, temps[i][1])],
                ts_ms=ms,
                seq=self._next_seq(),
                units={SUPPLY: "degC", RETURN: "degC"},
            )
            out.append((f"{sp.NAMESPACE}/{GROUP}/DBIRTH/{EDGE_NODE}/{dev}", payload))
        return out

    def samples(self, t: float) -> list[tuple[str, bytes]]:
        """Every message due at simulated time ``t`` (advances the Sparkplug seq). A device
        killed in the world (``world.kill_device("weather", ...)``) publishes nothing."""
        ms = round(t * 1000)
        wx = self.world.weather_at(t)
        weather = {
            "ts": ms,
            "temperature": round(float(wx.dry_bulb_c), 2),
            "humidity": round(float(wx.rh_pct), 2),
            "pressure": round(float(wx.pressure_hpa), 2),
        }
        out = [] if self.world.is_dead("weather", t) else [(WEATHER_TOPIC, json.dumps(weather).encode())]
        temps = crah_temperatures(float(self.world.loads_at(t)["heat_load"]), self.params)
        for i, dev in enumerate(CRAH_UNITS):
            a_s, a_r = self._aliases(i)
            payload = sp.encode_payload(
                [(None, a_s, sp.FLOAT, temps[i][0]), (None, a_r, sp.FLOAT, temps[i][1])],
                ts_ms=ms,
                seq=self._next_seq(),
            )
            out.append((f"{sp.NAMESPACE}/{GROUP}/DDATA/{EDGE_NODE}/{dev}", payload))
        litres = self.water_total_at(t)  # the meter counts on while its transmitter is dead
        if not self.world.is_dead("water-meter", t):
            out.append((WATER_TOPIC, f"{litres:.1f}".encode()))
        if not self.world.is_dead("plant-controls", t):
            out.append((PLANT_TOPIC, json.dumps(plant_status(self.world, t)).encode()))
        return out

    # ------------------------------------------------------------------ running

    async def __aenter__(self) -> SensorPublishers:
        self._task = asyncio.create_task(self._run(), name="sim mqtt publishers")
        ready = asyncio.create_task(self._ready.wait(), name="sim mqtt publishers ready")
        done, _ = await asyncio.wait({self._task, ready}, timeout=15.0, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            await self.__aexit__(None, None, None)
            raise RuntimeError(f"simulated sensors could not publish to {self.host}:{self.port}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            task, self._task = self._task, None
            with contextlib.suppress(TimeoutError):  # wait_for cancels it then
                await asyncio.wait_for(task, timeout=5.0)

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            self.bd_seq = (self.bd_seq + 1) % 256
            death = sp.encode_payload([(sp.BDSEQ_METRIC, None, sp.UINT64, self.bd_seq)], ts_ms=0, seq=None)
            will = aiomqtt.Will(f"{sp.NAMESPACE}/{GROUP}/NDEATH/{EDGE_NODE}", death, qos=1)
            try:
                async with aiomqtt.Client(
                    self.host, self.port, identifier=self.client_id, will=will, keepalive=10, timeout=10.0
                ) as client:
                    attempt = 0
                    await self._connected(client)
                    return
            except aiomqtt.MqttError as exc:
                log.info("simulated sensors: broker %s:%d unavailable: %s", self.host, self.port, exc)
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=min(2.0, 0.1 * 2**attempt))

    async def _connected(self, client: aiomqtt.Client) -> None:
        await client.subscribe(sp.ncmd_topic(GROUP, EDGE_NODE), qos=1)
        listener = asyncio.create_task(self._listen(client), name="sim mqtt NCMD listener")
        try:
            await self._publish(client, self._births(self.clock.now()))
            self.births += 1
            self._ready.set()
            while not self._stopping.is_set():
                now = self.clock.now()
                due = math.floor(now / self.interval + 1) * self.interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, (due - now) / self.clock.speed))
                self._wake.clear()
                if self._stopping.is_set():
                    break
                if listener.done():
                    listener.result()  # the connection dropped: raise its MqttError
                if self._rebirth:
                    self._rebirth = False
                    await self._publish(client, self._births(self.clock.now()))
                    self.births += 1
                    continue
                await self._publish(client, self.samples(due))
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def _publish(self, client: aiomqtt.Client, messages: list[tuple[str, bytes]]) -> None:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)
            self.sent[topic] += 1

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if sp.is_rebirth_command(payload):
                log.info("simulated edge node %s: rebirth requested", EDGE_NODE)
                self._rebirth = True
                self._wake.set()

"""Small site configurations shared by tests that build a Service without polling anything."""

from __future__ import annotations

from typing import Any

#: a Modbus device nobody answers (port 9, discard): the service is built, never polled
_DEAD_MODBUS = {"protocol": "modbus", "host": "127.0.0.1", "port": 9, "profile": "eastron-sdm630"}


def two_meter_site(*extra_devices: dict[str, Any], mqtt: bool = False) -> dict[str, Any]:
    """Site ``s``: a facility incomer and a PDU-output IT meter (energy counters), Prometheus on a
    free port, plus ``extra_devices``; ``mqtt`` adds a broker section (for push devices)."""
    cfg: dict[str, Any] = {
        "site": {"id": "s"},
        "prometheus": {"enabled": True, "port": 0},
        "devices": [
            {**_DEAD_MODBUS, "id": "inc", "meter": {"role": "facility_input", "energy": "import_energy"}},
            {
                **_DEAD_MODBUS,
                "id": "it",
                "unit_id": 2,
                "meter": {"role": "it", "it_location": "pdu_output", "energy": "import_energy"},
            },
            *extra_devices,
        ],
    }
    if mqtt:
        cfg["mqtt"] = {"host": "127.0.0.1", "port": 9}
    return cfg


#: an MQTT device with one temperature point on topic ``wx``
WEATHER_MQTT = {
    "id": "wx",
    "protocol": "mqtt",
    "subscriptions": [{"topic": "wx", "points": [{"point": "t", "unit": "degC"}]}],
}

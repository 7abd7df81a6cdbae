"""Grafana file provisioning: the datasources, a dashboard provider and the dashboards.

`pue grafana provision DIR` writes::

    DIR/datasources/pue-monitor.yaml     InfluxDB (InfluxQL) and Prometheus, uids the dashboards use
    DIR/dashboards/pue-monitor.yaml      a file provider reading DIR/dashboards/pue-monitor/
    DIR/dashboards/pue-monitor/*.json    the dashboards (build_all())

Point Grafana's ``[paths] provisioning`` (``GF_PATHS_PROVISIONING``) at DIR. No secret is ever
written: a token or password is referenced as ``$ENV_NAME``, which Grafana expands when it reads
the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pue_monitor.errors import UserError
from pue_monitor.grafana.dashboards import FOLDER, INFLUX_UID, PROMETHEUS_UID, build_all, render

INFLUX_NAME = "pue-monitor InfluxDB"
PROMETHEUS_NAME = "pue-monitor Prometheus"


@dataclass(frozen=True)
class Sources:
    """Where Grafana reaches the databases (as Grafana's server sees them)."""

    influx_url: str = "http://127.0.0.1:8086"
    influx_database: str = "pue"
    prometheus_url: str = "http://127.0.0.1:9090"
    #: name of an environment variable of Grafana's process holding an InfluxDB token (2.x/3 with
    #: InfluxQL through the DBRP mapping); the file gets ``Token $NAME``, never the token
    influx_token_env: str | None = None
    #: 1.x user, and the environment variable of Grafana's process holding its password
    influx_user: str | None = None
    influx_password_env: str | None = None


def datasources(src: Sources) -> list[dict[str, Any]]:
    """The datasources as Grafana's provisioning and its HTTP API both take them."""
    influx: dict[str, Any] = {
        "name": INFLUX_NAME,
        "uid": INFLUX_UID,
        "type": "influxdb",
        "access": "proxy",
        "url": src.influx_url,
        "jsonData": {"version": "InfluxQL", "dbName": src.influx_database, "httpMode": "POST"},
        "editable": False,
    }
    secure: dict[str, str] = {}
    if src.influx_token_env:
        influx["jsonData"]["httpHeaderName1"] = "Authorization"
        secure["httpHeaderValue1"] = f"Token ${src.influx_token_env}"
    if src.influx_user:
        influx["user"] = src.influx_user
    if src.influx_password_env:
        secure["password"] = f"${src.influx_password_env}"
    if secure:
        influx["secureJsonData"] = secure
    prometheus = {
        "name": PROMETHEUS_NAME,
        "uid": PROMETHEUS_UID,
        "type": "prometheus",
        "access": "proxy",
        "url": src.prometheus_url,
        "jsonData": {"httpMethod": "POST"},
        "editable": False,
    }
    return [influx, prometheus]


def files(src: Sources, dashboards_path: str) -> dict[str, str]:
    """Relative path -> file text of the provisioning tree; ``dashboards_path``: where Grafana
    finds the dashboard JSON (absolute, as Grafana's server sees it)."""
    ds = {"apiVersion": 1, "datasources": datasources(src)}
    provider = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "pue-monitor",
                "orgId": 1,
                "folder": FOLDER,
                "folderUid": FOLDER,
                "type": "file",
                "disableDeletion": False,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": dashboards_path, "foldersFromFilesStructure": False},
            }
        ],
    }
    out = {
        "datasources/pue-monitor.yaml": yaml.safe_dump(ds, sort_keys=False),
        "dashboards/pue-monitor.yaml": yaml.safe_dump(provider, sort_keys=False),
    }
    for name, model in build_all().items():
        out[f"dashboards/pue-monitor/{name}"] = render(model)
    return out


def write(directory: Path, src: Sources, dashboards_path: str | None = None) -> list[Path]:
    """Write the tree under ``directory`` (created; our files replaced, nothing else touched)."""
    directory = directory.absolute()
    path = dashboards_path or str(directory / "dashboards" / "pue-monitor")
    written = []
    for rel, text in files(src, path).items():
        target = directory / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            raise UserError(
                f"{target}: cannot write: {exc.strerror or exc}", "choose a directory you can write to"
            ) from None
        written.append(target)
    return written

"""Grafana dashboards as code: committed JSON, SDK validation, queries over schema names and
exported metrics only, the provisioning tree, and the push (against a small stand-in: no Grafana
server can be installed here)."""

from __future__ import annotations

import copy
import json
import re
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from pue_monitor import schema
from pue_monitor.cli import main
from pue_monitor.cli.grafana_cmds import JSON_DIR
from pue_monitor.collectors.runner import DeviceStats
from pue_monitor.config.models import InfluxConfig
from pue_monitor.grafana import metrics
from pue_monitor.grafana.dashboards import INFLUX_UID, PROMETHEUS_UID, _f, build_all, render, validate
from pue_monitor.pipeline.freecooling_live import FreeCoolingInterval
from pue_monitor.pipeline.pue import PueInterval
from pue_monitor.sinks.influx import InfluxSink
from pue_monitor.sinks.prometheus import LiveState, LiveStateOutput, PueCollector

MODELS = build_all()


def _panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in model["panels"]:
        yield p
        yield from p.get("panels", [])


def _targets(kind: str) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for name, model in MODELS.items():
        for p in _panels(model):
            for t in p.get("targets", []):
                if t["datasource"]["type"] == kind:
                    yield name, p, t


# ------------------------------------------------------------------ committed JSON
def test_committed_json_equals_a_fresh_build_and_build_check_says_when_stale(tmp_path, capsys):
    committed = sorted(p.name for p in JSON_DIR.glob("*.json"))
    assert (
        committed == sorted(MODELS) == ["collectors.json", "energy-breakdown.json", "fleet.json", "site-overview.json"]
    )
    for name, model in MODELS.items():
        assert (JSON_DIR / name).read_text(encoding="utf-8") == render(model), f"{name} is stale: pue grafana build"
    assert build_all() == MODELS  # deterministic: the same models twice
    assert main(["grafana", "build", "--check"]) == 0

    out = tmp_path / "json"
    assert main(["grafana", "build", "--dir", str(out)]) == 0
    assert main(["grafana", "build", "--check", "--dir", str(out)]) == 0
    model = json.loads((out / "fleet.json").read_text())
    model["title"] = "edited by hand"
    (out / "fleet.json").write_text(json.dumps(model))
    (out / "old.json").write_text("{}")
    capsys.readouterr()
    assert main(["grafana", "build", "--check", "--dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "fleet.json stale" in err and "old.json not built by the code" in err and "site-overview" not in err
    assert len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ SDK validation, panels
def test_every_dashboard_passes_the_sdk_model_validation_and_validation_catches_damage():
    for name, model in MODELS.items():
        assert validate(model) == [], name
        assert model["templating"]["list"][0]["name"] == "site", name
    bad = copy.deepcopy(MODELS["collectors.json"])
    bad["panels"][0]["gridPoss"] = {"h": 1}  # a typo: no such key in Grafana's panel model
    bad["panels"][1]["targets"][0]["rawQuery"] = True  # not a Prometheus query field
    bad["panels"][2]["targets"][0]["datasource"]["type"] = "loki"
    problems = validate(bad)
    assert any("gridPoss: unknown to the model" in p for p in problems), problems
    assert any("target A" in p and "rawQuery" in p for p in problems), problems
    assert any("datasource type 'loki'" in p for p in problems), problems
    influx = copy.deepcopy(MODELS["energy-breakdown.json"])
    influx["panels"][0]["targets"][0]["rawQuery"] = False
    assert any("does not decode" in p for p in validate(influx))


def test_every_panel_has_a_query_on_our_datasources_with_distinct_stable_ids():
    for name, model in MODELS.items():
        ids = [p["id"] for p in _panels(model)]
        assert ids == list(range(1, len(ids) + 1)), name
        for p in _panels(model):
            if p["type"] == "row":
                continue
            assert p["targets"], f"{name}: panel {p['title']!r} has no query"
            refs = [t["refId"] for t in p["targets"]]
            assert len(set(refs)) == len(refs)
            for t in p["targets"]:
                uid = {"influxdb": INFLUX_UID, "prometheus": PROMETHEUS_UID}[t["datasource"]["type"]]
                assert t["datasource"]["uid"] == uid
                text = t.get("query") if t["datasource"]["type"] == "influxdb" else t.get("expr")
                assert isinstance(text, str) and text.strip(), f"{name}: {p['title']!r} {t['refId']} is empty"
                if t["datasource"]["type"] == "influxdb":
                    assert t["rawQuery"] is True and t["resultFormat"] in ("table", "time_series")
    # the panels exist, by the question they answer
    titles = {name: [p["title"] for p in _panels(m)] for name, m in MODELS.items()}
    assert {"PUE now", "PUE month to date", "PUE trailing 12 months", "Data completeness", "Firing alerts"} <= set(
        titles["site-overview.json"]
    )
    assert {"Top consumers", "Unattributed energy"} <= set(titles["energy-breakdown.json"])
    assert {"Devices up", "Poll latency (p95)", "Errors by kind", "Spool backlog"} <= set(titles["collectors.json"])


_IDENT = re.compile(r'"([^"]+)"')
_ALIAS = re.compile(r'\bAS\s+"[^"]+"', re.IGNORECASE)
_FROM = re.compile(r'\bFROM\s+"([^"]+)"', re.IGNORECASE)


def test_every_influxql_query_names_only_measurements_fields_and_tags_of_schema():
    known = {
        schema.INTERVAL: {*schema.INTERVAL_FLOAT_FIELDS, *schema.INTERVAL_INT_FIELDS, *schema.INTERVAL_TAGS},
        schema.FREE_COOLING: {
            *schema.FREE_COOLING_FLOAT_FIELDS,
            *schema.FREE_COOLING_INT_FIELDS,
            *schema.FREE_COOLING_TAGS,
        },
    }
    seen = set()
    queries = list(_targets("influxdb"))
    assert len(queries) >= 15
    for name, panel, t in queries:
        q = t["query"]
        (measurement,) = _FROM.findall(q)
        assert measurement in known, f"{name} {panel['title']!r}: {measurement}"
        for ident in _IDENT.findall(_ALIAS.sub("", q)):
            if ident == measurement:
                continue
            assert ident in known[measurement], f"{name} {panel['title']!r}: {measurement} has no {ident!r}"
            seen.add(ident)
        # every query is limited to the dashboard's range and to the site variable
        assert "$timeFilter" in q and "$site" in q
        assert '"resolution" = \'' in q
    assert {"e_facility_kwh", "e_it_kwh", "pue", "category", "missing", "e_unattributed_kwh", "avoidable_kwh"} <= seen
    with pytest.raises(ValueError, match="pue_interval has no field 'e_fcility_kwh'"):
        _f(schema.INTERVAL, "e_fcility_kwh")


def _exported_sample_names(tmp_path: Path) -> set[str]:
    """Every sample name our Prometheus endpoint renders for a site with a Modbus device, an
    InfluxDB sink, a closed minute and an economiser."""
    state = LiveState(site="dc1", warning=1.4, critical=1.5, meter_roles={"inc": "facility_input", "it1": "it"})
    stats = DeviceStats("m1", "modbus")
    stats.observe_latency(0.01)
    stats.last_success = 59.0  # a successful poll
    state.devices = {"m1": stats}
    state.sink = InfluxSink(InfluxConfig(url="http://127.0.0.1:8086"), base_dir=tmp_path)
    out = LiveStateOutput(state)
    out.intervals(
        "1m", [PueInterval(0.0, 60.0, 2.0, 1.0, {}, 2.0, {}, 2, 1.0, 0.0, 0.0, e_meters={"inc": 2.0, "it1": 1.0})]
    )
    fc = FreeCoolingInterval(
        start=0.0, end=60.0, economiser="e1", fraction=0.5, mode=1, actual_mode=1, inferred=False, full_s=0.0,
        partial_s=60.0, none_s=0.0, unknown_s=0.0, used_s=60.0, actual_unknown_s=0.0, chiller_kwh=0.1,
        avoidable_kwh=0.05,
    )  # fmt: skip
    out.free_cooling("1m", [fc])
    state.power_kw_by_role = {"facility_input": 200.0, "it": 100.0}
    state.instant_pue = 2.0
    state.events[("m1", "glitch")] += 1
    return {s.name for fam in PueCollector(state).collect() for s in fam.samples}


def test_every_promql_expression_queries_only_metrics_we_export(tmp_path):
    from pue_monitor.alerts.rules import rule_file

    exported = _exported_sample_names(tmp_path)
    assert exported >= metrics.EXPORTED, sorted(metrics.EXPORTED - exported)
    exprs = [t["expr"] for _, _, t in _targets("prometheus")]
    assert len(exprs) >= 15
    used = set()
    for expr in exprs:
        names = set(re.findall(r"\b(pue_[a-z_]+|ALERTS)\b", expr))
        assert names, expr
        used |= names
    assert used - {metrics.ALERTS} - metrics.MODEL <= exported, sorted(used - exported)
    # ALERTS is Prometheus' own series of the alerting rules: ours come from `pue alerts rules`
    assert "- alert: PueHigh" in rule_file(site="dc1", warning=1.4, critical=1.5)
    # the PUE over a range is a ratio of energy increases, never an average of ratios
    ratio = [e for e in exprs if "increase(pue_energy_joules_total" in e and "$__range" in e]
    assert ratio and all('role="facility_input"' in e and 'role="it"' in e for e in ratio)
    assert not any("avg(" in e or "avg_over_time(" in e for e in exprs)


# ------------------------------------------------------------------ provisioning
def test_provision_writes_datasources_a_provider_and_the_dashboards_without_secrets(tmp_path, capsys):
    d = tmp_path / "prov"
    code = main(
        [
            "grafana", "provision", str(d),
            "--influx-url", "http://influx:8086", "--influx-database", "dc",
            "--prometheus-url", "http://prom:9090", "--influx-token-env", "INFLUX_TOKEN",
        ]
    )  # fmt: skip
    assert code == 0
    assert str(d.absolute()) in capsys.readouterr().out
    ds = yaml.safe_load((d / "datasources" / "pue-monitor.yaml").read_text())
    assert ds["apiVersion"] == 1
    by_uid = {s["uid"]: s for s in ds["datasources"]}
    influx, prom = by_uid[INFLUX_UID], by_uid[PROMETHEUS_UID]
    assert (influx["type"], influx["url"], influx["access"]) == ("influxdb", "http://influx:8086", "proxy")
    assert influx["jsonData"]["version"] == "InfluxQL" and influx["jsonData"]["dbName"] == "dc"
    assert influx["jsonData"]["httpHeaderName1"] == "Authorization"
    assert influx["secureJsonData"] == {"httpHeaderValue1": "Token $INFLUX_TOKEN"}  # expanded by Grafana
    assert (prom["type"], prom["url"]) == ("prometheus", "http://prom:9090")
    # every datasource a dashboard references is provisioned, with the same type
    for kind in ("influxdb", "prometheus"):
        for _, _, t in _targets(kind):
            assert by_uid[t["datasource"]["uid"]]["type"] == kind
    prov = yaml.safe_load((d / "dashboards" / "pue-monitor.yaml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file" and provider["folder"] == "pue-monitor"
    folder = Path(provider["options"]["path"])
    assert folder.is_absolute() and folder == (d / "dashboards" / "pue-monitor").absolute()
    assert sorted(p.name for p in folder.iterdir()) == sorted(MODELS)
    for name, model in MODELS.items():
        assert json.loads((folder / name).read_text()) == model
    # a path as a Grafana container sees it
    assert main(["grafana", "provision", str(d), "--dashboards-path", "/etc/grafana/pue"]) == 0
    prov = yaml.safe_load((d / "dashboards" / "pue-monitor.yaml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/etc/grafana/pue"
    assert (
        "secureJsonData" not in yaml.safe_load((d / "datasources" / "pue-monitor.yaml").read_text())["datasources"][0]
    )


def test_provision_into_an_unwritable_place_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["grafana", "provision", str(blocker / "sub")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(blocker) in err and "Traceback" not in err


# ------------------------------------------------------------------ push
# No Grafana server can be installed here (see docs/infra.md). This stand-in answers the few
# endpoints of Grafana's documented HTTP API the push uses, checks each request against that
# documentation (https://grafana.com/docs/grafana/latest/developer-resources/api-reference/http-api/:
# folder, data_source, dashboard) and records it; it stores what it is given, as Grafana does.
TOKEN = "glsa_test_token_never_printed"
#: the fields of "Create a data source" / "Update an existing data source"
_DS_FIELDS = {"name", "type", "access", "url", "uid", "database", "user", "basicAuth", "basicAuthUser",
              "withCredentials", "isDefault", "jsonData", "secureJsonData", "version"}  # fmt: skip
#: what Grafana returns for fields not given ("" for strings, as GET /api/datasources/uid/:uid shows)
_DS_DEFAULTS = {"user": "", "database": "", "basicAuth": False, "isDefault": False, "readOnly": False, "version": 1}


class _Grafana(BaseHTTPRequestHandler):
    folders: dict[str, dict[str, Any]]
    datasources: dict[str, dict[str, Any]]
    dashboards: dict[str, dict[str, Any]]
    log: list[tuple[str, str]]
    problems: list[str]

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
            self.problems.append(f"{self.command} {self.path}: Content-Type {self.headers.get('Content-Type')}")
        n = int(self.headers.get("Content-Length", 0))
        body: dict[str, Any] = json.loads(self.rfile.read(n))
        return body

    def _auth(self) -> bool:
        self.log.append((self.command, self.path))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"message": "Unauthorized"})
            return False
        return True

    def do_GET(self) -> None:
        if not self._auth():
            return
        kind, _, uid = self.path.removeprefix("/api/").partition("/")
        if kind == "folders" and uid in self.folders:
            return self._send(200, self.folders[uid])
        if kind == "datasources" and uid.startswith("uid/") and uid[4:] in self.datasources:
            return self._send(200, self.datasources[uid[4:]])
        if kind == "dashboards" and uid.startswith("uid/") and uid[4:] in self.dashboards:
            return self._send(200, self.dashboards[uid[4:]])
        self._send(404, {"message": "not found"})

    def do_POST(self) -> None:
        if not self._auth():
            return
        body = self._body()
        if self.path == "/api/folders":  # Create folder: title (required), uid
            if not body.get("title") or "uid" not in body or body["uid"] in self.folders:
                self.problems.append(f"folder create {body}")
            self.folders[body["uid"]] = {"id": len(self.folders) + 1, "uid": body["uid"], "title": body["title"]}
            return self._send(200, self.folders[body["uid"]])
        if self.path == "/api/datasources":  # Create a data source: name, type, access, url; uid optional
            if not all(body.get(k) for k in ("name", "type", "access", "url", "uid")) or set(body) - _DS_FIELDS:
                self.problems.append(f"datasource create {body}")
            if body["uid"] in self.datasources:
                return self._send(409, {"message": "data source with the same uid already exists"})
            self.datasources[body["uid"]] = {**_DS_DEFAULTS, **body, "id": len(self.datasources) + 1, "orgId": 1}
            return self._send(200, {"datasource": self.datasources[body["uid"]], "message": "Datasource added"})
        if self.path == "/api/dashboards/db":  # Create/Update dashboard: dashboard, folderUid, overwrite
            dash = body.get("dashboard", {})
            if not dash.get("uid") or dash.get("id") is not None or body.get("overwrite") is not True:
                self.problems.append(f"dashboard post {sorted(body)} uid={dash.get('uid')} id={dash.get('id')}")
            if body.get("folderUid") not in self.folders:
                return self._send(400, {"message": "folder not found"})
            old = self.dashboards.get(dash["uid"])
            version = old["dashboard"]["version"] + 1 if old else 1
            saved = {**dash, "id": 7, "version": version}
            self.dashboards[dash["uid"]] = {"dashboard": saved, "meta": {"folderUid": body["folderUid"]}}
            return self._send(200, {"id": 7, "uid": dash["uid"], "status": "success", "version": version})
        self._send(404, {"message": "not found"})

    def do_PUT(self) -> None:
        if not self._auth():
            return
        body = self._body()
        uid = self.path.removeprefix("/api/datasources/uid/")
        if uid == self.path or uid not in self.datasources:  # Update an existing data source by uid
            return self._send(404, {"message": "not found"})
        if not all(body.get(k) for k in ("name", "type", "access", "url")) or set(body) - _DS_FIELDS:
            self.problems.append(f"datasource update {body}")
        old = self.datasources[uid]
        self.datasources[uid] = {**_DS_DEFAULTS, **body, "id": old["id"], "orgId": 1, "version": old["version"] + 1}
        self._send(200, {"datasource": self.datasources[uid], "message": "Datasource updated"})


@pytest.fixture
def grafana() -> Iterator[tuple[str, type[_Grafana]]]:
    handler = type(
        "Grafana", (_Grafana,), {"folders": {}, "datasources": {}, "dashboards": {}, "log": [], "problems": []}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()
    thread.join(timeout=2)


def test_push_creates_folder_datasources_dashboards_and_a_second_push_changes_nothing(
    grafana, monkeypatch, capsys, tmp_path
):
    url, g = grafana
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    argv = ["grafana", "push", "--url", url, "--prometheus-url", "http://prom:9090", "-vv"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    assert g.problems == []
    writes = [r for r in g.log if r[0] != "GET"]
    assert writes == [
        ("POST", "/api/folders"),
        ("POST", "/api/datasources"),
        ("POST", "/api/datasources"),
        *[("POST", "/api/dashboards/db")] * len(MODELS),
    ]
    assert set(g.datasources) == {INFLUX_UID, PROMETHEUS_UID}
    assert g.datasources[PROMETHEUS_UID]["url"] == "http://prom:9090"
    for model in MODELS.values():
        saved = g.dashboards[model["uid"]]
        assert saved["meta"]["folderUid"] == "pue-monitor"
        assert {k: v for k, v in saved["dashboard"].items() if k not in ("id", "version")} == model
    assert out.count("created") == 3 + len(MODELS)

    g.log.clear()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert [r for r in g.log if r[0] != "GET"] == []  # idempotent: nothing written
    assert out.count("unchanged") == 3 + len(MODELS) and "created" not in out

    # a moved Prometheus: only its datasource is updated, by uid; a token from a file works too
    g.log.clear()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.delenv("GRAFANA_TOKEN")
    argv = ["grafana", "push", "--url", url, "--prometheus-url", "http://prom2:9090", "--token-file", str(token_file)]
    assert main(argv) == 0
    assert [r for r in g.log if r[0] != "GET"] == [("PUT", f"/api/datasources/uid/{PROMETHEUS_UID}")]
    assert g.datasources[PROMETHEUS_UID]["url"] == "http://prom2:9090" and g.problems == []


def test_push_errors_are_one_line_without_the_token(grafana, monkeypatch, capsys):
    url, _ = grafana
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    assert main(["grafana", "push", "--url", url]) == 2
    assert "GRAFANA_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("GRAFANA_TOKEN", "wrong-token-xyz")
    assert main(["grafana", "push", "--url", url]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and url in err and "401" in err and "token" in err
    assert "wrong-token-xyz" not in err
    free = ThreadingHTTPServer(("127.0.0.1", 0), _Grafana)
    port = free.server_address[1]
    free.server_close()
    assert main(["grafana", "push", "--url", f"http://127.0.0.1:{port}", "--timeout", "2"]) == 1
    err = capsys.readouterr().err.strip()
    where = f"Grafana http://127.0.0.1:{port}: folder pue-monitor"
    assert err == f"pue grafana: {where}: cannot connect: Connection refused; check --url"


def test_push_without_the_extra_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    monkeypatch.setitem(sys.modules, "grafana_client.api", None)  # as if grafana-client were not installed
    assert main(["grafana", "push", "--url", "http://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'pue-monitor[grafana]'" in err


def test_readme_describes_every_panel_of_every_dashboard():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("\n## Grafana\n") : readme.index("\n## Alerts\n")]
    described: dict[str, list[str]] = {}
    current = None
    for line in section.splitlines():
        if line.startswith("#"):  # a later subsection (e.g. how the dashboards are proven) ends the last table
            current = None
            continue
        m = re.match(r"\*\*(PUE: [^*]+)\*\* — ", line)
        if m:
            current = m.group(1)
            described[current] = []
        elif current and line.startswith("| ") and not line.startswith(("| panel", "|---")):
            described[current].append(line.split(" | ")[0].removeprefix("| "))
    assert described == {m["title"]: [p["title"] for p in _panels(m)] for m in MODELS.values()}

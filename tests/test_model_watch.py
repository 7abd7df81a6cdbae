"""The expected-PUE model in the running service (issue 10 scopes 1-2, live side): cold start,
first training in a worker thread, hourly drift scoring, scheduled retraining that keeps the old
model on failure, an unusable model file, and what /status, `pue status` and /metrics say.

Each test fills a real store (sinks/sqlite.py) with simulated 15-minute intervals and 5-minute
weather readings (models/simdata.py: the simulator's physics) and runs a real ModelWatcher on it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pue_monitor.config.loader import load_site
from pue_monitor.models import baseline, history, simdata, watch
from pue_monitor.models.data import Intervals
from pue_monitor.simulator.physics import Faults
from pue_monitor.sinks.sqlite import StoreReader
from tests.servers import _binary, free_port

DAY = 86400.0
HOUR = 3600.0
T0 = simdata.YEAR_2026 + 120 * DAY  # 2026-05-01 00:00 UTC = 08:00 in Asia/Shanghai
SHANGHAI = dt.timezone(dt.timedelta(hours=8))

SITE = """site:
  id: m
  timezone: Asia/Shanghai
mqtt: {host: 127.0.0.1, port: 9}
devices:
  - id: incomer
    protocol: modbus
    host: 127.0.0.1
    profile: eastron-sdm630
    meter: {role: facility_input, energy: import_energy}
  - id: pdu
    protocol: modbus
    host: 127.0.0.2
    profile: eastron-sdm630
    meter: {role: it, it_location: pdu_output, energy: import_energy}
  - id: wx
    protocol: mqtt
    subscriptions:
      - topic: wx/t
        points: [{point: t, unit: degC}]
      - topic: wx/rh
        points: [{point: rh, unit: percent}]
cooling:
  points:
    outdoor_temperature: {device: wx, point: t}
    relative_humidity: {device: wx, point: rh}
store: {path: pue.db}
prometheus: {enabled: false}
"""


def fill_store(tmp_path: Path, days: float, faults: Faults | None = None, extra: str = "") -> Intervals:
    """A real store with ``days`` of simulated 15-minute intervals from T0 and 5-minute weather
    readings, and the site file beside it; returns the true intervals."""
    from pue_monitor.pipeline.pue import PueInterval
    from pue_monitor.readings import Reading
    from pue_monitor.simulator.physics import Noise, SimParams
    from pue_monitor.sinks.sqlite import SqliteStore

    iv = simdata.intervals(T0, days, faults=faults)
    store = SqliteStore(tmp_path / "pue.db")
    rows = [
        PueInterval(float(s), float(e), float(f), float(i), {}, float(f / i), {}, 1, 1.0, 0.0, 0.0)
        for s, e, f, i in zip(iv.start, iv.end, iv.facility_kwh, iv.it_kwh, strict=True)
    ]
    store.upsert_intervals("m", "15m", rows, now=1.0)
    ts = T0 + np.arange(int(days * 288)) * 300.0 + 150.0
    wx = simdata.weather(ts, SimParams(), Noise.from_seed(0))
    readings = [Reading(float(t), "m", "wx", "t", float(v), "degC") for t, v in zip(ts, wx.dry_bulb_c, strict=True)]
    readings += [Reading(float(t), "m", "wx", "rh", float(v), "percent") for t, v in zip(ts, wx.rh_pct, strict=True)]
    store.write_readings(readings)
    store.close()
    (tmp_path / "site.yaml").write_text(SITE + extra)
    return iv


def watcher_for(tmp_path: Path, clock: list[float], **overrides: Any) -> watch.ModelWatcher:
    """The watcher the service builds for the site file (settings from its model: section)."""
    site = load_site(tmp_path / "site.yaml")
    w = watch.for_site(site, tmp_path / "pue.db", clock=lambda: clock[0])
    assert w is not None
    if overrides:
        import dataclasses

        w.settings = dataclasses.replace(w.settings, **overrides)
    return w


def metrics(w: watch.ModelWatcher) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    reg = CollectorRegistry()
    reg.register(w.collector("m"))
    text = generate_latest(reg).decode()
    samples = {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "site"))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    return text, samples


def promtool_check(text: str) -> None:
    check = subprocess.run([_binary("promtool"), "check", "metrics"], input=text.encode(), capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr


def local(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, SHANGHAI)


async def test_cold_start_says_no_model_and_no_drift(tmp_path: Path) -> None:
    fill_store(tmp_path, 5)
    now = [T0 + 5 * DAY]
    w = watcher_for(tmp_path, now)
    assert w.settings.model_dir == tmp_path / "model"  # default: beside the store
    st = w.status()
    assert st.state == "none" and w.drift() is None
    assert st.message.startswith("no model yet: threshold rules only (history not checked yet")
    await w.update(now[0])
    st = w.status()
    assert st.state == "none" and w.drift() is None and w.expected_pue("1h") is None
    # 5 days stored (the first interval's start to the last one's end), 14 needed
    assert st.message == (
        "no model yet: threshold rules only (history 5.0 days stored; the first model is trained once the "
        "store holds 14 days)"
    )
    assert st.age_s is None and st.mae is None and st.last_error is None
    assert not (tmp_path / "model").exists()  # nothing written at cold start
    text, m = metrics(w)
    promtool_check(text)
    assert {k[1][0][1]: v for k, v in m.items() if k[0] == "pue_model_state"} == {
        "none": 1.0,
        "training": 0.0,
        "ready": 0.0,
        "stale": 0.0,
        "failed": 0.0,
    }
    assert not any(k[0] in ("pue_model_age_seconds", "pue_model_mae", "pue_pue_drift") for k in m)


async def test_first_training_in_a_thread_then_scheduled_retraining(tmp_path: Path) -> None:
    truth = fill_store(tmp_path, 21)
    now = [T0 + 10 * DAY]
    w = watcher_for(tmp_path, now)
    await w.update(now[0])
    assert w.status().state == "none" and "10.0 days stored" in w.status().message
    # 14 days of history: the first model is trained, in a worker thread while the loop runs on
    now[0] = T0 + 14 * DAY + 600.0
    task = asyncio.create_task(w.update(now[0]))
    seen: set[str] = set()
    ticks = 0
    while not task.done():
        seen.add(w.state)
        ticks += 1
        await asyncio.sleep(0.005)
    await task
    assert "training" in seen and ticks > 10  # the loop kept turning while the model trained
    st = w.status()
    assert st.state == "ready", st.message
    model = baseline.load(tmp_path / "model")
    assert model is not None
    assert st.mae == model.errors.mae and 0 < st.mae < 0.004
    assert st.trained_at == model.created == now[0] and st.age_s == 0.0
    assert st.training_start == T0 and st.training_end == T0 + 14 * DAY  # the whole history up to now
    assert model.samples == 14 * 96 and model.utc_offset_s == 8 * HOUR
    # the retraining is due 7 local dates later at 03:00 local (Asia/Shanghai)
    assert st.next_training is not None
    assert local(st.next_training) == dt.datetime(2026, 5, 22, 3, 0, tzinfo=SHANGHAI)
    # scored right away: the last closed hour (lag 5 min) and local day
    until = T0 + 14 * DAY
    assert st.scored_until == until
    reader = StoreReader(tmp_path / "pue.db")
    try:
        pts = w.settings.points
        hour = history.from_store(reader, pts, start=until - HOUR, end=until)
        day = history.from_store(reader, pts, start=until - 8 * HOUR - DAY, end=until - 8 * HOUR)
    finally:
        reader.close()
    assert len(hour) == 4 and len(day) == 96  # local day 2026-05-14 00:00..24:00 = 05-13 16:00 UTC ..
    assert st.expected_pue["1h"] == pytest.approx(model.period_expected_pue(hour), rel=1e-12)
    assert st.expected_pue["1d"] == pytest.approx(model.period_expected_pue(day), rel=1e-12)
    sel = (truth.start >= until - HOUR) & (truth.end <= until)
    actual = truth.facility_kwh[sel].sum() / truth.it_kwh[sel].sum()
    assert abs(st.expected_pue["1h"] - actual) < 0.005  # a fault-free hour: as expected
    rep = w.drift()
    assert rep is not None and not rep.drifting and rep.episodes == []
    assert st.message.startswith(
        "expected-PUE model ready: trained on 2026-05-01..2026-05-15 (14 days), held-out MAE "
    ) and st.message.endswith(", 0 min old; no drift")

    # a day later: scored again, not retrained
    now[0] = T0 + 15 * DAY + 600.0
    await w.update(now[0])
    st = w.status()
    assert st.scored_until == T0 + 15 * DAY and st.trained_at == T0 + 14 * DAY + 600.0
    assert st.age_s == pytest.approx(DAY) and "24 h old" in st.message
    # at the retraining hour: a new model on the last history_days (21 days here), swapped in whole
    now[0] = st.next_training + 60.0
    await w.update(now[0])
    st = w.status()
    assert st.state == "ready" and st.trained_at == now[0]
    fresh = baseline.load(tmp_path / "model")
    assert fresh is not None and fresh.created == now[0] and fresh.samples > model.samples
    assert local(st.next_training or 0) == dt.datetime(2026, 5, 29, 3, 0, tzinfo=SHANGHAI)
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith((".", "model"))) == ["model"]  # no temp left
    # stale: twice the schedule without a new model (the clock moves on, no update ran)
    now[0] += 14 * DAY + 1.0
    assert w.status().state == "stale" and "has not succeeded" in w.status().message


@pytest.fixture(scope="module")
def model14(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model a watcher trains at T0 + 14 days + 600 s on a store's first 14 (fault-free) days:
    the same for every store below (the simulation is deterministic, the faults come later)."""
    d = tmp_path_factory.mktemp("model14")
    fill_store(d, 14)
    now = [T0 + 14 * DAY + 600.0]
    w = watcher_for(d, now)
    asyncio.run(w.update(now[0]))
    assert w.status().state == "ready"
    return d / "model"


async def test_a_degraded_chiller_gives_a_current_drift_episode(tmp_path: Path, model14: Path) -> None:
    onset = T0 + 17 * DAY
    fill_store(tmp_path, 21, simdata.chiller_fault(onset, 2.0))
    shutil.copytree(model14, tmp_path / "model")  # trained on the 14 fault-free days
    now = [T0 + 14 * DAY + 600.0]
    w = watcher_for(tmp_path, now)
    await w.update(now[0])
    assert w.status().state == "ready" and w.status().trained_at == now[0]
    now[0] = T0 + 17 * DAY + 600.0  # the hour before the fault closes: no drift
    await w.update(now[0])
    rep = w.drift()
    assert rep is not None and not rep.drifting
    _, m = metrics(w)
    assert m[("pue_pue_drift", ())] == 0.0
    assert not any(k[0] == "pue_drift_projected_seconds" for k in m)

    now[0] = T0 + 21 * DAY + 600.0  # 4 days into the fault; also past the retraining hour (05-22 03:00)
    await w.update(now[0])
    rep = w.drift()
    assert rep is not None and rep.drifting and rep.now == T0 + 21 * DAY
    cur = rep.current
    assert cur is not None
    assert onset <= cur.began <= onset + 2 * HOUR  # onset within 2 h (the fault ramps over 2 h)
    assert cur.detected_at - onset <= 6 * HOUR and cur.size > 0.005
    st = w.status()
    assert st.drifting and st.drift_pue == cur.size and st.drift_began == cur.began
    began = local(cur.began).strftime("%Y-%m-%d %H:%M")
    assert f"; DRIFT since {began}: +{cur.size:.4f} PUE above expected" in st.message
    # retraining is put off while drifting (it would learn the fault as normal)
    assert st.trained_at == T0 + 14 * DAY + 600.0
    assert "retraining postponed to 2026-05-23T03:00+08:00 while PUE drifts above expected" in st.message
    # the metrics say the same
    text, m = metrics(w)
    promtool_check(text)
    assert m[("pue_model_state", (("state", "ready"),))] == 1.0
    assert m[("pue_model_mae", ())] == st.mae
    assert m[("pue_model_age_seconds", ())] == pytest.approx(7 * DAY)
    assert m[("pue_pue_drift", ())] == cur.size
    assert m[("pue_expected_pue", (("window", "1h"),))] == st.expected_pue["1h"]
    assert m[("pue_expected_pue", (("window", "1d"),))] == st.expected_pue["1d"]
    p = rep.projection
    assert p is not None
    for thr in ("warning", "critical"):
        for window, secs in (("1d", p.daily[thr]), ("15m", p.interval[thr])):
            key = ("pue_drift_projected_seconds", (("threshold", thr), ("window", window)))
            if secs is None:
                assert key not in m  # not heading there: absent
            else:  # from now: the report is as of the scored hour's end, 600 s ago
                assert m[key] == max(0.0, secs - 600.0)
    assert any(k[0] == "pue_drift_projected_seconds" for k in m) or all(
        v is None for v in [*p.daily.values(), *p.interval.values()]
    )
    # a reload (SIGHUP) with other thresholds: the next scoring projects to them
    (tmp_path / "site.yaml").write_text(SITE + "thresholds: {warning: 1.45, critical: 1.6}\n")
    w.reconfigure(load_site(tmp_path / "site.yaml").config)
    await w.update(now[0])
    p2 = w.drift().projection  # type: ignore[union-attr]
    assert p2 is not None and w.settings.thresholds == {"warning": 1.45, "critical": 1.6}
    slope = p.slope_per_day / DAY
    assert p2.slope_per_day == pytest.approx(p.slope_per_day)
    assert p2.daily["warning"] == pytest.approx((1.45 - p.daily_expected_pue - p.drift_now) / slope, rel=1e-9)


async def test_retraining_keeps_the_old_model_when_training_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, model14: Path
) -> None:
    fill_store(tmp_path, 21)
    shutil.copytree(model14, tmp_path / "model")
    now = [T0 + 14 * DAY + 600.0]
    w = watcher_for(tmp_path, now)
    await w.update(now[0])
    assert w.status().state == "ready"
    before = (tmp_path / "model" / "model.json").read_bytes()
    due = w.status().next_training
    assert due is not None
    # the weather readings are gone (pruned): the retraining cannot learn the weather's effect
    with sqlite3.connect(tmp_path / "pue.db") as db:
        db.execute("DELETE FROM readings WHERE device = 'wx'")
    db.close()
    caplog.set_level(logging.WARNING, logger="pue_monitor.models.watch")
    for extra in (60.0, DAY + 60.0):  # two failed attempts, a day apart: one log line
        now[0] = due + extra
        await w.update(now[0])
        st = w.status()
        assert st.state == "ready" and st.trained_at == T0 + 14 * DAY + 600.0
        assert (tmp_path / "model" / "model.json").read_bytes() == before  # the old model stays
        n = min(21 * 96, int((now[0] - T0) // 900))  # the intervals of the training window
        assert st.last_error == (
            f"only 0% of the {n} 15m intervals of the training window have outdoor weather readings "
            "(cooling.points: wx/t, wx/rh); 50% are needed"
        )
        assert st.next_training == due + extra - 60.0 + DAY  # the next retraining hour
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"model training failed (the previous model stays in use): {st.last_error}".replace("2016", "1996")
    ]
    assert "; last training failed: only 0% of the 2016 15m intervals" in st.message
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith((".", "model"))) == ["model"]
    assert baseline.load(tmp_path / "model") is not None
    # the store gone: scoring fails (said, once), the model and the last report stay
    last = w.drift()
    assert last is not None
    os.rename(tmp_path / "pue.db", tmp_path / "moved.db")
    now[0] += HOUR
    await w.update(now[0])
    st = w.status()
    assert w.drift() is last and st.state == "ready"
    assert st.errors["scoring"] == f"{tmp_path / 'pue.db'}: no such store (has `pue run` or `pue demo` written it?)"
    assert st.message.endswith(f"; scoring failed: {st.errors['scoring']}; no drift")


async def test_a_model_file_of_another_version_fails_then_is_retrained(tmp_path: Path) -> None:
    fill_store(tmp_path, 15)
    model = baseline.fit(simdata.intervals(T0, 14), utc_offset_s=8 * HOUR)
    model.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    meta["versions"]["scikit-learn"] = "0.24.2"
    (tmp_path / "model" / "model.json").write_text(json.dumps(meta))
    now = [T0 + 15 * DAY + 600.0]
    w = watcher_for(tmp_path, now)
    st = w.status()
    import sklearn

    reason = (
        f"{tmp_path}/model/model.json: written by scikit-learn 0.24.2, this is scikit-learn "
        f"{sklearn.__version__}; retrain it (pue model train)"
    )
    assert st.state == "failed" and w.drift() is None
    assert st.message == f"model unusable: {reason}: threshold rules only"
    assert "\n" not in st.message
    _, m = metrics(w)
    assert m[("pue_model_state", (("state", "failed"),))] == 1.0 and ("pue_model_mae", ()) not in m
    # the history allows a model: a usable one replaces it at the first update
    await w.update(now[0])
    st = w.status()
    assert st.state == "ready" and st.trained_at == now[0]
    assert baseline.load(tmp_path / "model") is not None


def test_model_config_section(tmp_path: Path) -> None:
    from pue_monitor.errors import ConfigError

    fill_store(tmp_path, 0.25, extra="model: {path: models/m1, history_days: 28, retrain_hour: 5}\n")
    site = load_site(tmp_path / "site.yaml")
    assert site.config.model_enabled
    w = watch.for_site(site, tmp_path / "pue.db")
    assert w is not None
    s = w.settings
    assert s.model_dir == tmp_path / "models" / "m1"  # relative to the site file
    assert (s.history_days, s.min_history_days, s.retrain_hour, s.retrain_every_days) == (28, 14, 5, 7)
    assert s.thresholds == {"warning": 1.4, "critical": 1.5}
    # off by default without weather points; said plainly
    bare = SITE.replace("cooling:\n  points:\n    outdoor_temperature: {device: wx, point: t}\n"
                        "    relative_humidity: {device: wx, point: rh}\n", "")  # fmt: skip
    (tmp_path / "bare.yaml").write_text(bare)
    cfg = load_site(tmp_path / "bare.yaml")
    assert not cfg.config.model_enabled and watch.for_site(cfg, tmp_path / "pue.db") is None
    assert watch.off_status(cfg.config)["message"] == (
        "expected-PUE model off (cooling.points names no outdoor temperature and relative humidity): "
        "threshold rules only"
    )
    for extra, said in (
        ("model: {enabled: true}\n", "model.enabled needs cooling.points.outdoor_temperature"),
        (
            "model: {min_history_days: 30, history_days: 20}\n",
            "min_history_days (30) must not exceed history_days (20)",
        ),
        ("model: {history_days: 10}\n", "history_days"),
        ("model: {retrain_hour: 24}\n", "retrain_hour"),
    ):
        (tmp_path / "bad.yaml").write_text((bare if "enabled" in extra else SITE) + extra)
        with pytest.raises(ConfigError, match=re.escape(said)) as ei:
            load_site(tmp_path / "bad.yaml")
        assert "bad.yaml" in str(ei.value)
    # the README's model: example is valid as written
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if b.startswith("model:"))
    (tmp_path / "readme.yaml").write_text(SITE + block)
    m = load_site(tmp_path / "readme.yaml").config.model
    assert (m.history_days, m.retrain_hour, m.drift.h_sigma, m.resolution, m.path) == (56, 3, 12, "15m", "model")
    # raw readings kept 30 days: the default window shrinks to them; a window set longer is an error
    kept = SITE.replace("store: {path: pue.db}", "store: {path: pue.db, keep_readings_days: 30}")
    (tmp_path / "kept.yaml").write_text(kept)
    w = watch.for_site(load_site(tmp_path / "kept.yaml"), tmp_path / "pue.db")
    assert w is not None and w.settings.history_days == 30
    (tmp_path / "bad.yaml").write_text(kept + "model: {history_days: 56}\n")
    with pytest.raises(ConfigError, match=r"model.history_days \(56\) exceeds store.keep_readings_days \(30\)"):
        load_site(tmp_path / "bad.yaml")
    # kept 7 days: off by default (said why), an error when asked for
    short = SITE.replace("store: {path: pue.db}", "store: {path: pue.db, keep_readings_days: 7}")
    (tmp_path / "short.yaml").write_text(short)
    cfg7 = load_site(tmp_path / "short.yaml").config
    assert not cfg7.model_enabled
    assert watch.off_status(cfg7)["message"] == (
        "expected-PUE model off (store.keep_readings_days (7) keeps less weather than the 14 days the first "
        "model needs): threshold rules only"
    )
    (tmp_path / "bad.yaml").write_text(short + "model: {enabled: true}\n")
    with pytest.raises(ConfigError, match=r"min_history_days \(14\) exceeds store.keep_readings_days \(7\)"):
        load_site(tmp_path / "bad.yaml")


def test_replace_dir_swaps_whole_directories(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "model.json").write_text("old")
    new = tmp_path / ".model.training-x"
    new.mkdir()
    (new / "model.json").write_text("new")
    watch.replace_dir(new, target)
    assert (target / "model.json").read_text() == "new" and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    # a failed second rename puts the old directory back
    gone = tmp_path / "missing"
    with pytest.raises(OSError):
        watch.replace_dir(gone, target)
    assert (target / "model.json").read_text() == "new"
    shutil.rmtree(target)


async def test_the_service_shows_the_model_in_status_and_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pue_monitor.cli import main
    from pue_monitor.clock import ManualClock
    from pue_monitor.service import Service

    fill_store(tmp_path, 15)
    site_file = tmp_path / "site.yaml"
    site_file.write_text(SITE.replace("prometheus: {enabled: false}", "prometheus: {port: 0}"))
    clock = ManualClock(T0 + 15 * DAY + 600.0)
    svc = Service(load_site(site_file), clock=clock)
    try:
        assert svc.model is not None and svc.model.settings.model_dir == tmp_path / "model"
        assert svc.status.snapshot()["model"]["state"] == "none"
        await svc.outputs.start()
        out = next(o for o in svc.outputs.outputs if isinstance(o, watch.ModelOutput))
        await svc.step()
        assert out.task is None  # the first update comes a minute after the first tick
        clock.advance(30.0)
        await svc.step()
        assert out.task is None
        clock.advance(30.0)
        await svc.step()  # starts the model update in the background: the step does not wait for it
        assert out.task is not None and not out.task.done()
        await out.task
        assert svc.model.status().state == "ready"
        assert svc.prometheus is not None
        base = svc.prometheus.base_url

        def get(path: str) -> bytes:
            import urllib.request

            with urllib.request.urlopen(base + path, timeout=10) as r:
                return bytes(r.read())

        doc = json.loads(await asyncio.to_thread(get, "/status"))
        model = doc["model"]
        assert model["state"] == "ready" and model["mae"] == svc.model.status().mae
        assert model["message"].startswith("expected-PUE model ready: trained on 2026-05-01..2026-05-16 (15 days)")
        assert "model" not in [o["name"] for o in doc["outputs"]]
        text = (await asyncio.to_thread(get, "/metrics")).decode()
        promtool_check(text)  # the whole exposition, with the model's gauges
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        assert {s.labels["state"]: s.value for s in fams["pue_model_state"].samples}["ready"] == 1.0
        assert fams["pue_model_mae"].samples[0].value == model["mae"]
        assert fams["pue_model_age_seconds"].samples[0].value == 0.0  # trained at the clock's now
        # `pue status` and `pue model status` say it too
        assert await asyncio.to_thread(main, ["status", "--url", base]) == 0
        said = capsys.readouterr().out
        assert f"model: {model['message']}" in said.splitlines()
        assert await asyncio.to_thread(main, ["model", "status", "--url", base]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == f"model: {model['message']}"
        assert lines[1] == f"  directory {tmp_path / 'model'}"
        assert lines[2].startswith("  trained 2026-05-16 08:11:00 on 2026-05-01 08:00:00 .. 2026-05-16 08:00:00 (1440")
        assert lines[3] == "  next training 2026-05-23 03:00:00"
        assert lines[4].startswith("  expected PUE (last closed hour / local day): 1h 1.")
    finally:
        await svc.close()
        if svc.prometheus is not None:
            svc.prometheus.close()
    # no service: exit 1, and what the model directory holds
    site_file.write_text(SITE.replace("prometheus: {enabled: false}", f"prometheus: {{port: {free_port()}}}"))
    assert main(["model", "status", "--config", str(site_file), "--timeout", "1"]) == 1
    cap = capsys.readouterr()
    assert "no pue-monitor service answers" in cap.err
    assert cap.out.startswith("not running; the model directory says: expected-PUE model: trained on 2026-05-01")

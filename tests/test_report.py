"""`pue report`: figures recomputed from the stored readings, checked against a HAND computation.

The test site (Asia/Shanghai, UTC+8 all year) has five meters read every 15 minutes at hh:07,
hh:22, hh:37, hh:52 local time, from 2025-10-01 to 2026-11-02, written into a real store with the
store's bulk writer:

* ``grid``  facility incomer, energy counter; power P_g(D) = 700 + 2 * (D mod 10) kW on local day
  number D, switching at 00:07 (a reading instant); in October 2026 a counter GLITCH (one reading
  spiked) on the 5th at 03:22 and a METER REPLACEMENT on the 20th: the new meter, installed at
  14:15, starts from 0 and is first read at 14:22;
* ``gen``   facility (generator), POWER ONLY, 40 kW: integrated, always estimated;
* ``ups1``  IT at the UPS output (category 1), energy counter wrapping at 100,000 kWh (ROLLOVERs),
  P_u(D) = 300 + (D mod 7) kW switching at 00:07; a TWO-HOUR GAP on 2026-10-12 (no reading from
  10:22 to 11:52: the pair 10:07 -> 12:07 spans it);
* ``pdu2``  IT at the PDU output (category 2), 100 kW;
* ``crac``  cooling, 150 kW.

Power is constant between consecutive readings, so every counter is linear between its readings
and a day's energy by hand is ``7/60 h * P(D-1) + (24 h - 7/60 h) * P(D)`` (the 7 minutes after
midnight still run at the previous day's power); the glitch is bridged by its neighbours, the
replacement estimated from the neighbouring pairs' rate and the gap by the counter's delta: all
exact here, but flagged estimated, minute by minute, with their reasons.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from pue_monitor.config.loader import load_site
from pue_monitor.reports.compute import build_month
from pue_monitor.sinks.sqlite import SqliteStore, StoreReader

PUE = [sys.executable, "-m", "pue_monitor"]
CST = timezone(timedelta(hours=8))  # Asia/Shanghai: no DST since 1991
T_FIRST = datetime(2025, 10, 1, 0, 7, tzinfo=CST).timestamp()
T_LAST = datetime(2026, 11, 2, 0, 7, tzinfo=CST).timestamp()
STEP = 900.0
ROLL = 100_000.0
OCT = (datetime(2026, 10, 1, tzinfo=CST).timestamp(), datetime(2026, 11, 1, tzinfo=CST).timestamp())
MIN_OCT = 31 * 1440  # minutes of October 2026

SITE = """\
site: {{id: acc, name: Acceptance DC, timezone: Asia/Shanghai}}
prometheus: {{enabled: false}}
store: {{path: {store}}}
thresholds: {{warning: 1.4, critical: 1.5}}
report: {{operator: Example Operator Ltd, address: "1 Test Road, Taiyuan"}}
devices:
  - {{id: grid, protocol: import, interval: 900, meter: {{role: facility_input, energy: energy}}}}
  - {{id: gen, protocol: import, interval: 900, meter: {{role: facility_input, power: power}}}}
  - {{id: ups1, protocol: import, interval: 900,
     meter: {{role: it, it_location: ups_output, energy: energy, rollover: {roll}}}}}
  - {{id: pdu2, protocol: import, interval: 900, meter: {{role: it, it_location: pdu_output, energy: energy}}}}
  - {{id: crac, protocol: import, interval: 900, meter: {{role: cooling, energy: energy}}}}
"""


def day_no(d: date) -> int:
    return d.toordinal()


def p_grid(n: int) -> float:
    return 700.0 + 2.0 * (n % 10)


def p_ups(n: int) -> float:
    return 300.0 + (n % 7)


def local(t: float) -> datetime:
    return datetime.fromtimestamp(t, CST)


def at(d: date, hh: int, mm: int) -> float:
    return datetime(d.year, d.month, d.day, hh, mm, tzinfo=CST).timestamp()


GLITCH_AT = at(date(2026, 10, 5), 3, 22)
REPLACED_AT, NEW_READ = at(date(2026, 10, 20), 14, 15), at(date(2026, 10, 20), 14, 22)
GAP = (at(date(2026, 10, 12), 10, 7), at(date(2026, 10, 12), 12, 7))


def readings() -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """The raw readings of every meter (as a BMS export would give them)."""
    t = np.arange(T_FIRST, T_LAST + 1, STEP)
    days = np.array([day_no(local(x).date()) for x in t[:-1]])  # local day of each pair's start
    kw_g = np.array([p_grid(int(n)) for n in days])
    kw_u = np.array([p_ups(int(n)) for n in days])
    cum = lambda kw: np.concatenate([[0.0], np.cumsum(kw * STEP / 3600.0)])  # noqa: E731
    grid = 12_345.0 + cum(kw_g)
    k_new = int(np.flatnonzero(t == NEW_READ)[0])
    grid[k_new:] = grid[k_new:] - grid[k_new] + p_grid(day_no(date(2026, 10, 20))) * (NEW_READ - REPLACED_AT) / 3600
    k_gl = int(np.flatnonzero(t == GLITCH_AT)[0])
    grid[k_gl] = 1e12  # a spike that falls back
    ups = np.mod(54_321.0 + cum(kw_u), ROLL)
    keep = ~((t > GAP[0]) & (t < GAP[1]))
    assert not (np.diff(ups[(t >= GAP[0]) & (t <= GAP[1])]) < 0).any(), "no wrap inside the gap"
    const = lambda kw: 1_000.0 + cum(np.full(t.size - 1, kw))  # noqa: E731
    return {
        "grid": (t, grid, "energy"),
        "gen": (t, np.full(t.size, 40.0), "power"),
        "ups1": (t[keep], ups[keep], "energy"),
        "pdu2": (t, const(100.0), "energy"),
        "crac": (t, const(150.0), "energy"),
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    store_path = folder / "store.sqlite"
    path = folder / "site.yaml"
    path.write_text(SITE.format(store=store_path, roll=ROLL))
    store = SqliteStore(store_path)
    series = [(dev, point, "kW" if point == "power" else "kWh", ts, v) for dev, (ts, v, point) in readings().items()]
    store.bulk_insert_readings("acc", sorted(series), expected_rows=sum(s[3].size for s in series))
    store.close()
    return path


# ------------------------------------------------------------------ the hand computation


def hand_energy(first: date, end: date, kw_of_day: object) -> float:
    """Σ over local days [first, end) of 7/60 h * P(D-1) + (24 - 7/60) h * P(D)."""
    f = kw_of_day  # type: ignore[assignment]
    total, d = 0.0, first
    while d < end:
        n = day_no(d)
        total += 7 / 60 * f(n - 1) + (24 - 7 / 60) * f(n)  # type: ignore[operator]
        d += timedelta(days=1)
    return total


def hand_month(first: date, end: date) -> tuple[float, float]:
    hours = (end - first).days * 24
    facility = hand_energy(first, end, p_grid) + 40.0 * hours  # grid + generator
    it = hand_energy(first, end, p_ups) + 100.0 * hours  # ups1 + pdu2
    return facility, it


def months_back(y: int, m: int, k: int) -> date:
    i = y * 12 + m - 1 - k
    return date(i // 12, i % 12 + 1, 1)


# ------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def october(site: Path) -> object:
    reader = StoreReader(load_site(site).resolve("store.sqlite"))
    try:
        return build_month(reader, load_site(site), "2026-10", now=0.0)
    finally:
        reader.close()


def test_october_pue_matches_the_hand_computation(october) -> None:  # type: ignore[no-untyped-def]
    fac, it = hand_month(date(2026, 10, 1), date(2026, 11, 1))
    # e.g. facility = Σ_D [7/60 * P_g(D-1) + (24 - 7/60) * P_g(D)] + 40 kW * 744 h
    p = october.period
    assert p.facility_kwh == pytest.approx(fac, rel=1e-11)
    assert p.it_kwh == pytest.approx(it, rel=1e-11)
    assert round(p.pue, 4) == round(fac / it, 4)
    assert p.pue == pytest.approx(fac / it, rel=1e-11)
    # cooling 150 kW for 744 h; pPUE_cooling = (E_IT + E_cooling) / E_IT
    assert p.subsystems_kwh == {"cooling": pytest.approx(150.0 * 744, rel=1e-12)}
    assert p.ppue["cooling"] == pytest.approx((it + 150.0 * 744) / it, rel=1e-11)
    # category: ups1 (UPS output, 1) is the weakest IT meter; pdu2 alone would support 2
    assert p.category == 1
    assert october.compliance.limits == {"warning": 1.4, "critical": 1.5}
    assert october.compliance.meets == {"warning": p.pue <= 1.4, "critical": p.pue <= 1.5}
    assert october.compliance.grade == next((g for g, lim in ((1, 1.2), (2, 1.3), (3, 1.5)) if p.pue <= lim), None)
    # daily rows: every local day of October, each the hand day energy
    assert [r.date for r in october.daily] == [(date(2026, 10, 1) + timedelta(days=i)).isoformat() for i in range(31)]
    for r in october.daily:
        d = date.fromisoformat(r.date)
        f_d, i_d = hand_month(d, d + timedelta(days=1))
        assert r.facility_kwh == pytest.approx(f_d, rel=1e-11), r.date
        assert r.it_kwh == pytest.approx(i_d, rel=1e-11), r.date
        assert r.coverage == 1.0
    # days add up exactly (fsum) to the month
    assert math.fsum(r.facility_kwh for r in october.daily) == p.facility_kwh
    assert october.site.operator == "Example Operator Ltd" and october.site.timezone == "Asia/Shanghai"
    assert october.kpis.wue_l_per_kwh is None and october.kpis.erf is None  # no meter: not measured


def test_kpis_that_are_not_measurements_name_their_basis(october) -> None:  # type: ignore[no-untyped-def]
    # CUE from the configured (here: default) grid emission factor: the note names it, as stated in
    # the JSON's figure: CO2 = (E_DC - renewable) x factor, no renewable meter here
    factor = 0.5306
    assert october.kpis.cue_kg_per_kwh == pytest.approx(october.period.pue * factor, rel=1e-9)
    (note,) = [n for n in october.notes if n.startswith("CUE:")]
    assert f"emission factor {factor:g} kg CO2/kWh (2023;" in note and "kpis.emission_factor" in note
    assert not [n for n in october.notes if "kpis.renewable_contract" in n]  # no renewable contract configured


def test_a_renewable_contract_is_marked_as_such_never_measured(site: Path, tmp_path: Path) -> None:
    import dataclasses

    from pue_monitor.reports.output import eu_kpis

    contract = tmp_path / "site.yaml"
    contract.write_text(site.read_text() + 'kpis: {renewable_contract: {share: 0.3, source: "green power 2026-017"}}\n')
    reader = StoreReader(load_site(site).resolve("store.sqlite"))
    try:
        data = build_month(reader, load_site(contract), "2026-10", trailing=False, now=0.0)
    finally:
        reader.close()
    k, p = data.kpis, data.period
    assert k.ref == pytest.approx(0.3, rel=1e-12) and k.renewable_kwh == pytest.approx(0.3 * p.facility_kwh, rel=1e-12)
    assert k.basis["ref"] == k.basis["renewable_kwh"] == "contract: share 0.3 of facility energy, green power 2026-017"
    assert k.basis["cue_kg_per_kwh"].startswith("emission factor: 0.5306 kg CO2/kWh")
    assert "water_l" not in k.basis and "erf" not in k.basis
    assert any("kpis.renewable_contract" in n for n in data.notes)
    items = {i["key"]: i for i in eu_kpis(dataclasses.replace(data, kind="year"))["items"]}
    for key in ("ref", "renewable_kwh", "renewable_share"):
        assert (items[key]["measured"], items[key]["status"]) == (False, "from contract (not measured)"), key
        assert items[key]["basis"] == k.basis["ref"]
    assert (items["pue"]["measured"], items["pue"]["status"], items["pue"]["basis"]) == (True, "measured", None)
    assert (items["water_l"]["measured"], items["water_l"]["status"]) == (False, "not measured")


def test_october_completeness_table(october) -> None:  # type: ignore[no-untyped-def]
    m = {mc.device: mc for mc in october.meters}
    # grid: glitch at 03:22 bridged by 03:07 -> 03:37 (30 minutes), replacement pair 14:07 -> 14:22 (15)
    assert m["grid"].estimated_reasons == {"glitch_bridged": 30 / MIN_OCT, "reset": 15 / MIN_OCT}
    assert m["grid"].estimated == 45 / MIN_OCT and m["grid"].measured == (MIN_OCT - 45) / MIN_OCT
    assert (m["grid"].glitches, m["grid"].resets, m["grid"].rollovers) == (1, 1, 0)
    # ups1: the 2-hour gap 10:07 -> 12:07 is 120 minutes split linearly; its wraps in October
    ups_t, ups_v, _ = readings()["ups1"]
    inside = (ups_t[1:] >= OCT[0]) & (ups_t[1:] < OCT[1])
    wraps = int(np.count_nonzero((np.diff(ups_v) < 0) & inside))
    assert wraps >= 2
    assert m["ups1"].estimated_reasons == {"gap_split": 120 / MIN_OCT}
    assert (m["ups1"].glitches, m["ups1"].resets, m["ups1"].rollovers) == (0, 0, wraps)
    assert m["ups1"].category == 1 and m["pdu2"].category == 2 and m["grid"].category is None
    # gen: power only, every minute integrated
    assert (m["gen"].measured, m["gen"].estimated, m["gen"].missing) == (0.0, 1.0, 0.0)
    assert m["gen"].estimated_reasons == {"power_integrated": 1.0}
    for dev in ("pdu2", "crac"):
        assert (m[dev].measured, m[dev].estimated, m[dev].missing) == (1.0, 0.0, 0.0)
    # the period's shares over the 5 meters' minutes
    est = (45 + 120 + MIN_OCT) / (5 * MIN_OCT)
    p = october.period
    assert p.estimated == pytest.approx(est, abs=1e-15)
    assert p.measured == pytest.approx(1 - est, abs=1e-15) and p.missing == 0.0
    notes = "\n".join(october.notes)
    for word in ("gap_split", "glitch_bridged", "reset", "power_integrated", "gen (facility_input) has no energy"):
        assert word in notes


def test_twelve_months_add_up_exactly_to_the_trailing_twelve(october, site: Path) -> None:  # type: ignore[no-untyped-def]
    loaded = load_site(site)
    reader = StoreReader(loaded.resolve("store.sqlite"))
    try:
        months = []
        for k in range(11, -1, -1):
            d = months_back(2026, 10, k)
            months.append(build_month(reader, loaded, f"{d:%Y-%m}", trailing=False).period)
    finally:
        reader.close()
    t12 = october.trailing_12m
    assert t12.label == "2025-11..2026-10"
    assert math.fsum(mo.facility_kwh for mo in months) == t12.facility_kwh  # exactly
    assert math.fsum(mo.it_kwh for mo in months) == t12.it_kwh
    assert months[-1] == october.period
    fac, it = hand_month(date(2025, 11, 1), date(2026, 11, 1))
    assert t12.facility_kwh == pytest.approx(fac, rel=1e-11)
    assert t12.it_kwh == pytest.approx(it, rel=1e-11)
    assert t12.pue == pytest.approx(fac / it, rel=1e-11)
    for mo in months:  # and every month is its own hand computation
        first = date.fromisoformat(mo.label + "-01")
        f_m, i_m = hand_month(first, months_back(first.year, first.month, -1))
        assert mo.facility_kwh == pytest.approx(f_m, rel=1e-11) and mo.it_kwh == pytest.approx(i_m, rel=1e-11)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PUE, "report", *args], capture_output=True, text=True, timeout=300, check=False)


def test_cli_month_writes_json_csv_and_a_manifest_that_verifies(site: Path, tmp_path: Path, october) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    proc = run("--config", str(site), "--month", "2026-10", "--format", "json,csv", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "pue report: computing 2026-10" in proc.stderr  # progress lines (not a tty)
    summary = json.loads(proc.stdout)
    doc = json.loads((out / "pue-report-acc-2026-10.json").read_text())
    assert list(doc)[:7] == ["schema_version", "kind", "pue", "facility_kwh", "it_kwh", "category", "completeness"]
    assert {"site", "period", "trailing_12m", "daily", "meters", "compliance", "kpis", "notes"} <= set(doc)
    assert doc["pue"] == october.period.pue == summary["pue"]
    assert doc["completeness"]["estimated"] == october.period.estimated
    assert doc["kpis"]["wue_l_per_kwh"] is None  # not measured: null, never 0
    assert [m["device"] for m in doc["meters"]] == ["grid", "gen", "ups1", "pdu2", "crac"]
    rows = list(csv.DictReader((out / "pue-report-acc-2026-10-daily.csv").open()))
    assert len(rows) == 31 and rows[0]["date"] == "2026-10-01" and rows[-1]["date"] == "2026-10-31"
    assert [float(r["facility_kwh"]) for r in rows] == [d.facility_kwh for d in october.daily]  # full precision
    assert [float(r["pue"]) for r in rows] == [d.pue for d in october.daily]
    manifest = out / "pue-report-acc-2026-10.sha256"
    names = [line.split("  ", 1)[1] for line in manifest.read_text().splitlines()]
    assert names == ["pue-report-acc-2026-10.json", "pue-report-acc-2026-10-daily.csv"]
    check = subprocess.run(["sha256sum", "-c", manifest.name], cwd=out, capture_output=True, text=True, check=False)
    assert check.returncode == 0 and check.stdout.count(": OK") == 2, check.stdout + check.stderr
    (out / "pue-report-acc-2026-10-daily.csv").write_text("tampered\n")
    check = subprocess.run(["sha256sum", "-c", manifest.name], cwd=out, capture_output=True, text=True, check=False)
    assert check.returncode == 1


def test_cli_year_writes_the_eu_kpi_set(site: Path, tmp_path: Path) -> None:
    proc = run("--config", str(site), "--year", "2026", "--format", "json,csv", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    doc = json.loads((tmp_path / "pue-report-acc-2026.json").read_text())
    assert doc["kind"] == "year" and doc["period"]["label"] == "2026"
    eu = json.loads((tmp_path / "pue-report-acc-2026-eu-kpis.json").read_text())
    items = {i["key"]: i for i in eu["items"]}
    # the readings end on 2026-11-02 at 00:07: the year's energy runs to then, the 7 minutes of
    # November 2 at November 1's power; the rest of the year has no reading (not in the PUE)
    fac, it = hand_month(date(2026, 1, 1), date(2026, 11, 2))
    n1 = day_no(date(2026, 11, 1))
    f_nov, i_nov = 7 / 60 * (p_grid(n1) + 40.0), 7 / 60 * (p_ups(n1) + 100.0)
    assert items["total_energy_kwh"]["value"] == pytest.approx(fac + f_nov, rel=1e-11)
    assert items["it_energy_kwh"]["value"] == pytest.approx(it + i_nov, rel=1e-11)
    assert items["pue"]["value"] == pytest.approx((fac + f_nov) / (it + i_nov), rel=1e-11)
    for key in ("wue_l_per_kwh", "erf", "ref", "water_l", "reused_heat_kwh", "renewable_kwh", "renewable_share"):
        assert items[key] == {**items[key], "value": None, "measured": False}
    rows = {r["key"]: r for r in csv.DictReader((tmp_path / "pue-report-acc-2026-eu-kpis.csv").open())}
    assert rows["water_l"]["status"] == "not measured" and rows["water_l"]["value"] == ""
    assert rows["pue"]["status"] == "measured" and float(rows["pue"]["value"]) == items["pue"]["value"]
    assert len(list(csv.DictReader((tmp_path / "pue-report-acc-2026-daily.csv").open()))) == 365


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--month", "2026-13"], 2, "--month '2026-13' is not a month"),
        (["--month", "2024-03", "--format", "json"], 1, "no readings of acc's meters in 2024-03"),
        (["--month", "2026-10", "--format", "json,xls"], 2, "unknown format xls"),
        (["--month", "2026-10", "--lang", "fr"], 2, "--lang 'fr'"),
        (["--year", "26"], 2, "--year '26' is not a year"),
        (["--month", "2026-10", "--format", "json", "--db", "/nonexistent/x.sqlite"], 1, "no such store"),
    ],
)
def test_cli_errors_are_one_line_with_exit_codes(
    site: Path, tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    proc = run("--config", str(site), "--out", str(tmp_path), "--quiet", *args)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pue report: ") and says in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_pdf_format(site: Path, tmp_path: Path) -> None:
    """Without the PDF renderer `--format pdf` says so in one line (exit 1); with it, the PDF is
    written and listed in the manifest."""
    proc = run("--config", str(site), "--month", "2026-10", "--format", "pdf", "--lang", "en", "--out", str(tmp_path))
    if importlib.util.find_spec("pue_monitor.reports.render_pdf") is None:
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines() == [
            "pue report: --format pdf: this pue-monitor has no PDF renderer (pue_monitor.reports.render_pdf); "
            "use --format json,csv"
        ]
    else:
        assert proc.returncode == 0, proc.stderr
        pdf = tmp_path / "pue-report-acc-2026-10-en.pdf"
        assert pdf.read_bytes().startswith(b"%PDF")
        assert pdf.name in (tmp_path / "pue-report-acc-2026-10.sha256").read_text()


def test_report_config_validates_grade_limits(tmp_path: Path) -> None:
    from pue_monitor.errors import ConfigError

    for bad, says in (("{1: 1.3, 2: 1.2}", "rise with the grade"), ("{1: 1.2, 3: 1.5}", "without holes")):
        path = tmp_path / "s.yaml"
        text = SITE.format(store=tmp_path / "x.sqlite", roll=ROLL).replace(
            'report: {operator: Example Operator Ltd, address: "1 Test Road, Taiyuan"}',
            f"report: {{grade_limits: {bad}}}",
        )
        path.write_text(text)
        with pytest.raises(ConfigError, match=says):
            load_site(path)


def test_readme_report_section_example_is_valid_configuration(tmp_path: Path) -> None:
    import re

    import yaml

    from pue_monitor.config.loader import site_from_dict

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if b.startswith("report:"))
    site = yaml.safe_load(SITE.format(store=tmp_path / "x.sqlite", roll=ROLL))
    site["report"] = yaml.safe_load(block)["report"]
    loaded = site_from_dict(site, source="README.md")
    assert loaded.config.report.grade_limits == {1: 1.2, 2: 1.3, 3: 1.5}
    assert loaded.config.report.operator
    # and the JSON keys the README's table names are the document's
    for key in ("schema_version", "kind", "pue", "facility_kwh", "it_kwh", "category", "completeness", "site",
                "period", "trailing_12m", "daily", "meters", "compliance", "kpis", "free_cooling", "alerts", "notes",
                "generated_at", "generator"):  # fmt: skip
        assert f"`{key}`" in readme.split("### JSON document", 1)[1].split("###", 1)[0], key


def test_trailing_twelve_months_before_the_readings_begin_says_what_it_covers(site: Path) -> None:
    """November 2025: its trailing 12 months (2024-12..2025-11) have readings only from
    2025-10-01 00:07 on: the figures are the covered minutes' and a note says how many."""
    loaded = load_site(site)
    reader = StoreReader(loaded.resolve("store.sqlite"))
    try:
        nov = build_month(reader, loaded, "2025-11")
    finally:
        reader.close()
    t12 = nov.trailing_12m
    assert t12 is not None and t12.label == "2024-12..2025-11"
    fac, it = hand_month(date(2025, 10, 1), date(2025, 12, 1))
    sep30 = day_no(date(2025, 9, 30))  # the 7 minutes before the first reading are missing
    fac -= 7 / 60 * (p_grid(sep30) + 40.0)
    it -= 7 / 60 * (p_ups(sep30) + 100.0)
    assert t12.facility_kwh == pytest.approx(fac, rel=1e-11) and t12.it_kwh == pytest.approx(it, rel=1e-11)
    minutes = (date(2025, 12, 1) - date(2024, 12, 1)).days * 1440
    covered = (31 + 30) * 1440 - 7
    assert t12.missing == pytest.approx((minutes - covered) / minutes, abs=1e-15)
    note = next(n for n in nov.notes if n.startswith("trailing 12 months"))
    assert f"covers {100 * covered / minutes:.2f} % of its minutes" in note and "keep_readings_days" in note


def test_month_boundaries_are_local_midnights_across_a_dst_change(tmp_path: Path) -> None:
    """Europe/Berlin, October 2026 (clocks go back on the 25th: a 25-hour day): one counter at a
    constant 120 kW read every 10 minutes at :03, :13, ... UTC. The month runs from local midnight
    to local midnight (745 h), the 25th has 25 h, and the counter is interpolated at each midnight
    between the readings around it."""
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    store_path = tmp_path / "dst.sqlite"
    site_path = tmp_path / "site.yaml"
    site_path.write_text(
        "site: {id: dst, timezone: Europe/Berlin}\nprometheus: {enabled: false}\n"
        f"store: {{path: {store_path}}}\ndevices:\n"
        "  - {id: inc, protocol: import, interval: 600, meter: {role: facility_input, energy: e}}\n"
        "  - {id: ups, protocol: import, interval: 600, meter: {role: it, it_location: ups_output, energy: e}}\n"
    )
    t = np.arange(
        datetime(2026, 9, 29, 0, 3, tzinfo=UTC).timestamp(), datetime(2026, 11, 2, tzinfo=UTC).timestamp(), 600.0
    )
    store = SqliteStore(store_path)
    store.bulk_insert_readings(
        "dst",
        [("inc", "e", "kWh", t, 5_000.0 + 120.0 * (t - t[0]) / 3600), ("ups", "e", "kWh", t, 80.0 * (t - t[0]) / 3600)],
        expected_rows=2 * t.size,
    )
    store.close()
    loaded = load_site(site_path)
    reader = StoreReader(store_path)
    try:
        data = build_month(reader, loaded, "2026-10", trailing=False)
    finally:
        reader.close()
    p = data.period
    assert p.start == datetime(2026, 10, 1, tzinfo=berlin).timestamp()  # 2026-09-30 22:00 UTC (CEST)
    assert p.end == datetime(2026, 11, 1, tzinfo=berlin).timestamp()  # 2026-10-31 23:00 UTC (CET)
    assert (p.end - p.start) / 3600 == 745
    assert p.facility_kwh == pytest.approx(120.0 * 745, rel=1e-12)
    assert p.it_kwh == pytest.approx(80.0 * 745, rel=1e-12)
    day25 = next(d for d in data.daily if d.date == "2026-10-25")
    assert day25.facility_kwh == pytest.approx(120.0 * 25, rel=1e-12)
    assert len(data.daily) == 31 and data.meters[0].measured == 1.0


def test_report_from_influxdb_equals_the_report_from_the_store(site: Path, influx1, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same readings written to a real InfluxDB 1.6 (line protocol, as `pue run` writes them)
    give the same October as the embedded store; the CLI reads them with --source influxdb."""
    import urllib.request

    from pue_monitor.readings import Reading
    from pue_monitor.reports.influx_source import InfluxReadings
    from pue_monitor.sinks.lineprotocol import LineBuilder

    lo, hi = datetime(2026, 9, 28, tzinfo=CST).timestamp(), datetime(2026, 11, 2, 1, tzinfo=CST).timestamp()
    builder = LineBuilder()
    lines: list[str] = []
    for dev, (ts, v, point) in readings().items():
        keep = (ts >= lo) & (ts <= hi)
        lines += builder.readings(Reading(t, "acc", dev, point, x, "") for t, x in zip(ts[keep], v[keep], strict=True))
    for i in range(0, len(lines), 5000):
        body = "\n".join(lines[i : i + 5000]).encode()
        urllib.request.urlopen(f"{influx1.url}/write?db=pue&precision=ns", data=body, timeout=30).read()

    loaded = load_site(site)
    store = StoreReader(loaded.resolve("store.sqlite"))
    try:
        from_store = build_month(store, loaded, "2026-10", trailing=False, now=0.0)
    finally:
        store.close()
    from pue_monitor.config.models import InfluxConfig

    influx = InfluxReadings(InfluxConfig(url=influx1.url, bucket="pue"), loaded.config.site.id)
    from_influx = build_month(influx, loaded, "2026-10", trailing=False, now=0.0)
    assert from_influx.period.facility_kwh == pytest.approx(from_store.period.facility_kwh, rel=1e-12)
    assert from_influx.period.pue == pytest.approx(from_store.period.pue, rel=1e-12)
    assert [(m.device, m.measured, m.estimated, m.glitches, m.resets, m.rollovers) for m in from_influx.meters] == [
        (m.device, m.measured, m.estimated, m.glitches, m.resets, m.rollovers) for m in from_store.meters
    ]

    influx_site = tmp_path / "influx-site.yaml"
    influx_site.write_text(
        site.read_text().replace(
            "store: {path:", "influxdb: {url: '" + influx1.url + "', bucket: pue}\nstore: {enabled: false, path:"
        )
    )
    out = tmp_path / "out"
    proc = run(
        "--config", str(influx_site), "--month", "2026-10", "--format", "json", "--out", str(out), "--json", "--quiet"
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["source"] == "influxdb"
    assert summary["pue"] == pytest.approx(from_store.period.pue, rel=1e-12)
    bad = run(
        "--config",
        str(influx_site),
        "--month",
        "2026-10",
        "--format",
        "json",
        "--db",
        "x.sqlite",
        "--source",
        "influxdb",
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "pue report: --source influxdb: --db names a store"

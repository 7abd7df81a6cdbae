"""Free cooling from weather: psychrometrics, economiser availability, EPW files, `pue free-cooling`."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
from pathlib import Path

import numpy as np
import psychrolib
import pytest
import yaml

from pue_monitor.cli import main
from pue_monitor.config.loader import load_site
from pue_monitor.config.models import CoolingConfig
from pue_monitor.errors import ConfigError
from pue_monitor.freecooling.availability import Mode, Weather, classify, modes
from pue_monitor.freecooling.epw import EpwError, read_epw
from pue_monitor.freecooling.psychro import moist_air, pressure_from_altitude, sat_hum_ratio, sat_vap_pres
from pue_monitor.freecooling.report import siting_report
from pue_monitor.simulator.physics import Noise, SimParams, free_cooling_fraction, weather

psychrolib.SetUnitSystem(psychrolib.SI)
DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "USA_CO_Golden-NREL.724666_TMY3.excerpt.epw"

# ----------------------------------------------------------------------------- psychrometrics
# ASHRAE Handbook - Fundamentals 2017 (SI), chapter 1 "Psychrometrics".


def test_saturation_pressure_matches_ashrae_table_3():
    # Table 3 "Thermodynamic Properties of Water at Saturation", column p_ws (kPa), rows
    # -20, -5, 5, 25, 50 °C. The chapter gives eqs. 5/6 (what psychrolib and we evaluate) as
    # within 300 ppm of the table (IAPWS-95), so that is the tolerance, not the 5th digit.
    table_kpa = {-20.0: 0.10324, -5.0: 0.40174, 5.0: 0.87260, 25.0: 3.1697, 50.0: 12.3513}
    got = sat_vap_pres(list(table_kpa)) / 1000.0
    for (t, want), g in zip(table_kpa.items(), got, strict=True):
        assert g == pytest.approx(want, rel=300e-6), t


def test_standard_pressure_matches_ashrae_table_1():
    # Table 1 "Standard Atmospheric Data for Altitudes to 10 000 m", pressure (kPa) rows
    # 0, 500, 1000, 4000 m, to its printed 0.001 kPa.
    for z, kpa in ((0, 101.325), (500, 95.461), (1000, 89.875), (4000, 61.640)):
        assert pressure_from_altitude(z) / 1000.0 == pytest.approx(kpa, abs=0.0005 + 1e-9), z


def test_saturated_air_matches_ashrae_table_2_within_the_perfect_gas_error():
    # Table 2 "Thermodynamic Properties of Moist Air at Standard Atmospheric Pressure,
    # 101.325 kPa", columns W_s (kg/kg) and h_s (kJ/kg), rows 5 and 25 °C (and W_s at -20 °C).
    # The table is real-gas (Hyland-Wexler with enhancement factor); the chapter states the
    # perfect-gas relations used here are within 0.7 % of it for W, h and v (Kuehn et al. 1998).
    p = 101325.0
    for t, ws in ((-20.0, 0.0006373), (5.0, 0.005425), (25.0, 0.020173)):
        assert float(sat_hum_ratio(t, p)) == pytest.approx(ws, rel=0.007), t
    air = moist_air([5.0, 25.0], [100.0, 100.0], p)
    assert air.enthalpy_kj_kg[0] == pytest.approx(18.639, rel=0.007)
    assert air.enthalpy_kj_kg[1] == pytest.approx(76.504, rel=0.007)
    # saturated: wet-bulb = dew point = dry-bulb
    np.testing.assert_allclose(air.wet_bulb_c, [5.0, 25.0], atol=1e-3)
    np.testing.assert_allclose(air.dew_point_c, [5.0, 25.0], atol=1e-6)


def test_ashrae_example_1_enthalpy_and_rh_to_printed_precision():
    # Chapter 1, Example 1: 40 °C dry-bulb, 20 °C thermodynamic wet-bulb, 101.325 kPa;
    # the Handbook prints h = 56.7 kJ/kg and φ = 14 %. (Its W = 0.0065 uses Table 2's W_s*;
    # the perfect-gas W_s* gives 0.0064, within the 0.7 % above.)
    rh = 100.0 * psychrolib.GetRelHumFromTWetBulb(40.0, 20.0, 101325.0)
    air = moist_air(40.0, rh, 101325.0)
    assert round(float(air.enthalpy_kj_kg[0]), 1) == 56.7
    assert round(float(air.rh_pct[0])) == 14
    assert float(air.wet_bulb_c[0]) == pytest.approx(20.0, abs=1e-3)


def test_vectorised_equals_psychrolib_scalar_everywhere_including_near_freezing():
    rng = np.random.default_rng(7)
    n = 1500
    t = np.concatenate([rng.uniform(-40, 45, n), rng.uniform(-1, 12, n)])  # many wet-bulbs near 0 °C
    rh = np.concatenate([rng.uniform(0.5, 100, n), rng.uniform(0.5, 100, n)])
    p = rng.uniform(80000, 103000, 2 * n)
    air = moist_air(t, rh, p)
    for i in range(2 * n):
        wb = psychrolib.GetTWetBulbFromRelHum(t[i], rh[i] / 100, p[i])
        td = psychrolib.GetTDewPointFromRelHum(t[i], rh[i] / 100)
        w = psychrolib.GetHumRatioFromRelHum(t[i], rh[i] / 100, p[i])
        h = psychrolib.GetMoistAirEnthalpy(t[i], w) / 1000.0
        assert air.wet_bulb_c[i] == pytest.approx(wb, abs=1e-3), (t[i], rh[i], p[i])  # psychrolib's tolerance
        assert air.dew_point_c[i] == pytest.approx(td, abs=1e-3)
        assert air.hum_ratio[i] == pytest.approx(w, rel=1e-9)
        assert air.enthalpy_kj_kg[i] == pytest.approx(h, rel=1e-9)


def test_missing_or_impossible_inputs_give_nan_never_a_value():
    air = moist_air([np.nan, 20.0, 20.0, 250.0, 20.0], [50.0, np.nan, 120.0, 50.0, -1.0], 101325.0)
    for field in ("wet_bulb_c", "dew_point_c", "hum_ratio", "enthalpy_kj_kg"):
        assert np.isnan(getattr(air, field)).all(), field
    # no pressure: the standard atmosphere at the altitude (Taiyuan ~780 m)
    a = moist_air(20.0, 50.0, None, altitude_m=780.0)
    b = moist_air(20.0, 50.0, psychrolib.GetStandardAtmPressure(780.0))
    assert a.wet_bulb_c[0] == b.wet_bulb_c[0] and a.pressure_pa[0] == pytest.approx(92_260, abs=100)


# ------------------------------------------------------------------------------ EPW files

HEADER = """LOCATION,Testville,SX,CHN,Test,537720,37.78,112.55,8.0,779.0
DESIGN CONDITIONS,0
TYPICAL/EXTREME PERIODS,0
GROUND TEMPERATURES,0
HOLIDAYS/DAYLIGHT SAVINGS,No,0,0,0
COMMENTS 1,written by tests/test_freecooling.py
COMMENTS 2,
DATA PERIODS,1,1,Data,Thursday,1/1,12/31
"""
# fields 11-35 (radiation, illuminance, wind, sky, weather, snow, rain): their missing codes
TAIL = "," + ",".join(
    ["9999"] * 6
    + ["999999"] * 3
    + [
        "9999",
        "999",
        "999",
        "99",
        "99",
        "9999",
        "99999",
        "9",
        "999999999",
        "999",
        ".999",
        "999",
        "99",
        "999",
        "999",
        "99",
    ]
)


def row(
    month: int, day: int, hour: int, tdb: float | str, tdp: float | str, rh: float | str, p: float | str = 92000
) -> str:
    return f"2026,{month},{day},{hour},60,?9?9?9?9E0?9?9?9?9?9?9?9?9?9?9?9?9?9?9?9*9*9?9?9?9,{tdb},{tdp},{rh},{p}{TAIL}"


def write(tmp_path: Path, rows: list[str], name: str = "w.epw") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "\n".join(rows) + "\n")
    return path


def test_real_epw_excerpt_parses_with_its_location_and_station_pressure():
    data = read_epw(GOLDEN)
    loc = data.location
    assert (loc.wmo, loc.tz_hours, loc.elevation_m, loc.latitude) == ("724666", -7.0, 1829.0, 39.74)
    assert len(data) == 48 and data.records_per_hour == 1
    assert data.hour[0] == 1 and data.hour[23] == 24 and data.day[23] == 1 and data.day[24] == 2
    assert (data.dry_bulb_c[0], data.dew_point_c[0], data.rh_pct[0], data.pressure_pa[0]) == (-3.0, -4.0, 92.0, 80600.0)
    report = siting_report(data, CoolingConfig(), "golden")
    hours = {e.id: e for e in report.economisers}
    # January in Golden (max 3 °C): every chilled-water and indirect economiser is in full free cooling
    for econ in ("water-side", "dry-cooler", "indirect-air"):
        assert hours[econ].months[1].full == 48 and hours[econ].year.full == 48
    # direct air: the winter air is too dry for the recommended envelope (dew point < -9 °C)
    # whenever the file's dew point is clearly below -9 °C (20 rows by hand, 2 January), and in full
    # use when clearly above (22 rows of 1 January, 1 of the 2nd)
    air = classify(Weather(data.dry_bulb_c, data.rh_pct, data.pressure_pa), CoolingConfig())
    mode = air.mode["direct-air"]
    assert (mode[data.dew_point_c < -9.5] == Mode.NONE).all() and (data.dew_point_c < -9.5).sum() == 20
    assert (mode[data.dew_point_c > -8.5] == Mode.FULL).all() and (data.dew_point_c > -8.5).sum() == 23


def test_missing_codes_24h_convention_and_leap_day(tmp_path):
    rows = [
        row(1, 1, 1, 99.9, 99.9, 999),  # dry bulb missing (99.9) -> unknown
        row(1, 1, 2, 5.0, 99.9, 999, 999999),  # humidity missing, dry bulb known, pressure missing
        row(1, 1, 3, 5.0, 1.0, 999),  # RH missing: from the dew point
        row(1, 1, 4, 5.0, 1.0, 105),  # RH 105 % (valid to 110): 100 %
        row(2, 29, 24, 0.0, -5.0, 70),  # leap day, hour 24
        row(12, 31, 24, 20.0, 10.0, 53),  # hour 24 of 31 December: still December
        row(7, 1, 1, 80.0, 10.0, 50),  # out of range (> 70 °C): missing
    ]
    data = read_epw(write(tmp_path, rows))
    assert np.isnan(data.dry_bulb_c[0]) and np.isnan(data.rh_pct[0]) and np.isnan(data.rh_pct[1])
    assert np.isnan(data.pressure_pa[1]) and not np.isnan(data.pressure_pa[2])
    assert data.rh_pct[2] == pytest.approx(100 * psychrolib.GetRelHumFromTDewPoint(5.0, 1.0), abs=1e-6)
    assert data.rh_pct[3] == 100.0
    assert (data.month[4], data.day[4], data.hour[4]) == (2, 29, 24)
    assert np.isnan(data.dry_bulb_c[6])
    rep = {e.id: e for e in siting_report(data, CoolingConfig(), "t").economisers}
    ws, dc = rep["water-side"], rep["dry-cooler"]
    # unknown, never none: row 0 for everyone; row 1 for the wet-bulb users; row 6 for everyone
    assert (ws.months[1].unknown, ws.months[1].full) == (2, 2)
    assert (dc.months[1].unknown, dc.months[1].full) == (1, 3)  # a dry cooler needs no humidity
    assert ws.months[7].unknown == 1 and ws.months[7].none == 0
    assert ws.months[12].full + ws.months[12].partial + ws.months[12].none == 1 and ws.months[1].none == 0
    assert ws.months[2].full == 1
    assert ws.year.full + ws.year.partial + ws.year.none + ws.year.unknown == 7


def test_free_cooling_hours_match_a_hand_count(tmp_path):
    # Saturated air (RH 100 %): wet-bulb = dew point = dry-bulb, so the limits are plain
    # arithmetic on the dry-bulb. Defaults: CHW 15/21 °C, tower 4 K + HX 2 K; dry cooler 5 K;
    # supply air 24 °C, return 36 °C, fan heat 1 K; indirect approach 4 K; recommended envelope.
    temps = [-20, -5, 0, 5, 8, 9, 10, 12, 14, 16, 20, 25]
    rows = [row(1, 1, h + 1, t, t, 100) for h, t in enumerate(temps)]
    rows.append(row(1, 1, 13, 30.0, 4.5, 20))  # hot and dry: only the air-side economisers help
    rows.append(row(7, 15, 14, 99.9, 99.9, 999))  # a missing July hour
    path = write(tmp_path, rows)
    rep = {e.id: e for e in siting_report(read_epw(path), CoolingConfig(), "t").economisers}

    def hours(econ: str, month: int) -> tuple[float, float, float, float]:
        h = rep[econ].months[month]
        return (h.full, h.partial, h.none, h.unknown)

    # water side: s = T + 6; full s <= 15 (T <= 9): -20 -5 0 5 8 9; partial 10 12 14; none 16 20 25 30/20%
    assert hours("water-side", 1) == (6, 3, 4, 0)
    # dry cooler: s = T + 5; full T <= 10 (7); partial 12 14; none 16 20 25 30
    assert hours("dry-cooler", 1) == (7, 2, 4, 0)
    # direct air: full T + 1 <= 24 with dew point -9..15 and RH at 24 °C <= 60 % (T_dp <= 15.7):
    # -5 0 5 8 9 10 12 14 full; -20 (too dry), 16 20 25 (too humid) none; 30 °C / 20 % partial
    assert hours("direct-air", 1) == (8, 1, 4, 0)
    # indirect air-to-air: s = T + 4 + 1; full s <= 24 (T <= 19): 10 rows; 20 25 30 partial
    assert hours("indirect-air", 1) == (10, 3, 0, 0)
    for econ in rep:
        assert hours(econ, 7) == (0, 0, 0, 1)
        assert rep[econ].year.full + rep[econ].year.partial + rep[econ].year.none + rep[econ].year.unknown == 14
    # the partial fraction is linear: direct air at 30 °C: (36 - 31) / (36 - 24); indirect: (36 - 35) / 12
    assert rep["direct-air"].months[1].load == pytest.approx(8 + 5 / 12)
    ind = (36 - 25) / 12 + (36 - 30) / 12 + (36 - 35) / 12
    assert rep["indirect-air"].months[1].load == pytest.approx(10 + ind)


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        (row(1, 1, 2, "abc", 1.0, 50), "field 7 (dry bulb temperature): 'abc' is not a number"),
        (row(2, 30, 1, 1.0, 1.0, 50), "field 3 (day): 30 is not a day of month 2"),
        (row(1, 1, 25, 1.0, 1.0, 50), "field 4 (hour): 25 is not 1..24 (EPW hours end at 1:00..24:00)"),
        (row(1, 1, 2, 1.0, 1.0, "x9"), "field 9 (relative humidity): 'x9' is not a number"),
        ("2026,1,1,2,60,flags,1.0", "7 fields; a data row has 35 (at least 10 are read)"),
        (row(1, 1, 2, '"1.0', 1.0, 50), "field 7 (dry bulb temperature): '\"1.0' is not a number"),
    ],
)
def test_malformed_epw_names_file_line_and_field(tmp_path, capsys, bad, where):
    path = write(tmp_path, [row(1, 1, 1, 1.0, 1.0, 50), bad])
    with pytest.raises(EpwError) as exc:
        read_epw(path)
    assert str(exc.value) == f"{path}:10: {where}"
    assert main(["free-cooling", "--epw", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"pue free-cooling: {path}:10: {where}" and "\n" not in err


def test_sub_hourly_rows_count_their_share_of_the_hour(tmp_path):
    path = write(tmp_path, [row(1, 1, 1, 5.0, 5.0, 100), row(1, 1, 1, 12.0, 12.0, 100)])
    path.write_text(path.read_text().replace("DATA PERIODS,1,1,", "DATA PERIODS,1,2,"))
    data = read_epw(path)
    assert data.records_per_hour == 2
    ws = siting_report(data, CoolingConfig(), "t").economisers[0]
    # 5 °C saturated: full; 12 °C: partial ((21 - 18) / 6 = 0.5); each row is half an hour
    assert (ws.year.full, ws.year.partial, ws.year.load) == (0.5, 0.5, pytest.approx(0.75))


def test_unwritable_outputs_are_one_line(tmp_path, capsys):
    epw = write(tmp_path, [row(1, 1, 1, 5.0, 5.0, 100)])
    for opt in ("--csv", "--png"):
        target = tmp_path / "no-such-dir" / "out"
        assert main(["free-cooling", "--epw", str(epw), opt, str(target)]) == 2
        err = capsys.readouterr().err
        assert err == f"pue free-cooling: {target}: cannot write: No such file or directory\n"


def test_missing_header_is_one_line(tmp_path, capsys):
    path = tmp_path / "x.epw"
    path.write_text("year,month\n1,2\n")
    assert main(["free-cooling", "--epw", str(path)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"pue free-cooling: {path}: 2 lines; an EPW file has 8 header lines, then data rows"
    )
    assert main(["free-cooling", "--epw", str(tmp_path / "absent.epw")]) == 2
    assert "absent.epw: cannot read" in capsys.readouterr().err


# ------------------------------------------------------------------------------ config

SITE = """site:
  id: fc-test
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
"""


def test_cooling_section_validates_and_feeds_free_cooling(tmp_path, capsys):
    path = tmp_path / "site.yaml"
    path.write_text(
        SITE
        + """cooling:
  altitude_m: 780
  envelope: a1
  points:
    chiller_power: {device: incomer, point: active_power}
  economisers:
    - {id: towers, type: water_side, chw_supply_c: 18, chw_return_c: 24, tower_approach_k: 3}
    - {id: evap, type: indirect_air, variant: evaporative}
"""
    )
    cooling = load_site(path).config.cooling
    assert cooling is not None and [e.id for e in cooling.economisers] == ["towers", "evap"]
    assert cooling.inlet_envelope.max_c == 32.0
    epw = write(tmp_path, [row(1, 1, 1, 13.0, 13.0, 100), row(1, 1, 2, 14.0, 14.0, 100)])
    assert main(["free-cooling", "--epw", str(epw), "--config", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in out["economisers"]] == ["towers", "evap"] and out["envelope"] == "a1"
    # towers: s = wb + 3 + 2; full <= 18: 13 °C full, 14 °C partial (fraction (24 - 19) / 6)
    year = out["economisers"][0]["year"]
    assert (year["full"], year["partial"], year["load"]) == (1, 1, round(1 + 5 / 6, 3))


@pytest.mark.parametrize(
    ("cooling", "message"),
    [
        (
            "  economisers:\n    - {id: t, type: water_side, chw_supply_c: 20, chw_return_c: 18}\n",
            ":16: cooling.economisers[0].water_side: chw_return_c (18.0) must be above chw_supply_c (20.0)",
        ),
        (
            "  economisers:\n    - {id: t, type: swamp}\n",
            ":16: cooling.economisers[0]: Input tag 'swamp' found using 'type'",
        ),
        ("  envelope: a2\n", ":15: cooling.envelope: unknown envelope 'a2' (recommended, a1, or a mapping of limits)"),
        (
            "  economisers:\n    - {id: d, type: direct_air, supply_air_c: 30}\n",
            "supply_air_c 30.0 is outside the IT inlet envelope 18..27 °C",
        ),
        (
            "  points:\n    relative_humidity: {device: nowhere, point: rh}\n",
            ":16: cooling.points.relative_humidity.device: no device 'nowhere' in devices",
        ),
        (
            "  points:\n    outdoor_temperature: {device: pdu, point: outdoor_temperature}\n",
            ":16: cooling.points.outdoor_temperature.point: device 'pdu' has no point 'outdoor_temperature'",
        ),
        ("  altitude_m: 9000\n", ":15: cooling.altitude_m: Input should be less than or equal to 6000"),
    ],
)
def test_cooling_config_errors_are_one_line_naming_file_line_and_field(tmp_path, capsys, cooling, message):
    path = tmp_path / "site.yaml"
    path.write_text(SITE + "cooling:\n" + cooling)
    with pytest.raises(ConfigError) as exc:
        load_site(path)
    text = str(exc.value)
    assert "\n" not in text and text.startswith(str(path)) and message in text, text
    epw = write(tmp_path, [row(1, 1, 1, 1.0, 1.0, 50)])
    assert main(["free-cooling", "--epw", str(epw), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# ------------------------------------------------------------------------------ CLI outputs


def test_cli_table_json_csv_and_png(tmp_path, capsys):
    rows = [row(m, 1, h, t, t - 3, 80) for m, t in ((1, -8.0), (4, 9.0), (7, 27.0)) for h in range(1, 25)]
    epw = write(tmp_path, rows)
    out_csv, out_png = tmp_path / "fc.csv", tmp_path / "fc.png"
    assert main(["free-cooling", "--epw", str(epw), "--csv", str(out_csv), "--png", str(out_png)]) == 0
    text = capsys.readouterr().out
    assert "water-side (water_side)" in text and "   Jul       0       0      24       0       0" in text
    table = list(csv.reader(out_csv.open()))
    assert table[0] == ["economiser", "type", "period", "full_h", "partial_h", "none_h", "unknown_h", "load_h"]
    assert len(table) == 1 + 4 * 13
    ws = {r[2]: r for r in table if r[0] == "water-side"}
    # January -8 °C and April 9 °C (wet-bulb ≈ 7.3 °C, + 6 K <= 15) full; July 27 °C / 80 % none
    assert ws["1"][3:7] == ["24", "0", "0", "0"] and ws["4"][3:7] == ["24", "0", "0", "0"]
    assert ws["7"][3:7] == ["0", "0", "24", "0"] and ws["year"][3:8] == ["48", "0", "24", "0", "48"]
    png = out_png.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert main(["free-cooling", "--epw", str(epw), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["rows"] == 72 and js["location"]["elevation_m"] == 779.0 and len(js["economisers"][0]["months"]) == 12


def test_simulated_year_is_taiyuan_like(tmp_path, capsys):
    epw = tmp_path / "sim.epw"
    assert main(["free-cooling", "--simulated-year", str(epw), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    data = read_epw(epw)
    assert len(data) == 8760 and data.location.elevation_m == 780.0 and data.location.tz_hours == 8.0
    # the simulator's climate: January mean -5.5 °C, July 24 °C (SimParams), ±1.5 K of weather
    assert math.isclose(float(np.mean(data.dry_bulb_c[data.month == 1])), -5.5, abs_tol=1.5)
    assert math.isclose(float(np.mean(data.dry_bulb_c[data.month == 7])), 24.0, abs_tol=1.5)
    ws = next(e for e in out["economisers"] if e["id"] == "water-side")
    jan, jul = ws["months"][0], ws["months"][6]
    assert jan["full"] == 744 and jul["full"] == 0 and jul["none"] > 600
    assert sum(ws["year"][k] for k in ("full", "partial", "none", "unknown")) == 8760
    # the simulator's own plant runs the same water-side rule on its exact wet-bulb: the mode read
    # back from the EPW (rounded to 0.1 °C and 1 % RH) agrees hour by hour
    p = SimParams()
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()
    wx = weather(start + (np.arange(8760) + 1) * 3600.0, p, Noise.from_seed(1, p))
    sim_mode = modes(np.asarray(free_cooling_fraction(np.asarray(wx.wet_bulb_c), p), dtype=float))
    ours = classify(Weather(data.dry_bulb_c, data.rh_pct, data.pressure_pa), CoolingConfig()).mode["water-side"]
    assert (sim_mode == ours).mean() >= 0.995
    # the README's siting table is this run's output
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    year_row = next(line for line in readme.splitlines() if line.startswith("| **year** | **4"))
    cells = [c.strip(" *").replace(",", "") for c in year_row.split("|")[2:-1]]
    assert cells == ["{full:g} / {partial:g} / {none:g}".format(**e["year"]) for e in out["economisers"]]
    months = [line for line in readme.splitlines() if line.startswith(("| Jan | 7", "| Jul | 0"))]
    assert months[0].split("|")[2:-1] == [
        " {full:g} / {partial:g} / {none:g} ".format(**e["months"][0]) for e in out["economisers"]
    ]
    assert months[1].split("|")[2:-1] == [
        " {full:g} / {partial:g} / {none:g} ".format(**e["months"][6]) for e in out["economisers"]
    ]


def test_readme_cooling_example_validates():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if b.startswith("cooling:"))
    cooling = CoolingConfig.model_validate(yaml.safe_load(block)["cooling"])
    assert [e.type for e in cooling.economisers] == ["water_side", "dry_cooler", "indirect_air"]

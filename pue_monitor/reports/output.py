"""A report's files: JSON (``ReportData.to_json``), CSV of daily values, the EU annual KPI set
(Delegated Regulation (EU) 2024/1364) and a SHA-256 manifest of them all (``sha256sum -c``).

Numbers are written at full precision (``repr`` of the float: the shortest text that reads back
as the same number), so a figure in the CSV or the PDF can be traced to the JSON exactly; a figure
that was not measured is empty in the CSV and ``null`` in the JSON, never 0.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pue_monitor.reports.model import ReportData

__all__ = ["EU_KPI_FIELDS", "eu_kpis", "write_daily_csv", "write_eu_kpis", "write_json", "write_manifest"]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8", newline="")
    tmp.replace(path)


def _num(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def write_json(data: ReportData, path: Path) -> None:
    """The documented JSON document (key order fixed by the dataclasses; UTF-8, 2-space indent)."""
    _atomic_write(path, json.dumps(data.to_json(), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


DAILY_COLUMNS = ("date", "facility_kwh", "it_kwh", "pue", "coverage")


def write_daily_csv(data: ReportData, path: Path) -> None:
    """One row per local day: date, facility and IT energy (kWh), PUE and the share of the day's
    minutes it covers. Empty cells: not known (no minute with both energies)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(DAILY_COLUMNS)
    for d in data.daily:
        w.writerow([d.date, _num(d.facility_kwh), _num(d.it_kwh), _num(d.pue), _num(d.coverage)])
    _atomic_write(path, buf.getvalue())


#: the EU scheme's items as far as our meters measure them: key -> (unit, description)
EU_KPI_FIELDS: dict[str, tuple[str, str]] = {
    "total_energy_kwh": ("kWh", "total energy consumption of the data centre (E_DC)"),
    "it_energy_kwh": ("kWh", "energy consumption of the ICT equipment (E_IT)"),
    "pue": ("ratio", "power usage effectiveness, E_DC / E_IT (ISO/IEC 30134-2)"),
    "wue_l_per_kwh": ("L/kWh", "water usage effectiveness (ISO/IEC 30134-9)"),
    "erf": ("ratio", "energy reuse factor (ISO/IEC 30134-6)"),
    "ref": ("ratio", "renewable energy factor (ISO/IEC 30134-3)"),
    "water_l": ("L", "total water input"),
    "reused_heat_kwh": ("kWh", "waste heat reused"),
    "renewable_kwh": ("kWh", "renewable energy consumed"),
    "renewable_share": ("ratio", "share of renewable energy in E_DC"),
}


def eu_kpis(data: ReportData) -> dict[str, Any]:
    """The annual KPI set of Delegated Regulation (EU) 2024/1364 (Annex II, energy and
    sustainability indicators) as far as the site's meters measure them: every item with its
    value (None: not measured), unit, ``measured`` flag and ``status`` (``measured``, ``not
    measured``, or ``from contract (not measured)``: renewable energy from a configured contract,
    named in ``basis``)."""
    p, k = data.period, data.kpis
    values: dict[str, float | None] = {
        "total_energy_kwh": p.facility_kwh,
        "it_energy_kwh": p.it_kwh,
        "pue": p.pue,
        "wue_l_per_kwh": k.wue_l_per_kwh,
        "erf": k.erf,
        "ref": k.ref,
        "water_l": k.water_l,
        "reused_heat_kwh": k.reused_heat_kwh,
        "renewable_kwh": k.renewable_kwh,
        "renewable_share": k.ref,
    }
    basis = dict(k.basis)
    if "ref" in basis:
        basis["renewable_share"] = basis["ref"]

    def status(key: str) -> str:
        if values[key] is None:
            return "not measured"
        return "from contract (not measured)" if key in basis else "measured"

    return {
        "schema_version": data.schema_version,
        "regulation": "Delegated Regulation (EU) 2024/1364",
        "site": data.site.id,
        "period": p.label,
        "category": p.category,
        "completeness": {"measured": p.measured, "estimated": p.estimated, "missing": p.missing},
        "items": [
            {
                "key": key,
                "value": values[key],
                "unit": unit,
                "measured": values[key] is not None and key not in basis,
                "status": status(key),
                "basis": basis.get(key),
                "description": desc,
            }
            for key, (unit, desc) in EU_KPI_FIELDS.items()
        ],
    }


def write_eu_kpis(data: ReportData, json_path: Path | None, csv_path: Path | None) -> None:
    doc = eu_kpis(data)
    if json_path is not None:
        _atomic_write(json_path, json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    if csv_path is not None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(("key", "value", "unit", "status", "description"))
        for item in doc["items"]:
            w.writerow((item["key"], _num(item["value"]), item["unit"], item["status"], item["description"]))
        _atomic_write(csv_path, buf.getvalue())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(files: Sequence[Path], path: Path) -> None:
    """``<sha256>  <name>`` per file, names relative to the manifest's folder: ``sha256sum -c``
    in that folder verifies them."""
    lines = [f"{sha256_file(f)}  {f.relative_to(path.parent).as_posix()}\n" for f in files]
    _atomic_write(path, "".join(lines))

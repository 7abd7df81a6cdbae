"""Companion KPIs beside PUE (ISO/IEC 30134 series): WUE, CUE, ERF, REF.

Each is a ratio of quantities summed over the same period (never an average of ratios):

* **WUE** (ISO/IEC 30134-9) = site water (L) / E_IT (kWh), L/kWh;
* **CUE** (ISO/IEC 30134-8) = CO2 from E_DC (kg) / E_IT (kWh), kg/kWh, with
  CO2 = (E_DC - E_renewable) x grid emission factor (renewable supply counted as zero-carbon;
  grid only: CUE = factor x PUE);
* **ERF** (ISO/IEC 30134-6) = reused (exported) heat energy / E_DC;
* **REF** (ISO/IEC 30134-3) = renewable energy / E_DC, from a renewable meter or a contracted share.

A KPI whose meters do not exist (or are MISSING in an interval) is ``None`` — *not measured* —,
never 0. The meters feeding them (roles ``water``, ``heat_reuse``, ``renewable``) are outside
the PUE energy model: they never change E_DC, E_IT, PUE or its data completeness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pue_monitor.config.models import KpiConfig

__all__ = ["BASIS_COLUMNS", "KPI_FIELDS", "KPI_STANDARDS", "KPI_UNITS", "KpiBasis", "kpi_fields_from_row", "ratio"]

#: KPI -> the standard defining it (labels in outputs and displays)
KPI_STANDARDS: dict[str, str] = {
    "wue": "ISO/IEC 30134-9",
    "cue": "ISO/IEC 30134-8",
    "erf": "ISO/IEC 30134-6",
    "ref": "ISO/IEC 30134-3",
}
KPI_UNITS: dict[str, str] = {"wue": "L/kWh", "cue": "kgCO2/kWh", "erf": "ratio", "ref": "ratio"}

#: PueInterval attribute -> stored column / InfluxDB field (floats; omitted/NULL when not measured)
KPI_FIELDS: dict[str, str] = {
    "water_l": "water_l",
    "e_heat_reused": "e_heat_reused_kwh",
    "e_renewable": "e_renewable_kwh",
    "co2_kg": "co2_kg",
    "wue": "wue",
    "cue": "cue",
    "erf": "erf",
    "ref": "ref",
}


@dataclass(frozen=True)
class KpiBasis:
    """What the KPIs of a result were computed with (stored with every result, audited)."""

    ef_kg_per_kwh: float = 0.5306
    ef_year: int = 2023
    ef_type: str = "national grid average"
    ef_source: str = "MEE/NBS China national average power CO2 emission factor 2023"
    water_definition: str = "site_usage"
    #: contracted renewable share of E_DC (None: a renewable meter, or no renewable supply known)
    renewable_share: float | None = None
    renewable_source: str | None = None

    @classmethod
    def from_config(cls, cfg: KpiConfig) -> KpiBasis:
        ef, rc = cfg.emission_factor, cfg.renewable_contract
        return cls(
            ef_kg_per_kwh=ef.kg_per_kwh,
            ef_year=ef.year,
            ef_type=ef.type,
            ef_source=ef.source,
            water_definition=cfg.water_definition,
            renewable_share=None if rc is None else rc.share,
            renewable_source=None if rc is None else rc.source,
        )

    def row(self) -> dict[str, Any]:
        """Stored columns (see :data:`BASIS_COLUMNS`)."""
        return {
            "co2_factor_kg_per_kwh": self.ef_kg_per_kwh,
            "co2_factor_year": self.ef_year,
            "co2_factor_source": f"{self.ef_type}; {self.ef_source}",
            "water_definition": self.water_definition,
            "renewable_basis": "meter" if self.renewable_share is None else f"contract: {self.renewable_source}",
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> KpiBasis | None:
        """The basis stored in a row (None for rows written before KPIs existed)."""
        if row.get("co2_factor_kg_per_kwh") is None:
            return None
        ef_type, _, ef_source = str(row.get("co2_factor_source") or "").partition("; ")
        rb = str(row.get("renewable_basis") or "meter")
        contract = rb.startswith("contract: ")
        e_fac, e_ren = row.get("e_facility_kwh"), row.get("e_renewable_kwh")
        share = e_ren / e_fac if contract and e_fac and e_ren is not None else None
        return cls(
            ef_kg_per_kwh=float(row["co2_factor_kg_per_kwh"]),
            ef_year=int(row.get("co2_factor_year") or 0),
            ef_type=ef_type,
            ef_source=ef_source,
            water_definition=str(row.get("water_definition") or "site_usage"),
            renewable_share=share,
            renewable_source=rb.removeprefix("contract: ") if contract else None,
        )


#: stored basis columns -> SQL type
BASIS_COLUMNS: dict[str, str] = {
    "co2_factor_kg_per_kwh": "REAL",
    "co2_factor_year": "INTEGER",
    "co2_factor_source": "TEXT",
    "water_definition": "TEXT",
    "renewable_basis": "TEXT",
}


def ratio(num: float | None, den: float | None) -> float | None:
    """``num / den``, None when either is unknown or ``den <= 0`` (not measured, never 0)."""
    if num is None or den is None or not den > 0:
        return None
    return num / den


def kpi_fields_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """``PueInterval`` KPI keyword arguments from a stored row (store or state file)."""
    out: dict[str, Any] = {attr: row.get(col) for attr, col in KPI_FIELDS.items()}
    out["kpi_basis"] = KpiBasis.from_row(row)
    return out

"""An InfluxQL target for Grafana's InfluxDB datasource (InfluxQL mode), as Grafana stores it:
``{"refId", "datasource", "rawQuery": true, "query", "resultFormat"}``. grafana-foundation-sdk
has no InfluxDB query builder; this is the small one the SDK's ``Dataquery`` variant allows."""

from __future__ import annotations

from typing import Any, Literal

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

ResultFormat = Literal["time_series", "table"]


class InfluxQLQuery(cogvariants.Dataquery):
    def __init__(
        self, query: str, ref_id: str, datasource: dashboard.DataSourceRef, result_format: ResultFormat
    ) -> None:
        self.query = query
        self.ref_id = ref_id
        self.datasource = datasource
        self.result_format = result_format

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": self.datasource.to_json(),
            "rawQuery": True,
            "query": self.query,
            "resultFormat": self.result_format,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InfluxQLQuery:
        """Decode a stored target; raises ValueError when it is not a raw InfluxQL query."""
        if set(data) != {"refId", "datasource", "rawQuery", "query", "resultFormat"}:
            raise ValueError(f"InfluxQL target keys {sorted(data)}")
        if data["rawQuery"] is not True or not isinstance(data["query"], str) or not data["query"].strip():
            raise ValueError("InfluxQL target without a raw query")
        if data["resultFormat"] not in ("time_series", "table"):
            raise ValueError(f"InfluxQL resultFormat {data['resultFormat']!r}")
        ds = dashboard.DataSourceRef.from_json(data["datasource"])
        return cls(data["query"], str(data["refId"]), ds, data["resultFormat"])


def variant_config() -> cogruntime.DataqueryConfig:
    """For the SDK's runtime: targets of InfluxDB panels decode as :class:`InfluxQLQuery`."""
    return cogruntime.DataqueryConfig(identifier="influxdb", from_json_hook=InfluxQLQuery.from_json)


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder: ``InfluxQL(ref, query).table()``."""

    def __init__(self, datasource: dashboard.DataSourceRef, ref_id: str, query: str) -> None:
        self._internal = InfluxQLQuery(query, ref_id, datasource, "time_series")

    def table(self) -> InfluxQL:
        self._internal.result_format = "table"
        return self

    def build(self) -> InfluxQLQuery:
        return self._internal

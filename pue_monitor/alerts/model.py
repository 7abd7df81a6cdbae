"""The alert value handed to notifiers, shaped 1:1 like Alertmanager v2's ``postableAlert``.

============  =====================================  ===========================
Alert         meaning                                postableAlert
============  =====================================  ===========================
labels        identity: alertname, site, severity,   ``labels``
              device, ... (strings)
annotations   summary, description (strings)         ``annotations``
starts_at     Unix seconds the condition began       ``startsAt`` (RFC 3339)
ends_at       Unix seconds it ended (resolved), or   ``endsAt`` (omitted while
              None while firing                      firing)
generator_url where to look (a dashboard, a query)   ``generatorURL``
============  =====================================  ===========================

``status`` is derived: firing while ``ends_at`` is None, resolved once it is set. The
``fingerprint`` is a stable hash of the labels only (annotations and times may change while
an alert stays the same alert), so an engine can deduplicate and a receiver can correlate
the firing and the resolved message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

Status = Literal["firing", "resolved"]


def rfc3339(ts: float) -> str:
    """Unix seconds -> RFC 3339 in UTC with milliseconds (``2026-11-24T14:00:00.000Z``)."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _frozen(m: Mapping[str, str]) -> Mapping[str, str]:
    for k, v in m.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"alert labels and annotations are strings: {k!r}: {v!r}")
    return MappingProxyType(dict(sorted(m.items())))


@dataclass(frozen=True, slots=True)
class Alert:
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: float = 0.0
    ends_at: float | None = None
    generator_url: str = ""

    def __post_init__(self) -> None:
        if not self.labels.get("alertname"):
            raise ValueError("an alert needs an 'alertname' label")
        if self.ends_at is not None and self.ends_at < self.starts_at:
            raise ValueError(f"alert ends ({self.ends_at}) before it starts ({self.starts_at})")
        object.__setattr__(self, "labels", _frozen(self.labels))
        object.__setattr__(self, "annotations", _frozen(self.annotations))

    @property
    def status(self) -> Status:
        return "firing" if self.ends_at is None else "resolved"

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def fingerprint(self) -> str:
        """16 hex digits of SHA-256 over the sorted labels: the same for firing and resolved."""
        text = json.dumps(sorted(self.labels.items()), separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def resolved(self, at: float) -> Alert:
        """This alert, resolved at ``at`` (Unix seconds)."""
        return Alert(self.labels, self.annotations, self.starts_at, max(at, self.starts_at), self.generator_url)

    def postable(self) -> dict[str, Any]:
        """Alertmanager v2 ``postableAlert``: no ``endsAt`` while firing (Alertmanager keeps it
        active for its resolve_timeout after the last post), ``endsAt`` once resolved."""
        out: dict[str, Any] = {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": rfc3339(self.starts_at),
        }
        if self.ends_at is not None:
            out["endsAt"] = rfc3339(self.ends_at)
        if self.generator_url:
            out["generatorURL"] = self.generator_url
        return out

    def to_json(self) -> dict[str, Any]:
        """The webhook's form: :meth:`postable` plus ``status`` and ``fingerprint``."""
        return {"status": self.status, "fingerprint": self.fingerprint, **self.postable()}

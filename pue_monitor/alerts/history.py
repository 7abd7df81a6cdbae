"""The alert history: every alert that fired and how it ended, in ``history.sqlite`` in the alerts
folder (beside ``state.json``), for reports (``pue report`` lists a period's alerts) and audits.

**Append-only**: one row per transition, never updated:

``fired``
    the alert began firing (its condition held for the rule's ``for_s``); ``starts_at`` is when
    the condition began, ``silenced`` whether a silence matched it then (it was not sent);
``resolved``
    its condition was off for ``resolve_after_s``; ``ends_at`` is when it went off, ``notified``
    whether a notification had gone out (so the resolution was sent too);
``lost``
    after a restart's first evaluation the history has the alert firing but the engine does not
    (the state file was unreadable and set aside): when the alert ended is not known; ``at`` is
    when this was found. A later ``resolved`` of the same episode supersedes it.

An alert's episode is identified by ``(fingerprint, starts_at)``: the fingerprint hashes its labels
and a firing alert's start never changes. The service writes an evaluation's transitions in one
transaction BEFORE it saves ``state.json``: a crash between the two at worst makes the restarted
engine decide a transition again, and the UNIQUE key ``(fingerprint, starts_at, event)`` drops the
repeat, so a restart loses no transition and duplicates none. A write that fails (disk full) is
kept in memory (up to :data:`MAX_PENDING` transitions) and retried at the next evaluation.

**Bounded**: once a day, episodes that ended more than ``alerts.history_days`` (400) days ago are
deleted, both rows; an alert still firing is never deleted. With every write, and at least once
an hour, ``meta.alive`` notes that the engine runs: an alert the history has firing is known to
fire up to then. ``complete_from`` (the file's creation,
or the last deletion's cut-off, whichever is later) is from when the history is complete.

Readers (``pue report``, :func:`read_period`) open the file read-only while the service writes it
(SQLite WAL).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pue_monitor.alerts.engine import Tracked, Transition
from pue_monitor.alerts.model import rfc3339
from pue_monitor.errors import UserError

__all__ = ["HISTORY_FILE", "AlertHistory", "Episode", "PeriodAlerts", "read_period"]

log = logging.getLogger("pue_monitor.alerts")

HISTORY_FILE = "history.sqlite"
HISTORY_VERSION = 1
#: deletion of old episodes runs at most this often
PRUNE_EVERY_S = 86400.0
#: transitions kept in memory while the file cannot be written; past this the oldest are dropped
MAX_PENDING = 10_000
#: the history notes that the engine runs (``meta.alive``) at most this often: an alert still
#: firing in the history is known to fire up to then (a service stopped for good leaves it so)
ALIVE_EVERY_S = 3600.0
#: annotations that carry an alert's value, in order of preference (PueHigh, sensor fault, drift)
VALUE_KEYS = ("pue", "value", "drift_size")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transitions (
    seq         INTEGER PRIMARY KEY,
    at          REAL NOT NULL,
    event       TEXT NOT NULL CHECK (event IN ('fired', 'resolved', 'lost')),
    fingerprint TEXT NOT NULL,
    alertname   TEXT NOT NULL,
    severity    TEXT NOT NULL,
    labels      TEXT NOT NULL,
    annotations TEXT NOT NULL,
    starts_at   REAL NOT NULL,
    ends_at     REAL,
    silenced    INTEGER NOT NULL DEFAULT 0,
    notified    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (fingerprint, starts_at, event)
);
CREATE INDEX IF NOT EXISTS transitions_event_start ON transitions (event, starts_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

Status = Literal["firing", "resolved", "state_lost"]


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class Episode:
    """One alert from firing to its end, as the history has it."""

    fingerprint: str
    name: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]  # when it fired
    starts_at: float  # the condition began
    fired_at: float  # the evaluation that fired it
    status: Status
    ends_at: float | None  # resolved: the condition went off; else None
    lost_at: float | None  # state_lost: the restart that found the alert gone
    silenced: bool  # a silence matched it when it fired
    notified: bool | None  # resolved: a notification had gone out; else None

    @property
    def value(self) -> float | None:
        """The value that fired it (PueHigh: the latest closed PUE then), if the alert has one."""
        return next((v for k in VALUE_KEYS if (v := _float(self.annotations.get(k))) is not None), None)

    @property
    def threshold(self) -> float | None:
        return _float(self.annotations.get("threshold"))


@dataclass(frozen=True)
class PeriodAlerts:
    """:func:`read_period`'s answer. ``recorded``: the history file exists; ``complete_from``:
    the history is complete from this time on (None: not recorded); ``alive``: the last time
    the engine noted it ran (to within :data:`ALIVE_EVERY_S`)."""

    path: Path
    recorded: bool
    complete_from: float | None
    alive: float | None = None
    episodes: list[Episode] = field(default_factory=list)


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10.0)
    else:
        con = sqlite3.connect(path, timeout=10.0)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")  # a transition written is on disk before state.json
    return con


def _meta(con: sqlite3.Connection, key: str) -> str | None:
    row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


class AlertHistory:
    """The writer (the running service): ``history.sqlite`` in ``folder``, opened on first use."""

    def __init__(self, folder: str | Path, *, keep_days: float = 400.0) -> None:
        self.folder = Path(folder)
        self.path = self.folder / HISTORY_FILE
        self.keep_s = keep_days * 86400.0
        self._con: sqlite3.Connection | None = None
        self._pruned = -math.inf
        self._alive = -math.inf
        self.dropped = 0  # transitions dropped (MAX_PENDING exceeded while the file could not be written)
        self._pending: list[Transition] = []  # not yet written (a failed write)

    def _open(self, now: float) -> sqlite3.Connection:
        if self._con is not None:
            return self._con
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{self.folder}: cannot create the alerts folder: {exc.strerror or exc}") from None
        try:
            con = _connect(self.path, readonly=False)
            with con:
                con.executescript(_SCHEMA)
                version = _meta(con, "version")
                if version is None:
                    con.execute("INSERT INTO meta VALUES ('version', ?), ('created', ?)", (HISTORY_VERSION, repr(now)))
                elif version != str(HISTORY_VERSION):
                    con.close()
                    raise UserError(f"{self.path}: alert history version {version}, expected {HISTORY_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"{self.path}: cannot open the alert history: {exc}") from None
        self._con = con
        return con

    def adopt(self, firing: Sequence[Tracked], now: float) -> None:
        """At start, before the first evaluation: the engine's restored firing alerts are in the
        history (a history created now adopts the alerts already firing)."""
        con = self._open(now)
        try:
            with con:
                for t in firing:
                    a = t.alert()
                    self._insert(con, "fired", a.fingerprint, t.labels, t.annotations, t.since, None, t.fired_at or now)
        except sqlite3.Error as exc:
            raise UserError(f"{self.path}: cannot write the alert history: {exc}") from None

    def mark_lost(self, firing: Sequence[Tracked], now: float) -> int:
        """After the first evaluation (its transitions recorded): an episode the history has
        firing that the engine does not (its state was set aside, or older than the history) is
        recorded ``lost``. Should the engine fire it again with the same start and resolve it,
        the resolution supersedes the loss (:func:`read_period`). Returns the episodes marked."""
        con = self._open(now)
        known = {(t.alert().fingerprint, t.since) for t in firing}
        n = 0
        try:
            with con:
                rows = con.execute(
                    "SELECT f.fingerprint, f.labels, f.annotations, f.starts_at FROM transitions f WHERE f.event = "
                    "'fired' AND NOT EXISTS (SELECT 1 FROM transitions x WHERE x.fingerprint = f.fingerprint AND "
                    "x.starts_at = f.starts_at AND x.event != 'fired')"
                ).fetchall()
                for fp, labels, ann, start in rows:
                    if (fp, start) in known:
                        continue
                    lab = json.loads(labels)
                    self._insert(con, "lost", fp, lab, json.loads(ann), start, None, now)
                    n += 1
                    log.warning(
                        "%s: %s %s firing since %s is not in the alert state: its end is not known",
                        self.path, lab.get("alertname"), fp, rfc3339(start),
                    )  # fmt: skip
        except sqlite3.Error as exc:
            raise UserError(f"{self.path}: cannot write the alert history: {exc}") from None
        return n

    @staticmethod
    def _insert(
        con: sqlite3.Connection,
        event: str,
        fp: str,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        starts_at: float,
        ends_at: float | None,
        at: float,
        silenced: bool = False,
        notified: bool = False,
    ) -> None:
        con.execute(
            "INSERT OR IGNORE INTO transitions (at, event, fingerprint, alertname, severity, labels, annotations, "
            "starts_at, ends_at, silenced, notified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                at,
                event,
                fp,
                labels.get("alertname", ""),
                labels.get("severity", ""),
                json.dumps(dict(labels), sort_keys=True),
                json.dumps(dict(annotations), sort_keys=True),
                starts_at,
                ends_at,
                int(silenced),
                int(notified),
            ),
        )

    def record(self, transitions: Iterable[Transition], now: float) -> int:
        """Append ``transitions`` (and any a failed write left), in one transaction; once a day,
        delete old episodes. Returns the rows written. Raises UserError (naming the file) when
        the file cannot be written: the transitions are kept and written with the next call."""
        self._pending += transitions
        if len(self._pending) > MAX_PENDING:
            lost = len(self._pending) - MAX_PENDING
            del self._pending[:lost]
            self.dropped += lost
            log.error("%s: %d alert transition(s) dropped: the history could not be written", self.path, lost)
        prune = now - self._pruned >= PRUNE_EVERY_S
        alive = now - self._alive >= ALIVE_EVERY_S
        if not self._pending and not prune and not alive:
            return 0
        try:
            con = self._open(now)
            with con:
                before = con.total_changes
                for t in self._pending:
                    a = t.alert
                    self._insert(
                        con, t.event, a.fingerprint, a.labels, a.annotations, a.starts_at, a.ends_at, t.at,
                        t.silenced, t.notified,
                    )  # fmt: skip
                written = con.total_changes - before
                if prune:
                    self._prune(con, now)
                con.execute("INSERT OR REPLACE INTO meta VALUES ('alive', ?)", (repr(now),))
        except sqlite3.Error as exc:
            raise UserError(f"{self.path}: cannot write the alert history: {exc}") from None
        self._pending.clear()
        if prune:
            self._pruned = now
        self._alive = now
        return written

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _prune(self, con: sqlite3.Connection, now: float) -> None:
        cut = now - self.keep_s
        con.execute(
            "DELETE FROM transitions WHERE (fingerprint, starts_at) IN (SELECT fingerprint, starts_at FROM "
            "transitions WHERE (event = 'resolved' AND ends_at < ?) OR (event = 'lost' AND at < ?))",
            (cut, cut),
        )
        old = _float(_meta(con, "pruned_before"))
        if old is None or cut > old:
            con.execute("INSERT OR REPLACE INTO meta VALUES ('pruned_before', ?)", (repr(cut),))

    def close(self) -> None:
        if self._con is not None:
            with contextlib.suppress(sqlite3.Error):
                self._con.close()
            self._con = None


def read_period(folder: str | Path, start: float, end: float) -> PeriodAlerts:
    """The episodes active at some time in [start, end): fired before ``end`` and not ended at or
    before ``start``, in order of start. A missing file: ``recorded`` False, no episodes."""
    path = Path(folder) / HISTORY_FILE
    if not path.is_file():
        return PeriodAlerts(path, False, None)
    try:
        con = _connect(path, readonly=True)
    except sqlite3.Error as exc:
        raise UserError(f"{path}: cannot open the alert history: {exc}") from None
    try:
        created = _float(_meta(con, "created"))
        pruned = _float(_meta(con, "pruned_before"))
        alive = _float(_meta(con, "alive"))
        fired = con.execute(
            "SELECT fingerprint, alertname, severity, labels, annotations, starts_at, at, silenced FROM transitions "
            "WHERE event = 'fired' AND starts_at < ? ORDER BY starts_at, alertname, fingerprint",
            (end,),
        ).fetchall()
        episodes = []
        for fp, name, severity, labels, ann, starts_at, at, silenced in fired:
            # the end: resolved wins over lost (an alert found again after a lost state resolves later)
            row = con.execute(
                "SELECT event, ends_at, at, notified FROM transitions WHERE fingerprint = ? AND starts_at = ? AND "
                "event != 'fired' ORDER BY event = 'lost', seq LIMIT 1",
                (fp, starts_at),
            ).fetchone()
            status: Status = "firing"
            ends_at = lost_at = None
            notified: bool | None = None
            if row is not None:
                event, ends_at, lost_at_, notified_ = row
                if event == "resolved":
                    status, notified = "resolved", bool(notified_)
                    if ends_at <= start:
                        continue
                else:
                    status, ends_at, lost_at = "state_lost", None, lost_at_
                    if lost_at_ <= start:
                        continue
            ep = Episode(
                fp, name, severity, json.loads(labels), json.loads(ann), starts_at, at, status, ends_at, lost_at,
                bool(silenced), notified,
            )  # fmt: skip
            episodes.append(ep)
    except (sqlite3.Error, ValueError) as exc:
        raise UserError(f"{path}: cannot read the alert history: {exc}") from None
    finally:
        con.close()
    froms = [x for x in (created, pruned) if x is not None]
    return PeriodAlerts(path, True, max(froms) if froms else None, alive=alive, episodes=episodes)

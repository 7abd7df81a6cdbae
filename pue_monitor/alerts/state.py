"""The alert engine's files, in one folder beside the store (``alerts.state_dir``; default
``<store.path>.alerts``, InfluxDB only: ``<influxdb.spool.path>.alerts``):

``state.json``
    written by the running service only, atomically (a temporary file, fsync, rename) whenever
    the engine's state changes: firing and pending alerts (labels, start, last sent), the PUE
    triggers and the open sensor faults. A restarted service continues from it.
``silences.json``
    written by ``pue alerts silence`` / ``unsilence`` under an exclusive lock
    (``silences.lock``, ``flock``), atomically; the service re-reads it when its modification
    time or size changes, so a new silence applies at the next evaluation without a restart.

Both are JSON with a ``version``. A state file that cannot be read is moved aside
(``state.json.bad``) and the engine starts empty, with one ERROR line naming the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pue_monitor.alerts.engine import Silence
from pue_monitor.errors import UserError

if TYPE_CHECKING:
    from pue_monitor.config.loader import LoadedSite

__all__ = ["AlertFiles", "alerts_dir"]

log = logging.getLogger("pue_monitor.alerts")

SILENCES_VERSION = 1
#: expired silences are kept this long (``pue alerts list`` shows them as expired), then dropped
KEEP_EXPIRED_S = 7 * 86400.0


def alerts_dir(site: LoadedSite, store_path: str | Path | None = None) -> Path:
    """The folder of the alert files for ``site`` (``store_path``: ``--db``, as `pue run` was given)."""
    cfg = site.config
    if cfg.alerts.state_dir is not None:
        return Path(site.resolve(cfg.alerts.state_dir))
    if store_path is not None:
        base = Path(store_path)
    elif cfg.store_enabled or cfg.influxdb is None:
        base = Path(site.resolve(cfg.store.path))
    else:
        base = Path(site.resolve(cfg.influxdb.spool.path))
    return base.with_name(base.name + ".alerts")


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AlertFiles:
    """``state.json`` and ``silences.json`` in ``folder`` (see the module doc)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.state_path = self.folder / "state.json"
        self.silences_path = self.folder / "silences.json"
        self.lock_path = self.folder / "silences.lock"
        self._silences: list[Silence] = []
        self._stamp: tuple[int, int] | None = None
        self._bad_stamp: tuple[int, int] | None = None
        self._last_state: str | None = None

    def _mkdir(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{self.folder}: cannot create the alerts folder: {exc.strerror or exc}") from None

    # ------------------------------------------------------------------ state

    def load_state(self) -> dict[str, Any] | None:
        """The saved state, or None (none yet; or unreadable: moved aside, logged)."""
        try:
            text = self.state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UserError(f"{self.state_path}: cannot read the alert state: {exc.strerror or exc}") from None
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self._set_aside(f"not valid JSON ({exc})")
            return None
        self._last_state = text
        return doc

    def _set_aside(self, why: str) -> None:
        bad = self.state_path.with_name(self.state_path.name + ".bad")
        with contextlib.suppress(OSError):
            os.replace(self.state_path, bad)
        log.error("%s: %s; moved to %s, starting without alert state", self.state_path, why, bad.name)

    def state_unusable(self, why: str) -> None:
        """The engine refused the saved state (an old version, a malformed entry)."""
        self._set_aside(why)

    def save_state(self, doc: Mapping[str, Any]) -> bool:
        """Write ``doc`` if it differs from the last written (True: written)."""
        text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
        if text == self._last_state:
            return False
        self._mkdir()
        try:
            _write_atomic(self.state_path, text)
        except OSError as exc:
            raise UserError(f"{self.state_path}: cannot write the alert state: {exc.strerror or exc}") from None
        self._last_state = text
        return True

    # --------------------------------------------------------------- silences

    def silences(self) -> list[Silence]:
        """The silences in the file, re-read only when it changed (a bad file: the previous
        list is kept, logged once per version of the file)."""
        try:
            st = self.silences_path.stat()
        except FileNotFoundError:
            self._silences, self._stamp = [], None
            return []
        except OSError:
            return self._silences
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return self._silences
        try:
            self._silences = self._read_silences()
            self._stamp = stamp
        except UserError as exc:
            if stamp != self._bad_stamp:
                log.error("%s (keeping the %d silences read before)", exc, len(self._silences))
                self._bad_stamp = stamp
        return self._silences

    def _read_silences(self) -> list[Silence]:
        try:
            text = self.silences_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise UserError(f"{self.silences_path}: cannot read: {exc.strerror or exc}") from None
        try:
            doc = json.loads(text)
            if doc.get("version") != SILENCES_VERSION:
                raise ValueError(f"version {doc.get('version')!r}, expected {SILENCES_VERSION}")
            return [Silence.from_json(s) for s in doc["silences"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{self.silences_path}: not a silences file: {exc}") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[Silence]]:
        """The silences under the exclusive lock; what the block leaves in the list is written."""
        self._mkdir()
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"{self.lock_path}: cannot open: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            items = self._read_silences()
            yield items
            doc = {"version": SILENCES_VERSION, "silences": [s.to_json() for s in items]}
            try:
                _write_atomic(self.silences_path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
            except OSError as exc:
                raise UserError(f"{self.silences_path}: cannot write: {exc.strerror or exc}") from None
        finally:
            os.close(fd)  # releases the lock

    def add_silence(
        self, matchers: Mapping[str, str], *, now: float, duration_s: float, comment: str = "", created_by: str = ""
    ) -> Silence:
        silence = Silence(uuid.uuid4().hex[:12], dict(matchers), now, now + duration_s, comment, created_by)
        with self._locked() as items:
            items[:] = [s for s in items if s.ends_at > now - KEEP_EXPIRED_S]
            items.append(silence)
        return silence

    def expire_silence(self, ident: str, *, now: float) -> Silence:
        """End the silence whose id is or starts with ``ident`` now (UserError: none, or several)."""
        with self._locked() as items:
            hits = [i for i, s in enumerate(items) if s.id.startswith(ident)] if ident else []
            if not hits:
                raise UserError(f"{self.silences_path}: no silence with id {ident!r} (see `pue alerts list`)")
            if len(hits) > 1:
                raise UserError(f"{self.silences_path}: {len(hits)} silences start with {ident!r}: give more of the id")
            old = items[hits[0]]
            ended = Silence(old.id, old.matchers, old.starts_at, min(old.ends_at, now), old.comment, old.created_by)
            items[hits[0]] = ended
        return ended

    def read_state_for_display(self) -> dict[str, Any] | None:
        """The state file as the service last wrote it (for ``pue alerts list``), never moved aside."""
        try:
            doc = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.state_path}: cannot read the alert state: {exc}") from None
        return doc if isinstance(doc, dict) else None

"""`pue grafana push`: the folder, the datasources and the dashboards into a running Grafana
through its HTTP API (grafana-client, the optional extra ``grafana``), idempotently: what is
already there as we would write it is left alone, so a second push changes nothing.

Grafana's documented endpoints used: ``GET/POST /api/folders``, ``GET /api/datasources/uid/:uid``,
``POST /api/datasources``, ``PUT /api/datasources/uid/:uid``, ``GET /api/dashboards/uid/:uid``,
``POST /api/dashboards/db`` (with ``overwrite``). The token is sent as ``Authorization: Bearer``
and never logged. Datasource secrets are not pushed (set them once in Grafana, or provision).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from pue_monitor.errors import UserError
from pue_monitor.grafana.dashboards import FOLDER, build_all
from pue_monitor.grafana.provisioning import Sources, datasources

log = logging.getLogger(__name__)

INSTALL_HINT = "install the extra: pip install 'pue-monitor[grafana]' (grafana-client)"
FOLDER_TITLE = "pue-monitor"
#: datasource keys we own; Grafana adds others (id, orgId, version, readOnly, ...) we leave alone
_DS_KEYS = ("name", "type", "access", "url", "user", "jsonData")
#: keys Grafana adds to a saved dashboard
_DASHBOARD_SERVER_KEYS = ("id", "version")


@dataclass
class PushResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _api(url: str, token: str, timeout: float) -> Any:
    try:
        from grafana_client.api import GrafanaApi
    except ImportError:
        raise UserError("grafana-client is not installed", INSTALL_HINT) from None
    return GrafanaApi.from_url(url, credential=token, timeout=timeout)


def _errors() -> tuple[type[BaseException], ...]:
    import niquests
    from grafana_client.client import GrafanaException

    return (GrafanaException, niquests.exceptions.RequestException)


def _not_found(exc: BaseException) -> bool:
    return getattr(exc, "status_code", None) == 404


def push(url: str, token: str, src: Sources, *, timeout: float = 10.0) -> PushResult:
    api = _api(url, token, timeout)
    errors = _errors()
    res = PushResult()
    step = f"folder {FOLDER}"
    try:
        try:
            api.folder.get_folder(FOLDER)
            res.unchanged.append(step)
        except errors as exc:
            if not _not_found(exc):
                raise
            api.folder.create_folder(FOLDER_TITLE, uid=FOLDER)
            res.created.append(step)
        for ds in datasources(src):
            # secrets are not pushed; ``editable`` is a provisioning-file key, not an API field
            ds = {k: v for k, v in ds.items() if k not in ("secureJsonData", "editable")}
            step = f"datasource {ds['uid']}"
            try:
                have = api.datasource.get_datasource_by_uid(ds["uid"])
            except errors as exc:
                if not _not_found(exc):
                    raise
                api.datasource.create_datasource(ds)
                res.created.append(step)
                continue
            if all((have.get(k) or None) == (ds.get(k) or None) for k in _DS_KEYS):  # Grafana: "" when unset
                res.unchanged.append(step)
            else:
                api.datasource.update_datasource_by_uid(ds["uid"], ds)
                res.updated.append(step)
        for model in build_all().values():
            step = f"dashboard {model['uid']}"
            try:
                have = api.dashboard.get_dashboard(model["uid"])
            except errors as exc:
                if not _not_found(exc):
                    raise
                have = None
            if have is not None:
                saved = {k: v for k, v in have.get("dashboard", {}).items() if k not in _DASHBOARD_SERVER_KEYS}
                if saved == model and have.get("meta", {}).get("folderUid") == FOLDER:
                    res.unchanged.append(step)
                    continue
            api.dashboard.update_dashboard(
                {"dashboard": model, "folderUid": FOLDER, "overwrite": True, "message": "pue grafana push"}
            )
            (res.created if have is None else res.updated).append(step)
    except errors as exc:
        status = getattr(exc, "status_code", None)
        text = str(getattr(exc, "message", "") or exc or type(exc).__name__).splitlines()[0]
        if status:
            why = f"HTTP {status}: {text}"
        else:  # niquests' message nests the cause several levels deep: keep the OS error's words
            cause = re.search(r"\[Errno -?\d+\] ([^'\")]+)|(Failed to resolve '[^']+')", text)
            why = f"cannot connect: {(cause.group(1) or cause.group(2)) if cause else text}"
        hint = "check the token (GRAFANA_TOKEN or --token-file)" if status in (401, 403) else "check --url"
        raise UserError(f"Grafana {_safe(url)}: {step}: {why}", hint) from None
    return res


def _safe(url: str) -> str:
    """The URL without any userinfo."""
    from yarl import URL

    return str(URL(url).with_user(None))

"""Expected PUE: the overhead power (facility - IT) a site should draw for its conditions.

The estimator (:class:`OverheadEstimator`) predicts the overhead power (facility - IT, kW) of
each interval from the features of :mod:`.data` (IT power, outdoor dry- and wet-bulb,
free-cooling fraction, time of day) in two stages, both scikit-learn:

1. physics-shaped linear model (:class:`~sklearn.linear_model.Ridge`): overhead =
   a·IT + b·IT² + IT·Σ c_j B_j(wet-bulb) + d·sin(hour) + e·cos(hour) + f, with B_j a cubic
   B-spline basis of the wet-bulb (:class:`~sklearn.preprocessing.SplineTransformer`): losses
   grow with load, cooling power is the heat (∝ IT) over a wet-bulb-dependent efficiency
   (chiller COP and free cooling), lighting follows the clock. It extrapolates sensibly in IT,
   so an IT load step is not mistaken for drift;
2. :class:`~sklearn.ensemble.HistGradientBoostingRegressor` on what stage 1 leaves, as a share
   of IT (the overhead-ratio residual), over all features.

Per interval the expected PUE is ``(IT + expected overhead) / IT``; over a period it is
``(Σ IT + Σ expected overhead) / Σ IT`` from energies (never an average of ratios).

Error statistics come from weeks held out of training (every ``holdout_every``-th week):
the estimator is fitted without them, scored on them, then refitted on everything.

Persisted form: a directory holding

- ``model.json``: format version, training window and sample count, features, site settings
  the features need (UTC offset, altitude, economiser), library versions, error statistics
  (MAE, 95th percentile of the absolute error, residual mean and standard deviation, in PUE
  points) and the SHA-256 of the estimator file;
- ``estimator.pkl``: the fitted :class:`OverheadEstimator`, pickled (skops is not a dependency). A pickle is
  only as portable as the library that wrote it, so :func:`load` refuses, in one line that says
  "retrain", a model written by another scikit-learn version or whose estimator file does not
  match the hash in ``model.json``. Load only models this installation wrote: unpickling runs
  code.

Cold start: a directory without ``model.json`` is "no model yet" (:func:`load` returns None).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.preprocessing import SplineTransformer

from pue_monitor import __version__
from pue_monitor.config.models import CoolingConfig
from pue_monitor.errors import UserError
from pue_monitor.models.data import FEATURES, Array, Intervals, default_cooling, features

FORMAT = "pue-monitor expected-pue model"
FORMAT_VERSION = 1
MODEL_JSON = "model.json"
ESTIMATOR_FILE = "estimator.pkl"
WEEK_S = 7 * 86400.0
#: estimator settings (fixed, so a model is reproducible from its data)
ESTIMATOR_PARAMS: dict[str, Any] = {
    "max_iter": 300,
    "learning_rate": 0.1,
    "max_leaf_nodes": 31,
    "early_stopping": False,
    "random_state": 0,
}
NO_MODEL = "no model yet"


class ModelFileError(UserError):
    """A model directory that cannot be used (names the file; says to retrain)."""


class OverheadEstimator:
    """Two-stage overhead-power estimator (see the module doc); columns are :data:`FEATURES`."""

    def __init__(self) -> None:
        self.spline = SplineTransformer(n_knots=10, degree=3, extrapolation="linear")
        self.linear = Ridge(alpha=1e-6)
        self.trees = HistGradientBoostingRegressor(**ESTIMATOR_PARAMS)

    def _design(self, x: Array) -> Array:
        it = np.nan_to_num(x[:, 0:1], nan=0.0)  # a missing IT value: NaN out (overhead_ratio), not an error
        basis = np.asarray(self.spline.transform(np.nan_to_num(x[:, 2:3], nan=float(self._wb_fill))), dtype=float)
        out: Array = np.column_stack([it, it * it / 1000.0, it * basis, x[:, 4:6]])
        return out

    def fit(self, x: Array, overhead_kw: Array) -> OverheadEstimator:
        wb = x[:, 2:3]
        self._wb_fill = float(np.nanmedian(wb))
        self.spline.fit(np.nan_to_num(wb, nan=self._wb_fill))
        d = self._design(x)
        self.linear.fit(d, overhead_kw)
        self.trees.fit(x, (overhead_kw - self.linear.predict(d)) / x[:, 0])
        return self

    def predict(self, x: Array) -> Array:
        """Expected overhead power, kW."""
        out: Array = np.asarray(self.linear.predict(self._design(x)) + x[:, 0] * self.trees.predict(x), dtype=float)
        return out


@dataclass(frozen=True)
class ErrorStats:
    """Error of the expected interval PUE on held-out data, PUE points."""

    mae: float
    p95_abs: float
    residual_mean: float
    residual_std: float
    samples: int


@dataclass
class ExpectedPue:
    """A fitted expected-PUE model with its metadata."""

    estimator: OverheadEstimator
    errors: ErrorStats
    training_start: float
    training_end: float
    samples: int
    cooling: CoolingConfig = field(default_factory=default_cooling)
    utc_offset_s: float = 0.0
    created: float = 0.0

    # ------------------------------------------------------------------ scoring

    def _x(self, iv: Intervals) -> Array:
        return features(iv, cooling=self.cooling, utc_offset_s=self.utc_offset_s, altitude_m=self.cooling.altitude_m)

    def overhead_ratio(self, iv: Intervals) -> Array:
        """Expected (facility - IT) / IT per interval."""
        x = self._x(iv)
        with np.errstate(divide="ignore", invalid="ignore"):
            out: Array = np.where(x[:, 0] > 0, self.estimator.predict(x) / x[:, 0], np.nan)
        return out

    def expected_overhead_kwh(self, iv: Intervals) -> Array:
        out: Array = self.overhead_ratio(iv) * iv.it_kwh
        return out

    def expected_pue(self, iv: Intervals) -> Array:
        """Expected PUE per interval."""
        out: Array = 1.0 + self.overhead_ratio(iv)
        return out

    def residual(self, iv: Intervals) -> Array:
        """Actual minus expected interval PUE (PUE points)."""
        out: Array = iv.pue - self.expected_pue(iv)
        return out

    def period_expected_pue(self, iv: Intervals) -> float:
        """Expected PUE over all rows of ``iv``, from energies."""
        it = float(np.sum(iv.it_kwh))
        return (it + float(np.sum(self.expected_overhead_kwh(iv)))) / it

    # --------------------------------------------------------------- persistence

    def metadata(self, estimator_sha256: str) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": self.created,
            "target": "overhead power (facility - IT), kW, per interval",
            "features": list(FEATURES),
            "training": {"start": self.training_start, "end": self.training_end, "samples": self.samples},
            "site": {
                "utc_offset_s": self.utc_offset_s,
                "altitude_m": self.cooling.altitude_m,
                "economiser": self.cooling.economisers[0].model_dump(mode="json"),
            },
            "errors": {
                "mae": self.errors.mae,
                "p95_abs": self.errors.p95_abs,
                "residual_mean": self.errors.residual_mean,
                "residual_std": self.errors.residual_std,
                "samples": self.errors.samples,
                "on": "held-out weeks, PUE points",
            },
            "estimator": {
                "file": ESTIMATOR_FILE,
                "class": "pue_monitor.models.baseline.OverheadEstimator",
                "stages": [
                    "sklearn.preprocessing.SplineTransformer(n_knots=10, degree=3) on wet-bulb",
                    "sklearn.linear_model.Ridge on IT, IT², IT x spline(wet-bulb), hour",
                    "sklearn.ensemble.HistGradientBoostingRegressor on the overhead-ratio residual",
                ],
                "params": ESTIMATOR_PARAMS,
                "sha256": estimator_sha256,
                "serialisation": "pickle",
            },
            "versions": {
                "pue-monitor": __version__,
                "scikit-learn": sklearn.__version__,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` and ``estimator.pkl`` into ``directory`` (created); returns it."""
        d = Path(directory)
        try:
            d.mkdir(parents=True, exist_ok=True)
            blob = pickle.dumps(self.estimator, protocol=pickle.HIGHEST_PROTOCOL)
            (d / ESTIMATOR_FILE).write_bytes(blob)
            meta = self.metadata(hashlib.sha256(blob).hexdigest())
            tmp = d / (MODEL_JSON + ".tmp")
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
            tmp.replace(d / MODEL_JSON)  # model.json last: a half-written model is "no model yet"
        except OSError as exc:
            raise ModelFileError(f"{d}: cannot write the model ({exc.strerror or exc})") from None
        return d


def _stats(err: Array) -> ErrorStats:
    a = np.abs(err)
    return ErrorStats(
        mae=float(np.mean(a)),
        p95_abs=float(np.percentile(a, 95)),
        residual_mean=float(np.mean(err)),
        residual_std=float(np.std(err)),
        samples=int(err.size),
    )


def fit(
    iv: Intervals,
    *,
    cooling: CoolingConfig | None = None,
    utc_offset_s: float = 0.0,
    holdout_every: int = 5,
) -> ExpectedPue:
    """Fit on ``iv`` (rows without positive IT energy or finite facility energy are dropped).

    Error statistics: fitted without every ``holdout_every``-th week, scored on those weeks,
    then refitted on all rows. Raises :class:`ValueError` with fewer than two weeks of rows."""
    cooling = cooling or default_cooling()
    ok = np.isfinite(iv.it_kwh) & np.isfinite(iv.facility_kwh) & (iv.it_kwh > 0) & (iv.end > iv.start)
    iv = iv.select(ok)
    if len(iv) == 0 or iv.end.max() - iv.start.min() < 2 * WEEK_S:
        raise ValueError("need at least two weeks of intervals with IT energy to train a model")
    x = features(iv, cooling=cooling, utc_offset_s=utc_offset_s, altitude_m=cooling.altitude_m)
    y = iv.overhead_kwh / iv.hours
    week = ((iv.start - iv.start.min()) // WEEK_S).astype(np.int64)
    held = week % holdout_every == holdout_every - 1
    if not held.any() or held.all():
        held = week == week.max()
    est = OverheadEstimator().fit(x[~held], y[~held])
    err = iv.pue[held] - (1.0 + est.predict(x[held]) / x[held, 0])
    stats = _stats(err)
    est = OverheadEstimator().fit(x, y)
    return ExpectedPue(
        estimator=est,
        errors=stats,
        training_start=float(iv.start.min()),
        training_end=float(iv.end.max()),
        samples=len(iv),
        cooling=cooling,
        utc_offset_s=utc_offset_s,
        created=time.time(),
    )


def _bad(path: Path, why: str) -> ModelFileError:
    return ModelFileError(f"{path}: {why}", "retrain it (pue model train)")


def load(directory: str | Path) -> ExpectedPue | None:
    """The model in ``directory``; None when there is none yet (no ``model.json``).

    Raises :class:`ModelFileError` (one line naming the file, saying "retrain") for a file that
    is not a model, another format version, another scikit-learn version, or an estimator file
    that does not match its recorded SHA-256."""
    d = Path(directory)
    mj = d / MODEL_JSON
    if not mj.is_file():
        return None
    try:
        meta = json.loads(mj.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(mj, f"not a readable model file ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(mj, f'not a pue-monitor model (no "format": "{FORMAT}")')
    if meta.get("format_version") != FORMAT_VERSION:
        raise _bad(mj, f"format version {meta.get('format_version')!r}, this pue-monitor reads {FORMAT_VERSION}")
    try:
        written = meta["versions"]["scikit-learn"]
        est_meta = meta["estimator"]
        site = meta["site"]
        errors = meta["errors"]
        training = meta["training"]
        if written != sklearn.__version__:
            raise _bad(mj, f"written by scikit-learn {written}, this is scikit-learn {sklearn.__version__}")
        ef = d / str(est_meta["file"])
        try:
            blob = ef.read_bytes()
        except OSError as exc:
            raise _bad(ef, f"cannot read the estimator ({exc.strerror or exc})") from None
        if hashlib.sha256(blob).hexdigest() != est_meta["sha256"]:
            raise _bad(ef, f"does not match the SHA-256 recorded in {MODEL_JSON} (changed after training)")
        try:
            estimator = pickle.loads(blob)  # hash-checked; written by this installation
        except (pickle.UnpicklingError, AttributeError, ImportError, EOFError, IndexError) as exc:
            raise _bad(ef, f"cannot be unpickled ({type(exc).__name__}: {exc})") from None
        if not isinstance(estimator, OverheadEstimator):
            raise _bad(ef, f"holds a {type(estimator).__name__}, not an OverheadEstimator")
        cooling = CoolingConfig(altitude_m=float(site["altitude_m"]), economisers=[site["economiser"]])
        return ExpectedPue(
            estimator=estimator,
            errors=ErrorStats(
                mae=float(errors["mae"]),
                p95_abs=float(errors["p95_abs"]),
                residual_mean=float(errors["residual_mean"]),
                residual_std=float(errors["residual_std"]),
                samples=int(errors["samples"]),
            ),
            training_start=float(training["start"]),
            training_end=float(training["end"]),
            samples=int(training["samples"]),
            cooling=cooling,
            utc_offset_s=float(site["utc_offset_s"]),
            created=float(meta.get("created", 0.0)),
        )
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(mj, f"missing or invalid field ({type(exc).__name__}: {exc})") from None


def describe(directory: str | Path) -> str:
    """One line on the model in ``directory``: "no model yet (...)" at cold start, else its
    training window, sample count and held-out error (raises :class:`ModelFileError` as :func:`load`)."""
    m = load(directory)
    if m is None:
        return f"{NO_MODEL} in {directory} (threshold rules only until one is trained)"
    days = (m.training_end - m.training_start) / 86400.0
    start = time.strftime("%Y-%m-%d", time.gmtime(m.training_start))
    end = time.strftime("%Y-%m-%d", time.gmtime(m.training_end))
    return (
        f"expected-PUE model: trained on {start}..{end} ({days:.0f} days, {m.samples} intervals); "
        f"held-out MAE {m.errors.mae:.5f}, p95 {m.errors.p95_abs:.5f}, residual std {m.errors.residual_std:.5f} PUE"
    )

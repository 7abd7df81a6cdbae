"""Expected-PUE model and drift detection (issue 10, scopes 1-2).

Lower layer: imports config, freecooling and the simulator (evaluation only); of the sinks only
the Output interface (sinks/base.py) and the store reader (sinks/sqlite.py, :mod:`.watch`); never
the service or cli.

- :mod:`.data`: :class:`~.data.Intervals`, the training/scoring arrays (per-interval energies
  and outdoor weather) and the features built from them;
- :mod:`.baseline`: :class:`~.baseline.ExpectedPue`, the learned overhead (facility - IT)
  power, its persisted form (a directory with ``model.json``) and the "no model yet" state;
- :mod:`.drift`: CUSUM on the residual PUE, onset, size and projected threshold crossings;
- :mod:`.watch`: the model in the running service: hourly scoring, scheduled retraining in a
  worker thread, the state said plainly (none/training/ready/stale/failed), its Prometheus gauges;
- :mod:`.simdata`: a simulated year of 15-minute intervals straight from the simulator's
  physics, with faults, for evaluation and tests.
"""

"""Expected-PUE model and drift detection (issue 10, scopes 1-2).

Lower layer: imports config, freecooling and the simulator (evaluation only), never
pipeline outputs, sinks, service or cli.

- :mod:`.data`: :class:`~.data.Intervals`, the training/scoring arrays (per-interval energies
  and outdoor weather) and the features built from them;
- :mod:`.baseline`: :class:`~.baseline.ExpectedPue`, the learned overhead (facility - IT)
  power, its persisted form (a directory with ``model.json``) and the "no model yet" state;
- :mod:`.drift`: CUSUM on the residual PUE, onset, size and projected threshold crossings;
- :mod:`.simdata`: a simulated year of 15-minute intervals straight from the simulator's
  physics, with faults, for evaluation and tests.
"""

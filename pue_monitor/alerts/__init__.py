"""Alerts: the :class:`~pue_monitor.alerts.model.Alert` value, the engine that decides when an
alert fires, repeats and resolves (:mod:`~pue_monitor.alerts.engine`, pure), its files
(:mod:`~pue_monitor.alerts.state`: state and silences), the service output that runs it
(:mod:`~pue_monitor.alerts.output`), notifiers that deliver alerts (Alertmanager, signed
webhook, e-mail, console) and the Prometheus rule file generator.

Layering: this package uses config, pipeline, models and the outputs interface
(``sinks/base.py``); nothing else of sinks, and never service or cli.
"""

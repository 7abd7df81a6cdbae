"""Alerts: the :class:`~pue_monitor.alerts.model.Alert` value, notifiers that deliver it
(Alertmanager, signed webhook, e-mail, console) and the Prometheus rule file generator.

Layering: this package uses config and nothing above it (no sinks, service or cli).
"""

"""Grafana dashboards as code (grafana-foundation-sdk), their provisioning files and the push.

- :mod:`.dashboards`: ``build_all()``, every dashboard's JSON model (committed under ``json/``);
- :mod:`.metrics`: the Prometheus metric names the dashboards query (one place);
- :mod:`.influxql`: the InfluxQL query (the SDK has no InfluxDB query builder);
- :mod:`.provisioning`: datasources and a dashboard provider for Grafana's file provisioning;
- :mod:`.push`: the folder, datasources and dashboards through Grafana's HTTP API (grafana-client).
"""

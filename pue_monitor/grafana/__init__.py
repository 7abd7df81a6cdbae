"""Grafana dashboards as code (dashboards.py), and the proof that their queries read the
data pue-monitor writes (queries.py)."""

"""Where results go: the embedded SQLite store and the Prometheus endpoint."""

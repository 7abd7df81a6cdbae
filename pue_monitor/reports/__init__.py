"""Monthly and annual PUE reports for regulators: figures recomputed from the stored readings
(``compute``), one typed document (``model.ReportData``), rendered to JSON, CSV and PDF."""

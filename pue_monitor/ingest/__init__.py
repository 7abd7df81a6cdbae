"""Backfill from building-management exports: `pue ingest-csv` (see :mod:`.command`)."""

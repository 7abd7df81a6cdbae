"""pue-monitor: live data-centre energy and PUE measurement (ISO/IEC 30134-2)."""

__version__ = "0.1.0"

"""Free-cooling potential: psychrometrics, economiser availability, EPW weather files.

Lower layer than the sinks and the CLI: imports config only.
"""

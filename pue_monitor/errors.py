"""The whole exception hierarchy of pue-monitor, in one place.

Library exceptions (pymodbus, sqlite, ...) are mapped onto these at the boundary
where they are caught, so the runner decides retry/report from our types only.
"""

from __future__ import annotations


class PueError(Exception):
    """Base class of every error raised by pue-monitor."""


class ConfigError(PueError):
    """Configuration is invalid; fatal at start-up. The message names file, path and field."""


class DeviceError(PueError):
    """A device could not be read."""

    kind = "device"


class TransientDeviceError(DeviceError):
    """Timeout, refused or dropped connection, busy device: retried with backoff."""

    kind = "transient"


class DeviceTimeout(TransientDeviceError):
    """The device did not answer within its timeout."""

    kind = "timeout"


class DeviceUnreachable(TransientDeviceError):
    """The connection could not be opened or was lost."""

    kind = "connection"


class PermanentDeviceError(DeviceError):
    """The device answered with an error that a retry will not fix (illegal address, auth)."""

    kind = "protocol"


class DecodeError(DeviceError):
    """The device answered, but the payload does not decode as the profile says."""

    kind = "decode"


class SinkError(PueError):
    """A sink (store, database) failed."""

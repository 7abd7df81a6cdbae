"""The whole exception hierarchy of pue-monitor, in one place.

Library exceptions (pymodbus, sqlite, ...) are mapped onto these at the boundary
where they are caught, so the runner decides retry/report from our types only.
"""

from __future__ import annotations


class PueError(Exception):
    """Base class of every error raised by pue-monitor."""


class UserError(PueError):
    """A failure the user can fix: a path, port, permission or file that is not what it should be.

    The message names the file, port or config field; ``hint`` says what to do. The ``pue``
    command prints it as one line (``pue COMMAND: MESSAGE; HINT``), without a traceback unless
    ``-v``, and exits with ``exit_code`` (1, a runtime failure; 2 for configuration errors).
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UsageError(UserError):
    """Arguments that cannot work together (found after parsing): exit status 2."""

    exit_code = 2


class ConfigError(UserError):
    """Configuration is invalid; fatal at start-up. The message names file, path and field."""

    exit_code = 2


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

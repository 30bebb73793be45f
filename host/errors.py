"""Errors a user can act on: printed as one line that says what to do."""


class UserError(Exception):
    exit_code = 1


class PortError(UserError):
    """The serial port is missing, busy or not ours."""


class DeviceError(UserError):
    """The board answered, but not as our firmware does."""

"""Open a serial port the way every host command needs it, with errors a user can act on.

A port is opened exclusively: two programs reading one board would each get half
of the frames, so the second one is told the port is busy instead.
"""

import errno
import os
import time

import serial

from host.errors import PortError

DEFAULT_BAUD = 115200
# A write that waits longer than this means nothing takes the bytes (a device that streams but never
# reads, a port another program holds stopped): at 115200 baud a command of a few hundred bytes goes in
# ~30 ms and the board's 260-byte RX buffer drains in ~25 ms, so a slow-but-working board is far below it.
WRITE_TIMEOUT_S = 3.0
BUSY_GRACE_S = 1.0  # a port found busy is tried again this long: the program that had it may be closing it


def open_port(port, baud=DEFAULT_BAUD, timeout=0.05):
    """An open, exclusive serial.Serial on `port`, or a PortError that says what to do.

    Its writes wait at most WRITE_TIMEOUT_S (serial.SerialTimeoutException, see write()): without a
    write timeout a port that never takes data blocks the host forever."""
    if not port:
        raise PortError("no port given: pass --port PORT (see `host ports`)")
    if not port.startswith(("socket://", "rfc2217://", "loop://")) and not os.path.exists(port):
        raise PortError(f"no serial port at {port}: run `host ports` to list the ports on this machine")
    deadline = time.monotonic() + BUSY_GRACE_S
    while True:
        try:
            ser = serial.serial_for_url(port, baudrate=baud, timeout=timeout, write_timeout=WRITE_TIMEOUT_S,
                                         exclusive=True, do_not_open=True)
            ser.open()
            return ser
        except (serial.SerialException, OSError) as e:
            error = _explain(port, e)
        if "is busy" not in str(error) or time.monotonic() > deadline:
            raise error
        time.sleep(0.05)  # a program that is letting go of it (a closing host command, a board restarting)


def write(ser, port, data):
    """Write all of `data` to an open port, or a one-line PortError when the port stops taking bytes.

    No tcdrain (serial.flush()) after it: that waits for the line to drain with no timeout at all, and
    the kernel sends what was written anyway."""
    try:
        ser.write(data)
    except serial.SerialTimeoutException:
        raise PortError(f"{port} does not take data (a write waited {WRITE_TIMEOUT_S:g} s): is it the robot's "
                        f"USB port (see `host ports`)? is something else holding it?") from None


def _explain(port, e):
    text = str(e)
    code = getattr(e, "errno", None)
    if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY) or "exclusively lock" in text or "busy" in text.lower():
        return PortError(f"port {port} is busy: another program (host monitor/collect, mpremote, a terminal) has it open; close it first")
    if code == errno.EACCES or "Permission denied" in text:
        return PortError(f"no permission to open {port}: add yourself to the 'dialout' group (sudo usermod -aG dialout $USER) and log in again")
    if code in (errno.ENOENT, errno.ENXIO, errno.ENODEV) or "No such file" in text:
        return PortError(f"no serial port at {port}: run `host ports` to list the ports on this machine")
    if code in (errno.ENOTTY, errno.EISDIR) or "Inappropriate ioctl" in text or "Is a directory" in text:
        return PortError(f"{port} is not a serial port: run `host ports` to list the ports on this machine")
    return PortError(f"cannot open {port}: {text}")

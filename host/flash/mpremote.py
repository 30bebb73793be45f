"""Drive the real mpremote (as a subprocess, exactly what a user would type).

mpremote's failures are turned into one-line errors that say what to do.
"""

import ast
import subprocess
import sys

from host.errors import DeviceError, PortError


def mpremote(port, *actions, timeout=120, echo=False):
    """Run `mpremote connect PORT <actions...>` and return its stdout."""
    cmd = [sys.executable, "-m", "mpremote", "connect", port, *actions]
    try:
        proc = subprocess.run(cmd, capture_output=not echo, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"mpremote got no answer from {port} within {timeout} s: reset the board and try again")
    if proc.returncode != 0:
        raise _explain(port, (proc.stderr or "") + (proc.stdout or ""))
    return proc.stdout or ""


def _explain(port, output):
    text = output.strip()
    if "failed to access" in text or "in use by another program" in text:
        return PortError(f"port {port} is busy or gone: close other programs using it (host monitor, mpremote, a terminal) and try again")
    if "could not enter raw repl" in text or "timeout waiting" in text:
        return DeviceError(
            f"no MicroPython REPL answered on {port}: is MicroPython installed? "
            f"Write it with `host flash --micropython FIRMWARE.bin --port {port}`"
        )
    last = text.splitlines()[-1] if text else "no output"
    return DeviceError(f"mpremote failed on {port}: {last}")


def board_info(port):
    """(implementation name, version tuple, mpy field, machine) of the board at `port`."""
    code = (
        "import sys,os\n"
        "print(repr((sys.implementation.name, tuple(sys.implementation.version[:3]), "
        "getattr(sys.implementation, '_mpy', 0), os.uname().machine)))"
    )
    out = mpremote(port, "exec", code, timeout=30)
    try:
        name, version, mpy, machine = ast.literal_eval(out.strip().splitlines()[-1])
    except (ValueError, SyntaxError, IndexError):
        raise DeviceError(f"the board on {port} answered the REPL oddly ({out.strip()[:80]!r}): is it running MicroPython?")
    return name, tuple(version), mpy, machine

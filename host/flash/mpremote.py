"""Drive the real mpremote (as a subprocess, exactly what a user would type).

mpremote's failures are turned into one-line errors that say what to do.
"""

import ast
import subprocess
import sys
import threading

from host.errors import DeviceError, PortError


def mpremote(port, *actions, timeout=120, on_line=None):
    """Run `mpremote connect PORT <actions...>` and return its stdout (each line also to on_line)."""
    cmd = [sys.executable, "-m", "mpremote", "connect", port, *actions]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if on_line:
                on_line(line.rstrip("\n"))
        err = proc.stderr.read()
        proc.wait()
    finally:
        timer.cancel()
    out = "".join(lines)
    if proc.returncode == -9:
        raise DeviceError(
            f"no MicroPython REPL answered on {port} within {timeout} s: reset the board; if MicroPython is not "
            f"installed, write it with `host flash --micropython FIRMWARE.bin --port {port}`"
        )
    if proc.returncode != 0:
        raise _explain(port, err + out)
    return out


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
    """(implementation name, version tuple, mpy field, machine, whether it has the `deflate` module) of the board
    at `port`."""
    code = (
        "import sys,os\n"
        "try:\n import deflate\n z=1\nexcept ImportError:\n z=0\n"
        "print(repr((sys.implementation.name, tuple(sys.implementation.version[:3]), "
        "getattr(sys.implementation, '_mpy', 0), os.uname().machine, z)))"
    )
    out = mpremote(port, "exec", code, timeout=15)
    try:
        name, version, mpy, machine, deflate = ast.literal_eval(out.strip().splitlines()[-1])
    except (ValueError, SyntaxError, IndexError, TypeError):
        raise DeviceError(f"the board on {port} answered the REPL oddly ({out.strip()[:80]!r}): is it running MicroPython?")
    return name, tuple(version), mpy, machine, bool(deflate)

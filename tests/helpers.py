"""Small helpers more than one test file uses (fixtures live in conftest.py)."""
import subprocess
import sys


def mpremote(port, *args, timeout=60):
    """Stdout of `mpremote connect PORT ARGS...`; fails the test with its output if it exits non-zero."""
    proc = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, *args],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout

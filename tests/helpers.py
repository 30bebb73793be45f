"""Small helpers more than one test file uses (fixtures live in conftest.py)."""
import contextlib
import os
import subprocess
import sys
import threading
import time
import tty


def mpremote(port, *args, timeout=60):
    """Stdout of `mpremote connect PORT ARGS...`; fails the test with its output if it exits non-zero."""
    proc = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, *args],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


@contextlib.contextmanager
def junk_device():
    """A port whose device streams binary junk (no REPL, no frames) and never reads what the host writes:
    yields (its fd, its path). Raw: an echo of the junk would fill the buffer the host writes into."""
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def chatter():
        while not stop.is_set():
            try:
                os.write(master, bytes(range(0x80, 0xC0)))
            except OSError:
                return
            time.sleep(0.01)

    t = threading.Thread(target=chatter, daemon=True)
    t.start()
    try:
        yield slave, os.ttyname(slave)
    finally:
        stop.set()
        t.join()
        os.close(master)
        os.close(slave)


def expect(ser, pattern, timeout=5):
    """Read until `pattern` (bytes) has arrived; return everything through it (what came after it in
    the same read is kept for the next expect)."""
    data = expect_maybe(ser, pattern, timeout)
    assert pattern in data, f"no {pattern!r} in {data[-800:]!r}"
    return data


def expect_maybe(ser, pattern, timeout):
    """What arrives until `pattern` (through it) or `timeout` s."""
    data, end = getattr(ser, "rest", b""), time.monotonic() + timeout
    while pattern not in data and time.monotonic() < end:
        data += ser.read(ser.in_waiting or 1)
    cut = data.index(pattern) + len(pattern) if pattern in data else len(data)
    ser.rest = data[cut:]
    return data[:cut]

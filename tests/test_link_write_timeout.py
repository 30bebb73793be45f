"""A port that streams bytes but never takes any: the host gives up with one line instead of blocking
forever in serial.write (issue 11)."""

import os
import subprocess
import sys
import time

import pytest

from tests.helpers import junk_device

HOST = [sys.executable, "-m", "host"]


def fill(fd):
    """Write into `fd` until the kernel takes no more: the pty's other end never reads, so from here on
    every write to this side waits. The kernel moves bytes on to the other end's line discipline a while
    after a write, so a full buffer is one that stays full after a pause."""
    os.set_blocking(fd, False)
    total, idle = 0, 0
    while idle < 3:
        took = 0
        try:
            while True:
                took += os.write(fd, b"\0" * 1024)
        except BlockingIOError:
            pass
        total += took
        idle = 0 if took else idle + 1
        time.sleep(0.05)
    os.set_blocking(fd, True)
    return total


@pytest.mark.slow
def test_monitor_gives_up_on_a_port_that_takes_no_data():
    with junk_device() as (slave, port):  # the host reads junk; nobody ever reads what the host writes
        assert fill(slave) > 0
        start = time.monotonic()
        proc = subprocess.run(HOST + ["monitor", "--port", port, "--duration", "1"], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
        took = time.monotonic() - start
    assert took < 30
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("error: ") and port in lines[0] and "does not take data" in lines[0], lines[0]
    assert "robot's USB port" in lines[0] and "something else holding it" in lines[0], lines[0]

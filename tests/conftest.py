"""Fixtures that start a virtual Gen0 (real MicroPython VM on a pty) and always tear it down.

sim       a fresh board: empty flash, like one just flashed with MicroPython
gen0      the same with the project's firmware installed (main.py streams telemetry)
make_sim  make_sim(**VirtualGen0 options) for anything else (speed, seed, baud, link, ...)

Each is function-scoped and booted (its VM is up) when the test gets it; on teardown
the VM is killed and waited for, the pty and any --link are gone.
"""

import pytest

from host.sim import VirtualGen0


@pytest.fixture
def make_sim():
    made = []

    def make(**options):
        gen0 = VirtualGen0(**options)
        made.append(gen0)
        gen0.start()
        assert gen0.wait_ready(20), f"the virtual Gen0 did not boot: {gen0.failed}"
        return gen0

    yield make
    for gen0 in made:
        gen0.stop()
        assert gen0.vm_pid is None or not _alive(gen0.vm_pid), "VM process left behind"


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@pytest.fixture
def sim(make_sim):
    return make_sim()


@pytest.fixture
def gen0(make_sim):
    return make_sim(preload=True)

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


# --- markers (registered in pyproject.toml; the fast loop is `python -m pytest -q -m "not slow"`) ---
#
# `sim` and `torch` are added here from what a test reaches, so a new test is marked without anyone
# remembering to: its own code, the test-file helpers it calls (in any tests/ module) and the code of
# every fixture it uses are scanned for the names they refer to.  A test is `sim` when it reaches a
# virtual Gen0 (these fixtures, host.sim's VM) or tests.mpvm (a MicroPython VM process), and `torch`
# when it reaches torch or host.train (or its file imports one of them at the top).  Tests that only
# start them in a child process (`host sim`, `host demo`) carry the mark by hand; `slow` is always by
# hand (measured: more than ~1.5 s alone on 2 cores).

SIM_FIXTURES = {"sim", "gen0", "make_sim"}


def _reached_modules(func, seen):
    """Modules of the objects `func` (a tests/ function) names, following tests/ functions it names."""
    code = getattr(func, "__code__", None)
    if code is None or func in seen:
        return set()
    seen.add(func)
    found, names, stack = set(), set(), [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if hasattr(k, "co_names"))
    glob = getattr(func, "__globals__", {})
    for name in names:
        obj = glob.get(name)
        if obj is None:
            continue
        mod = obj.__name__ if type(obj).__name__ == "module" else getattr(obj, "__module__", None) or ""
        found.add(mod)
        if mod.startswith("tests") and callable(obj):
            found |= _reached_modules(obj, seen)
    return found


def _kinds(item):
    kinds = set()
    if SIM_FIXTURES & set(getattr(item, "fixturenames", ())):
        kinds.add("sim")
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        funcs += [d.func for d in defs]
    module = getattr(item, "module", None)
    mods = {v.__name__ for v in vars(module).values() if type(v).__name__ == "module"} if module else set()
    seen = set()
    for f in funcs:
        mods |= _reached_modules(getattr(f, "__wrapped__", f), seen)
    if any(m.startswith(("host.sim.vm", "tests.mpvm")) for m in mods):
        kinds.add("sim")
    if any(m == "torch" or m.startswith(("torch.", "host.train")) for m in mods):
        kinds.add("torch")
    return kinds


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        for kind in sorted(_kinds(item) - {m.name for m in item.iter_markers()}):
            item.add_marker(getattr(pytest.mark, kind))

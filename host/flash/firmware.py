"""Put the Polyniod firmware (and the robot description) onto a board with mpremote.

Files are copied into a staging folder on the board and only then renamed into
place, so an interrupted flash leaves the previous firmware whole.
"""

import tempfile
import time

from host.errors import DeviceError
from host.firmware_files import firmware_files
from host.flash.mpremote import board_info, mpremote
from host.flash.mpy import compile_all
from host.link.client import Link
from host.link.port import open_port

MIN_MICROPYTHON = (1, 22, 0)
STAGING = ".flash_new"


def flash_firmware(port, robot=None, mpy=True, reset=True, say=print):
    """Install the firmware on the board at `port`; after a reset, return the running firmware's hello.

    mpy: modules compiled by mpy-cross for the board's .mpy version and CPU (host/flash/mpy.py);
    False installs the source. .mpy is the default: measured with benchmarks/bench_boot.py on the
    virtual Gen0 at an ESP32's pace, it boots ~3x sooner, leaves the largest free RAM block
    over twice as large (deploys need the blob in one piece) and takes 40% of the flash."""
    open_port(port).close()  # clear errors for missing / busy / foreign ports before mpremote runs
    name, version, mpy_field, machine = board_info(port)
    if name != "micropython":
        raise DeviceError(f"{port} runs {name}, not MicroPython: write MicroPython with `host flash --micropython FIRMWARE.bin --port {port}`")
    if version < MIN_MICROPYTHON:
        raise DeviceError(
            f"{port} runs MicroPython {'.'.join(map(str, version))}, older than {'.'.join(map(str, MIN_MICROPYTHON))}: "
            f"update it with `host flash --micropython FIRMWARE.bin --port {port}`"
        )
    say(f"board: MicroPython {'.'.join(map(str, version))} on {machine}")
    with tempfile.TemporaryDirectory() as tmp:
        files = firmware_files(robot)
        if mpy:
            files = compile_all(files, tmp, mpy_field, say=say)
        install(port, files, say)
    if not reset:
        return None
    say("resetting the board ...")
    mpremote(port, "reset", timeout=30)
    time.sleep(0.5)
    with Link(port) as link:
        hello = link.connect(timeout=5.0)
    say(f"firmware v{hello.fw} running on board {hello.board_id} (protocol v{hello.proto})")
    return hello


def install(port, files, say=print):
    """Copy into a staging folder, then rename every file into place in one exec."""
    total = sum(src.stat().st_size for src, _ in files)
    say(f"copying {len(files)} files ({total / 1024:.1f} KiB) to {port} ...")
    actions = ["exec", f"import os\ntry:\n os.mkdir('{STAGING}')\nexcept OSError:\n pass"]
    for src, name in files:
        actions += ["+", "fs", "cp", str(src), f":{STAGING}/{name}"]
    start = time.monotonic()
    sizes = {f":{STAGING}/{name}": src.stat().st_size for src, name in files}
    sent = [0, 0]

    def progress(line):  # mpremote prints `cp SRC :DEST` as each file goes
        dest = line.split()[-1] if line.startswith("cp ") else None
        if dest in sizes:
            sent[0] += 1
            sent[1] += sizes[dest]
            took = max(time.monotonic() - start, 1e-6)
            say(f"  [{sent[0]}/{len(files)}] {sent[1] / 1024:6.1f}/{total / 1024:.1f} KiB  {sent[1] / took / 1024:5.1f} KiB/s  {dest[len(STAGING) + 2:]}")

    mpremote(port, *actions, timeout=300, on_line=progress)
    names = [name for _, name in files]
    # A .py beside a .mpy of the same module would shadow it (and vice versa): remove the other one.
    stale = [n[:-3] + ".mpy" for n in names if n.endswith(".py")] + [n[:-4] + ".py" for n in names if n.endswith(".mpy")]
    commit = (
        "import os\n"
        f"for n in {names!r}:\n"
        f" os.rename('{STAGING}/'+n, n)\n"
        f"for n in {stale!r}:\n"
        " try:\n  os.remove(n)\n except OSError:\n  pass\n"
        f"os.rmdir('{STAGING}')\n"
    )
    mpremote(port, "exec", commit, timeout=60)
    took = time.monotonic() - start
    say(f"installed {len(files)} files in {took:.1f} s ({total / 1024 / max(took, 1e-6):.1f} KiB/s)")

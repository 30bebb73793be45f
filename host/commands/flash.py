"""`host flash`: put the Polyniod firmware (and the robot description) onto a board.

Files are copied with mpremote into a staging folder on the board and only then
renamed into place, so an interrupted flash leaves the previous firmware whole.
`--micropython FIRMWARE.bin` writes MicroPython itself with esptool (real ESP32s only).
"""

import subprocess
import sys
import tempfile
import time

from host.errors import DeviceError, UserError
from host.firmware_files import firmware_files
from host.flash.mpremote import board_info, mpremote
from host.flash.mpy import compile_all
from host.link.client import Link
from host.link.port import open_port
from host.sim import registry

MIN_MICROPYTHON = (1, 22, 0)
STAGING = ".flash_new"
ESP32_APP_OFFSET = "0x1000"  # where MicroPython's image starts on the original ESP32


def add_parser(sub):
    p = sub.add_parser("flash", help="copy the firmware onto a board with mpremote and start it")
    p.add_argument("--port", required=True, help="serial port of the board (see `host ports`)")
    p.add_argument("--mpy", action="store_true", help="compile modules with mpy-cross first (smaller, faster import)")
    p.add_argument("--robot", help="robot description to install as /robot.json (default hardware/gen0.json)")
    p.add_argument("--no-reset", action="store_true", help="do not reset the board after copying")
    p.add_argument("--micropython", metavar="FIRMWARE.bin", help="write MicroPython itself with esptool (real ESP32 only; erases the flash)")
    p.set_defaults(run=run)


def run(args):
    if args.micropython:
        return write_micropython(args.port, args.micropython)
    open_port(args.port).close()  # clear errors for missing / busy / foreign ports before mpremote runs
    name, version, mpy, machine = board_info(args.port)
    if name != "micropython":
        raise DeviceError(f"{args.port} runs {name}, not MicroPython: write MicroPython with `host flash --micropython FIRMWARE.bin --port {args.port}`")
    if version < MIN_MICROPYTHON:
        raise DeviceError(
            f"{args.port} runs MicroPython {'.'.join(map(str, version))}, older than {'.'.join(map(str, MIN_MICROPYTHON))}: "
            f"update it with `host flash --micropython FIRMWARE.bin --port {args.port}`"
        )
    print(f"board: MicroPython {'.'.join(map(str, version))} on {machine}")
    with tempfile.TemporaryDirectory() as tmp:
        files = firmware_files(args.robot)
        if args.mpy:
            files = compile_all(files, tmp, mpy)
        install(args.port, files)
    if args.no_reset:
        return 0
    print("resetting the board ...")
    mpremote(args.port, "reset", timeout=30)
    time.sleep(0.5)
    with Link(args.port) as link:
        hello = link.connect(timeout=5.0)
    print(f"firmware v{hello.get('fw')} running on board {hello.get('board_id')} (protocol v{hello.get('proto')})")
    return 0


def install(port, files):
    """Copy into a staging folder, then rename every file into place in one exec."""
    total = sum(src.stat().st_size for src, _ in files)
    print(f"copying {len(files)} files ({total / 1024:.1f} KiB) to {port} ...")
    actions = ["exec", f"import os\ntry:\n os.mkdir('{STAGING}')\nexcept OSError:\n pass"]
    for src, name in files:
        actions += ["+", "fs", "cp", str(src), f":{STAGING}/{name}"]
    start = time.monotonic()
    mpremote(port, *actions, timeout=300, echo=True)
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
    print(f"installed {len(files)} files in {took:.1f} s ({total / 1024 / max(took, 1e-6):.1f} KiB/s)")


def write_micropython(port, image):
    """Erase the ESP32 and write a MicroPython image with esptool (cannot work on a virtual Gen0)."""
    if registry.find(port):
        raise UserError(f"{port} is a virtual Gen0: it has MicroPython built in; use `host flash --port {port}` to install the firmware")
    open_port(port).close()
    for step in (["erase-flash"], ["write-flash", "-z", ESP32_APP_OFFSET, image]):
        cmd = [sys.executable, "-m", "esptool", "--chip", "esp32", "--port", port, "--baud", "460800", *step]
        print("$ " + " ".join(cmd[2:]))
        if subprocess.run(cmd).returncode != 0:
            raise DeviceError(
                f"esptool failed on {port}: hold the board's BOOT button while it connects, check the cable, then retry"
            )
    print(f"MicroPython written; now run `host flash --port {port}` to install the firmware")
    return 0

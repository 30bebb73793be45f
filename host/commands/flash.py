"""`host flash`: put the Polyniod firmware onto a board (mpremote), or MicroPython itself (esptool)."""

import subprocess
import sys

from host.commands.ports import add_port, board_port
from host.errors import DeviceError, UserError
from host.flash.firmware import flash_firmware
from host.link.port import open_port
from host.sim import registry

ESP32_APP_OFFSET = "0x1000"  # where MicroPython's image starts on the original ESP32


def add_parser(sub):
    p = sub.add_parser(
        "flash", help="copy the firmware onto a board with mpremote and start it",
        description="Copy the firmware onto a board with mpremote and start it. Modules go as .mpy, compiled by "
                    "mpy-cross for the board's CPU (-march=xtensawin on an ESP32): measured on the virtual Gen0 at an "
                    "ESP32's pace (benchmarks/bench_boot.py), the board then boots ~3x sooner (no compile at "
                    "boot), keeps a free RAM block over twice as large for model deploys, and the firmware takes 40% of "
                    "the flash. --py installs the source instead.")
    add_port(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--mpy", dest="mpy", action="store_true", default=True,
                     help="compile modules with mpy-cross for the board's CPU (the default: boots faster, more RAM in one piece)")
    fmt.add_argument("--py", dest="mpy", action="store_false",
                     help="install the modules as source (compiled on the board at every boot; for a board no mpy-cross here can target)")
    p.add_argument("--robot", help="robot description to install as /robot.json (default hardware/gen0.json)")
    p.add_argument("--no-reset", action="store_true", help="do not reset the board after copying")
    p.add_argument("--micropython", metavar="FIRMWARE.bin", help="write MicroPython itself with esptool (real ESP32 only; erases the flash)")
    p.set_defaults(run=run)


def run(args):
    port = board_port(args.port)
    if args.micropython:
        return write_micropython(port, args.micropython)
    flash_firmware(port, robot=args.robot, mpy=args.mpy, reset=not args.no_reset)
    return 0


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

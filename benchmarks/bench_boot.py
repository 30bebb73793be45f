"""Boot time, RAM and flash of the firmware installed as source (.py) vs compiled (.mpy).

On one virtual Gen0 (real MicroPython VM, its CPU billed at an ESP32's pace: host/sim/clock.py),
the firmware is flashed with `host flash`'s own path (host.flash.firmware.flash_firmware), once
as .py and once as .mpy (mpy-cross -march for the board's CPU: x64 here, xtensawin on an ESP32),
and for each:

- boot: the firmware's `reset` command (machine.reset(): the board's ticks restart at 0) until
  the hello frame. board_ms is the hello frame's own time stamp (the board's ticks_us when the
  firmware sent it: ROM, boot.py, main.py's imports, config, drivers, the hello's JSON); wall_s
  is the host's time from sending `reset` to having the whole hello (adds the 50 ms the firmware
  waits before resetting, and the ~3.7 KB hello's link time at 115200 baud). Best and median of
  --resets resets.
- RAM after boot: `status`'s mem_free, and the largest free block: the biggest `xfer begin`
  buffer the board can allocate (it collects first; binary search to 256 bytes, then `xfer
  abort`). Figures are the 64-bit VM's heap (SIM.md "Memory": objects take ~2x an ESP32's).
- flash: bytes of the installed files (firmware + robot.json) and 4 KiB littlefs blocks, and how
  long `host flash` took (compile, copy over the 115200-baud raw REPL, reset, hello).

The robot description is hardware/gen0.json with xfer_max_bytes raised to 1 MiB so that the
probe can ask for any size; nothing else in the boot depends on it.

Usage: python benchmarks/bench_boot.py [--resets N] [--firmware DIR] [--json] [--seed N]
"""

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import host.firmware_files  # noqa: E402
from host.firmware_files import ROBOT_FILE, firmware_files  # noqa: E402
from host.flash.firmware import flash_firmware  # noqa: E402
from host.flash.mpy import cross_version  # noqa: E402
from host.link.client import CommandError, Link  # noqa: E402
from host.sim import VirtualGen0  # noqa: E402
from polyniod_firmware import protocol as P  # noqa: E402

BLOCK = 4096  # littlefs block on an ESP32's MicroPython partition
PROBE_STEP = 256


def robot_file(tmp):
    robot = json.loads(ROBOT_FILE.read_text())
    robot["xfer_max_bytes"] = 1 << 20
    path = Path(tmp) / "robot.json"
    path.write_text(json.dumps(robot))
    return path


def footprint(flash_dir, names):
    sizes = [(flash_dir / n).stat().st_size for n in names if (flash_dir / n).exists()]
    return {"files": len(sizes), "bytes": sum(sizes), "blocks_4k": sum(-(-s // BLOCK) for s in sizes)}


class BootLink(Link):
    """A Link that notes every boot hello (a hello frame with sequence number 0: a boot's first
    frame; a hello the host asks for continues the sequence): (host monotonic s, board µs stamp)."""

    def __init__(self, port):
        super().__init__(port)
        self.boots = []
        self.cv = threading.Condition()

    def _dispatch(self, now, frame):
        super()._dispatch(now, frame)
        if frame[0] == P.T_HELLO and frame[1] == 0:
            with self.cv:
                self.boots.append((time.monotonic(), frame[2]))
                self.cv.notify_all()

    def next_boot(self, seen, timeout):
        with self.cv:
            self.cv.wait_for(lambda: len(self.boots) > seen, timeout)
            return self.boots[seen] if len(self.boots) > seen else None


def boot_once(link):
    """`reset`, then the boot's hello: (board ms of the hello's stamp, wall s to the whole hello)."""
    seen = len(link.boots)
    t0 = time.monotonic()
    try:
        link.request("reset", timeout=1.0)
    except CommandError as e:
        raise SystemExit(f"bench_boot: the board refused reset: {e}")
    boot = link.next_boot(seen, 30)
    if boot is None:
        raise SystemExit("bench_boot: no hello within 30 s of a reset")
    return boot[1] / 1000, boot[0] - t0


def largest_block(link, limit):
    """The biggest buffer `xfer begin` can allocate (after the board's gc.collect), to PROBE_STEP."""
    lo, hi = 0, limit + PROBE_STEP
    while hi - lo > PROBE_STEP:
        mid = (lo + hi) // 2 // PROBE_STEP * PROBE_STEP or PROBE_STEP
        try:
            link.request("xfer", "begin", "file:bench_probe.bin", mid, "00000000", timeout=1.0)
            lo = mid
        except CommandError as e:
            if e.code != P.E_TOO_BIG:
                raise
            hi = mid
    link.request("xfer", "abort")
    return lo


def measure(sim, fmt, robot, resets, say):
    names = [n if fmt == "py" or not n.endswith(".py") or n in ("boot.py", "main.py") else n[:-3] + ".mpy"
             for _, n in firmware_files(robot)]
    t0 = time.monotonic()
    hello = flash_firmware(sim.port, robot=robot, mpy=fmt == "mpy", say=lambda msg: None)
    flash_s = time.monotonic() - t0
    row = {"format": fmt, "flash": footprint(sim.flash_dir, names), "flash_s": round(flash_s, 1)}
    boards, walls, frees, blocks = [], [], [], []
    with BootLink(sim.port) as link:
        link.connect(timeout=5.0)
        time.sleep(1.0)  # a late answer to flash_firmware's or connect's hello is not a boot
        for _ in range(resets):
            board_ms, wall_s = boot_once(link)
            time.sleep(1.0)  # let the loop settle (the hello held it ~0.3 s)
            status = link.request_json("status", timeout=1.0)
            frees.append(status["mem_free"])
            blocks.append(largest_block(link, status["mem_free"]))
            boards.append(board_ms)
            walls.append(wall_s)
            say(f"  {fmt}: hello at {board_ms:.0f} board ms ({wall_s:.2f} s wall), mem_free {frees[-1]}, "
                f"largest block {blocks[-1]}")
    row.update({
        "board_ms": {"best": round(min(boards), 1), "median": round(statistics.median(boards), 1), "all": [round(b, 1) for b in boards]},
        "wall_s": {"best": round(min(walls), 3), "median": round(statistics.median(walls), 3)},
        "mem_free": {"median": int(statistics.median(frees)), "all": frees},
        "largest_block": {"median": int(statistics.median(blocks)), "all": blocks},
        "mpy": hello.get("mpy") if hello else None,
    })
    return row


def table(rows, env):
    out = [f"firmware {env['firmware']}",
           f"virtual Gen0: MicroPython {env['micropython']}, cpu {env['cpu']}, mpy-cross emits v{env['mpy_cross']}, "
           f"{env['resets']} resets per format",
           f"{'format':<7}{'boot board ms':>15}{'(median)':>10}{'boot wall s':>13}{'mem_free':>10}{'largest':>9}"
           f"{'flash B':>9}{'blocks':>8}{'host flash s':>14}"]
    for r in rows:
        out.append(f"{r['format']:<7}{r['board_ms']['best']:>15.0f}{r['board_ms']['median']:>10.0f}"
                   f"{r['wall_s']['median']:>13.2f}{r['mem_free']['median']:>10}{r['largest_block']['median']:>9}"
                   f"{r['flash']['bytes']:>9}{r['flash']['blocks_4k']:>8}{r['flash_s']:>14.1f}")
    out.append("boot: `reset` -> hello frame (board: the hello's ticks stamp; wall: until the whole hello is in). "
               "RAM: 64-bit VM bytes after boot (largest: biggest allocatable block). flash: installed files, 4 KiB blocks; "
               "host flash s: flash_firmware (compile, copy at 115200 baud, reset, hello).")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resets", type=int, default=5, help="resets measured per format (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--firmware", metavar="DIR", help="flash the firmware in DIR (e.g. another commit's, from git "
                                                      "archive) instead of this checkout's firmware/")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    if args.firmware:
        if not (Path(args.firmware) / "main.py").exists():
            raise SystemExit(f"bench_boot: --firmware {args.firmware}: no main.py there")
        host.firmware_files.FIRMWARE_DIR = Path(args.firmware).resolve()
    say = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    rows = []
    with tempfile.TemporaryDirectory() as tmp, VirtualGen0(seed=args.seed) as sim:
        if not sim.wait_ready(30):
            raise SystemExit(f"bench_boot: the virtual Gen0 did not boot: {sim.failed}")
        robot = robot_file(tmp)
        for fmt in ("py", "mpy"):
            say(f"flashing as .{fmt} ...")
            rows.append(measure(sim, fmt, robot, args.resets, say))
        env = {"firmware": str(host.firmware_files.FIRMWARE_DIR),
               "micropython": ".".join(map(str, sim.version)), "cpu": sim.cpu.describe(),
               "mpy_cross": "%d.%d" % cross_version(), "resets": args.resets}
    if args.json:
        print(json.dumps({"env": env, "rows": rows}, indent=1))
    else:
        print(table(rows, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`host demo`: the whole loop on a robot -- by default a virtual Gen0 started here.

Today: start the virtual Gen0 -> flash the firmware with mpremote -> run an
excitation program -> show live telemetry -> summary. Collect, train, deploy
and evaluate join this pipeline as they land.
"""

import json
import sys

from host.flash.firmware import flash_firmware
from host.link.client import Link
from host.commands.monitor import watch


def add_parser(sub):
    p = sub.add_parser("demo", help="run the main job on a virtual Gen0 (or --port for a real robot)")
    p.add_argument("--port", help="use the robot on this port instead of starting a virtual Gen0")
    p.add_argument("--plant", help="plant parameter file for the virtual Gen0 (default hardware/plant_gen0.json)")
    p.add_argument("--seed", type=int, default=0, help="virtual Gen0 unit to draw (unit-to-unit variation)")
    p.add_argument("--program", default="steps", help="excitation program to run (steps, chirp, sweep, prbs)")
    p.add_argument("--duration", type=float, default=8.0, help="seconds of excitation to watch")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(run=run)


def run(args):
    say = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    if args.port:
        return _demo(args, args.port, say)
    from host.sim import VirtualGen0

    say(f"[1/4] starting a virtual Gen0 (seed {args.seed}) ...")
    with VirtualGen0(plant=args.plant, seed=args.seed) as sim:
        sim.wait_ready(20)
        say(f"      port {sim.port} -- an empty board with MicroPython, like one fresh from esptool")
        return _demo(args, sim.port, say)


def _demo(args, port, say):
    say(f"[2/4] flashing the firmware onto {port} with mpremote ...")
    flash_firmware(port, say=lambda m: say("      " + m))
    with Link(port) as link:
        hello = link.connect()
        duration_ms = int(args.duration * 1000)
        say(f"[3/4] running the on-device program '{args.program}' for {args.duration:g} s ...")
        link.request_json("program", args.program, "seed=1", f"duration_ms={duration_ms}")
        stats = watch(link, hello, duration=args.duration, interval=0.5, quiet=args.json)
        link.request("stop")
        if stats is None:
            return 1
    summary = {
        "port": port,
        "firmware": hello.get("fw"),
        "board_id": hello.get("board_id"),
        "frames_per_s": round(stats["frames_per_s"], 1),
        "loop_hz": round(stats["loop_hz"], 1),
        "link_utilisation": round(stats["link_utilisation"] or 0, 3),
        "dropped_frames": stats["drops"],
        "crc_errors": stats["crc_errors"],
    }
    say("[4/4] done: collect, train, deploy and eval join this demo as they land")
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            say(f"      {k:<17} {v}")
    return 0

"""`host sim`: run a virtual Gen0 on a pty until Ctrl-C (or SIGTERM), then clean up."""

import signal
import sys
import threading

from host.link.port import DEFAULT_BAUD
from host.sim import faults
from host.sim.vm import HEAP_KB


def add_parser(sub):
    p = sub.add_parser("sim", help="run a virtual Gen0 (real MicroPython VM + physics) on a serial pty")
    p.add_argument("--link", metavar="PATH", help="also make PATH a symlink to the pty (a stable port name)")
    p.add_argument("--preload", action="store_true", help="install the project's firmware into the flash first")
    p.add_argument("--flash-dir", metavar="DIR", help="keep the board's flash in DIR (default: a fresh, empty one)")
    p.add_argument("--plant", metavar="FILE", help="plant parameters (default hardware/plant_gen0.json)")
    p.add_argument("--robot", metavar="FILE", help="robot description (default hardware/gen0.json)")
    p.add_argument("--seed", type=int, default=0, help="unit-to-unit variation and noise seed")
    p.add_argument("--speed", type=float, metavar="X",
                   help="virtual clock at X times real time (0 = as fast as possible); default: real time")
    p.add_argument("--cpu", choices=("esp32", "host"), default="esp32",
                   help="esp32 (default): the VM's work costs what it would on an ESP32 (~30x slower at 240 MHz); "
                        "host: the VM's own speed, for comparison")
    p.add_argument("--cpu-factor", type=float, metavar="X",
                   help="the ESP32 model's slowdown at 240 MHz (default 30, REFERENCE range 22-40; 0 = CPU time is free)")
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD, help="UART baud rate (0 = unlimited)")
    p.add_argument("--corrupt", type=float, default=0.0, metavar="F",
                   help="flip a random bit in this fraction of device->host bytes (fault tests)")
    p.add_argument("--heap-kb", type=int, default=HEAP_KB, help="ESP32 Python heap to model in KiB")
    p.add_argument("--fault", action="append", default=[], metavar="NAME[:JOINT]",
                   help="wire the robot wrong (repeatable; JOINT defaults to the first joint): " + faults.usage())
    p.set_defaults(run=run)


def run(args):
    from host.sim import VirtualGen0

    def status(msg):
        print(f"host sim: {msg}", file=sys.stderr, flush=True)

    gen0 = VirtualGen0(flash_dir=args.flash_dir, preload=args.preload, plant=args.plant, robot=args.robot,
                       seed=args.seed, speed=args.speed, baud=args.baud, link=args.link, heap_kb=args.heap_kb,
                       corrupt=args.corrupt, log=status, cpu=args.cpu, cpu_factor=args.cpu_factor, faults=args.fault)
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        gen0.start()
        print(f"virtual Gen0 on {gen0.port}" + (f" (link {gen0.link})" if gen0.link else ""), flush=True)
        clock = "real time" if args.speed is None else f"virtual clock x{args.speed:g}"
        status(f"flash {gen0.flash_dir}, seed {args.seed}, {clock}, CPU {gen0.cpu.describe()}, "
               f"{args.baud or 'unlimited'} baud; Ctrl-C to stop")
        for fault in gen0.board.faults:
            status(f"fault {faults.describe(fault)}")
        while not done.wait(0.5):
            if gen0.failed:
                status(gen0.failed)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        gen0.stop()
        signal.signal(signal.SIGTERM, previous)
    for line in stopped(gen0.counters()):
        status(line)
    return 0


def stopped(c):
    """The counters a run ends with, in words: what crossed the UART, what went wrong, what the CPU model billed."""
    clock = c["clock"]
    return [f"stopped: UART rx {c['rx_bytes']} bytes ({c['rx_dropped']} dropped), tx {c['tx_bytes']} bytes "
            f"({c['tx_lost']} lost, {c['tx_corrupted']} corrupted, {c['tx_stalls']} stalls)",
            f"board: resets {c['soft_resets']} soft, {c['hard_resets']} hard; {c['crashes']} crashes, {c['wedges']} wedges, "
            f"{c['pace_stops']} pace stops; {c['bus_ops']} bus operations",
            f"CPU {clock['cpu']} at {clock['mhz']} MHz: {clock['work_ms']} ms of VM work billed as {clock['billed_ms']} ms"]

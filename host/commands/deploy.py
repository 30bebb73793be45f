"""`host deploy MODEL --port P`: put a model onto the running robot, prove it computes what the host expects."""

import json
import sys
import time

from host.commands import baud as check_baud
from host.commands.ports import add_port, board_port
from host.deploy import check_count, deploy, physical_seconds, read_blob
from host.link.client import Link


def add_parser(sub):
    p = sub.add_parser("deploy", help="send a model to the running robot over the live link and check it")
    p.add_argument("model", metavar="MODEL", help="a models/NAME directory (with model.bin) or a model .bin file")
    add_port(p)
    p.add_argument("--baud", type=int, help="link baud rate (default: the robot description's)")
    p.add_argument("--checks", type=int, default=256, metavar="N",
                   help="random int8 input vectors for the parity spot-check (0 = none; at most 1048576)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(run=run)


def run(args):
    check_count(args.checks)  # every argument is checked before the board is touched
    check_baud(args.baud)
    blob, reference = read_blob(args.model)  # a corrupt blob never leaves the host
    say = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    port = board_port(args.port)
    with Link(port, **({"baud": args.baud} if args.baud else {})) as link:
        hello = link.connect()
        baud = args.baud or hello.baud
        say(f"deploying {reference.model_id:08x} ({reference.task}: {reference.n_in} -> {reference.n_out}, "
            f"{len(blob)} bytes) to {port}")
        progress = None if args.json else _progress(time.monotonic(), baud)
        try:
            summary = deploy(link, blob, reference, checks=args.checks, baud=baud, progress=progress)
        finally:
            if progress:
                print()  # end the progress line
    summary["port"] = port
    parity = summary["parity"]
    ok = parity is None or parity["mismatches"] == 0
    if args.json:
        print(json.dumps(dict(summary, ok=ok)))
    else:
        print(f"deployed in {summary['seconds']:.2f} s ({summary['kib_per_s']:.2f} KiB/s); the link's limit at "
              f"{baud} baud is {summary['limit_seconds']:.2f} s ({summary['link_efficiency'] * 100:.0f}% of it)")
        if parity:
            print(f"parity: {parity['vectors'] - parity['mismatches']}/{parity['vectors']} random int8 vectors "
                  f"bit for bit" + ("" if ok else f"; first mismatch {parity['first_mismatch']}"))
        drives = ", ".join(summary["drives"]) or "no joints (it runs under mtest only)"
        print(f"model {summary['model_id']} ({summary['task']}, {summary['emitter']}) is running on {port}"
              + (f", replacing {summary['previous']}" if summary["previous"] else "") + f"; it drives {drives}")
    if not ok:
        print(f"error: the board's outputs differ from the host reference on {parity['mismatches']} of "
              f"{parity['vectors']} vectors: do not use this model on it (report the firmware version)", file=sys.stderr)
        return 1
    return 0


def _progress(t0, baud):
    def show(sent, total):
        dt = max(time.monotonic() - t0, 1e-6)
        print(f"\r  {sent}/{total} bytes  {sent / 1024 / dt:6.2f} KiB/s  "
              f"{physical_seconds(sent, baud) / dt * 100:3.0f}% of the link's limit", end="", flush=True)
    return show

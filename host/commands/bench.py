"""`host bench --port P`: loop rate (achieved vs configured), busy time, per-stage times, inference time,
link load and transfer speed of the connected robot, and which CPU model its µs are (a virtual Gen0's or
the board's own)."""

import json

from host.bench import MAX_SECONDS, bench, check_seconds, table
from host.commands import baud as check_baud
from host.commands.ports import add_port, board_port
from host.deploy import read_blob
from host.link.client import Link
from host.table import print_table


def add_parser(sub):
    p = sub.add_parser("bench", help="measure the connected robot: loop rate, busy and per-stage us, inference us, "
                                     "link load, transfer speed, and the CPU model the us are in")
    add_port(p)
    p.add_argument("--baud", type=int, help="link baud rate (default: the robot description's)")
    p.add_argument("--seconds", type=float, default=2.0, metavar="S",
                   help=f"seconds of telemetry for the loop figures (at most {MAX_SECONDS:g})")
    p.add_argument("--model", metavar="DIR", help="deploy this model first (models/NAME or a .bin) and time that deploy")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    p.set_defaults(run=run)


def run(args):
    check_seconds(args.seconds)  # every argument before the port is touched
    check_baud(args.baud)
    model = read_blob(args.model) if args.model else None  # a bad model fails before the port is touched
    port = board_port(args.port)
    with Link(port, **({"baud": args.baud} if args.baud else {})) as link:
        hello = link.connect()
        baud = args.baud or hello.baud
        figures = bench(link, hello, port, baud, args.seconds, model)
    if args.json:
        print(json.dumps(figures))
    else:
        print_table(table(figures))
    return 0

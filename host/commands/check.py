"""`host check`: a guided, safe self-test of a flashed board -- link, IMU, each joint, its range, the supply."""

import json
import sys

from host.commands import add_sessions_dir
from host.commands.ports import add_port, board_port
from host.signals import with_stop_signals


def add_parser(sub):
    p = sub.add_parser(
        "check", help="self-test a flashed robot step by step (PASS/WARN/FAIL, what to fix)",
        description="Test a flashed Gen0 step by step with small, slow moves: the link, the IMU, each joint alone (which "
                    "pot follows, gain and sign, play, settling, noise), both joints' directions, each joint's usable "
                    "range (outward slowly until the pot stops following or the soft limit, backing off at once) and the "
                    "supply under load. Every step prints PASS, WARN or FAIL with what was measured and what to do. The "
                    "check is recorded as a session. Ctrl-C stops it and the joints.")
    add_port(p)
    add_sessions_dir(p, role=" for the check's recording")
    p.add_argument("--plot", metavar="FILE.png", help="write the check's moves: commanded vs measured per joint, the IMU")
    p.add_argument("--write", action="store_true",
                   help="store what was measured (limits where a joint stopped, a pot's direction, the check's verdict) "
                        "in the board's robot.json, the old one kept as robot.prev.json, and restart the board")
    p.add_argument("--json", action="store_true", help="print every step and figure as JSON on stdout")
    p.set_defaults(run=run)


def run(args):
    from host.check import check, table

    port = board_port(args.port)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else (lambda msg: print(msg, flush=True))
    result = with_stop_signals(lambda stop: check(port, args.out, stop=stop, say=say, plot=args.plot,
                                                    write=args.write))
    if args.json:
        print(json.dumps(result))
    else:
        print()
        for line in table(result):
            print(line)
        if args.plot:
            print(f"plot: {args.plot}")
    return 0 if result["verdict"] != "FAIL" else 1

"""`host collect`: run an on-device program and record every frame into a session."""

import json

from host.collect import collect
from host.commands import add_sessions_dir
from host.commands.ports import add_port, board_port
from host.errors import UserError
from host.signals import with_stop_signals


def add_parser(sub):
    p = sub.add_parser("collect", help="record a telemetry session while the board runs a program")
    add_port(p)
    p.add_argument("--duration", type=float, metavar="S",
                   help="seconds to record (default: the program's own duration; with --program idle: until Ctrl-C)")
    p.add_argument("--program", default="steps",
                   help="on-device program: steps, chirp, sweep, prbs, or idle (just record)")
    p.add_argument("--seed", type=int, help="the program's seed (steps, prbs; default: the program's own)")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="a program parameter (repeatable)")
    p.add_argument("--name", help="session name (default: from the date and time)")
    add_sessions_dir(p)
    p.add_argument("--json", action="store_true", help="print the final summary as JSON on stdout")
    p.set_defaults(run=run)


def parse_params(items):
    params = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not eq or not k or not v:
            raise UserError(f"--param {item}: give key=value, e.g. --param dwell_max_ms=500")
        params[k] = v
    return params


def run(args):
    params = parse_params(args.param)
    port = board_port(args.port)
    summary = with_stop_signals(lambda stop: collect(
        port, program=args.program, seed=args.seed, params=params, duration=args.duration,
        name=args.name, out=args.out, stop=stop))
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"session {summary['session']}: {summary['telemetry_frames']} frames in {summary['duration_s']:.1f} s "
              f"({summary['rate_hz']:.1f} Hz), {summary['drops']} dropped, {summary['crc_errors']} crc errors, "
              f"{summary['segments']} segment(s); {summary['reason']}")
    return 0

"""`host collect`: run an on-device program and record every frame into a session (a session a board)."""

import json
import sys

from host.collect import collect, collect_many
from host.commands import add_sessions_dir
from host.commands.ports import board_port
from host.errors import UserError
from host.signals import with_stop_signals


def add_parser(sub):
    p = sub.add_parser("collect", help="record a telemetry session while the board runs a program")
    p.add_argument("--port", action="append", help="serial port of the board (default: the one board `host ports` "
                   "finds); repeat it to record several boards at once, a session each")
    p.add_argument("--duration", type=float, metavar="S",
                   help="seconds to record (default: the program's own duration; with --program idle: until Ctrl-C)")
    p.add_argument("--program", default="steps",
                   help="on-device program: steps, chirp, sweep, prbs, multisine, or idle (just record)")
    p.add_argument("--seed", type=int, help="the program's seed (steps, prbs, multisine; default: the program's own)")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="a program parameter (repeatable)")
    p.add_argument("--name", help="session name (default: from the date and time; with several boards, each "
                   "session's gets _<unit id>)")
    add_sessions_dir(p)
    p.add_argument("--json", action="store_true", help="print the final summary as JSON on stdout "
                   "(with several boards, a list of them)")
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
    options = dict(program=args.program, seed=args.seed, params=params, duration=args.duration, name=args.name,
                   out=args.out)
    if args.port and len(args.port) > 1:
        return _run_many(args.port, options, args.json)
    port = board_port(args.port[0] if args.port else None)
    summary = with_stop_signals(lambda stop: collect(port, stop=stop, **options))
    print(json.dumps(summary) if args.json else _line(summary))
    return 0


def _run_many(ports, options, as_json):
    """Several boards: every board's summary (or its error, on stderr); exit 1 when one failed."""
    results = with_stop_signals(lambda stop: collect_many(ports, stop=stop, **options))
    if as_json:
        print(json.dumps(results))
    for r in results:
        if "error" in r:
            print(f"error: {r['port']}: {r['error']}", file=sys.stderr)
        elif not as_json:
            print(f"{r['port']} (unit {r['board_id']}): {_line(r)}")
    return 1 if any("error" in r for r in results) else 0


def _line(summary):
    return (f"session {summary['session']}: {summary['telemetry_frames']} frames in {summary['duration_s']:.1f} s "
            f"({summary['rate_hz']:.1f} Hz), {summary['drops']} dropped, {summary['crc_errors']} crc errors, "
            f"{summary['segments']} segment(s); {summary['reason']}")

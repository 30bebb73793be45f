"""`host sessions`: the recorded sessions, one line each (name, start, duration, frames, drops, program)."""

import json

from host.sessions import list_sessions, sessions_dir
from host.table import duration, print_table


def add_parser(sub):
    p = sub.add_parser("sessions", help="list recorded sessions")
    p.add_argument("--dir", help="sessions directory (default: $POLYNIOD_SESSIONS or ./sessions)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(run=run)


def run(args):
    rows = list_sessions(args.dir)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no sessions in {sessions_dir(args.dir)} (record one with `host collect --port PORT`)")
        return 0
    table = [("name", "start", "duration", "frames", "drops", "program", "complete")]
    for r in rows:
        if "error" in r:
            table.append((r["name"], "-", "-", "-", "-", "-", r["error"]))
            continue
        table.append((r["name"], (r["created"] or "-")[:19].replace("T", " "), duration(r["duration_s"]),
                      _figure(r["frames"]), _figure(r["drops"]), r["program"] or "-", "yes" if r["complete"] else "NO"))
    print_table(table)
    return 0


def _figure(value):
    return "-" if value is None else str(value)

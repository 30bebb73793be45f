"""`host sessions`: the recorded sessions, one line each (name, start, duration, frames, drops, program)."""

from host.commands import add_sessions_dir
from host.sessions import list_sessions, sessions_dir
from host.table import duration, print_listing


def add_parser(sub):
    p = sub.add_parser("sessions", help="list recorded sessions")
    add_sessions_dir(p, "--dir")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(run=run)


def run(args):
    print_listing(list_sessions(args.dir), args.json,
                  f"no sessions in {sessions_dir(args.dir)} (record one with `host collect --port PORT`)",
                  ("name", "start", "duration", "frames", "drops", "program", "complete"), _row)
    return 0


def _row(r):
    return (r["name"], (r["created"] or "-")[:19].replace("T", " "), duration(r["duration_s"]), _figure(r["frames"]),
            _figure(r["drops"]), r["program"] or "-", "yes" if r["complete"] else "NO")


def _figure(value):
    return "-" if value is None else str(value)

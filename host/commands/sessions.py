"""`host sessions`: the recorded sessions, one line each (name, start, duration, frames, drops, program, unit)."""

from host.commands import add_sessions_dir
from host.sessions import list_sessions, sessions_dir
from host.sessions.load import same_unit
from host.table import duration, print_listing


def add_parser(sub):
    p = sub.add_parser("sessions", help="list recorded sessions")
    add_sessions_dir(p, "--dir")
    p.add_argument("--unit", metavar="ID", help="only the sessions of this board (its unit id, the unit column)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(run=run)


def run(args):
    rows = list_sessions(args.dir)
    where = sessions_dir(args.dir)
    empty = f"no sessions in {where} (record one with `host collect --port PORT`)"
    if args.unit:
        units = sorted({r["board_id"] for r in rows if r["board_id"]})
        rows = [r for r in rows if same_unit(r["board_id"], args.unit)]
        empty = f"no sessions of unit {args.unit} in {where} (units there: {', '.join(units) or 'none'})"
    print_listing(rows, args.json, empty, ("name", "start", "duration", "frames", "drops", "program", "unit",
                                           "complete"), _row)
    return 0


def _row(r):
    return (r["name"], (r["created"] or "-")[:19].replace("T", " "), duration(r["duration_s"]), _figure(r["frames"]),
            _figure(r["drops"]), r["program"] or "-", r["board_id"] or "-", "yes" if r["complete"] else "NO")


def _figure(value):
    return "-" if value is None else str(value)

"""`host export SESSION --csv FILE`: every telemetry column as CSV, units in the column names (`shoulder_deg[deg]`)."""

import json
import sys

from host.errors import UserError
from host.files import STDOUT, atomic_file
from host.sessions import find_session, load


def add_parser(sub):
    p = sub.add_parser("export", help="write a session's telemetry columns to a CSV file")
    p.add_argument("session", metavar="SESSION", help="a session file, or a name in the sessions directory")
    p.add_argument("--csv", required=True, metavar="FILE", help="CSV file to write (a regular file is replaced whole, never half-written; a symlink is written "
                        "through to its target; a FIFO or device directly; - for standard output)")
    p.add_argument("--dir", help="sessions directory (default: $POLYNIOD_SESSIONS or ./sessions)")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(run=run)


def run(args):
    to_stdout = args.csv == STDOUT
    if to_stdout and args.json:
        raise UserError("--csv - and --json would both go to standard output: drop --json, or give --csv FILE")
    s = load(find_session(args.session, args.dir))
    write_csv(s, args.csv)
    result = {"session": s.name, "csv": args.csv, "rows": len(s), "columns": list(s.columns), "units": s.units,
              "complete": s.complete}
    if args.json:
        print(json.dumps(result, indent=2))
    else:  # with the CSV on stdout, the summary goes to stderr
        print(f"wrote {len(s)} rows x {len(s.columns)} columns to {'standard output' if to_stdout else args.csv}"
              + ("" if s.complete else " (the session is incomplete)"), file=sys.stderr if to_stdout else sys.stdout)
    return 0


def write_csv(s, path):
    """All columns, header row `name[unit]`; floats in their shortest exact form (repr), NaN as nan.
    Written as host.files.atomic_file does: a regular file via a temp file beside it, then a rename."""
    names = list(s.columns)
    header = ",".join(f"{n}[{s.units[n]}]" if s.units[n] else n for n in names)
    row = ",".join("%d" if s.columns[n].dtype.kind in "iu" else "%r" for n in names)
    columns = [s.columns[n].tolist() for n in names]
    with atomic_file(path) as f:
        f.write(header + "\n")
        f.writelines(row % values + "\n" for values in zip(*columns))

"""`host export SESSION --csv FILE`: every telemetry column as CSV, units in the column names (`shoulder_deg[deg]`)."""

import json
from pathlib import Path

from host.files import atomic_file
from host.sessions import find_session, load


def add_parser(sub):
    p = sub.add_parser("export", help="write a session's telemetry columns to a CSV file")
    p.add_argument("session", metavar="SESSION", help="a session file, or a name in the sessions directory")
    p.add_argument("--csv", required=True, metavar="FILE", help="CSV file to write (replaced whole, never half-written)")
    p.add_argument("--dir", help="sessions directory (default: $POLYNIOD_SESSIONS or ./sessions)")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(run=run)


def run(args):
    s = load(find_session(args.session, args.dir))
    out = Path(args.csv)
    write_csv(s, out)
    result = {"session": s.name, "csv": str(out), "rows": len(s), "columns": list(s.columns), "units": s.units,
              "complete": s.complete}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"wrote {len(s)} rows x {len(s.columns)} columns to {out}" + ("" if s.complete else " (the session is incomplete)"))
    return 0


def write_csv(s, path):
    """All columns, header row `name[unit]`; floats in their shortest exact form (repr), NaN as nan.
    Written to a temp file beside `path`, then renamed over it."""
    names = list(s.columns)
    header = ",".join(f"{n}[{s.units[n]}]" if s.units[n] else n for n in names)
    row = ",".join("%d" if s.columns[n].dtype.kind in "iu" else "%r" for n in names)
    columns = [s.columns[n].tolist() for n in names]
    with atomic_file(path) as f:
        f.write(header + "\n")
        f.writelines(row % values + "\n" for values in zip(*columns))

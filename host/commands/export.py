"""`host export SESSION... --format mcap|lerobot|parquet|csv --out PATH`: sessions for other tools.

The writers live with the sessions (host/sessions/<format>.py; SESSIONS.md "Exports" says what each holds);
this module picks one, loads the sessions and says what was written. MCAP and CSV hold one session a file:
several sessions make --out a directory of NAME.mcap / NAME.csv. Parquet puts them all in one table, LeRobot
in one dataset directory. Nothing existing is replaced (`--csv FILE`, the older form, replaces FILE), and
every output appears whole or not at all.
"""

import json
import sys
from pathlib import Path

from host.commands import add_sessions_dir
from host.errors import UserError
from host.files import STDOUT, atomic_file

FORMATS = {"mcap": ".mcap", "lerobot": "", "parquet": ".parquet", "csv": ".csv"}
NEEDS = {"mcap": "mcap.writer", "lerobot": "pyarrow.parquet", "parquet": "pyarrow.parquet"}  # the [export] extra
NAMES = {"mcap": "MCAP", "lerobot": "LeRobot", "parquet": "Parquet", "csv": "CSV"}


def add_parser(sub):
    p = sub.add_parser("export", help="write sessions as MCAP (Foxglove), a LeRobot dataset, Parquet or CSV")
    p.add_argument("sessions", nargs="*", metavar="SESSION", help="session files, or names in the sessions directory")
    p.add_argument("--format", choices=list(FORMATS), help="what to write (default: from --out's suffix, .mcap .parquet .csv)")
    p.add_argument("--out", metavar="PATH", help="file or directory to create (never replaced; csv: - for standard output)")
    p.add_argument("--csv", metavar="FILE", help="the same as --format csv --out FILE, except that an existing FILE is "
                        "replaced whole (never half-written; a symlink is written through, a FIFO or device directly)")
    add_sessions_dir(p, "--dir")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(run=run)


def run(args):
    fmt, out = _target(args)
    if not args.sessions:
        raise UserError("give at least one SESSION to export (`host sessions` lists them)")
    if args.csv is not None and len(args.sessions) > 1:
        raise UserError("--csv FILE takes one session: for several, --format csv --out DIR writes one file each")
    to_stdout = out == STDOUT
    if to_stdout and (fmt != "csv" or len(args.sessions) > 1):
        raise UserError("only one session as CSV can go to standard output (-): give --out FILE")
    if to_stdout and args.json:
        raise UserError("--out - and --json would both go to standard output: drop --json, or give a file")
    from host.sessions.exporting import need, refuse_existing

    if fmt in NEEDS:  # before loading anything
        need(NEEDS[fmt], NAMES[fmt])
    if args.csv is None and not to_stdout:
        refuse_existing(out)
    sessions = _load(args.sessions, args.dir)
    written = export(sessions, fmt, out, one_file=len(args.sessions) == 1)
    frames = sum(len(s) for s in sessions)
    result = {"format": fmt, "out": str(out), "sessions": [s.name for s in sessions], "frames": frames, "files": written,
              "complete": all(s.complete for s in sessions)}
    say = sys.stderr if to_stdout else sys.stdout  # with the CSV on stdout, the summary goes to stderr
    where = "standard output" if to_stdout else out
    incomplete = [s.name for s in sessions if not s.complete]
    if fmt == "csv" and len(sessions) == 1:  # what `--csv` always said
        s = sessions[0]
        result.update({"session": s.name, "csv": str(out), "rows": len(s), "columns": list(s.columns), "units": s.units})
        line = f"wrote {len(s)} rows x {len(s.columns)} columns to {where}" + (" (the session is incomplete)" if incomplete else "")
    else:
        line = (f"wrote {frames} frames of {len(sessions)} session{'s' * (len(sessions) != 1)} as {fmt} to {where}"
                + (f" (incomplete: {', '.join(incomplete)})" if incomplete else ""))
    print(json.dumps(result, indent=2) if args.json else line, file=sys.stdout if args.json else say)
    return 0


def export(sessions, fmt, out, one_file=True):
    """Write loaded sessions as fmt to out; [{"path", "bytes"}] of the files written (none for stdout)."""
    from host.sessions.exporting import Progress, new_directory

    progress = Progress(f"export {fmt}", sum(len(s) for s in sessions))
    try:
        if fmt == "lerobot":
            from host.sessions.lerobot import write_lerobot

            with new_directory(out) as root:
                write_lerobot(sessions, root, progress)
        elif fmt == "parquet" or one_file:
            _write_file(sessions, fmt, out, progress)
        else:
            with new_directory(out) as root:
                for s in sessions:
                    _write_file([s], fmt, root / f"{s.name}{FORMATS[fmt]}", progress)
    finally:
        progress.close()
    return _files(out)


def _write_file(sessions, fmt, path, progress):
    if fmt == "csv":
        from host.sessions.csv import write_csv

        write_csv(sessions[0], path)
        return
    if fmt == "mcap":
        from host.sessions.mcap import write_mcap as write

        sessions = sessions[0]
    else:
        from host.sessions.parquet import write_parquet as write
    with atomic_file(path, "wb", stdout_ok=False) as f:
        write(sessions, f, progress)


def _target(args):
    """(format, output path or "-") from --format/--out or --csv."""
    if args.csv is not None:
        if args.out is not None or args.format not in (None, "csv"):
            raise UserError("--csv FILE is --format csv --out FILE: give one or the other")
        return "csv", args.csv
    if args.out is None:
        raise UserError("give --out PATH (and --format mcap|lerobot|parquet|csv) to say where to write")
    fmt = args.format or next((f for f, suffix in FORMATS.items() if suffix and args.out.endswith(suffix)), None)
    if fmt is None:
        raise UserError(f"--out {args.out}: give --format ({'|'.join(FORMATS)}); its suffix does not say")
    return fmt, args.out if args.out == STDOUT else Path(args.out)


def _load(names, directory):
    from host.sessions import find_session, load

    sessions, seen = [], {}
    for name in names:
        path = find_session(name, directory).resolve()
        if path in seen:
            raise UserError(f"{name}: the session {path} is given twice")
        seen[path] = True
        s = load(path)
        if any(other.name == s.name for other in sessions):
            raise UserError(f"two sessions are named {s.name!r} ({path} and another): an export names sessions by "
                            "their names, so copy one under another name first")
        sessions.append(s)
    return sessions


def _files(out):
    """[{"path", "bytes"}] of the regular files at or under out."""
    out = Path(out)
    if out.is_dir():
        return [{"path": str(p), "bytes": p.stat().st_size} for p in sorted(out.rglob("*")) if p.is_file()]
    return [{"path": str(out), "bytes": out.stat().st_size}] if out.is_file() else []

"""`host info SESSION`: one session in detail -- where it came from, its segments and schema, what was lost."""

import datetime
import json
import math

import numpy as np

from host.commands import add_sessions_dir
from host.link.hello import Hello
from host.sessions import find_session, load
from host.table import duration

LOG_LEVELS = {0: "debug", 1: "info", 2: "warn", 3: "error"}
SHOWN_LOGS = 20


def add_parser(sub):
    p = sub.add_parser("info", help="show one recorded session in detail")
    p.add_argument("session", metavar="SESSION", help="a session file, or a name in the sessions directory")
    add_sessions_dir(p, "--dir")
    p.add_argument("--json", action="store_true", help="print everything as one JSON object")
    p.set_defaults(run=run)


def describe(s):
    """Everything about a loaded session that fits in JSON (no columns)."""
    return {
        "name": s.name, "path": str(s.path), "complete": s.complete, "header": s.header, "end": s.end,
        "segments": [{
            "id": seg["id"], "frames": seg["frames"], "drops": seg["drops"], "t0_host": seg["t0_host"],
            "firmware": _hello(seg).fw, "protocol": _hello(seg).proto, "board_id": _hello(seg).board_id,
            "schema": seg["schema"].fields if seg["schema"] else None,
        } for seg in s.segments],
        "units": s.units, "stats": s.stats,
        "markers": [{"host_time": t, **event} for t, event in s.markers],
        "logs": [{"host_time": t, "level": LOG_LEVELS.get(level, level), "text": text} for t, level, text in s.logs],
        "acks": len(s.acks), "text": s.text,
    }


def _hello(segment):
    """The segment's Hello; an empty one (every field None) when the board described none."""
    return segment["hello"] or Hello({})


def run(args):
    s = load(find_session(args.session, args.dir))
    if args.json:
        print(json.dumps(_finite(describe(s)), indent=2, default=_plain))
        return 0
    h, st = s.header, s.stats  # the header is whatever JSON object the file holds: every value is checked
    program = h.get("program") or {}
    print(f"session   {s.name}  ({s.path})")
    print(f"state     {'complete' if s.complete else 'INCOMPLETE'}" + (f": {s.end.get('reason')}" if s.end and s.end.get("reason") else
                                                                      "" if s.end else " (no end record: the recording was killed)"))
    print(f"created   {h.get('created', '?')}  by polyniod {_dict(h.get('software')).get('version', '?')} on {_dict(h.get('host')).get('hostname', '?')}")
    print(f"port      {h.get('port', '?')} at {h.get('baud', '?')} baud")
    if isinstance(program, dict) and program:
        params = " ".join(f"{k}={v}" for k, v in _dict(program.get("params")).items())
        print(f"program   {program.get('name', '?')}  seed {program.get('seed', '-')}" + (f"  {params}" if params else ""))
    elif program:
        print(f"program   {program}")
    print(f"duration  {duration(st['duration_s'])}   {st['telemetry_frames']} telemetry frames at {st['rate_hz']:.1f} Hz")
    print(f"lost      drops {st['drops']}  crc errors {st['crc_errors']}  bad escapes {st['bad_escape']}  "
          f"skipped bytes {st['skipped_bytes']}  truncated bytes {st['truncated_bytes']}  garbage bytes {st['garbage_bytes']}")
    print("frames    " + "  ".join(f"{k} {v}" for k, v in st["frames"].items()))
    for seg in s.segments:
        hello = _hello(seg)
        print(f"segment {seg['id']}  {seg['frames']} frames  drops {seg['drops']}  firmware {hello.fw or '?'}  "
              f"protocol {hello.proto or '?'}  board {hello.board_id or '?'}  from {_clock(seg['t0_host'])}")
    schemas = [seg["schema"] for seg in s.segments if seg["schema"]]
    if schemas:
        print("schema    " + "  ".join(f"{name}[{unit}]" if unit else name for name, unit in zip(schemas[0].names, schemas[0].units)))
    for t, event in s.markers:
        print(f"marker    {_clock(t)}  " + json.dumps(event, default=str))
    for t, level, text in s.logs[-SHOWN_LOGS:]:
        print(f"log       {_clock(t)}  {LOG_LEVELS.get(level, level)}: {text}")
    if len(s.logs) > SHOWN_LOGS:
        print(f"          ({len(s.logs) - SHOWN_LOGS} earlier log lines: see --json)")
    if s.text.strip():
        print("device printed outside frames:\n  " + "\n  ".join(s.text.strip().splitlines()[-10:]))
    return 0


def _clock(t):
    """HH:MM:SS.mmm of a host time; "?" for none, or one no clock shows (NaN, inf, out of range: a damaged record)."""
    try:
        return datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S.%f")[:-3]
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def _dict(value):
    return value if isinstance(value, dict) else {}


def _finite(value):
    """NaN and infinities (a damaged record's times) as null: what --json prints is valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.floating):
        return _finite(float(value))
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)

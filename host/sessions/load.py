"""A stored session back as numpy columns, decoded by the same FrameDecoder the live link uses.

The B records go through one decoder record by record, as the link fed it read by read, so every
frame comes out as it did live and gets the host time of the read that completed it. Frames come
back in bulk (FrameDecoder.feed_runs) and become columns with a few numpy operations over all of
them; only hellos, acks and logs are handled one by one.
"""

import math
import os
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from polyniod_firmware import protocol as P

from host.errors import UserError
from host.link.hello import Hello
from host.sessions.store import (BYTES, END, HEADER, MARKER, SUFFIX, decode_json, read_end, read_header, read_records,
                                 sessions_dir)

FRAME_NAMES = {P.T_HELLO: "hello", P.T_TELEMETRY: "telemetry", P.T_ACK: "ack", P.T_LOG: "log"}
BASE_UNITS = {"t": "s", "t_host": "s", "seq": "", "segment": ""}
_FRAME_HEADER = np.dtype([("byte0", "u1"), ("seq", "<u2"), ("t_us", "<u4")])  # protocol._HEADER


class Session:
    """One loaded session; SESSIONS.md says what each attribute holds."""

    def __init__(self, path):
        self.path = Path(path)
        self.name = self.path.name[:-len(SUFFIX)] if self.path.name.endswith(SUFFIX) else self.path.name
        self.header = {}
        self.end = None
        self.complete = False
        self.markers = []
        self.segments = []
        self.columns = {}
        self.units = {}
        self.logs = []
        self.acks = []
        self.stats = {}
        self.lost = np.zeros(0, np.int64)  # per telemetry row: ticks missing just before it (0 at a segment's start)
        self.text = ""

    def __len__(self):
        return len(self.columns["t"])

    @property
    def hello(self):
        """The board's self-description (a Hello): its first described segment's, else the header's; None if neither."""
        return next((seg["hello"] for seg in self.segments if seg["hello"]), None) or Hello.of(self.header.get("hello"))

    def __repr__(self):
        return (f"<Session {self.name}: {len(self)} telemetry frames, {len(self.segments)} segment(s), "
                f"{'complete' if self.complete else 'incomplete'}>")


def load(path):
    """The session stored in `path`. Never raises on damage (stats say what was skipped);
    UserError when the file cannot be read or is not a session file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read session {path}: {e.strerror or e}") from None
    try:
        records, record_stats = read_records(data)
    except UserError as e:
        raise type(e)(f"{path} is {e}") from None
    s = Session(path)
    decoder = P.FrameDecoder()
    feed_runs, take_text = decoder.feed_runs, decoder.take_text
    buf, run_sizes, run_bytes, runs_per_read, read_times, text = bytearray(), [], [], [], [], []
    for kind, host_time, payload in records:  # the hot loop: ~10 frames a record at 200 Hz
        if kind == BYTES:
            runs = feed_runs(payload)
            if runs:
                for size, run in runs:  # into one buffer as they come: no run outlives its record
                    buf += run
                    run_sizes.append(size)
                    run_bytes.append(len(run))
                runs_per_read.append(len(runs))
                read_times.append(host_time)
            chunk = take_text()
            if chunk:
                text.append(chunk)
        elif kind == HEADER:
            s.header = s.header or decode_json(payload)
        elif kind == MARKER:
            s.markers.append((host_time, decode_json(payload)))
        elif kind == END:
            s.end = decode_json(payload)
    s.complete = bool(s.end) and s.end.get("complete") is True
    s.text = b"".join(text).decode("utf-8", "replace")
    frames = _Frames(buf, run_sizes, run_bytes, runs_per_read, read_times)
    s.stats = {"frames": _count_types(frames)}
    _segments(s, frames, _hellos_acks_logs(s, frames))
    times = [t for _, t, _ in records if math.isfinite(t)]  # a damaged clock (NaN, inf) spans nothing
    s.stats.update({
        "telemetry_frames": len(s),
        "drops": sum(seg["drops"] for seg in s.segments),
        "crc_errors": decoder.crc_errors, "garbage_bytes": decoder.garbage, "bad_escape": decoder.bad_escape,
        "oversize": decoder.oversize, "short": decoder.short, "version_errors": decoder.version_errors,
        "skipped_bytes": record_stats["skipped_bytes"], "damaged_records": record_stats["damaged"],
        "truncated_bytes": record_stats["truncated_bytes"], "unknown_records": record_stats["unknown_records"],
        "records": record_stats["records"], "bytes": sum(len(p) for k, _, p in records if k == BYTES),
        "duration_s": max(times) - min(times) if times else 0.0, "rate_hz": _rate(s), "complete": s.complete,
    })
    return s


class _Frames:
    """Every decoded frame, as arrays: where it starts in one buffer (the runs joined), its size, type, seq,
    ticks, host time."""

    def __init__(self, buf, run_sizes, run_bytes, runs_per_read, read_times):
        sizes = np.array(run_sizes, dtype=np.int64)
        counts = np.array(run_bytes, dtype=np.int64) // np.maximum(sizes, 1)
        self.buf = np.frombuffer(buf, dtype=np.uint8)
        self.size = np.repeat(sizes, counts)
        self.start = np.cumsum(self.size) - self.size
        header = _rows(self.buf, self.start, _FRAME_HEADER.itemsize).view(_FRAME_HEADER)[:, 0]
        self.type = header["byte0"] & 15
        self.seq = header["seq"].astype(np.int64)
        self.ticks = header["t_us"].astype(np.int64)
        self.host_time = np.repeat(np.repeat(np.array(read_times, dtype=np.float64), runs_per_read), counts)

    def __len__(self):
        return len(self.size)

    def payload(self, i):
        start = self.start[i]
        return self.buf[start + P.HEADER_SIZE:start + self.size[i] - 4].tobytes()


def _count_types(frames):
    counts = dict.fromkeys(FRAME_NAMES.values(), 0)
    for ftype, n in enumerate(np.bincount(frames.type, minlength=16).tolist()):
        if n:
            name = FRAME_NAMES.get(ftype, "other")
            counts[name] = counts.get(name, 0) + n
    return counts


def _hellos_acks_logs(s, frames):
    """Decode the frames that are not telemetry, one by one; [(frame index, hello)] of the usable hellos."""
    hellos = []
    bad = 0
    for i in np.flatnonzero(frames.type != P.T_TELEMETRY).tolist():
        ftype, payload, host_time = frames.type[i], frames.payload(i), float(frames.host_time[i])
        if ftype == P.T_HELLO:
            hello = Hello.parse(payload)
            if hello is not None and hello.get("schema"):
                hellos.append((i, hello))
            else:
                bad += 1
        elif ftype == P.T_ACK and len(payload) >= 3:
            s.acks.append((host_time, *P.parse_ack(payload)))
        elif ftype == P.T_LOG and payload:
            s.logs.append((host_time, *P.parse_log(payload)))
    s.stats["bad_hellos"] = bad
    return hellos


def _segments(s, frames, hellos):
    """Split the frames into device runs and decode each run's telemetry by its own schema.

    A hello starts a new segment when it is a boot's first frame (seq 0, not a wrap from 65535, as
    Link counts resets) or brings another schema; a hello the host asked for continues the run.
    Frames before the first hello belong to it unless it is a boot's; else they get the header's.
    """
    bounds = [[0, None]]  # [first frame, hello] of each segment
    for i, hello in hellos:
        current = bounds[-1]
        boot = frames.seq[i] == 0 and (i == 0 or frames.seq[i - 1] != 0xFFFF)
        if boot or current[1] is not None and current[1]["schema"] != hello["schema"]:
            bounds.append([i, hello])
        elif current[1] is None:
            current[1] = hello
    stops = [first for first, _ in bounds[1:]] + [len(frames)]
    if bounds[0][1] is None:
        if stops[0] > 0:
            hello = Hello.of(s.header.get("hello"))
            bounds[0][1] = hello if hello is not None and hello.get("schema") else None
        else:  # nothing before the first hello
            del bounds[0], stops[0]
    pieces, lost, rows, undecoded, wrong_size = [], [], 0, 0, 0
    for seg_id, ((first, hello), stop) in enumerate(zip(bounds, stops)):
        seq, ticks = frames.seq[first:stop], frames.ticks[first:stop]
        half = P.TICKS_PERIOD // 2  # as P.unwrap_ticks: steps within +-half a period (log frames may step back)
        device_us = ticks[0] + np.concatenate(([0], np.cumsum((np.diff(ticks) + half) % P.TICKS_PERIOD - half)))
        seq_count = seq[0] + np.concatenate(([0], np.cumsum(np.diff(seq) & 0xFFFF)))  # as P.unwrap_seqs
        telemetry = np.flatnonzero(frames.type[first:stop] == P.T_TELEMETRY)
        schema = hello.schema if hello else None
        if schema is None:
            undecoded += len(telemetry)
            telemetry = telemetry[:0]
        else:
            fits = frames.size[first + telemetry] == schema.size + P.OVERHEAD
            wrong_size += int(len(fits) - fits.sum())
            telemetry = telemetry[fits]
        piece = {"t": device_us[telemetry] / 1e6, "t_host": frames.host_time[first + telemetry],
                 "seq": seq_count[telemetry], "segment": np.full(len(telemetry), seg_id, dtype=np.int64)}
        # ticks missing just before each telemetry row (a frame lost, or one not decodable as telemetry): its seq
        # step less one, less the other frames (acks, logs, hellos) received in between
        other = np.cumsum(frames.type[first:stop] != P.T_TELEMETRY)[telemetry]
        lost.append(np.maximum(np.diff(seq_count[telemetry], prepend=seq_count[telemetry[:1]] + 1) - 1 -
                               np.diff(other, prepend=other[:1]), 0))
        if schema is not None:
            piece.update(_decode(frames, first + telemetry, schema))
        pieces.append(piece)
        s.segments.append({"id": seg_id, "hello": hello, "schema": schema, "frames": len(telemetry),
                           "rows": (rows, rows + len(telemetry)), "t0_host": float(frames.host_time[first]),
                           "drops": int(((np.diff(seq) - 1) & 0xFFFF).sum())})
        rows += len(telemetry)
    s.units = dict(BASE_UNITS)
    for seg in s.segments:
        for name, unit in zip(seg["schema"].names, seg["schema"].units) if seg["schema"] else ():
            if s.units.setdefault(name, unit) != unit:
                raise UserError(f"{s.path}: its segments disagree on the unit of {name!r} ({s.units[name]!r}, {unit!r})")
    lengths = [len(p["t"]) for p in pieces]
    s.columns = {name: _concat([p.get(name) for p in pieces], lengths) for name in s.units}
    s.lost = np.concatenate(lost).astype(np.int64) if lost else np.zeros(0, np.int64)
    s.stats["undecoded_frames"] = undecoded
    s.stats["wrong_size_frames"] = wrong_size


def _decode(frames, index, schema):
    """{field: values in its unit} of the telemetry frames at these indices (all of one schema).

    The columns are rows of two blocks, int64 and float64: one allocation each (large enough for huge
    pages) instead of one a field, which the page faults of ~20 fresh arrays made the costliest step."""
    packed = schema.numpy_dtype()
    names = list(packed.names)
    in_frame = np.dtype({"names": names, "formats": [packed.fields[n][0] for n in names],
                         "offsets": [packed.fields[n][1] + P.HEADER_SIZE for n in names],
                         "itemsize": schema.size + P.OVERHEAD})
    raw = _rows(frames.buf, frames.start[index], in_frame.itemsize).view(in_frame)[:, 0]
    scales = dict(zip(names, schema.scales))
    ints = schema.integers()
    floats = [name for name in names if name not in ints]
    columns = dict(zip(ints, np.empty((len(ints), len(raw)), np.int64)))
    columns.update(zip(floats, np.empty((len(floats), len(raw)), np.float64)))
    for name in ints:
        np.copyto(columns[name], raw[name])
    for name in floats:
        np.multiply(raw[name], scales[name], out=columns[name])
    return {name: columns[name] for name in names}


def _rows(buf, starts, size):
    """buf[start:start + size] for each start (ascending, rows not overlapping), as one contiguous
    (len(starts), size) uint8 array: a view of buf when the rows lie back to back (a session's
    telemetry between two hellos), else a copy."""
    n = len(starts)
    if n and starts[-1] - starts[0] == (n - 1) * size:
        return buf[starts[0]:starts[0] + n * size].reshape(n, size)
    if len(buf) < size:
        return np.zeros((n, size), np.uint8)
    return np.ascontiguousarray(sliding_window_view(buf, size)[starts])


def _concat(parts, lengths):
    """One column from the segments' pieces: float64 with NaN where a segment's schema lacks the field."""
    if all(p is not None for p in parts):
        return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros(0)
    return np.concatenate([np.full(n, np.nan) if p is None else p.astype(np.float64) for p, n in zip(parts, lengths)])


def _rate(s):
    """Telemetry frames per second of device time, over all segments."""
    span = intervals = 0
    for seg in s.segments:
        a, b = seg["rows"]
        if b - a > 1:
            span += s.columns["t"][b - 1] - s.columns["t"][a]
            intervals += b - a - 1
    return float(intervals / span) if span else 0.0


def list_sessions(directory=None):
    """One summary dict per *.session file in directory (default: sessions_dir()), oldest first.

    Reads only the header and the end record when the end carries the figures (a closed session
    whose summary has "telemetry_frames" and "drops" as counts); decodes the whole file otherwise.
    "board_id" is the recording board's unit id, from its hello. Every value has its type or is None (a
    damaged or hand-edited record never breaks the listing);
    a file that cannot be read as a session is listed with its "error", and the others still are.
    """
    directory = sessions_dir(directory)
    rows = []
    for path in sorted(directory.glob("*" + SUFFIX)) if directory.is_dir() else []:
        row = {"name": path.name[:-len(SUFFIX)], "path": str(path), "created": None, "duration_s": None,
               "frames": None, "drops": None, "program": None, "board_id": None, "complete": False}
        try:
            row.update(_summary_row(path))
        except (OSError, UserError) as e:
            row["error"] = str(e)
        except Exception as e:  # noqa: BLE001 -- whatever is wrong with one file, the others are listed
            row["error"] = f"damaged: {type(e).__name__}: {e}"
        rows.append(row)
    return sorted(rows, key=lambda r: (r["created"] or "", r["name"]))


def same_unit(board_id, given):
    """Whether a session's unit id (a row's board_id) is the one a user typed (hex: case does not matter)."""
    return isinstance(board_id, str) and board_id.lower() == str(given).strip().lower()


def _summary_row(path):
    header, end = read_header(path), read_end(path)
    end = end[1] if end else {}
    summary = end.get("summary")
    if isinstance(summary, dict) and None not in (_count(summary.get("telemetry_frames")), _count(summary.get("drops"))):
        figures = {"frames": _count(summary["telemetry_frames"]), "drops": _count(summary["drops"]),
                   "duration_s": _seconds(end.get("duration_s")), "complete": end.get("complete") is True}
    else:  # no end record, or one whose figures are missing or not counts: the file says it all
        session = load(path)
        header = session.header
        figures = {"frames": session.stats["telemetry_frames"], "drops": session.stats["drops"],
                   "duration_s": _seconds(session.stats["duration_s"]), "complete": session.complete,
                   "board_id": _unit(session.hello)}  # decoded: the first described segment's
    program = header.get("program")
    return {"board_id": _unit(Hello.of(header.get("hello"))), **figures, "created": _text(header.get("created")),
            "program": _text(program.get("name") if isinstance(program, dict) else program)}


def _count(value):
    """A whole number >= 0, or None."""
    return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0 else None


def _seconds(value):
    """A finite number of seconds >= 0, or None."""
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    return float(value) if ok else None


def _unit(hello):
    """The board's unit id a hello gives, or None."""
    return _text(hello.board_id) if hello else None


def _text(value):
    return value if isinstance(value, str) else None


def find_session(name_or_path, directory=None):
    """The session file a command argument means: a path, or a name in the sessions directory."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    directory = sessions_dir(directory)
    for candidate in (directory / (str(name_or_path) + SUFFIX), directory / str(name_or_path)):
        if candidate.is_file():
            return candidate
    listing = "host sessions" if directory == sessions_dir() else f"host sessions --dir {directory}"
    raise UserError(f"no session {str(name_or_path)!r} (not a file, nor in {directory}{os.sep}): run `{listing}` to list them")

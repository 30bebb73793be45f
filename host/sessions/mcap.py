"""A session as MCAP, the log format Foxglove opens: every stream a channel, plotted without configuration.

Channels (JSON messages with a "jsonschema" schema, which Foxglove reads field by field):
- /telemetry: one message per frame, {"t", "seq", "segment", every schema field in its unit}; the schema
  gives each field its type and its unit (in its description; the channel's "units" metadata maps them all).
- /commands: the board's reply to each host command, {"cmd_seq", "code", "result", "data"} (a session holds
  the replies, not the command lines; what each tick commanded is in telemetry: `<joint>_cmd_us`, targets).
- /log: the board's log frames as foxglove.Log, so the Log panel shows them.
- /markers: the recorder's events ({"event": ...}).
Log time is the host's receive time (Unix ns); publish time is the device's clock for telemetry (ns since
its boot, per segment) and the host's for the rest (the session keeps no device time for them).
Metadata records: "polyniod.session" (session id, firmware, unit, program), "polyniod.robot" (the robot
description) and one "polyniod.hello" per segment (the board's hello as it came).

Chunked and zstd-compressed with a summary (mcap's defaults), so a file cut short still reads up to its
last whole chunk. No wall-clock time is written: the same session gives the same bytes.
"""

import json
import math

import numpy as np

from host import __version__
from host.link.hello import Hello
from host.sessions.exporting import need
from host.sessions.load import BASE_UNITS

LOG_LEVELS = {0: 1, 1: 2, 2: 3, 3: 4}  # protocol LOG_DEBUG..LOG_ERROR -> foxglove.Log DEBUG..ERROR
FOXGLOVE_LOG = {
    "title": "foxglove.Log", "type": "object",
    "properties": {
        "timestamp": {"type": "object", "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}}},
        "level": {"type": "integer", "description": "1 DEBUG, 2 INFO, 3 WARNING, 4 ERROR, 5 FATAL"},
        "message": {"type": "string"}, "name": {"type": "string"}, "file": {"type": "string"},
        "line": {"type": "integer"},
    },
}
COMMANDS = {
    "title": "polyniod.CommandReply", "type": "object",
    "properties": {"cmd_seq": {"type": "integer", "description": "the command's sequence number"},
                   "code": {"type": "integer", "description": "0 done, else an error code (firmware/PROTOCOL.md)"},
                   "result": {"type": "string", "description": "the code's name (E_OK, E_ARG, ...)"},
                   "data": {"type": "string", "description": "the reply's data, as UTF-8 text"}},
}
MARKERS = {"title": "polyniod.Marker", "type": "object", "properties": {"event": {"type": "string"}}}
TELEMETRY_TOPIC = "/telemetry"
EVENT_CHANNELS = {"/commands": COMMANDS, "/log": FOXGLOVE_LOG, "/markers": MARKERS}  # topic -> schema
CHUNK_BYTES = 1 << 20
PROGRESS_EVERY = 4096


def ns(seconds):
    """Seconds (a float or an array) as whole nanoseconds, >= 0 (MCAP times are u64); not finite -> 0."""
    value = np.rint(np.nan_to_num(np.asarray(seconds, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0) * 1e9)
    return np.maximum(value, 0).astype(np.int64)


def write_mcap(s, stream, progress=None):
    """Session `s` into the binary `stream` (it needs only write; mcap's tell is counted here)."""
    mcap = need("mcap.writer", "MCAP")
    writer = mcap.Writer(_Counted(stream), chunk_size=CHUNK_BYTES, compression=mcap.CompressionType.ZSTD)
    writer.start(profile="", library=f"polyniod {__version__}")
    _metadata(writer, s)
    fields = {n: s.units[n] for n in s.units if n not in BASE_UNITS}
    schema = telemetry_schema(fields, {n for n in fields if s.columns[n].dtype.kind in "iu"})
    telemetry = writer.register_channel(TELEMETRY_TOPIC, "json", _schema(writer, schema),
                                        {**telemetry_metadata(fields), "session": s.name})
    commands, log, markers = (writer.register_channel(topic, "json", _schema(writer, schema))
                              for topic, schema in EVENT_CHANNELS.items())
    events = sorted(
        [(t, 0, commands, command_reply(seq, code, data)) for t, seq, code, data in s.acks]
        + [(t, 1, log, log_message(t, level, text)) for t, level, text in s.logs]
        + [(t, 2, markers, m) for t, m in s.markers], key=lambda e: (_sortable(e[0]), e[1]))
    event_ns = [int(ns(t)) for t, *_ in events]
    pending = 0  # events written so far, merged into the telemetry by log time

    def events_until(limit):
        nonlocal pending
        while pending < len(events) and (limit is None or event_ns[pending] <= limit):
            _, _, channel, message = events[pending]
            when = event_ns[pending]
            writer.add_message(channel, when, encode(message), when)
            pending += 1

    log_ns, device_ns, seq = ns(s.columns["t_host"]).tolist(), ns(s.columns["t"]).tolist(), s.columns["seq"].tolist()
    for seg in s.segments:
        a, b = seg["rows"]
        for i, payload in enumerate(_telemetry_json(s, seg), start=a):
            if pending < len(events) and event_ns[pending] <= log_ns[i]:
                events_until(log_ns[i])
            writer.add_message(telemetry, log_ns[i], payload, device_ns[i], seq[i] & 0xFFFFFFFF)
            if progress and (i - a) % PROGRESS_EVERY == PROGRESS_EVERY - 1:
                progress.add(PROGRESS_EVERY)
        if progress:
            progress.add((b - a) % PROGRESS_EVERY)
    events_until(None)
    writer.finish()


def _telemetry_json(s, seg):
    """The JSON of each telemetry frame of one segment (its own schema's fields), encoded."""
    a, b = seg["rows"]
    if seg["schema"] is None or a == b:
        return []
    names = ["t", "seq", "segment", *seg["schema"].names]
    columns = [s.columns[n][a:b] for n in names]
    rows = zip(*(c.tolist() for c in columns))
    if all(np.isfinite(c).all() for c in columns if c.dtype.kind == "f"):  # the usual case: a template per row
        template = "{" + ",".join(json.dumps(n).replace("%", "%%") + (":%d" if c.dtype.kind in "iu" else ":%r")
                                  for n, c in zip(names, columns)) + "}"
        return ((template % row).encode() for row in rows)
    return (telemetry_message(names, row) for row in rows)


def telemetry_message(names, row):
    """One telemetry frame's JSON (not-finite values as null), as the fast path above writes it."""
    return encode({n: v if isinstance(v, int) or math.isfinite(v) else None for n, v in zip(names, row)})


def encode(message):
    """A message's JSON as every channel carries it (compact; what JSON cannot say as text)."""
    return json.dumps(message, separators=(",", ":"), default=str).encode()


def command_reply(cmd_seq, code, data):
    """A /commands message: the board's reply to one host command."""
    from polyniod_firmware import protocol as P

    return {"cmd_seq": cmd_seq, "code": code, "result": P.ERROR_NAMES.get(code, f"E_{code}"),
            "data": data.decode("utf-8", "replace")}


def log_message(t, level, text):
    """A /log message (foxglove.Log) of one board log frame received at host time `t` (s)."""
    return {"timestamp": _stamp(t), "level": LOG_LEVELS.get(level, 2), "message": text, "name": "board", "file": "",
            "line": 0}


def telemetry_metadata(fields):
    """The /telemetry channel's metadata: every field's unit ({name: unit}, `t` first)."""
    return {"units": json.dumps({"t": BASE_UNITS["t"], **fields})}


def telemetry_schema(fields, integer):
    """The /telemetry jsonschema: `fields` {name: unit} in order, those in `integer` as integers."""
    properties = {
        "t": {"type": "number", "description": "device time, s (its clock since boot, per segment)"},
        "seq": {"type": "integer", "description": "frame counter, unwrapped within the segment"},
        "segment": {"type": "integer", "description": "device run within the session (a reset starts the next)"},
    }
    for n, unit in fields.items():
        properties[n] = {"type": "integer" if n in integer else "number", "description": f"unit: {unit}" if unit else "count"}
    return {"title": "polyniod.Telemetry", "type": "object", "properties": properties}


def _metadata(writer, s):
    hello = s.hello or Hello({})
    header = s.header
    robot = hello.robot or header.get("robot") or {}
    ids = {"session_id": s.name, "board_id": str(hello.board_id or ""), "firmware": str(hello.fw or "")}
    writer.add_metadata("polyniod.session", {
        **ids, "created": str(header.get("created", "")), "complete": json.dumps(s.complete),
        "program": json.dumps(header.get("program")), "frames": str(len(s)), "segments": str(len(s.segments)),
        "software": json.dumps(header.get("software"))})
    writer.add_metadata("polyniod.robot", {**ids, "robot": json.dumps(robot)})
    for seg in s.segments:
        if seg["hello"] is not None:
            h = seg["hello"]
            writer.add_metadata("polyniod.hello", {"segment": str(seg["id"]), "board_id": str(h.board_id or ""),
                                                   "firmware": str(h.fw or ""), "rate_hz": str(h.rate_hz),
                                                   "hello": json.dumps(dict(h))})


def _schema(writer, schema):
    return writer.register_schema(schema["title"], "jsonschema", json.dumps(schema).encode())


def _stamp(t):
    whole = int(ns(t))
    return {"sec": whole // 1_000_000_000, "nsec": whole % 1_000_000_000}


def _sortable(t):
    return t if isinstance(t, (int, float)) and math.isfinite(t) else 0.0


class _Counted:
    """The output as mcap needs it: it asks where it is (tell) to index chunks, which a FIFO cannot say."""

    def __init__(self, stream):
        self.stream, self.position = stream, 0

    def write(self, data):
        self.stream.write(data)
        self.position += len(data)
        return len(data)

    def tell(self):
        return self.position

    def flush(self):
        self.stream.flush()

"""Sessions as one Parquet table: a row per telemetry frame, typed columns, units in the schema.

Columns: `session` (its name) and `board_id` (the unit that sent the frame: its segment's hello), both
dictionary-encoded; `segment`, `t`, `t_host`, `seq` as host.sessions.load gives them; then every telemetry
field of any session, in first-seen order. Integer fields stay int64; a field that a segment's schema lacks
is null in that segment's rows (never a made-up number). Each field carries its unit in its metadata
(b"unit"); the schema's b"polyniod" metadata lists the sessions and their segments (unit, firmware, rate).
Fixed writer settings (zstd level 3, row groups of ROW_GROUP frames) and no wall-clock time inside: the same
sessions give the same bytes.
"""

import json

import numpy as np

from host.sessions.exporting import need
from host.sessions.load import BASE_UNITS

ROW_GROUP = 65536
DESCRIPTIONS = {"session": "session name", "board_id": "the unit's id (its hello's board_id)",
                "segment": "device run within the session", "t": "device time (per segment)",
                "t_host": "host receive time (Unix)", "seq": "frame counter (unwrapped within the segment)"}


def write_parquet(sessions, stream, progress=None):
    """The sessions' telemetry into the binary `stream`, one row group per ROW_GROUP frames."""
    pa = need("pyarrow", "Parquet")
    pq = need("pyarrow.parquet", "Parquet")
    schema = arrow_schema(pa, sessions)
    with pq.ParquetWriter(stream, schema, compression="zstd", compression_level=3) as writer:
        for s in sessions:
            table = _table(pa, schema, s)
            for first in range(0, len(s), ROW_GROUP):
                writer.write_table(table.slice(first, ROW_GROUP), row_group_size=ROW_GROUP)
                if progress:
                    progress.add(min(ROW_GROUP, len(s) - first))


def arrow_schema(pa, sessions):
    """Base columns, then the union of the sessions' fields: int64 where every session has them as integers."""
    names = {}
    for s in sessions:
        for n, unit in s.units.items():
            if n not in BASE_UNITS:
                kind = "i" if s.columns[n].dtype.kind in "iu" else "f"
                names[n] = (unit, "f" if names.get(n, (unit, kind))[1] == "f" else kind)
    dictionary = pa.dictionary(pa.int32(), pa.string())
    fields = [pa.field("session", dictionary, nullable=False, metadata={"description": DESCRIPTIONS["session"]}),
              pa.field("board_id", dictionary, metadata={"description": DESCRIPTIONS["board_id"]})]
    fields += [pa.field(n, pa.int64() if n in ("segment", "seq") else pa.float64(), nullable=False,
                        metadata={"unit": BASE_UNITS[n], "description": DESCRIPTIONS[n]})
               for n in ("segment", "t", "t_host", "seq")]
    fields += [pa.field(n, pa.int64() if kind == "i" else pa.float64(), metadata={"unit": unit})
               for n, (unit, kind) in names.items()]
    return pa.schema(fields, metadata={"polyniod": json.dumps({"format": 1, "sessions": [_about(s) for s in sessions]})})


def _about(s):
    return {"session": s.name, "complete": s.complete, "frames": len(s),
            "program": s.header.get("program"),
            "segments": [{"id": seg["id"], "rows": list(seg["rows"]), "board_id": seg["hello"] and seg["hello"].board_id,
                          "fw": seg["hello"] and seg["hello"].fw, "rate_hz": seg["hello"] and seg["hello"].rate_hz}
                         for seg in s.segments]}


def _table(pa, schema, s):
    n = len(s)
    boards = [seg["hello"].board_id if seg["hello"] else None for seg in s.segments]
    dictionary = sorted({b for b in boards if b is not None})
    board_rows = np.repeat([dictionary.index(b) if b is not None else -1 for b in boards] or [0],
                           [seg["rows"][1] - seg["rows"][0] for seg in s.segments] or [0])
    columns = [pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([s.name], pa.string())),
               pa.DictionaryArray.from_arrays(pa.array(board_rows.astype(np.int32), mask=board_rows < 0),
                                              pa.array(dictionary, pa.string()))]
    for field in schema:
        if field.name in ("session", "board_id"):
            continue
        if field.name not in s.columns:
            columns.append(pa.nulls(n, field.type))
            continue
        values = s.columns[field.name]
        missing = _missing(s, field.name)
        columns.append(pa.array(values.astype(np.int64 if pa.types.is_integer(field.type) else np.float64, copy=False),
                                mask=missing if missing.any() else None, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _missing(s, name):
    """True in the rows of segments whose schema has no field `name`."""
    missing = np.zeros(len(s), bool)
    if name in BASE_UNITS:
        return missing
    for seg in s.segments:
        if seg["schema"] is None or name not in seg["schema"].names:
            missing[seg["rows"][0]:seg["rows"][1]] = True
    return missing

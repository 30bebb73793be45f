"""Sessions as one LeRobot dataset (format v3.0): a policy-learning library reads our robots' data as its own.

Every segment of every session (one device run: its clock and counter are continuous) is an episode, in
the order given. Features, named from the telemetry schema by the firmware's naming (FIRMWARE.md):
- `observation.state` float32: each joint's measured angle (`<joint>_deg`), then the IMU (fields in g and
  deg/s: ax, ay, az, gx, gy, gz).
- `action` float32: each joint's commanded pulse (`<joint>_cmd_us`, µs) -- what the servo is driven with at
  that tick in every mode; `<joint>_target_deg` is a target only while tracking (0 otherwise), so it rides
  along as `telemetry.<joint>_target_deg`, not as the action.
- `telemetry.<field>` for every other field (pot counts, targets, mode, flags, busy_us, ...: int64 or
  float64, exact), and `telemetry.t` / `telemetry.t_host` / `telemetry.seq` (device time, host receive
  time, frame counter): nothing the session decoded is lost. Policies read only observation.* and action.
- `timestamp` (float32, device time since the episode's first frame: a dropped frame leaves a gap, it is not
  papered over), `frame_index`, `episode_index`, `index`, `task_index` as the format defines them.
Each vector feature lists its `names` and (our addition, which readers ignore) `units`. fps is the board's
telemetry rate (hello rate_hz / telemetry_every). The task is the session's program name.

Layout (v3.0): data/chunk-000/file-000.parquet (a new file past DATA_FILE_MB, a new chunk past CHUNKS_SIZE
files), meta/info.json, meta/stats.json (min, max, mean, std, count, q01..q99 over all frames, exact),
meta/tasks.parquet (the task strings as a pandas index, as LeRobot writes it), and
meta/episodes/chunk-000/file-000.parquet (one row per episode: length, where its frames are, its tasks,
its stats as `stats/<feature>/<stat>`, and `polyniod/session|segment|board_id|firmware`).
All of one robot: sessions whose joints, rate or telemetry schema differ are refused.
"""

import json

import numpy as np

from host.errors import UserError
from host.sessions.exporting import need

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILE_MB = 100
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
INDEX_FEATURES = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64", "index": "int64",
                  "task_index": "int64"}
IMU_UNITS = ("g", "deg/s")


def split_fields(schema):
    """(state, action, other) field names of a telemetry schema: measured joint angles then IMU; commanded
    pulses; the rest."""
    units = dict(zip(schema.names, schema.units))
    angles = [n for n in schema.names if n.endswith("_deg") and not n.endswith("_target_deg") and units[n] == "deg"]
    state = angles + [n for n in schema.names if units[n] in IMU_UNITS]
    action = [n for n in schema.names if n.endswith("_cmd_us")]
    return state, action, [n for n in schema.names if n not in state and n not in action]


def episodes_of(sessions):
    """[(session, segment)] with frames, all of one robot and schema; UserError naming the first two that differ."""
    episodes = [(s, seg) for s in sessions for seg in s.segments if seg["frames"]]
    if not episodes:
        raise UserError("no telemetry frames in " + ", ".join(s.name for s in sessions) + ": nothing to put in a dataset")
    s0, seg0 = episodes[0]
    for s, seg in episodes[1:]:
        mine, theirs = _robot(seg0["hello"]), _robot(seg["hello"])
        if mine == theirs and seg0["schema"].names != seg["schema"].names:
            mine, theirs = _fields(seg0, seg), _fields(seg, seg0)
        if mine != theirs:
            raise UserError(f"{_where(s0, seg0)} and {_where(s, seg)} differ ({mine} / {theirs}): "
                            "a LeRobot dataset holds one robot and one telemetry schema; export them separately")
    state, action, _ = split_fields(seg0["schema"])
    if not state or not action:
        raise UserError(f"{s0.name}: its telemetry has no joint angles (<joint>_deg) or commanded pulses "
                        "(<joint>_cmd_us), which a LeRobot dataset's observation.state and action are made of")
    if not seg0["hello"].frame_hz:
        raise UserError(f"{s0.name}: its board's hello gives no loop rate (rate_hz), which a LeRobot dataset's fps is")
    return episodes


def features(episodes):
    """info.json's features: {name: {dtype, shape, names[, units]}} -> also (column of s.columns per part)."""
    s, seg = episodes[0]
    state, action, other = split_fields(seg["schema"])
    feats = {"observation.state": _vector(state, s.units), "action": _vector(action, s.units)}
    for n in ["t", "t_host", "seq", *other]:
        integer = all(e[0].columns[n].dtype.kind in "iu" for e in episodes)
        feats[f"telemetry.{n}"] = {"dtype": "int64" if integer else "float64", "shape": [1], "names": None,
                                   "units": [s.units[n]]}
    feats.update({n: {"dtype": dtype, "shape": [1], "names": None} for n, dtype in INDEX_FEATURES.items()})
    return feats


def write_lerobot(sessions, root, progress=None):
    """The sessions as a dataset in the (empty) directory `root`."""
    pa = need("pyarrow", "LeRobot")
    pq = need("pyarrow.parquet", "LeRobot")
    episodes = episodes_of(sessions)
    feats = features(episodes)
    tasks = list(dict.fromkeys(_task(s) for s, _ in episodes))
    lengths = [seg["frames"] for _, seg in episodes]
    places = _files(lengths, sum(4 * f["shape"][0] if f["dtype"] == "float32" else 8 for f in feats.values()))
    schema = pa.schema([pa.field(n, _arrow_type(pa, f)) for n, f in feats.items()])
    writers, rows, index = {}, [], 0
    totals = {n: [] for n in feats}
    try:
        for episode, ((s, seg), length, place) in enumerate(zip(episodes, lengths, places)):
            columns = _columns(s, seg, feats, episode, index, tasks.index(_task(s)))
            if place not in writers:
                path = root / DATA_PATH.format(chunk_index=place[0], file_index=place[1])
                path.parent.mkdir(parents=True, exist_ok=True)
                writers[place] = pq.ParquetWriter(path, schema, compression="snappy", use_dictionary=True)
            writers[place].write_table(pa.Table.from_arrays([_arrow(pa, columns[n], feats[n]) for n in feats], schema=schema))
            rows.append(_episode_row(s, seg, episode, length, place, index, tasks, columns, feats))
            for n in feats:
                totals[n].append(columns[n])
            index += length
            if progress:
                progress.add(length)
    finally:
        for writer in writers.values():
            writer.close()
    stats = {n: _stats(np.concatenate(totals[n])) for n in feats}
    fps = episodes[0][1]["hello"].frame_hz
    info = {
        "codebase_version": CODEBASE_VERSION, "robot_type": _robot_type(episodes[0][1]["hello"]),
        "total_episodes": len(episodes), "total_frames": index, "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": 200,
        "fps": int(fps) if float(fps).is_integer() else fps, "splits": {"train": f"0:{len(episodes)}"},
        "data_path": DATA_PATH, "video_path": None, "features": feats,
    }
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4) + "\n")
    (root / "meta" / "stats.json").write_text(json.dumps(stats, indent=4) + "\n")
    _write_tasks(pa, pq, tasks, root / "meta" / "tasks.parquet")
    pq.write_table(pa.Table.from_pylist(rows), root / EPISODES_PATH, compression="snappy")
    return info


def _columns(s, seg, feats, episode, first_index, task_index):
    """{feature: numpy array (frames,) or (frames, n)} of one episode."""
    a, b = seg["rows"]
    n = b - a
    columns = {"observation.state": _stack(s, feats["observation.state"]["names"], a, b),
               "action": _stack(s, feats["action"]["names"], a, b)}
    for name, f in feats.items():
        if name.startswith("telemetry."):
            columns[name] = s.columns[name[len("telemetry."):]][a:b].astype(f["dtype"])
    t = s.columns["t"][a:b]
    columns.update({"timestamp": (t - t[0]).astype(np.float32), "frame_index": np.arange(n, dtype=np.int64),
                    "episode_index": np.full(n, episode, np.int64), "index": np.arange(first_index, first_index + n, dtype=np.int64),
                    "task_index": np.full(n, task_index, np.int64)})
    return columns


def _episode_row(s, seg, episode, length, place, first_index, tasks, columns, feats):
    row = {"episode_index": episode, "tasks": [_task(s)], "length": length,
           "data/chunk_index": place[0], "data/file_index": place[1],
           "dataset_from_index": first_index, "dataset_to_index": first_index + length}
    for n in feats:
        row.update({f"stats/{n}/{k}": v for k, v in _stats(columns[n]).items()})
    hello = seg["hello"]
    row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0, "polyniod/session": s.name,
                "polyniod/segment": seg["id"], "polyniod/board_id": str(hello.board_id or ""),
                "polyniod/firmware": str(hello.fw or "")})
    return row


def _stats(values):
    """min, max, mean, std, count, quantiles of a feature's frames, per dimension (lists, as stats.json holds them)."""
    x = values.reshape(len(values), -1)
    as_float = x.astype(np.float64)
    stats = {"min": x.min(axis=0).tolist(), "max": x.max(axis=0).tolist(), "mean": as_float.mean(axis=0).tolist(),
             "std": as_float.std(axis=0).tolist(), "count": [len(x)]}
    stats.update({k: np.quantile(as_float, q, axis=0).tolist() for k, q in QUANTILES.items()})
    return stats


def _files(lengths, row_bytes):
    """(chunk, file) of each episode: episodes fill a file up to DATA_FILE_MB (never split), CHUNKS_SIZE files a chunk."""
    places, number, used = [], 0, 0
    for length in lengths:
        if used and used + length * row_bytes > DATA_FILE_MB * 2**20:
            number, used = number + 1, 0
        places.append(divmod(number, CHUNKS_SIZE))
        used += length * row_bytes
    return places


def _write_tasks(pa, pq, tasks, path):
    """meta/tasks.parquet as pandas writes DataFrame({"task_index"}, index=tasks): LeRobot reads it with pandas and
    takes each task's text from the index."""
    pandas = {"index_columns": ["__index_level_0__"],
              "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                                  "metadata": {"encoding": "UTF-8"}}],
              "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
                           "metadata": None},
                          {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object",
                           "metadata": None}],
              "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.0"}
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "__index_level_0__": pa.array(tasks, pa.string())})
    pq.write_table(table.replace_schema_metadata({"pandas": json.dumps(pandas)}), path, compression="snappy")


def _vector(names, units):
    return {"dtype": "float32", "shape": [len(names)], "names": names, "units": [units[n] for n in names]}


def _stack(s, names, a, b):
    return np.stack([s.columns[n][a:b] for n in names], axis=1).astype(np.float32)


def _arrow_type(pa, feature):
    value = getattr(pa, feature["dtype"])()
    return value if feature["shape"] == [1] else pa.list_(value, feature["shape"][0])


def _arrow(pa, values, feature):
    if feature["shape"] == [1]:
        return pa.array(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), feature["shape"][0])


def _task(s):
    program = s.header.get("program")
    name = program.get("name") if isinstance(program, dict) else program
    return str(name) if name else "unspecified"


def _robot(hello):
    rate = f"{hello.frame_hz:g} Hz" if hello.frame_hz else "no rate"
    return f"{_robot_type(hello)}: {', '.join(hello.joints) or 'no joints'} at {rate}"


def _fields(seg, other):
    """What seg's telemetry schema has that other's lacks (or its order of fields)."""
    extra = [n for n in seg["schema"].names if n not in other["schema"].names]
    return "fields " + ", ".join(extra) if extra else f"firmware {seg['hello'].fw}"


def _robot_type(hello):
    return hello.robot.get("robot") or "polyniod"


def _where(s, seg):
    return f"{s.name} (segment {seg['id']}, unit {seg['hello'].board_id})"

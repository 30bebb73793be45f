"""`host export` as MCAP, LeRobot v3.0, Parquet and CSV, read back with the real readers (mcap's reader, pyarrow)
and checked frame for frame against host.sessions.load: a clean session, one cut by kill -9, one with a device
reset (two segments), one whose reset changed the schema; byte-for-byte reproducible; atomic; the one-line
errors (no sessions, mixed robots, an --out that exists, a missing package)."""

import io
import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from polyniod_firmware import protocol as P

from host.cli import main
from host.link.schema import TelemetrySchema
from host.sessions import SessionWriter, load
from host.sessions.exporting import Progress
from tests.test_sessions import HELLO, SCHEMA_B, frame, hello_frame, record

mcap_reader = pytest.importorskip("mcap.reader")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

ROOT = Path(__file__).resolve().parent.parent


def gen0_schema(joints=("shoulder", "elbow")):
    """The Gen0 firmware's telemetry fields (firmware/telemetry.py schema), for the joints given."""
    fields = [("busy_us", "H", "us", 1), ("overruns", "H", "", 1), ("mode", "B", "", 1), ("flags", "B", "", 1)]
    for j in joints:
        fields += [(j + "_cmd_us", "H", "us", 1), (j + "_raw", "H", "counts", 1), (j + "_deg", "h", "deg", 0.01),
                   (j + "_target_deg", "h", "deg", 0.01)]
    fields += [(a, "h", "g", 1 / 8192) for a in ("ax", "ay", "az")] + [(g, "h", "deg/s", 1 / 32.8) for g in ("gx", "gy", "gz")]
    fields.append(("model", "B", "", 1))
    return [{"name": n, "type": t, "unit": u, "scale": s} for n, t, u, s in fields]


def gen0_hello(board_id="unit-a", rate_hz=100, joints=("shoulder", "elbow")):
    return {"fw": "0.3.0", "proto": 1, "board_id": board_id, "rate_hz": rate_hz, "telemetry_every": 1,
            "robot": {"robot": "gen0", "joints": [{"name": j} for j in joints]}, "schema": gen0_schema(joints)}


GEN0 = gen0_hello()


def gen0_frames(n, hello=GEN0, skip=(), t0_us=5000):
    """A boot's frames: the hello (seq 0), then telemetry frame k (seq k + 1; a frame in `skip` is lost on the way)
    with every field a function of k."""
    schema = TelemetrySchema(hello["schema"])
    period = 1_000_000 // hello["rate_hz"]
    frames = [hello_frame(0, hello, t_us=t0_us)]
    for k in range(n):
        if k in skip:
            continue
        values = []
        for i, f in enumerate(schema.fields):
            v = (k * 37 + i * 101) % 3000
            values.append(v if f["type"] == "H" else v - 1500 if f["type"] == "h" else (k + i) % 4)
        frames.append(P.encode_frame(P.T_TELEMETRY, (k + 1) & 0xFFFF, t0_us + (k + 1) * period, schema.struct.pack(*values)))
    return frames


def in_reads(frames, t0=1000.0, per_read=5):
    """[(host time, bytes)]: the frames in reads of per_read, 50 ms apart."""
    return [(t0 + 0.05 * i, b"".join(frames[k:k + per_read])) for i, k in enumerate(range(0, len(frames), per_read))]


KILLED = """
import sys, time
sys.path.insert(0, {root!r})
from tests.test_export import gen0_frames
from host.sessions import SessionWriter
w = SessionWriter(sys.argv[1], "killed", {{"program": {{"name": "steps"}}}})
print(w.path, flush=True)
for data in gen0_frames(100000):
    w.append_bytes(time.time(), data)
    time.sleep(0.001)
"""


def killed_session(directory):
    """A session whose recorder was killed with SIGKILL mid-stream (no end record, maybe a cut last record)."""
    child = subprocess.Popen([sys.executable, "-c", KILLED.format(root=str(ROOT)), str(directory)], stdout=subprocess.PIPE, text=True)
    path = Path(child.stdout.readline().strip())
    deadline = time.monotonic() + 30
    while len(load(path)) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """{name: session path}: steps (a lost frame, an ack, a log, markers), reset (two boots), killed (kill -9),
    other (another robot), schemas (a reset into a firmware with another field), plain (no joints)."""
    d = tmp_path_factory.mktemp("sessions")
    steps = gen0_frames(300, skip={40, 50, 90})  # frame 50 lost; an ack and a log take the seqs of 40 and 90
    steps.insert(41, P.encode_frame(P.T_ACK, 41, 415000, P.ack_payload(3, P.E_OK, b'{"rate_hz":100}')))
    steps.insert(90, P.encode_frame(P.T_LOG, 91, 915000, P.log_payload(P.LOG_WARN, "imu: missing")))
    w = SessionWriter(d, "steps", {"program": {"name": "steps", "seed": 3}})
    for i, (t, data) in enumerate(in_reads(steps)):
        w.append_bytes(t, data)
        if i == 10:
            w.marker(t, {"event": "note", "text": "half way"})
    w.marker(1002.0, {"event": "stopped", "reason": "program done"})
    w.close()
    reset = gen0_frames(150) + gen0_frames(120, t0_us=P.TICKS_PERIOD - 300000)  # the second boot's ticks wrap
    record(d, in_reads(reset, t0=2000.0), name="reset", header={"program": {"name": "sines"}})
    record(d, in_reads(gen0_frames(50, gen0_hello("unit-b", joints=("shoulder", "elbow", "wrist")))), name="other")
    hello_b = {**HELLO, "fw": "0.2.0", "schema": SCHEMA_B}
    changed = [hello_frame(0)] + [frame(1 + i, i) for i in range(20)] + [hello_frame(0, hello_b)]
    changed += [frame(1 + i, 20 + i, SCHEMA_B) for i in range(30)]
    record(d, in_reads(changed, t0=3000.0), name="schemas")
    record(d, in_reads(changed[:21]), name="plain")
    paths = {p.stem: p for p in d.glob("*.session")}
    paths["killed"] = killed_session(d)
    return paths


def export(*args):
    """`host export ARGS` in this process: (exit code, stdout, stderr)."""
    import contextlib

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["export", *map(str, args)])
    return code, out.getvalue(), err.getvalue()


def exported(made, tmp_path, fmt, *names, out=None):
    out = out or tmp_path / f"out-{fmt}"
    code, stdout, err = export(*(made[n] for n in names), "--format", fmt, "--out", out)
    assert code == 0, err
    return out


def one_line_error(code, out, err):
    assert code == 1 and not out, (out, err)
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


# -- MCAP --------------------------------------------------------------------------------------------------

def read_mcap(path):
    with open(path, "rb") as f:
        reader = mcap_reader.make_reader(f)
        summary = reader.get_summary()
        messages = [(schema, channel, message) for schema, channel, message in reader.iter_messages(log_time_order=False)]
        metadata = [(m.name, m.metadata) for m in reader.iter_metadata()]
    return summary, messages, metadata


def check_mcap(path, s):
    summary, messages, metadata = read_mcap(path)
    topics = {c.id: c.topic for c in summary.channels.values()}
    counts = {topics[c]: n for c, n in summary.statistics.channel_message_counts.items()}
    assert counts.get("/telemetry", 0) == len(s) and counts.get("/commands", 0) == len(s.acks)
    assert counts.get("/log", 0) == len(s.logs) and counts.get("/markers", 0) == len(s.markers)
    telemetry = [(schema, m) for schema, c, m in messages if c.topic == "/telemetry"]
    assert len(telemetry) == len(s)
    for i, (schema, m) in enumerate(telemetry):  # frame for frame, in order
        value = json.loads(m.data)
        seg = s.segments[value["segment"]]
        assert seg["rows"][0] <= i < seg["rows"][1]
        assert set(value) == {"t", "seq", "segment", *seg["schema"].names}
        for name, v in value.items():
            assert v == s.columns[name][i], (i, name)
        assert m.log_time == round(s.columns["t_host"][i] * 1e9) and m.publish_time == round(s.columns["t"][i] * 1e9)
        assert m.sequence == s.columns["seq"][i]
    schema = telemetry[0][0] if telemetry else None
    if schema is not None:  # Foxglove plots JSON messages of a jsonschema schema; each field says its unit
        assert schema.encoding == "jsonschema" and all(c.message_encoding == "json" for c in summary.channels.values())
        properties = json.loads(schema.data)["properties"]
        assert properties["shoulder_deg" if "shoulder_deg" in s.units else "a_deg"]["description"] == "unit: deg"
        assert properties["seq"]["type"] == "integer" and properties["t"]["type"] == "number"
    replies = [json.loads(m.data) for _, c, m in messages if c.topic == "/commands"]
    assert [(r["cmd_seq"], r["code"], r["data"].encode()) for r in replies] == [a[1:] for a in s.acks]
    logs = [(json.loads(m.data), m.log_time) for _, c, m in messages if c.topic == "/log"]
    assert [(v["message"], v["level"], t) for v, t in logs] == [(text, level + 1, round(t * 1e9)) for t, level, text in s.logs]
    assert [json.loads(m.data) for _, c, m in messages if c.topic == "/markers"] == [m for _, m in s.markers]
    log_times = [m.log_time for _, _, m in messages]
    assert log_times == sorted(log_times)  # every stream merged in host-time order
    meta = dict(metadata)
    assert meta["polyniod.session"]["session_id"] == s.name
    assert meta["polyniod.session"]["firmware"] == (s.hello.fw if s.hello else "")
    assert json.loads(meta["polyniod.robot"]["robot"]) == (s.hello.robot if s.hello else {})
    hellos = [json.loads(m["hello"]) for name, m in metadata if name == "polyniod.hello"]
    assert hellos == [dict(seg["hello"]) for seg in s.segments if seg["hello"]]
    return messages


@pytest.mark.parametrize("name", ["steps", "reset", "killed", "schemas"])
def test_mcap_holds_every_stream_frame_for_frame(made, tmp_path, name):
    s = load(made[name])
    check_mcap(exported(made, tmp_path, "mcap", name), s)
    if name == "reset":
        assert [seg["frames"] for seg in s.segments] == [150, 120]
    if name == "killed":
        assert not s.complete and s.end is None and len(s) >= 150


def test_a_truncated_mcap_still_reads_up_to_its_last_whole_chunk(made, tmp_path, monkeypatch):
    from host.sessions import mcap

    monkeypatch.setattr(mcap, "CHUNK_BYTES", 4096)  # many chunks from a small session
    path = exported(made, tmp_path, "mcap", "steps")
    data = path.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[:len(data) * 2 // 3])
    got = []
    with open(cut, "rb") as f:
        try:
            for _, channel, message in mcap_reader.NonSeekingReader(f).iter_messages(log_time_order=False):
                got.append((channel.topic, message.log_time, message.data))
        except Exception:  # noqa: BLE001 -- the cut record at the end; mcap raises its own EndOfFile
            pass
    whole = [(c.topic, m.log_time, m.data) for _, c, m in read_mcap(path)[1]]
    assert len(whole) // 3 < len(got) < len(whole) and got == whole[:len(got)]


# -- Parquet -----------------------------------------------------------------------------------------------

def check_parquet(path, sessions):
    table = pq.read_table(path)
    assert table.num_rows == sum(len(s) for s in sessions)
    assert table.column_names[:6] == ["session", "board_id", "segment", "t", "t_host", "seq"]
    about = json.loads(table.schema.metadata[b"polyniod"])
    assert [a["session"] for a in about["sessions"]] == [s.name for s in sessions]
    columns = {n: table.column(n).to_pylist() for n in table.column_names}
    first = 0
    for s in sessions:
        rows = slice(first, first + len(s))
        assert columns["session"][rows] == [s.name] * len(s)
        for seg in s.segments:
            a, b = seg["rows"]
            assert columns["board_id"][first + a:first + b] == [seg["hello"].board_id] * (b - a)
        for name in table.column_names[2:]:
            field = table.schema.field(name)
            if name not in s.columns:
                assert columns[name][rows] == [None] * len(s)
                continue
            assert field.metadata[b"unit"].decode() == s.units[name]
            values = s.columns[name]
            want = [None if isinstance(v, float) and math.isnan(v) else v for v in values.tolist()]
            assert columns[name][rows] == want, name  # values, and null where a segment's schema lacks the field
            assert pa.types.is_integer(field.type) == (values.dtype.kind in "iu" or name in ("segment", "seq")), name
        first += len(s)


def test_parquet_holds_many_sessions_typed_with_units_unit_and_segment(made, tmp_path):
    names = ["steps", "reset", "killed", "schemas", "other"]
    check_parquet(exported(made, tmp_path, "parquet", *names), [load(made[n]) for n in names])


def test_parquet_of_a_schema_change_keeps_integers_and_nulls(made, tmp_path):
    table = pq.read_table(exported(made, tmp_path, "parquet", "schemas"))
    assert table.schema.field("n").type == pa.int64() and table.schema.field("b").metadata[b"unit"] == b"g"
    assert table.column("b").null_count == 20 and table.column("b").to_pylist()[20:] == [-n * 0.5 for n in range(20, 50)]


# -- LeRobot v3.0 ------------------------------------------------------------------------------------------

def check_lerobot(root, sessions):
    """The dataset against the v3.0 layout, and every frame against the loaded sessions."""
    info = json.loads((root / "meta" / "info.json").read_text())
    episodes = [(s, seg) for s in sessions for seg in s.segments if seg["frames"]]
    frames = sum(seg["frames"] for _, seg in episodes)
    assert info["codebase_version"] == "v3.0" and info["robot_type"] == "gen0" and info["fps"] == 100
    assert (info["total_episodes"], info["total_frames"]) == (len(episodes), frames)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet" and info["video_path"] is None
    assert info["splits"] == {"train": f"0:{len(episodes)}"} and info["chunks_size"] == 1000
    features = info["features"]
    state, action = features["observation.state"], features["action"]
    assert state["names"] == ["shoulder_deg", "elbow_deg", "ax", "ay", "az", "gx", "gy", "gz"] and state["shape"] == [8]
    assert action["names"] == ["shoulder_cmd_us", "elbow_cmd_us"] and action["dtype"] == "float32"
    for name in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert features[name]["shape"] == [1] and features[name]["dtype"] in ("float32", "int64")
    data = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    assert data.column_names == list(features) and data.num_rows == frames
    assert data.schema.field("observation.state").type == pa.list_(pa.float32(), 8)
    got = {n: np.array(data.column(n).to_pylist()) for n in data.column_names}
    meta = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    tasks = pq.read_table(root / "meta" / "tasks.parquet")
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["__index_level_0__"]
    task_names = tasks.column("__index_level_0__").to_pylist()
    assert tasks.column("task_index").to_pylist() == list(range(len(task_names)))
    first = 0
    for k, ((s, seg), row) in enumerate(zip(episodes, meta)):
        a, b = seg["rows"]
        rows = slice(first, first + b - a)
        assert (row["episode_index"], row["length"], row["dataset_from_index"], row["dataset_to_index"]) == (k, b - a, first, first + b - a)
        assert (row["data/chunk_index"], row["data/file_index"], row["polyniod/session"], row["polyniod/segment"]) == (0, 0, s.name, seg["id"])
        assert row["tasks"] == [task_names[got["task_index"][first]]] == [s.header["program"]["name"]]
        assert row["polyniod/board_id"] == seg["hello"].board_id and row["stats/action/count"] == [b - a]
        want_state = np.stack([s.columns[n][a:b] for n in state["names"]], axis=1).astype(np.float32)
        assert np.array_equal(got["observation.state"][rows], want_state)
        assert np.array_equal(got["action"][rows], np.stack([s.columns[n][a:b] for n in action["names"]], axis=1).astype(np.float32))
        for name in features:
            if name.startswith("telemetry."):
                assert np.array_equal(got[name][rows], s.columns[name[10:]][a:b]), name
        t = s.columns["t"][a:b]
        assert np.array_equal(got["timestamp"][rows], (t - t[0]).astype(np.float32))
        assert got["frame_index"][rows].tolist() == list(range(b - a)) and set(got["episode_index"][rows]) == {k}
        assert row["stats/observation.state/max"] == want_state.max(axis=0).tolist()
        first += b - a
    assert got["index"].tolist() == list(range(frames))
    stats = json.loads((root / "meta" / "stats.json").read_text())
    assert set(stats) == set(features)
    for name in ("observation.state", "action", "timestamp"):
        assert set(stats[name]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
        assert len(stats[name]["mean"]) == features[name]["shape"][0] and stats[name]["count"] == [frames]
        assert np.allclose(stats[name]["mean"], got[name].reshape(frames, -1).astype(np.float64).mean(axis=0))
    return info


def test_lerobot_dataset_of_sessions_a_kill_and_a_reset(made, tmp_path):
    names = ["steps", "reset", "killed"]
    info = check_lerobot(exported(made, tmp_path, "lerobot", *names), [load(made[n]) for n in names])
    assert info["total_episodes"] == 4  # the reset's two device runs are two episodes
    s = load(made["steps"])
    assert s.stats["drops"] == 1  # the lost frame is a gap in the timestamps, not papered over
    gaps = np.diff(s.columns["t"][:s.segments[0]["rows"][1]])
    assert sorted(set(np.round(gaps, 6))) == [0.01, 0.02]


def test_the_real_lerobot_reader_loads_it(made, tmp_path):
    """Only where LeRobot is installed (it is not a test dependency: PyTorch, datasets, ...)."""
    pytest.importorskip("lerobot")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = exported(made, tmp_path, "lerobot", "steps", "reset")
    s = load(made["reset"])
    ds = LeRobotDataset("local/polyniod", root=root, delta_timestamps={"action": [0.0, 0.01]})
    assert len(ds) == 297 + 270 and ds.num_episodes == 3 and ds.fps == 100
    item = ds[297 + 150]  # the reset's second device run, first frame
    assert item["episode_index"].item() == 2 and item["task"] == "sines" and item["timestamp"].item() == 0
    assert item["action"].tolist()[0] == [s.columns["shoulder_cmd_us"][150], s.columns["elbow_cmd_us"][150]]


def test_lerobot_refuses_mixed_robots_and_schemas_in_one_line(made, tmp_path):
    for names, words in ((["steps", "other"], "shoulder, elbow, wrist"), (["schemas"], "fields b"),
                         (["plain"], "no joint angles")):
        out = tmp_path / "ds"
        err = one_line_error(*export(*(made[n] for n in names), "--format", "lerobot", "--out", out))
        assert words in err and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# -- every format: reproducible, atomic, errors --------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["mcap", "parquet", "lerobot", "csv"])
def test_the_same_sessions_give_the_same_bytes(made, tmp_path, fmt):
    names = ["steps", "reset"] if fmt in ("parquet", "lerobot") else ["reset"]
    first = exported(made, tmp_path, fmt, *names, out=tmp_path / "a")
    time.sleep(0.01)  # the clock moves on: nothing of it may show
    second = exported(made, tmp_path, fmt, *names, out=tmp_path / "b")
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file()) if first.is_dir() else [Path()]
    assert files and all((first / f).read_bytes() == (second / f).read_bytes() for f in files)


def test_several_sessions_as_mcap_or_csv_are_a_directory_of_one_file_each(made, tmp_path):
    out = exported(made, tmp_path, "mcap", "steps", "reset")
    assert sorted(p.name for p in out.iterdir()) == ["reset.mcap", "steps.mcap"]
    check_mcap(out / "reset.mcap", load(made["reset"]))
    code, stdout, err = export(made["steps"], made["reset"], "--format", "csv", "--out", tmp_path / "csvs", "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert [Path(f["path"]).name for f in result["files"]] == ["reset.csv", "steps.csv"] and result["frames"] == 297 + 270
    assert (tmp_path / "csvs" / "steps.csv").read_text().count("\n") == 298


def test_a_failed_export_leaves_nothing(made, tmp_path, monkeypatch):
    from host.sessions import lerobot, parquet

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lerobot, "_write_tasks", broken)  # the dataset's last files
    monkeypatch.setattr(parquet, "_table", broken)
    for fmt, out in (("lerobot", tmp_path / "ds"), ("parquet", tmp_path / "p.parquet")):
        assert "No space left" in one_line_error(*export(made["steps"], "--format", fmt, "--out", out))
        assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_one_line_errors(made, tmp_path):
    assert "at least one SESSION" in one_line_error(*export("--format", "mcap", "--out", tmp_path / "x.mcap"))
    exists = tmp_path / "exists.parquet"
    exists.write_bytes(b"mine")
    for fmt, out in (("parquet", exists), ("lerobot", tmp_path)):
        assert "exists" in one_line_error(*export(made["steps"], "--format", fmt, "--out", out))
    assert exists.read_bytes() == b"mine"
    assert "--format" in one_line_error(*export(made["steps"], "--out", tmp_path / "noext"))
    assert "--out PATH" in one_line_error(*export(made["steps"], "--format", "mcap"))
    assert "one or the other" in one_line_error(*export(made["steps"], "--csv", "x.csv", "--out", "y.csv"))
    assert "given twice" in one_line_error(*export(made["steps"], made["steps"], "--format", "parquet", "--out", tmp_path / "t.parquet"))
    assert "host sessions" in one_line_error(*export("nosuch", "--format", "parquet", "--out", tmp_path / "n.parquet", "--dir", tmp_path))
    assert "standard output" in one_line_error(*export(made["steps"], "--format", "mcap", "--out", "-"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.parquet"]


@pytest.mark.parametrize("fmt, label, package", [("mcap", "MCAP", "mcap"), ("parquet", "Parquet", "pyarrow"),
                                                 ("lerobot", "LeRobot", "pyarrow")])
def test_a_missing_package_is_one_line_saying_what_to_install(made, tmp_path, monkeypatch, fmt, label, package):
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")] + [package]:
        monkeypatch.setitem(sys.modules, name, None)  # `import` raises ModuleNotFoundError: as if not installed
    err = one_line_error(*export(made["steps"], "--format", fmt, "--out", tmp_path / "x"))
    assert err == f"error: {label} export needs {package}, which is not installed here: pip install 'polyniod[export]'\n"
    assert not (tmp_path / "x").exists()


def test_building_the_parser_loads_no_export_package():
    code = "import sys, host.cli; host.cli.build_parser(); print(' '.join(m for m in ('mcap', 'pyarrow') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr


def test_progress_shows_only_for_a_long_export():
    now = [0.0]
    err = io.StringIO()
    progress = Progress("export mcap", 1000, stream=err, clock=lambda: now[0])
    progress.add(100)
    now[0] = 0.5
    progress.add(100)
    assert err.getvalue() == ""  # a quick export says nothing
    now[0] = 3.0
    progress.add(300)
    now[0] = 4.0
    progress.add(100)  # not a terminal: a line every 2 s
    progress.close()
    assert err.getvalue() == "export mcap: 500/1000 frames (50 %)\n"


# -- a real recording ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_live_recording_exports_with_the_boards_own_names(gen0, tmp_path):
    from tests.test_sessions import record_live

    s, _, _ = record_live(gen0, tmp_path, header={"program": {"name": "idle"}}, seconds=1.5)
    made = {"live": s.path}
    check_mcap(exported(made, tmp_path, "mcap", "live"), s)
    check_parquet(exported(made, tmp_path, "parquet", "live"), [s])
    info = check_lerobot(exported(made, tmp_path, "lerobot", "live"), [s])
    assert info["features"]["observation.state"]["units"] == ["deg", "deg", "g", "g", "g", "deg/s", "deg/s", "deg/s"]

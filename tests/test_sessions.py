"""Session files: recorded from a live virtual Gen0 and loaded back exactly; truncated, corrupted,
killed, out of space, reset mid-stream -- and still loading; the sessions/info/export commands."""

import csv
import json
import os
import random
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from polyniod_firmware import protocol as P

from host.link.client import Link
from host.sessions import SessionWriteError, SessionWriter, list_sessions, load
from host.sessions import store

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = [{"name": "a_deg", "type": "h", "unit": "deg", "scale": 0.01}, {"name": "n", "type": "H", "unit": "", "scale": 1}]
SCHEMA_B = SCHEMA + [{"name": "b", "type": "h", "unit": "g", "scale": 0.5}]
HELLO = {"fw": "0.1.0", "proto": 1, "board_id": "test", "schema": SCHEMA}


def frame(seq, n, schema=SCHEMA, period_us=2000, t0=0):
    """Telemetry frame number n: a_deg = (n % 500 - 250) / 100, n = n, b = -n / 2 (schema B)."""
    values = [n % 500 - 250, n & 0xFFFF, -n][:len(schema)]
    payload = struct.pack("<" + "".join(f["type"] for f in schema), *values)
    return P.encode_frame(P.T_TELEMETRY, seq, t0 + n * period_us, payload)


def hello_frame(seq, hello=HELLO, t_us=0):
    return P.encode_frame(P.T_HELLO, seq, t_us, json.dumps(hello).encode())


def reads(n_frames, per_read=5, t0=1000.0):
    """[(host time, bytes)] of a clean stream: a hello, then n telemetry frames in reads of per_read."""
    chunks = [(t0, hello_frame(0))]
    seq = 1
    for i in range(0, n_frames, per_read):
        k = min(per_read, n_frames - i)
        chunks.append((t0 + 0.01 * (i + 1), b"".join(frame(seq + j, i + j) for j in range(k))))
        seq += k
    return chunks


def record(directory, chunks, name="s", header=None, summary=None):
    w = SessionWriter(directory, name, header if header is not None else {"port": "/dev/test", "baud": 115200})
    for t, data in chunks:
        w.append_bytes(t, data)
    w.close(summary=summary)
    return w


# -- round trip through a live board -------------------------------------------------------------

def record_live(gen0, directory, header=None, connect=True, seconds=2.0):
    """Record a live board through the link; the session, and every frame as the link decoded it."""
    live = []
    with SessionWriter(directory, "live", {"port": gen0.port, **(header or {})}) as writer:
        with Link(gen0.port, on_bytes=writer.append_bytes, on_frame=lambda t, f: live.append((t, f))) as link:
            if connect:
                link.connect()
                writer.marker(time.time(), {"event": "note", "text": "connected"})
            time.sleep(seconds)
    return load(writer.path), live, link


def assert_loaded_as_live(s, live, schema):
    telemetry = [(t, f) for t, f in live if f[0] == P.T_TELEMETRY and len(f[3]) == schema.size]
    assert len(telemetry) > 50 and len(s) == len(telemetry) and s.stats["undecoded_frames"] == 0
    assert np.array_equal(s.columns["t_host"], [t for t, _ in telemetry])  # the same reads, the same floats
    assert np.array_equal(s.columns["seq"] & 0xFFFF, [f[1] for _, f in telemetry])
    assert np.array_equal(s.columns["t"], np.array(P.unwrap_ticks([f[2] for _, f in telemetry])) / 1e6)
    for name, values in zip(schema.names, zip(*(schema.unpack(f[3]) for _, f in telemetry))):
        scale = schema.scales[schema.names.index(name)]
        assert np.array_equal(s.columns[name], [v * scale for v in values]), name


@pytest.mark.slow
def test_live_recording_loads_exactly_as_the_link_decoded_it(gen0, tmp_path):
    s, live, link = record_live(gen0, tmp_path)
    assert_loaded_as_live(s, live, link.schema)
    assert s.complete and s.end["complete"] and len(s.segments) == 1 and s.segments[0]["hello"] == link.hello
    assert s.units["shoulder_deg"] == "deg" and s.units["ax"] == "g" and s.units["t"] == "s"
    assert s.columns["shoulder_cmd_us"].dtype == np.int64 and s.columns["shoulder_deg"].dtype == np.float64
    assert s.stats["drops"] == link.seq_gaps == 0 and s.stats["crc_errors"] == 0
    assert s.markers[0][1] == {"event": "note", "text": "connected"}
    assert s.header["port"] == gen0.port and s.header["name"] == "live"


@pytest.mark.slow
def test_corrupted_link_bytes_load_exactly_as_the_link_saw_them(make_sim, tmp_path):
    _, _, clean = record_live(make_sim(preload=True), tmp_path, seconds=0)
    noisy = make_sim(preload=True, corrupt=0.01, seed=5)  # ~40% of frames hit: no 3 kB hello gets through
    s, live, link = record_live(noisy, tmp_path, {"hello": clean.hello}, connect=False, seconds=5.0)  # it boots first
    assert_loaded_as_live(s, live, clean.schema)
    assert s.stats["crc_errors"] == link.decoder.crc_errors > 50 and s.stats["garbage_bytes"] == link.decoder.garbage
    assert s.stats["drops"] > 50 and s.segments[0]["hello"] == clean.hello


# -- the writer ----------------------------------------------------------------------------------

def test_writer_names_header_and_never_overwrites(tmp_path):
    first = record(tmp_path, reads(3), name="arm test/../1")
    second = record(tmp_path, reads(3), name="arm test/../1")
    assert first.path.name == "arm_test_.._1.session" and second.path.name == "arm_test_.._1-2.session"
    assert {p.name for p in tmp_path.iterdir()} == {first.path.name, second.path.name}  # no temp files left
    header = load(second.path).header
    assert header["name"] == "arm_test_.._1-2" and header["format"] == store.FORMAT_VERSION
    assert header["software"]["name"] == "polyniod" and header["created"].endswith("+00:00") and header["baud"] == 115200
    stamped = record(tmp_path / "new" / "dir", reads(1), name=None)
    assert stamped.path.parent == tmp_path / "new" / "dir" and stamped.path.name[:2] == "20"
    assert record(tmp_path, reads(1), name="..").path.name.startswith("20")
    with SessionWriter(tmp_path / "given.session") as given:
        assert given.path == tmp_path / "given.session" and given.name == "given"


def test_appends_from_many_threads_interleave_whole_records(tmp_path):
    w = SessionWriter(tmp_path, "threads", {"hello": HELLO})

    def append(k):
        for i in range(200):
            w.append_bytes(1000.0 + k, frame(i, k * 1000 + i))

    threads = [threading.Thread(target=append, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    s = load(w.path)
    assert s.stats["records"] == 802 and s.stats["damaged_records"] == 0
    assert sorted(s.columns["n"].tolist()) == sorted(k * 1000 + i for k in range(4) for i in range(200))


def test_exception_in_with_block_closes_incomplete_with_the_reason(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with SessionWriter(tmp_path, "x", {"hello": HELLO}) as w:
            w.append_bytes(1.0, frame(0, 0))
            raise KeyboardInterrupt
    s = load(w.path)
    assert not s.complete and s.end == {**s.end, "complete": False, "reason": "KeyboardInterrupt"}
    assert len(s) == 1  # decoded with the header's hello: the stream had none
    w.close()  # idempotent
    with pytest.raises(SessionWriteError, match="closed"):
        w.append_bytes(2.0, b"x")


# -- damage: truncation, corruption, killed writers, full disks -----------------------------------

def test_truncation_at_every_byte_still_loads_every_complete_frame(tmp_path):
    chunks = reads(12, per_read=3)
    w = record(tmp_path, chunks, header={"hello": HELLO}, summary={"telemetry_frames": 12, "drops": 0})
    data = w.path.read_bytes()
    full = load(w.path)
    assert full.complete and full.columns["n"].tolist() == list(range(12))
    header_end = len(store.MAGIC) + store.RECORD_HEADER + struct.unpack_from("<I", data, len(store.MAGIC) + 3)[0]
    ends, pos = [], header_end  # where each B record ends, and the frames complete by then
    for i, (_, chunk) in enumerate(chunks):
        pos += store.RECORD_HEADER + len(chunk)
        ends.append((pos, 3 * i))
    cut_file = tmp_path / "cut.session"
    previous = 0
    for cut in range(len(data)):
        cut_file.write_bytes(data[:cut])
        s = load(cut_file)
        rows = s.columns.get("n", np.zeros(0)).tolist()  # no field columns while the header is cut
        assert not s.complete and rows == list(range(len(rows))) and rows == full.columns["n"][:len(rows)].tolist()
        assert len(rows) >= previous
        previous = len(rows)
        expected = max([frames for end, frames in ends if end <= cut], default=0)
        assert len(rows) == expected, cut
        assert s.stats["skipped_bytes"] == 0 and s.stats["damaged_records"] == 0
    assert len(rows) == 12 and s.end is None


def test_a_damaged_record_is_skipped_and_reported_the_rest_loads(tmp_path):
    chunks = reads(100, per_read=5)
    w = record(tmp_path, chunks)
    data = bytearray(w.path.read_bytes())
    s = load(w.path)
    assert len(s) == 100 and s.stats["drops"] == 0
    rng = random.Random(1)
    for trial in range(30):
        victim = rng.randrange(1, len(chunks))  # a B record holding frames 5 * (victim - 1) ...
        start = data.find(chunks[victim][1]) - store.RECORD_HEADER
        size = store.RECORD_HEADER + len(chunks[victim][1])
        damaged = bytearray(data)
        damaged[start + rng.randrange(size)] ^= 1 << rng.randrange(8)
        path = tmp_path / f"damaged{trial}.session"
        path.write_bytes(damaged)
        s = load(path)
        lost = set(range(5 * (victim - 1), 5 * victim))
        assert s.columns["n"].tolist() == [n for n in range(100) if n not in lost]
        assert s.stats["skipped_bytes"] == size and s.stats["damaged_records"] == 1
        assert s.stats["drops"] == (5 if victim < len(chunks) - 1 else 0) and s.complete  # a gap shows as drops


def test_random_corruption_never_raises_and_never_invents_frames(tmp_path):
    w = record(tmp_path, reads(200, per_read=7), header={"hello": HELLO})
    data = w.path.read_bytes()
    rng = random.Random(2)
    for trial in range(40):
        damaged = bytearray(data)
        for _ in range(rng.randrange(1, 20)):
            damaged[rng.randrange(len(store.MAGIC), len(damaged))] ^= rng.randrange(1, 256)
        path = tmp_path / f"c{trial}.session"
        path.write_bytes(damaged)
        s = load(path)
        assert s.stats["skipped_bytes"] + s.stats["truncated_bytes"] > 0
        if "n" in s.columns:  # unless both the header's and the stream's hello were hit
            n = s.columns["n"]
            assert np.array_equal(s.columns["a_deg"], (n % 500 - 250) * 0.01)  # every row is an original frame
            assert len(set(n.tolist())) == len(n)


def test_not_a_session_and_empty_files(tmp_path):
    bad = tmp_path / "bad.session"
    bad.write_bytes(b"PLNDSESX" + bytes(100))
    with pytest.raises(store.NotASessionError, match="bad.session is not a Polyniod session file"):
        load(bad)
    empty = tmp_path / "empty.session"
    empty.write_bytes(b"PLND")
    s = load(empty)
    assert len(s) == 0 and not s.complete and s.segments == [] and s.header == {}


def test_device_reset_starts_a_segment_and_a_requested_hello_does_not(tmp_path):
    hello_b = {**HELLO, "fw": "0.2.0", "schema": SCHEMA_B}
    stream = [hello_frame(0)] + [frame(1 + i, i) for i in range(10)]
    stream += [hello_frame(14, t_us=19000)] + [frame(15 + i, 10 + i) for i in range(10)]  # asked for, after 3 lost
    stream += [hello_frame(0, hello_b, t_us=P.TICKS_PERIOD - 25000)]  # reset: seq restarts, new schema
    stream += [frame(1 + i, 20 + i, SCHEMA_B, t0=P.TICKS_PERIOD - 60000) for i in range(30)]  # ticks wrap inside
    w = record(tmp_path, [(1000.0 + i, f) for i, f in enumerate(stream)])
    s = load(w.path)
    assert [seg["frames"] for seg in s.segments] == [20, 30]
    assert [seg["hello"]["fw"] for seg in s.segments] == ["0.1.0", "0.2.0"]
    assert s.columns["n"].tolist() == list(range(50)) and s.columns["segment"].tolist() == [0] * 20 + [1] * 30
    assert np.isnan(s.columns["b"][:20]).all() and np.array_equal(s.columns["b"][20:], -np.arange(20, 50) * 0.5)
    assert s.units["b"] == "g" and [seg["drops"] for seg in s.segments] == [3, 0]
    t = s.columns["t"]
    assert np.allclose(np.diff(t[:20]), 0.002) and np.allclose(np.diff(t[20:]), 0.002)  # unwrapped per segment
    assert t[20] == (P.TICKS_PERIOD - 20000) / 1e6 and t[-1] == (P.TICKS_PERIOD + 38000) / 1e6
    assert s.columns["seq"][20:].tolist() == list(range(1, 31))


def test_unwrapping_matches_the_protocol_module(tmp_path):
    ticks = [P.TICKS_PERIOD - 7000 + 3000 * i for i in range(10)]
    seqs = [(65530 + i) & 0xFFFF for i in range(10)]
    stream = b"".join(P.encode_frame(P.T_TELEMETRY, q, t, struct.pack("<hH", 0, i)) for i, (q, t) in enumerate(zip(seqs, ticks)))
    s = load(record(tmp_path, [(1.0, stream)], header={"hello": HELLO}).path)
    assert s.columns["t"].tolist() == [u / 1e6 for u in P.unwrap_ticks([t % P.TICKS_PERIOD for t in ticks])]
    assert s.columns["seq"].tolist() == P.unwrap_seqs(seqs)


def test_acks_logs_and_text_outside_frames(tmp_path):
    stream = hello_frame(0) + b"Traceback (most recent call last):\r\n" + frame(1, 0)
    stream += P.encode_frame(P.T_ACK, 2, 4000, P.ack_payload(7, P.E_OK, b'{"ok":1}'))
    stream += P.encode_frame(P.T_LOG, 3, 5000, P.log_payload(P.LOG_WARN, "imu: missing")) + frame(4, 2)
    s = load(record(tmp_path, [(5.0, stream[:40]), (6.0, stream[40:])]).path)
    assert s.acks == [(6.0, 7, P.E_OK, b'{"ok":1}')] and s.logs == [(6.0, P.LOG_WARN, "imu: missing")]
    assert "Traceback" in s.text and s.stats["garbage_bytes"] > 30
    assert s.stats["frames"] == {"hello": 1, "telemetry": 2, "ack": 1, "log": 1}
    assert s.columns["n"].tolist() == [0, 2] and s.stats["drops"] == 0


WRITER_CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
from tests.test_sessions import HELLO, frame
from host.sessions import SessionWriter, SessionWriteError
limit = int(sys.argv[2])
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
w = SessionWriter(sys.argv[1], "child", {{"hello": HELLO}})
print(w.path, flush=True)
n = 0
try:
    while True:
        w.append_bytes(time.time(), frame(n, n))
        n += 1
        time.sleep(0.001)
except SessionWriteError as e:
    print("append:", e, flush=True)
try:
    w.close()
except SessionWriteError as e:
    print("close:", e, flush=True)
"""


def writer_child(tmp_path, limit=0):
    return subprocess.Popen([sys.executable, "-c", WRITER_CHILD.format(root=str(ROOT)), str(tmp_path), str(limit)],
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_9_loses_at_most_100_ms(tmp_path):
    child = writer_child(tmp_path)
    path = Path(child.stdout.readline().strip())
    time.sleep(1.5)
    killed_at = time.time()
    child.send_signal(signal.SIGKILL)
    child.wait()
    s = load(path)
    assert not s.complete and s.end is None
    assert len(s) > 300 and s.columns["n"].tolist() == list(range(len(s)))
    assert killed_at - s.columns["t_host"][-1] <= 0.1


def test_a_failing_write_raises_a_clear_error_and_keeps_a_loadable_file(tmp_path):
    child = writer_child(tmp_path, limit=20000)  # RLIMIT_FSIZE: writes past 20 kB fail with EFBIG
    out, _ = child.communicate(timeout=60)
    path = Path(out.splitlines()[0])
    assert "append: cannot write session" in out and "File too large" in out and "loads as incomplete" in out
    assert "close: cannot write session" in out
    assert path.stat().st_size == 20000
    s = load(path)
    assert not s.complete and len(s) > 100 and s.columns["n"].tolist() == list(range(len(s)))
    assert s.stats["damaged_records"] == 0


@pytest.mark.parametrize("escapes, sizes", [(2 / 3, [31]), (0.01, [31]), (0.01, [31, 31, 31, 3, 60])])
def test_bulk_runs_decode_exactly_as_frame_by_frame(escapes, sizes):
    """Loading leans on FrameDecoder.feed_runs: frames checked (each on its own CRC) but left packed, in
    runs of equal size. Fed byte by byte through feed(), every frame is taken alone; both must agree,
    damage and other versions included. Escapes dense (every frame has some) or sparse (the bulk path
    unstuffs only the stretches longer than the shortest: a run's frames with escapes), sizes mixed."""
    rng = random.Random(3)
    for trial in range(300):
        frames = []
        for i in range(rng.randrange(1, 40)):
            payload = bytes(rng.choice([0x7E, 0x7D]) if rng.random() < escapes else rng.randrange(256)
                            for _ in range(rng.choice(sizes)))
            if rng.random() < 0.05:  # an intact frame of protocol v2 among ours
                raw = struct.pack("<BHI", 0x22, i, i) + payload
                raw += struct.pack("<I", zlib.crc32(raw))
                frames.append(b"~" + raw.replace(b"}", b"}]").replace(b"~", b"}^") + b"~")
            else:
                frames.append(P.encode_frame(rng.choice([2, 2, 2, 3]), i, i, payload))
        stream = bytearray(b"".join(frames))
        for _ in range(rng.choice([0, 0, 1, 3])):
            stream[rng.randrange(len(stream))] ^= 1 << rng.randrange(8)
        whole, single = P.FrameDecoder(), P.FrameDecoder()
        runs = whole.feed_runs(bytes(stream))
        by_bytes = [f for i in range(len(stream)) for f in single.feed(stream[i:i + 1])]
        assert [(size, run[o:o + size]) for size, run in runs for o in range(0, len(run), size)] == \
            [(len(f[3]) + P.OVERHEAD, struct.pack("<BHI", 0x10 | f[0], f[1], f[2]) + f[3]
              + struct.pack("<I", zlib.crc32(struct.pack("<BHI", 0x10 | f[0], f[1], f[2]) + f[3]))) for f in by_bytes]
        counters = ("frames", "crc_errors", "garbage", "bad_escape", "short", "oversize", "version_errors", "peer_version")
        assert [getattr(whole, c) for c in counters] == [getattr(single, c) for c in counters]
        assert whole.take_text() == single.take_text()


# -- listing and the commands ------------------------------------------------------------------------

def test_list_sessions_reads_the_end_record_or_decodes(tmp_path):
    record(tmp_path, reads(10), name="closed", header={"program": {"name": "chirp", "seed": 3}},
           summary={"telemetry_frames": 10, "drops": 0})
    killed = record(tmp_path, reads(10), name="open").path
    data = killed.read_bytes()
    killed.write_bytes(data[:data.rfind(store.SYNC + b"E")])  # as if killed before close()
    record(tmp_path, reads(10), name="claims", summary={"telemetry_frames": 12345, "drops": 7})
    (tmp_path / "junk.session").write_bytes(b"not a session")
    rows = {r["name"]: r for r in list_sessions(tmp_path)}
    assert rows["closed"]["frames"] == 10 and rows["closed"]["program"] == "chirp" and rows["closed"]["complete"]
    assert rows["claims"]["frames"] == 12345 and rows["claims"]["drops"] == 7  # from E, not decoded
    assert rows["open"]["frames"] == 10 and rows["open"]["complete"] is False  # decoded
    assert "not a Polyniod session" in rows["junk"]["error"]


def host(*args, env=None):
    return subprocess.run([sys.executable, "-m", "host", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def one_line_error(proc):
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.slow
def test_sessions_info_export_commands(tmp_path):
    chunks = reads(20)
    chunks.append((1001.0, P.encode_frame(P.T_LOG, 21, 50000, P.log_payload(P.LOG_INFO, "program done"))))
    w = record(tmp_path, chunks, name="run1", header={"program": {"name": "steps", "seed": 4, "params": {"duration_ms": 100}}},
               summary={"telemetry_frames": 20, "drops": 0})
    env = {"POLYNIOD_SESSIONS": str(tmp_path)}
    listing = host("sessions", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    assert [(r["name"], r["frames"], r["program"], r["complete"]) for r in json.loads(listing.stdout)] == [("run1", 20, "steps", True)]
    table = host("sessions", "--dir", str(tmp_path))
    assert "run1" in table.stdout and "steps" in table.stdout and "yes" in table.stdout
    info = host("info", "run1", "--json", env=env)
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert described["stats"]["telemetry_frames"] == 20 and described["complete"]
    assert described["segments"][0]["schema"] == SCHEMA and described["units"]["a_deg"] == "deg"
    assert described["logs"][0]["text"] == "program done"
    text = host("info", str(w.path)).stdout
    assert "complete" in text and "steps" in text and "a_deg[deg]" in text and "program done" in text
    out = tmp_path / "out" / "run1.csv"
    out.parent.mkdir()
    exported = host("export", "run1", "--csv", str(out), "--json", env=env)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["rows"] == 20
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["t[s]", "t_host[s]", "seq", "segment", "a_deg[deg]", "n"]
    s = load(w.path)
    assert [float(r[4]) for r in rows[1:]] == s.columns["a_deg"].tolist() and [int(r[5]) for r in rows[1:]] == list(range(20))
    assert sorted(p.name for p in out.parent.iterdir()) == ["run1.csv"]


def test_command_errors_are_one_line(tmp_path):
    env = {"POLYNIOD_SESSIONS": str(tmp_path)}
    assert "host sessions" in one_line_error(host("info", "nosuch", env=env))
    assert "host sessions" in one_line_error(host("export", "nosuch", "--csv", str(tmp_path / "x.csv"), env=env))
    (tmp_path / "junk.session").write_bytes(b"hello")
    assert "not a Polyniod session file" in one_line_error(host("info", "junk", env=env))
    record(tmp_path, reads(2), name="ok")
    assert "cannot write" in one_line_error(host("export", "ok", "--csv", str(tmp_path / "no" / "dir" / "x.csv"), env=env))
    assert host("sessions", "--dir", str(tmp_path / "none")).stdout.startswith("no sessions in")


# -- where `host export --csv` writes: through symlinks, into FIFOs and devices, to stdout ------------

def export(capsys, *args):
    """`host export ...` in-process: (exit code, stdout, stderr)."""
    from host.cli import main

    code = main(["export", *args])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(code, err):
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def csv_of(directory, name):
    s = load(directory / f"{name}.session")
    return ["t[s]", "t_host[s]", "seq", "segment", "a_deg[deg]", "n"], len(s)


def test_export_writes_through_a_symlink_to_its_target(tmp_path, capsys):
    record(tmp_path, reads(5), name="ok")
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    target.chmod(0o600)
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    code, out, err = export(capsys, "ok", "--dir", str(tmp_path), "--csv", str(link))
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)  # the link is still a link ...
    rows = list(csv.reader(target.open()))  # ... and its target got the CSV, keeping its permissions
    assert rows[0] == csv_of(tmp_path, "ok")[0] and len(rows) == 6
    assert (target.stat().st_mode & 0o777) == 0o600
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "made.csv")
    code, out, err = export(capsys, "ok", "--dir", str(tmp_path), "--csv", str(dangling))
    assert code == 0, err
    assert dangling.is_symlink() and (tmp_path / "made.csv").read_text().startswith("t[s],")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_export_into_a_fifo_writes_directly_and_refuses_one_nobody_reads(tmp_path, capsys):
    record(tmp_path, reads(5), name="ok")
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    code, out, err = export(capsys, "ok", "--dir", str(tmp_path), "--csv", str(fifo))
    assert "nothing is reading" in error_line(code, err) and time.monotonic() - t0 < 5  # no wait for a reader
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    time.sleep(0.2)  # the reader is blocked in open(): it counts as the FIFO's reader
    code, out, err = export(capsys, "ok", "--dir", str(tmp_path), "--csv", str(fifo))
    reader.join(10)
    assert code == 0, err
    assert got and got[0].decode().splitlines()[0] == ",".join(csv_of(tmp_path, "ok")[0])
    assert len(got[0].decode().splitlines()) == 6 and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_export_into_a_device_writes_directly_and_reports_a_full_one(tmp_path, capsys):
    record(tmp_path, reads(5), name="ok")
    full, null = tmp_path / "full", tmp_path / "null"
    try:  # copies of /dev/full and /dev/null (root only): the real ones must never be at risk
        os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making device nodes needs root")
    code, out, err = export(capsys, "ok", "--dir", str(tmp_path), "--csv", str(full))
    assert "No space left" in error_line(code, err)
    assert stat.S_ISCHR(os.lstat(full).st_mode)  # the node is still there
    code, out, err = export(capsys, "ok", "--dir", str(tmp_path), "--csv", str(null))
    assert code == 0, err
    assert stat.S_ISCHR(os.lstat(null).st_mode) and os.lstat(null).st_rdev == os.makedev(1, 3)


def test_export_to_stdout(tmp_path, capsys):
    record(tmp_path, reads(5), name="ok")
    code, out, err = export(capsys, "ok", "--dir", str(tmp_path), "--csv", "-")
    assert code == 0, err
    rows = list(csv.reader(out.splitlines()))
    assert rows[0] == csv_of(tmp_path, "ok")[0] and len(rows) == 6  # stdout holds the CSV only
    assert "wrote 5 rows" in err and not (tmp_path / "-").exists()
    code, out, err = export(capsys, "ok", "--dir", str(tmp_path), "--csv", "-", "--json")
    assert "--json" in error_line(code, err) and not out
    code, out, err = export(capsys, "ok", "--dir", str(tmp_path), "--csv", str(tmp_path))
    assert "is a directory" in error_line(code, err)


# -- damaged or hand-edited records: shown, never a traceback; one bad file never hides the others ------

def write_raw(path, header, chunks, end=None, time_of=lambda k: 1000.0):
    """A session file record by record, with whatever header, end and record times it is given."""
    data = store.MAGIC + store.encode_record(store.HEADER, time_of(0), json.dumps(header).encode())
    for k, (_, chunk) in enumerate(chunks, 1):
        data += store.encode_record(store.BYTES, time_of(k), chunk)
    if end is not None:
        data += store.encode_record(store.END, time_of(len(chunks) + 1), json.dumps(end).encode())
    path.write_bytes(data)


def test_nan_times_and_wrong_typed_values_are_shown_not_a_traceback(tmp_path, capsys, monkeypatch):
    from host.cli import main

    record(tmp_path, reads(5), name="good", header={"program": {"name": "steps"}},
           summary={"telemetry_frames": 5, "drops": 0})
    write_raw(tmp_path / "nantime.session", {"port": "x", "created": "2024-05-01T10:00:00"}, reads(5),
              {"complete": True, "summary": {}}, time_of=lambda k: float("nan") if k % 2 else 1000.0 + k)
    write_raw(tmp_path / "inftime.session", {"port": "x"}, reads(5), time_of=lambda k: float("inf"))
    write_raw(tmp_path / "typed.session",
              {"created": 5, "program": {"name": ["x"], "params": [1, 2]}, "software": "v", "host": 7},
              reads(7), {"complete": "yes", "duration_s": "long", "summary": {"telemetry_frames": "lots", "drops": [1]}})
    (tmp_path / "junk.session").write_bytes(b"not a session")
    for name in ("nantime", "inftime", "typed"):
        for extra in ([], ["--json"]):
            code = main(["info", name, "--dir", str(tmp_path), *extra])
            out, err = capsys.readouterr()
            assert code == 0 and not err, err
            if extra:
                json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in --json"))  # valid JSON: no NaN
            else:
                assert "telemetry frames" in out
    assert "duration  0.0 s" in (main(["info", "inftime", "--dir", str(tmp_path)]) == 0 and capsys.readouterr().out)

    assert main(["sessions", "--dir", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"good", "nantime", "inftime", "typed", "junk"}
    assert rows["good"]["frames"] == 5 and rows["good"]["program"] == "steps" and rows["good"]["complete"]
    assert rows["typed"]["frames"] == 7 and rows["typed"]["drops"] == 0  # decoded: the end's figures are not counts
    assert rows["typed"]["created"] is None and rows["typed"]["program"] is None and rows["typed"]["complete"] is False
    assert rows["nantime"]["frames"] == 5 and rows["nantime"]["duration_s"] == 2.0  # NaN times span nothing
    assert "not a Polyniod session" in rows["junk"]["error"]
    assert main(["sessions", "--dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in rows)

    real = store.read_end  # a file that breaks the reader in a way nobody foresaw is listed as damaged
    monkeypatch.setattr(sys.modules["host.sessions.load"], "read_end", lambda p: 1 / 0 if Path(p).name == "typed.session" else real(p))
    rows = {r["name"]: r for r in list_sessions(tmp_path)}
    assert rows["typed"]["error"].startswith("damaged: ZeroDivisionError") and rows["good"]["frames"] == 5

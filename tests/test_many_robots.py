"""Many robots (issue 14 part 2): sessions carry the board's unit id, `host collect --port A --port B ...`
records several boards at once with the guarantees of one, `host sessions --unit` and `host train --unit`
pick one board's sessions, and the sessions of several units export into one LeRobot dataset."""

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from polyniod_firmware import protocol as P

from host.cli import main
from host.errors import UserError
from host.firmware_files import load_robot
from host.sessions import Session, list_sessions, load
from host.sim import VirtualGen0
from tests.test_collect import frames_of
from tests.test_sessions import HELLO, hello_frame, reads, record

HOST = [sys.executable, "-m", "host"]
ROBOT = Path(__file__).resolve().parent.parent / "hardware" / "gen0.json"
FAST_RATE = 200  # Hz: the figure; the default loop (hardware/gen0.json) runs at 100
SECONDS = 5
UNITS = ["240ac4000001", "240ac4000002", "240ac4000003"]


def robot_at(rate_hz, directory):
    """A copy of hardware/gen0.json whose loop runs at rate_hz."""
    robot = json.loads(ROBOT.read_text())
    robot["loop"]["rate_hz"] = rate_hz
    path = Path(directory) / f"gen0-{rate_hz}hz.json"
    path.write_text(json.dumps(robot))
    return path


def stored_seqs_run_on(path):
    """Whether the sequence numbers of every frame stored run without a gap and nothing failed its CRC."""
    frames, decoder = frames_of(path)
    seqs = np.array(P.unwrap_seqs([f[1] for f in frames]))
    return bool((np.diff(seqs) == 1).all()) and decoder.crc_errors == 0


# -- the unit in listings and in training (no board) ---------------------------------------------------

def unit_sessions(directory):
    """Three small sessions, one per unit in UNITS (the last one without its end record: decoded to be listed)."""
    paths = []
    for i, unit in enumerate(UNITS):
        header = {"port": f"/dev/test{i}", "hello": {"board_id": unit}, "program": {"name": "steps"}}
        chunks = [(1000.0, hello_frame(0, {**HELLO, "board_id": unit}))] + reads(5)[1:]
        w = record(directory, chunks, name=f"s{i}", header=header, summary={"telemetry_frames": 5, "drops": 0})
        paths.append(w.path)
    data = paths[-1].read_bytes()
    paths[-1].write_bytes(data[:data.rindex(b"\xa5\x5aE")])  # cut off the end record
    return paths


def test_sessions_are_listed_with_their_unit_and_filtered_by_it(tmp_path, capsys):
    unit_sessions(tmp_path)
    assert [r["board_id"] for r in list_sessions(tmp_path)] == UNITS
    assert main(["sessions", "--dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "unit" in table[0].split() and all(u in line for u, line in zip(UNITS, table[1:]))
    assert main(["sessions", "--dir", str(tmp_path), "--unit", UNITS[1].upper(), "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["s1"]
    assert main(["sessions", "--dir", str(tmp_path), "--unit", "240ac4ffffff"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no sessions of unit 240ac4ffffff") and all(u in out for u in UNITS)


def test_training_keeps_one_units_sessions_or_says_whose_there_are(tmp_path):
    from host.train.dataset import of_unit

    sessions = []
    for unit in UNITS:
        s = Session(tmp_path / f"{unit}.session")
        s.header = {"hello": {"board_id": unit}}
        sessions.append(s)
    assert of_unit(sessions, None) == sessions
    assert of_unit(sessions, UNITS[2].upper()) == [sessions[2]]
    with pytest.raises(UserError, match="--unit 240ac4ffffff: none of the 3 session.*" + ", ".join(UNITS)):
        of_unit(sessions, "240ac4ffffff")


def test_the_same_port_twice_is_refused_before_anything_is_opened(tmp_path, capsys):
    assert main(["collect", "--port", "/dev/nope", "--port", "/dev/nope", "--out", str(tmp_path)]) == 1
    assert "--port /dev/nope is given twice" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# -- three virtual Gen0s at once --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fleet():
    """Three virtual Gen0s (seeds 1..3) at FAST_RATE, 115200 baud, recorded by one `host collect` for SECONDS s:
    (its exit code, its JSON results, stderr, the sessions directory)."""
    work = Path(tempfile.mkdtemp(prefix="polyniod-fleet-"))
    robot = robot_at(FAST_RATE, work)
    boards = []
    try:
        for seed in (1, 2, 3):
            gen0 = VirtualGen0(seed=seed, preload=True, robot=str(robot))
            boards.append(gen0)
            gen0.start()
            assert gen0.wait_ready(30), gen0.failed
        ports = [arg for g in boards for arg in ("--port", g.port)]
        proc = subprocess.run(HOST + ["collect", *ports, "--duration", str(SECONDS), "--seed", "7", "--name", "fleet",
                                      "--out", str(work / "sessions"), "--json"],
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    finally:
        for gen0 in boards:
            gen0.stop()
    yield proc.returncode, json.loads(proc.stdout or "null"), proc.stderr, work / "sessions"
    shutil.rmtree(work, ignore_errors=True)


@pytest.mark.slow
def test_three_boards_at_200_hz_recorded_at_once_lose_no_frame(fleet):
    code, results, err, out = fleet
    assert code == 0, err
    units = [r["board_id"] for r in results]
    assert len(set(units)) == 3 and all(units), results
    for r in results:
        assert r["complete"] and r["reason"] == "program done: steps", r
        assert r["drops"] == 0 and r["crc_errors"] == 0 and r["segments"] == 1, r
        s = load(r["session"])
        assert s.name == f"fleet_{r['board_id']}" and s.hello.board_id == r["board_id"]
        assert s.complete and s.stats["drops"] == 0 and stored_seqs_run_on(s.path)
        t = s.columns["t"]  # the loop held its rate: a frame every tick of the last SECONDS (device time), give or
        # take the few ticks the firmware's own pauses cost at 200 Hz (as many with one board as with three)
        assert s.hello.rate_hz == FAST_RATE and np.median(np.diff(t)) == pytest.approx(1 / FAST_RATE)
        assert abs((t >= t[-1] - SECONDS).sum() - SECONDS * FAST_RATE) <= SECONDS * FAST_RATE // 50
    assert sorted(r["board_id"] for r in list_sessions(out)) == sorted(units)
    assert all(u in err for u in units)  # the progress line names each board


@pytest.mark.slow
def test_three_units_export_into_one_lerobot_dataset(fleet, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    _, results, _, _ = fleet
    sessions = [r["session"] for r in results]
    proc = subprocess.run(HOST + ["export", *sessions, "--format", "lerobot", "--out", str(tmp_path / "ds")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    episodes = pq.read_table(tmp_path / "ds" / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert [e["polyniod/board_id"] for e in episodes] == [r["board_id"] for r in results]
    assert [e["length"] for e in episodes] == [r["telemetry_frames"] for r in results]
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert info["fps"] == FAST_RATE and info["total_episodes"] == 3


@pytest.mark.slow
def test_training_pools_the_units_or_learns_from_one(fleet, tmp_path, capsys):
    from host.train.pipeline import train

    _, results, _, _ = fleet
    sessions = [r["session"] for r in results]
    units = [r["board_id"] for r in results]
    pooled = train("inverse", sessions, out=tmp_path / "pooled", progress=False, epochs=1)
    assert pooled["units"] == units and [s["unit"] for s in pooled["sessions"]] == units
    assert json.loads((tmp_path / "pooled" / "metrics.json").read_text())["units"] == units
    assert main(["train", *sessions, "--unit", units[1], "--epochs", "1", "--out", str(tmp_path / "one"), "--quiet",
                 "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["units"] == [units[1]] and [s["name"] for s in one["sessions"]] == [f"fleet_{units[1]}"]
    assert one["rows"]["train"] < pooled["rows"]["train"]


@pytest.mark.slow
def test_a_board_that_fails_loses_none_of_the_others_and_sigterm_stops_all(make_sim, tmp_path):
    rate = load_robot()["loop"]["rate_hz"]
    lost, kept = make_sim(preload=True, seed=4), make_sim(preload=True, seed=5)
    proc = subprocess.Popen(HOST + ["collect", "--port", lost.port, "--port", kept.port, "--program", "idle",
                                    "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    def frames_by_port():
        """{port: telemetry frames stored so far} of the sessions that exist."""
        found = {}
        for path in tmp_path.glob("*.session"):
            s = load(path)
            found[s.header["port"]] = len(s)
        return found

    def wait_until(ok, what):
        deadline = time.monotonic() + 60
        while not ok(frames_by_port()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"never {what}: {frames_by_port()}"
            time.sleep(0.1)

    wait_until(lambda f: len(f) == 2 and min(f.values()) >= rate, "recording both")
    lost.kill()  # its cable pulled
    at_kill = frames_by_port()[kept.port]
    wait_until(lambda f: f[kept.port] >= at_kill + 2 * rate, "recording on after the other board went")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {lost.port}: lost the connection") and \
        "session kept" in errors[0], err
    line, = out.splitlines()
    assert line.startswith(f"{kept.port} (unit ") and "stopped by the user" in line and "0 dropped" in line, out
    sessions = {s.header["port"]: s for s in map(load, tmp_path.glob("*.session"))}
    assert sessions[kept.port].complete and sessions[kept.port].stats["drops"] == 0
    assert stored_seqs_run_on(sessions[kept.port].path) and len(sessions[kept.port]) >= at_kill + 2 * rate
    gone = sessions[lost.port]
    assert not gone.complete and "lost the connection" in gone.end["reason"] and len(gone) >= rate
    assert {s.hello.board_id for s in sessions.values()} == {r["board_id"] for r in list_sessions(tmp_path)}
    assert all(s.name.endswith("_" + s.hello.board_id) for s in sessions.values())

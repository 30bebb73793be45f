"""`host collect` against the virtual Gen0: nothing lost at the nominal rate, and every fault
(kill -9, cable pulled, disk full, corrupted link, device reset, busy port, foreign board)
leaves a session that loads -- or, when nothing was recorded, no session and a one-line error."""

import json
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from polyniod_firmware import protocol as P

from host.collect import Recorder
from host.errors import DeviceError
from host.link.client import Link
from host.firmware_files import load_robot
from host.sessions import load
from host.sessions.store import BYTES, read_records

pytestmark = pytest.mark.slow  # collect runs seconds of telemetry from a virtual Gen0 (3-12 s each)

HOST = [sys.executable, "-m", "host"]


def collect(port, out, *args, **kw):
    return subprocess.Popen(HOST + ["collect", "--port", port, "--out", str(out), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, **kw)


def wait_for_session(out, proc, min_frames=0, timeout=30):
    """The session file once it exists and holds min_frames telemetry frames (the collect is recording)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(out.glob("*.session"))
        if found and (min_frames == 0 or len(load(found[0])) >= min_frames):
            return found[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("collect never started recording")


def last_error_line(stderr):
    lines = [line for line in stderr.strip().splitlines() if line]
    assert lines and lines[-1].startswith("error: "), stderr
    return lines[-1]


def frames_of(path):
    """Every frame in the stored bytes, decoded afresh: [(type, seq, t_us, payload)], and the decoder."""
    records, _ = read_records(path.read_bytes())
    decoder = P.FrameDecoder()
    frames = [f for kind, _, data in records if kind == BYTES for f in decoder.feed(data)]
    return frames, decoder


RATE = load_robot()["loop"]["rate_hz"]  # the firmware's default loop rate
WIRE_BYTES_PER_FRAME = 48.08  # Gen0's telemetry frame with its FLAGs and escapes (FIRMWARE.md, frame budget)


def test_no_frame_lost_at_the_nominal_rate(gen0, tmp_path):
    """The default rate at 115200 baud for 10 s: the sequence numbers of everything stored run without a gap."""
    proc = collect(gen0.port, tmp_path, "--duration", "10", "--seed", "7", "--json")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["complete"] and summary["reason"] == "program done: steps", summary
    assert summary["drops"] == 0 and summary["crc_errors"] == 0 and summary["segments"] == 1, summary
    expected = WIRE_BYTES_PER_FRAME * RATE * 10 / 115200  # 42 % of the link at 100 Hz
    assert 0.8 * expected < summary["link_utilisation"] < 1.2 * expected, summary
    assert "frames/s" in err and "shoulder" in err and "elbow" in err  # the live progress line

    s = load(summary["session"])
    assert s.complete and s.stats["drops"] == 0 and len(s) == summary["telemetry_frames"]
    assert s.header["program"] == {"name": "steps", "params": {"seed": "7", "duration_ms": "10000"}, "seed": 7}
    assert s.header["hello"]["schema"] and s.header["robot"]["joints"]
    started = [m for _, m in s.markers if m["event"] == "program started"]
    assert started and started[0]["params"]["seed"] == 7 and started[0]["params"]["dwell_min_ms"] == 200

    frames, decoder = frames_of(s.path)
    seqs = np.array(P.unwrap_seqs([f[1] for f in frames]))
    assert (np.diff(seqs) == 1).all(), "a frame is missing between the first and the last one stored"
    assert decoder.crc_errors == 0
    ticks = np.array(P.unwrap_ticks([f[2] for f in frames if f[0] == P.T_TELEMETRY]))
    program = (ticks >= ticks[-1] - 10e6)  # the program's 10 s of ticks
    assert abs(program.sum() - 10 * RATE) <= 10, program.sum()
    assert abs(np.median(np.diff(ticks)) - 1e6 / RATE) < 50


def test_kill_9_loses_at_most_100_ms(gen0, tmp_path):
    proc = collect(gen0.port, tmp_path, "--duration", "30")
    path = wait_for_session(tmp_path, proc, min_frames=2 * RATE)  # ~2 s of telemetry in
    time.sleep(0.5)
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    s = load(path)
    assert not s.complete and s.end is None
    assert len(s) >= 2 * RATE and s.stats["drops"] == 0  # what is there has no gap
    lost = killed_at - s.columns["t_host"][-1]
    assert lost <= 0.1, f"the last stored frame was read {lost * 1000:.0f} ms before the kill"


def test_cable_pulled_keeps_the_session(make_sim, tmp_path):
    gen0 = make_sim(preload=True)
    proc = collect(gen0.port, tmp_path, "--duration", "30")
    path = wait_for_session(tmp_path, proc, min_frames=RATE)
    gen0.kill()
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    line = last_error_line(err)
    assert f"lost the connection to {gen0.port}" in line and f"session kept: {path}" in line, line
    assert "incomplete" in line
    s = load(path)
    assert not s.complete and "lost the connection" in s.end["reason"] and len(s) > RATE // 2
    assert f"{len(s)} frames" in line


def test_disk_full_keeps_what_was_written(gen0, tmp_path):
    def small_disk():  # the file may not grow past 30 KB: writes fail like on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (30000, 30000))

    proc = collect(gen0.port, tmp_path, "--duration", "30", preexec_fn=small_disk)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    line = last_error_line(err)
    assert "cannot write session" in line and "session kept" in line and "incomplete" in line, line
    path = next(tmp_path.glob("*.session"))
    s = load(path)
    assert not s.complete and len(s) > 100 and s.stats["drops"] == 0
    assert path.stat().st_size <= 30000


def test_corrupted_link_keeps_every_intact_frame(gen0, tmp_path):
    """1 % of the bytes get a flipped bit once the program runs (the 3 KB hello could not cross such
    a link: P(intact) ~ 4e-14). Every damaged frame is counted, every intact one stored."""
    proc = collect(gen0.port, tmp_path, "--duration", "4", "--json")
    path = wait_for_session(tmp_path, proc)
    while not any(m["event"] == "program started" for _, m in load(path).markers):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    gen0._uart.corrupt = 0.01  # from now on
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    s = load(summary["session"])
    assert len(s) == summary["telemetry_frames"]  # what the live decoder got is what is stored
    assert s.stats["crc_errors"] == summary["crc_errors"] > 50
    frames, decoder = frames_of(s.path)
    sent = P.unwrap_seqs([f[1] for f in frames])
    sent = sent[-1] - sent[0] + 1  # the frames the device numbered from the first stored to the last
    damaged = decoder.crc_errors + decoder.bad_escape + decoder.short + decoder.oversize
    # a frame whose first byte lost its version nibble reads as text, not as damage: a small tolerance
    assert sent - len(frames) >= damaged >= 0.9 * (sent - len(frames)) - 5, (sent, len(frames), damaged)
    assert gen0.counters()["tx_corrupted"] > 100


def test_device_reset_starts_a_new_segment(gen0, tmp_path):
    """The board restarts mid-recording: the session goes on in a new segment, nothing dropped.
    Driven by frame counts, not wall time: a loaded host boots the board slower (seconds at an ESP32's pace).
    Counted from the reset sent: a boot hello of the board's own start that arrives after the recording began
    is a restart too (seen once in 1 CI run of ~10: 3 segments), not the one this test makes."""
    said = []
    rec = Recorder(gen0.port, out=tmp_path, name="reset", progress=False, say=said.append)
    rec.start()
    with rec:
        rec.link.request_json("program", "steps", "duration_ms=60000")
        sent, after = [], []

        def reset_then_record():
            if not sent and rec.telemetry >= 1.2 * RATE:  # ~1.2 s of the program
                sent.append(rec.link.resets)  # the restarts seen before this one
                rec.link.send("reset")
            if sent and rec.link.resets != sent[0]:
                after.append(rec.telemetry)
                if after[-1] - after[0] >= 1.5 * RATE:  # ~1.5 s of the new boot's frames
                    return None
            return 0.05

        reason = rec.record(until=time.monotonic() + 60, tick=reset_then_record)
        summary = rec.finish(reason)
    assert reason == "done" and summary["segments"] == sent[0] + 2, (summary, sent)  # one restart: ours
    assert any(f"device reset: new segment {sent[0] + 2}" in m for m in said), said
    s = load(rec.path)
    assert s.complete and len(s.segments) == sent[0] + 2 and s.stats["drops"] == 0
    first, second = s.segments[-2:]
    before = sum(seg["frames"] for seg in s.segments[:-1])
    assert before >= 1.2 * RATE and second["frames"] >= 1.5 * RATE, (before, second["frames"])
    assert second["hello"]["schema"] == first["hello"]["schema"]
    rows = s.columns["segment"] == sent[0] + 1
    assert (s.columns["mode"][rows] == 0).all()  # the program did not survive the reset: idle
    assert (s.columns["seq"][rows] < 1000).all()  # the new run counts from 0


def test_second_collect_gets_port_busy(gen0, tmp_path):
    first = collect(gen0.port, tmp_path, "--duration", "20", "--json")
    wait_for_session(tmp_path, first)
    second = subprocess.run(HOST + ["collect", "--port", gen0.port, "--out", str(tmp_path / "b"), "--duration", "1"],
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 1 and "busy" in last_error_line(second.stderr)
    assert not (tmp_path / "b").exists()
    first.send_signal(signal.SIGTERM)  # ends the recording cleanly, like Ctrl-C
    out, err = first.communicate(timeout=20)
    assert first.returncode == 0, err
    summary = json.loads(out)
    assert summary["complete"] and summary["reason"] == "stopped by the user"
    assert load(summary["session"]).complete


def test_board_without_our_firmware_gets_no_session(sim, tmp_path):
    proc = subprocess.run(HOST + ["collect", "--port", sim.port, "--out", str(tmp_path), "--duration", "1"],
                          capture_output=True, text=True, timeout=60)
    line = last_error_line(proc.stderr)
    assert proc.returncode == 1 and "host flash" in line, line
    assert not list(tmp_path.glob("*.session"))


def test_bad_program_is_refused_before_connecting(tmp_path):
    proc = subprocess.run(HOST + ["collect", "--port", "/dev/null-port", "--program", "steps", "--param", "dwell_ms=5"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "takes no 'dwell_ms'" in last_error_line(proc.stderr)


def test_durations_no_clock_reaches_are_refused_before_connecting(capsys):
    from host.cli import main

    for program in ("steps", "idle"):
        for duration in ("inf", "nan", "0", "-1"):
            assert main(["collect", "--port", "/dev/null-port", "--program", program, "--duration", duration]) == 1
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith(f"error: --duration {duration}: give seconds > 0"), err


def record_idle(port, out, name, known=None, seconds=0.5):
    """A short recording of the idle board; the Recorder (its link's `known` is the next one's)."""
    rec = Recorder(port, out=out, name=name, progress=False, known=known)
    rec.start()
    with rec:
        rec.record(until=time.monotonic() + seconds)
        rec.finish("duration reached")
    return rec


@pytest.mark.slow
def test_a_recording_moments_after_another_skips_the_hello_unless_the_board_restarted(gen0, tmp_path):
    """eval's runs connect one after another: the hello (3.7 KB, 0.3 s at 115200 baud) comes once, and the
    board's clock tells whether it is still the same run of the firmware."""
    first = record_idle(gen0.port, tmp_path, "first")
    hellos = lambda rec: sum(f[0] == P.T_HELLO for f in frames_of(rec.path)[0])  # noqa: E731
    assert hellos(first) >= 1 and first.link.known is not None
    known = first.link.known
    second = record_idle(gen0.port, tmp_path, "second", known=known)
    assert hellos(second) == 0 and second.hello is known[0]  # taken from the connection before
    s = load(second.path)
    assert s.complete and s.stats["drops"] == 0 and len(s) >= 0.3 * RATE and s.hello["schema"] == first.hello["schema"]
    # the board restarts while no host listens: its boot hello is lost, its clock counts from 0 again
    with Link(gen0.port) as link:
        link.connect(known=second.link.known)
        link.send("reset")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the new boot answers (its hello goes to these links, not to third)
        with Link(gen0.port) as link:
            try:
                link.request("ping", timeout=1.0, retries=0)
                break
            except DeviceError:
                pass
    third = record_idle(gen0.port, tmp_path, "third", known=second.link.known)
    assert hellos(third) >= 1 and third.hello is not known[0]  # asked for a new one
    assert load(third.path).complete

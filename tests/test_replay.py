"""`host replay`: a recorded session's statistics and plot offline, and its commands replayed onto
another virtual Gen0 -- the same unit reproduces the measured angles, another unit does not."""

import json
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from host.collect import Recorder, collect
from host.replay import Streamer, link_gap, recorded_commands, replay, replay_to_port
from host.sessions import load
from host.sim import VirtualGen0

pytestmark = pytest.mark.slow  # the module's recording takes a virtual Gen0 run; replays run in real time

HOST = [sys.executable, "-m", "host"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """4 s of the steps program on a freshly booted unit (seed 0), as a session file."""
    out = tmp_path_factory.mktemp("sessions")
    with VirtualGen0(preload=True, seed=0) as gen0:
        assert gen0.wait_ready(20)
        summary = collect(gen0.port, program="steps", seed=3, duration=4, out=out, name="original",
                          progress=False, say=lambda msg: None)
    session = load(summary["session"])
    t = session.columns["t"]
    assert (np.diff(t) > 0).all() and t[-1] - t[0] < 10, "the loader's device time must run forward, tick by tick"
    return session


def test_offline_replay_statistics_and_plot(recorded, tmp_path):
    png = tmp_path / "original.png"
    proc = subprocess.run(HOST + ["replay", "original", "--out", str(recorded.path.parent), "--max", "--plot", str(png),
                                  "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    rate = recorded.header["hello"]["rate_hz"]
    assert stats["frames"] == len(recorded) > 3 * rate and stats["segments"] == 1 and stats["complete"]
    assert stats["played"]["frames"] == sum(recorded.stats["frames"].values())  # every stored frame went through
    assert stats["drops"] == 0 and stats["crc_errors"] == 0
    assert 0.75 * rate < stats["rate_hz"] <= 1.01 * rate and 4.0 < stats["duration_s"] < 5.5, stats  # hellos hold the loop
    loop = stats["interval_us"]
    nominal = 1e6 / rate
    assert loop["nominal"] == nominal and 0.998 * nominal < loop["mean"] < 1.6 * nominal and loop["p99"] < 4 * nominal, loop
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 800 and height >= 600


def test_max_is_faster_than_real_time(recorded):
    span = recorded.columns["t_host"][-1] - recorded.columns["t_host"][0]
    real_time = replay(recorded, speed=1.0)["played"]["seconds"]
    flat_out = replay(recorded, speed=None)["played"]["seconds"]
    assert real_time >= 0.95 * span and flat_out < 0.2 * span, (span, real_time, flat_out)


def test_model_predictions_are_scored(recorded):
    """The seam for model-driven replay: predicted columns in, their RMSE out."""
    stats = replay(recorded, speed=None, predict=lambda c: {"elbow_deg": c["elbow_deg"] + 2.0})
    assert stats["model_rmse"] == {"elbow_deg": pytest.approx(2.0)}


def test_replay_to_port_reproduces_the_run(recorded, make_sim, tmp_path):
    same = make_sim(preload=True, seed=0)
    other = make_sim(preload=True, seed=5)  # another unit: other pots, offsets, glue
    a = replay_to_port(recorded.path, same.port, name="same", out=tmp_path, progress=False)
    b = replay_to_port(recorded.path, other.port, name="other", out=tmp_path, progress=False)
    for result in (a, b):
        cmd = result["commands"]
        assert cmd["sets"] > 10 and cmd["acked"] == cmd["sets"] and cmd["lost"] == cmd["refused"] == 0, cmd
        assert result["session"]["complete"] and result["session"]["drops"] == 0
        assert result["compare"]["compared_s"] > 3.5
        new = load(result["session"]["session"])
        assert new.header["replay_of"] == str(recorded.path)
    same_rmse = [j["rmse_deg"] for j in a["compare"]["joints"].values()]
    other_rmse = [j["rmse_deg"] for j in b["compare"]["joints"].values()]
    assert max(same_rmse) < 4.0, a["compare"]  # what is left: the servo PWM phase (20 ms frames), noise
    assert np.mean(other_rmse) > 1.5 * np.mean(same_rmse), (a["compare"], b["compare"])


def test_a_host_stall_holds_on_the_watchdog_then_the_replay_goes_on(recorded, make_sim, tmp_path):
    gen0 = make_sim(preload=True)
    times, pulses, _, _ = recorded_commands(recorded)
    said = []
    rec = Recorder(gen0.port, out=tmp_path, name="stall", progress=False, say=said.append)
    hello = rec.start()
    with rec:
        rec.link.request_json("direct")
        streamer = Streamer(rec.link, times, pulses, link_gap(hello, rec.link.schema.size))
        stalled = []

        def stall_once():
            if not stalled and streamer.t0 and time.monotonic() - streamer.t0 > 1.0:
                time.sleep(0.6)  # the host stops sending for twice the watchdog's 300 ms
                stalled.append(True)
            return streamer.tick()

        reason = rec.record(tick=stall_once)
        rec.finish(reason)
    assert reason == "done" and streamer.refused == streamer.lost == 0
    assert any("watchdog" in m for m in said), said  # the board's LOG, shown
    s = load(rec.path)
    held = (s.columns["flags"].astype(int) & 1).astype(bool)
    rate = s.header["hello"]["rate_hz"]
    assert 0.15 * rate < held.sum() < 0.45 * rate, held.sum()  # ~0.3 s of frames held, then it followed again
    last = np.flatnonzero(held)[-1]
    assert not held[last + 1:].any() and len(held) - last > rate
    end = np.stack([s.columns["shoulder_cmd_us"], s.columns["elbow_cmd_us"]], axis=1)[-1]
    assert (end == pulses[-1]).all()

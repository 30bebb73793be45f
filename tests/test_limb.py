"""Scoring what matters: the limb's own angle beside the pot's (the virtual Gen0's truth, served by the simulator
over host/sim/truth.py and read by host/limb.py), runs that stalled flagged and run again, --repeat's spread."""

import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from host.evaluate import STALL_S, evaluate, quality_limb_spread_lines, run_quality, summarize
from host.firmware_files import HARDWARE_DIR
from host.sessions import load
from tests.test_host_commands import host

LIN = [1450, 10, 1450, 10]


@pytest.mark.slow
def test_worn_gears_show_in_the_limb_error_and_a_healthy_limb_follows_its_pot(make_sim, tmp_path):
    worn = make_sim(preload=True, seed=0, plant=HARDWARE_DIR / "plants" / "worn.json")
    result = evaluate(worn.port, LIN, ["sines", "steps"], 4.0, ["linear"], tmp_path / "worn", say=lambda m: None)
    w = result["runs"][0]["joints"]
    # the IMU on the forearm sees the play too, from gravity, while the arm holds a step (truth there: ~2.9 deg)
    imu = result["runs"][1]["forearm_imu"]
    assert imu["ticks"] >= 50 and imu["vs_pot_deg"] > 2.0, imu
    worn.stop()
    healthy = make_sim(preload=True, seed=0)
    # in another process, as a user runs it: the truth comes over the simulator's socket; two passes
    proc = host("eval", "--port", healthy.port, "--trajectories", "sines", "--seconds", "2.5", "--controllers", "linear",
                "--linear", ",".join(map(str, LIN)), "--repeat", "2", "--out", str(tmp_path / "healthy"), "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [r["repeat"] for r in out["runs"]] == [1, 2]
    h = out["runs"][0]["joints"]
    for j in ("shoulder", "elbow"):
        # worn gears (3-5 deg of play): the limb strays from its pot by about half the play, a healthy one far less
        assert w[j]["limb_vs_pot_deg"] > 0.9 and h[j]["limb_vs_pot_deg"] < 0.8 * w[j]["limb_vs_pot_deg"], (w[j], h[j])
        assert w[j]["limb_rmse_deg"] > w[j]["rmse_deg"]  # the pot-scored figure flatters worn gears
        assert abs(h[j]["limb_rmse_deg"] - h[j]["rmse_deg"]) < 0.15 * h[j]["rmse_deg"]  # healthy: about the same
        assert abs(h[j]["limb_offset_deg"]) < 10  # the pot's zero against the limb's, reported beside
        spread = out["summary"]["linear"]["joints"][j]["rmse_passes"]
        assert spread["n"] == 2 and spread["min"] <= spread["mean"] <= spread["max"]
        assert out["summary"]["linear"]["joints"][j]["limb_rmse_deg"] > 0
    assert out["runs"][0]["limb_source"] == "sim" and out["summary"]["linear"]["runs"] == 2
    lines = quality_limb_spread_lines(result)
    assert lines and "limb" in lines[0]


@pytest.mark.slow
def test_a_run_that_stalls_is_flagged_run_again_and_scored_as_unclean(gen0, tmp_path):
    """The VM stopped 150 ms every 0.6 s (a host under load): the board's ticks stall, the targets wait."""
    done = threading.Event()

    def stall():
        while not done.wait(0.6):
            pid = gen0.vm_pid
            if pid:
                os.kill(pid, signal.SIGSTOP)
                time.sleep(0.15)
                os.kill(pid, signal.SIGCONT)

    said = []
    staller = threading.Thread(target=stall, daemon=True)
    staller.start()
    try:
        result = evaluate(gen0.port, LIN, ["sines"], 2.0, ["naive"], tmp_path, say=said.append)
    finally:
        done.set()
        staller.join()
    run = result["runs"][0]
    assert not run["clean"] and run["attempts"] == 2 and run["unclean_first"]["behind_ms"] > STALL_S * 1000
    assert run["behind_ms"] > STALL_S * 1000 and run["longest_gap_ms"] > 100 and any("not clean, running it again" in line for line in said)
    assert result["summary"]["naive"]["unclean"] == 1
    assert any("unclean runs" in line for line in quality_limb_spread_lines(result))
    s = load(run["session"])  # the figures are the session's
    c = s.columns
    track = np.flatnonzero(c["mode"] == s.segments[-1]["hello"].mode("track"))
    assert run_quality(s, track, s.segments[-1]["hello"], result["trajectories"]["sines"]["lead_in"]) == {
        k: run[k] for k in ("overruns", "longest_gap_ms", "behind_ms", "lost", "clean")}


def test_a_slow_tick_the_loop_catches_up_is_counted_but_clean(gen0, tmp_path):
    """A real run's board clock, edited: one 36 ms tick (a GC pause at an ESP32's pace) whose lateness the next
    ticks make up leaves every later tick on its schedule: overrun, clean. A 150 ms stall, after which every
    tick is late (the loop dropped ticks): unclean."""
    result = evaluate(gen0.port, LIN, ["sines"], 2.0, ["naive"], tmp_path, say=lambda m: None)
    run, lead_in = result["runs"][0], result["trajectories"]["sines"]["lead_in"]
    s = load(run["session"])
    hello = s.segments[-1]["hello"]
    track = np.flatnonzero(s.columns["mode"] == hello.mode("track"))
    period, k = 1 / hello.rate_hz, track[lead_in + 60]
    t = np.asarray(s.columns["t"], dtype=float).copy()
    t[track] = t[track[0]] + np.arange(len(track)) * period  # every tick on its schedule (a loaded host's run may not be)
    s.columns["t"] = t
    on_time = run_quality(s, track, hello, lead_in)
    assert on_time["clean"] and on_time["behind_ms"] < 1, on_time

    hiccup = t.copy()
    hiccup[k + 1:k + 5] += np.array([0.026, 0.018, 0.010, 0.002])  # late by 26 ms, then caught up 8 ms a tick
    s.columns["t"] = hiccup
    q = run_quality(s, track, hello, lead_in)
    assert q["clean"] and q["longest_gap_ms"] > 30 and 20 < q["behind_ms"] < STALL_S * 1000, q

    stall = t.copy()
    stall[k + 1:] += 0.15 - period  # the ticks after it start 140 ms late, and stay so
    s.columns["t"] = stall
    q = run_quality(s, track, hello, lead_in)
    assert not q["clean"] and q["behind_ms"] > 130, q


def test_clean_means_on_schedule_and_nothing_lost():
    runs = [{"controller": "naive", "trajectory": "steps", "ticks": 100, "repeat": 1, "clean": c,
             "overruns": 0 if c else 9, "longest_gap_ms": 10.0 if c else 80.0, "behind_ms": 1.0 if c else 70.0, "lost": 0,
             "joints": {"shoulder": {"rmse_deg": 2.0, "max_deg": 3.0, "lag_ms": 50}}} for c in (True, False)]
    summary = summarize(runs)
    assert summary["naive"]["unclean"] == 1 and summary["naive"]["runs"] == 2

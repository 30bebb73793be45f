"""`host check` on the virtual Gen0: the healthy robot passes every step; each wiring fault (host/sim/faults.py)
fails the step that should fail, with the message that names it, and changes no other step's verdict; range
finding never pushes into a stall longer than its bound; --write survives a restart; Ctrl-C leaves the joints idle."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from host.check import FAIL, PASS, SKIP, STALL_MAX_S, WARN, check
from host.link.client import Link
from host.sessions import load
from tests.test_host_commands import HOST

pytestmark = pytest.mark.slow
HOST_ROBOT = Path(__file__).resolve().parent.parent / "hardware" / "gen0.json"

# fault: {step: (verdict, words its message must hold)}; every other step keeps its healthy verdict, but for
# the steps that stand on a failed one (SKIPPED below)
EXPECTED = {
    "swapped-pots": {"joint shoulder": (FAIL, "pot wires"), "joint elbow": (FAIL, "pot wires")},
    "joints-swapped": {"joint shoulder": (FAIL, "servo signal wires"), "joint elbow": (FAIL, "servo signal wires")},
    "reversed-servo:elbow": {"directions": (FAIL, "the elbow servo is mounted reversed")},
    "pot-disconnected:shoulder": {"joint shoulder": (FAIL, "wiper wire is off")},
    # fed from the 5 V rail: its slope is steeper, saturates on the way up, and sags with the rail
    "pot-clipped:shoulder": {"joint shoulder": (WARN, "recalibrate"), "range shoulder": (FAIL, "saturates"),
                             "supply": (WARN, "sags")},
    "imu-absent": {"imu": (FAIL, "no MPU-6050 answers")},
    "imu-address": {"imu": (FAIL, "answers at 0x69")},
    "weak-supply": {"supply": (FAIL, "brownout")},
    "stuck-joint:elbow": {"joint elbow": (FAIL, "does not move")},
}


def skipped(expected):
    """Steps that stand on a failed one and are skipped: a joint's range, and directions without IMU or joints."""
    out = {f"range {step[6:]}" for step, (verdict, _) in expected.items() if step.startswith("joint ") and verdict == FAIL}
    failed_joints = sum(1 for step, (v, _) in expected.items() if step.startswith("joint ") and v == FAIL)
    if "imu" in expected or failed_joints == 2:
        out.add("directions")
    return out


def verdicts(result):
    return {s["step"]: s["verdict"] for s in result["steps"]}


def assert_healthy(step, verdict):
    assert verdict == PASS or (step == "link" and verdict == WARN), (step, verdict)  # a loaded host may slow the link


def test_the_healthy_robot_passes_every_step_and_write_survives_a_restart(make_sim, tmp_path):
    gen0 = make_sim(preload=True)
    with Link(gen0.port) as link:
        assert link.connect().checked is None
    result = check(gen0.port, tmp_path, say=lambda m: None, plot=tmp_path / "check.png", write=True)
    for step, verdict in verdicts(result).items():
        assert_healthy(step, verdict)
    assert result["refused_sets"] == []  # every move went through in direct mode
    assert [s["step"] for s in result["steps"]] == ["link", "imu", "joint shoulder", "joint elbow", "directions",
                                                    "range shoulder", "range elbow", "supply"]
    joint = result["steps"][2]["measured"]
    assert 0.07 < joint["gain_deg_per_us"] < 0.13 and joint["noise_deg"]["shoulder"] < 1.5
    assert (tmp_path / "check.png").stat().st_size > 10000
    s = load(result["session"])  # the check is a session: every move is in it
    assert s.complete and [m["step"] for _, m in s.markers if m.get("event") == "check step"] == list(verdicts(result))
    with Link(gen0.port) as link:  # restarted with the stored description: later commands see the check
        hello = link.connect()
    assert hello.checked["verdict"] == result["verdict"] and hello.check_warning() is None
    assert result["written"]["limits_us"] == {"shoulder": [600, 2300], "elbow": [600, 2300]}  # reached: kept


@pytest.mark.parametrize("fault", list(EXPECTED))
def test_each_wiring_fault_fails_its_step_and_no_other(make_sim, tmp_path, fault):
    gen0 = make_sim(preload=True, faults=[fault])
    result = check(gen0.port, tmp_path, say=lambda m: None)
    expected, got = EXPECTED[fault], {s["step"]: s for s in result["steps"]}
    for step, (verdict, words) in expected.items():
        assert got[step]["verdict"] == verdict and words in got[step]["message"], got[step]
    for step, s in got.items():
        if step in skipped(expected):
            assert s["verdict"] == SKIP, s
        elif step not in expected:
            assert_healthy(step, s["verdict"])
    assert result["verdict"] == FAIL


def test_range_finding_backs_off_a_stall_at_once_and_write_stores_the_limits(make_sim, tmp_path):
    robot = json.loads((HOST_ROBOT).read_text())
    for j in robot["joints"]:
        j["min_us"], j["max_us"] = 400, 2600  # soft limits beyond the end stops (~+-98 deg): the sweeps stall
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(robot))
    gen0 = make_sim(preload=True, robot=str(path))
    result = check(gen0.port, tmp_path, say=lambda m: None, write=True)
    ranges = [s for s in result["steps"] if s["step"].startswith("range")]
    assert all(s["verdict"] == WARN and any(st["side"] > 0 for st in s["measured"]["stalls"]) for s in ranges), ranges
    s = load(result["session"])
    c = s.columns
    for r in ranges:
        j = r["step"][6:]
        for stall in r["measured"]["stalls"]:
            pushed = _pushing_into_the_stop(c, j, stall)
            assert 0 < pushed <= STALL_MAX_S, (j, stall, pushed)
    limits = result["written"]["limits_us"]
    with Link(gen0.port) as link:
        stored = {jn["name"]: [jn["min_us"], jn["max_us"]] for jn in link.connect().robot["joints"]}
    assert stored == limits
    for lo, hi in limits.values():
        assert 400 <= lo < 600 and 2300 < hi < 2600  # inside where each joint stopped, outside the old 600..2300


def _pushing_into_the_stop(c, j, stall):
    """Seconds from the first frame whose angle reached where the joint stopped (within 1 deg) to the first
    frame whose pulse moved back, on the sweep towards that stop."""
    side, deg, cmd, t = stall["side"], c[j + "_deg"], c[j + "_cmd_us"], c["t"]
    beyond = np.flatnonzero((deg - stall["at_deg"]) * side >= -1.0)
    first = beyond[0]
    back = first + np.flatnonzero(np.diff(cmd[first:]) * side < 0)[0] + 1
    return float(t[back] - t[first])


def test_ctrl_c_mid_check_leaves_the_joints_idle(gen0, tmp_path):
    proc = subprocess.Popen(HOST + ["check", "--port", gen0.port, "--out", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    seen = ""
    while "joint shoulder ..." not in seen:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        seen += line
    time.sleep(0.5)  # the shoulder is moving
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    lines = [line for line in err.splitlines() if line]
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: check stopped"), err
    assert "session kept" in lines[0]
    with Link(gen0.port) as link:
        link.connect()
        assert link.request_json("status")["mode"] == "idle"
        pulses = {tuple(link.next_telemetry()[3][f"{j}_cmd_us"] for j in ("shoulder", "elbow")) for _ in range(20)}
    assert len(pulses) == 1  # held still

"""`host check`: a guided, safe self-test of a flashed Gen0, step by step, each with PASS / WARN / FAIL,
what was measured and what to do about it.

Steps: the link; the IMU; each joint alone (small, slow moves about its rest pulse: which pot follows,
gain and sign, reversal play, settling, noise at rest); the IMU's view of both joints' directions; each
joint's usable range (outward slowly until the pot stops following or the robot description's soft
limit, backing off at once: a stall lasts at most STALL_MAX_S); the supply (both joints moving hard:
does the board reset, do the held readings sag). The whole check is one recorded session (`check-…`),
so every figure can be looked at again; a PNG shows the sweeps.

Moves are streamed as `set` lines in direct mode (Driver); the board's own telemetry says, per tick,
which pulse it applied and what each pot read, so the analysis never depends on the host's timing.
Interrupted (Ctrl-C, a cable pulled): Recorder.finish sends `stop`; without a link the board's
watchdog holds the joints after watchdog_ms. Nothing ever drives on.
"""

import copy
import datetime
import json
import math
import time
from collections import deque

import numpy as np

from polyniod_firmware import config
from polyniod_firmware import protocol as P

from host import __version__
from host.collect import Recorder
from host.deploy import transfer
from host.errors import DeviceError, UserError
from host.link.client import Link

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
SET_EVERY_S = 0.02  # `set` lines while a pulse changes (a ramp); held pulses are resent for the watchdog
KEEPALIVE_S = 0.1
STEP_DEG = 10.0  # the joint step: +-10 deg about the rest pulse, slow enough to watch, small enough to be safe
HOLD_S = 0.7  # each level of the joint step
TAIL_S = 0.3  # the end of a hold that is averaged (the joint has settled)
FOLLOW_DEG = 5.0  # a pot that moved less than this for a 20 deg command swing does not follow
CROSS_DEG = 2.5  # another pot moving more than this follows the wrong servo
NOISE_WARN_DEG, NOISE_FAIL_DEG = 1.5, 4.0  # std of a pot at rest
GAIN_TOLERANCE = 0.3  # measured deg/us within 30 % of the robot description's
DEADBAND_STEPS_US = (4, 8, 12, 16, 24, 32)  # the staircase up from rest that finds the smallest pulse change that moves
DEADBAND_HOLD_S = 0.25
DEADBAND_WARN_US = 24  # an SG90's is ~10 us (an MG90S's ~5): a servo that needs more is worn or starved
SWEEP_DEG_S = 60.0  # range finding speed: a ninth of an SG90's no-load slew, so a stall shows within STALL_MAX_S
STALL_WINDOW = 15  # frames (150 ms at 100 Hz) over which a sweep compares the pot's motion with the command's
STALL_SHARE = 0.3  # the pot moving less than this share of the command over the window: the joint has stopped
STALL_MAX_S = 0.3  # the longest a range sweep may push past where the joint stopped (asserted by the tests)
RANGE_MIN_DEG = 120.0  # a usable range narrower than this is a failure
RAW_FULL_SCALE = (100, 65500)  # ADC.read_u16() at its ends: the pot's voltage has left the ADC's range
SUPPLY_SWING_DEG = 40.0  # the supply step swings both joints this far, fast
SAG_WARN_DEG = 2.0  # a held joint's reading moving this much while the other moves: its supply sags
LIMIT_MARGIN_DEG = 3.0  # a limit --write stores stays this far inside where the joint stopped
ROBOT_FILE, PREVIOUS_FILE = "robot.json", "robot.prev.json"  # on the board: the description and the one before


class Stopped(Exception):
    """The check could not go on (the user stopped it, the link went): the reason."""


class Restarted(Exception):
    """The board restarted in the middle of a step (a brownout, a crash): the step's figures mean nothing."""


class Driver:
    """Streams pulses along a path in direct mode through a Recorder and keeps every telemetry frame
    decoded as it arrives, so a move can be stopped the moment the joint stops following."""

    def __init__(self, rec, stop=None):
        self.rec, self.link, self.stop = rec, rec.link, stop
        self.schema = rec.link.schema
        self.rows = []  # every telemetry frame since the check began: {field: value, "t_host"}
        self.resets = rec.link.resets
        self.pulses, self.sent_at = None, 0.0
        self.acks = deque()  # (seq, monotonic time sent) of the `set` lines whose acks are still to come
        self.refusals = []
        self.guard = self.tripped = None
        rec.on_telemetry = self._frame

    def _frame(self, host_time, seq, t_us, payload):
        raw = self.schema.unpack(payload)
        if raw is None:
            return
        row = self.schema.to_units(raw)
        row.update(t_host=host_time, seq=seq, t_us=t_us)
        self.rows.append(row)
        if self.guard is not None and self.tripped is None and self.guard(row):
            self.tripped = row

    def move(self, path, seconds, guard=None):
        """Follow path(t) -> pulses for `seconds`, or until guard(frame) is true; (frames of the move, the
        frame that tripped the guard or None). Stopped when the user stops or the link fails."""
        first = len(self.rows)
        self.guard, self.tripped = guard, None
        t0 = time.monotonic()

        def tick():
            now = time.monotonic()
            if self.tripped is not None or now - t0 >= seconds:
                return None
            want = tuple(int(round(p)) for p in path(now - t0))
            if want != self.pulses and now - self.sent_at >= SET_EVERY_S or now - self.sent_at >= KEEPALIVE_S:
                self.acks.append((self.link.send("set", *want), now))
                self.pulses, self.sent_at = want, now
            self._take_acks(now)
            return 0.004

        reason = self.rec.record(stop=self.stop, tick=tick)
        self.guard = None
        if reason != "done":
            raise Stopped(reason or self.rec.fault)
        if self.link.resets != self.resets:
            self.resets = self.link.resets
            raise Restarted()
        return self.rows[first:], self.tripped

    def alive(self, timeout=5.0):
        """Return once a frame shows the board ran on without restarting since the last frame (its clock goes on);
        Restarted when it restarted instead. A brownout's restart can come to light late: the hello comes only
        once the board has booted again, and on a loaded host that can outlast the move that caused it."""
        last = self.rows[-1]["t_us"] if self.rows else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows, _ = self.move(lambda t: self.pulses, 0.1)  # raises Restarted once the link has seen the hello
            if last is None or any(0 < (r["t_us"] - last) % P.TICKS_PERIOD < P.TICKS_PERIOD // 2 for r in rows):
                return
        raise Restarted()

    def resume(self):
        """After a restart: wait for the board's hello, then back into direct mode at the last pulses."""
        deadline = time.monotonic() + 15
        while True:
            try:
                self.link.request_json("direct")
                return
            except DeviceError:
                if time.monotonic() > deadline or self.link.error:
                    raise

    def hold(self, pulses, seconds):
        return self.move(lambda t: pulses, seconds)[0]

    def ramp(self, to, us_per_s):
        """From the pulses last sent to `to`, every joint at `us_per_s` at most: no jump back after a sweep."""
        start = list(self.pulses or to)
        seconds = max(abs(b - a) for a, b in zip(start, to)) / us_per_s
        if seconds > 0:
            self.move(lambda t: [a + (b - a) * min(1.0, t / seconds) for a, b in zip(start, to)], seconds)

    def _take_acks(self, now):
        """Collect the acks that came; one missing for a second counts as lost (a damaged line: the next `set`
        repeats the pulses anyway)."""
        while self.acks:
            seq, sent = self.acks[0]
            ack = self.link.take_ack(seq)
            if ack is None and now - sent < 1.0:
                return
            self.acks.popleft()
            if ack is not None and ack[0] != P.E_OK:
                self.refusals.append(P.error_text(ack[0]))


def column(rows, name):
    return np.array([r[name] for r in rows], dtype=float)


def step_result(step, verdict, message, **measured):
    return {"step": step, "verdict": verdict, "message": message, "measured": measured}


# -- the steps ------------------------------------------------------------------------------------------
def check_link(rec, driver, hello, rest):
    """Versions (connect checked them), schema, the loop rate held, frames lost on the link."""
    driver.hold(rest, 0.3)  # the hello connect() asked for held the loop (~0.3 s at 115200): measure after it
    link = rec.link
    crc0, gaps0 = link.decoder.crc_errors, link.seq_gaps
    rows = driver.hold(rest, 1.2)
    ticks = P.unwrap_ticks([r["t_us"] for r in rows])
    device_s = (ticks[-1] - ticks[0]) / 1e6 if len(rows) > 1 else 0.0
    loop_hz = (len(rows) - 1) / device_s if device_s > 0 else 0.0  # telemetry frames a second of the board's clock
    lost, damaged = link.seq_gaps - gaps0, link.decoder.crc_errors - crc0  # frames of any kind (acks too)
    sent = len(rows) + lost
    want = hello.frame_hz
    measured = {"firmware": hello.fw, "protocol": hello.proto, "rate_hz": hello.rate_hz, "frames_per_s": round(loop_hz, 1),
                "lost_frames": lost, "damaged_frames": damaged}
    if loop_hz < 0.8 * want or lost > 0.05 * sent:
        return step_result("link", FAIL, f"{loop_hz:.0f} frames/s of the {want:g} the board should send, {lost} of {sent} "
                           "lost: the loop does not keep its rate or the link loses frames (check the USB cable and "
                           "`host monitor`)", **measured)
    if damaged or lost or loop_hz < 0.9 * want:
        return step_result("link", WARN, f"{damaged} damaged and {lost} lost of {sent} frames, {loop_hz:.0f} of {want:g} "
                           "frames/s: a marginal cable or port (try another USB cable or port)", **measured)
    return step_result("link", PASS, f"firmware v{hello.fw}, protocol {hello.proto}, {loop_hz:.0f} frames/s at "
                       f"{hello.rate_hz} Hz, nothing lost or damaged", **measured)


def check_imu(hello, rows):
    """Present where the pin map says, gravity plausible at rest, noise."""
    imu = hello.get("imu") or {}
    pins = hello.robot.get("imu") or {}
    if not imu.get("ok"):
        error = imu.get("error") or "no IMU"
        where = f"I2C{pins.get('i2c_id', 0)}: SCL GPIO {pins.get('scl_pin')}, SDA GPIO {pins.get('sda_pin')}"
        other = 0x69 if pins.get("addr", 0x68) == 0x68 else 0x68
        if f"answers at 0x{other:02x}" in error:
            return step_result("imu", FAIL, f"the MPU-6050 answers at 0x{other:02x}, not at 0x{pins.get('addr', 0x68):02x}: "
                               f"its AD0 pin is {'high' if other == 0x69 else 'low'}; tie AD0 to "
                               f"{'GND' if other == 0x69 else '3.3 V'} or set imu.addr to {other} in the robot description",
                               ok=False, error=error)
        return step_result("imu", FAIL, f"{error}; check its four wires ({where}), that VCC is on 3.3 V and GND "
                           "shared, and that SDA and SCL are not swapped", ok=False, error=error)
    a = np.stack([column(rows, k) for k in ("ax", "ay", "az")], axis=1)
    g = np.stack([column(rows, k) for k in ("gx", "gy", "gz")], axis=1)
    gravity = float(np.linalg.norm(a.mean(axis=0)))
    accel_noise = float(a.std(axis=0).max())
    gyro_noise = float(g.std(axis=0).max())
    measured = {"ok": True, "gravity_g": round(gravity, 3), "accel_noise_g": round(accel_noise, 4),
                "gyro_noise_dps": round(gyro_noise, 3), "gyro_offset_dps": [round(float(v), 2) for v in g.mean(axis=0)]}
    if not 0.85 <= gravity <= 1.15:
        return step_result("imu", FAIL, f"at rest the accelerometer reads {gravity:.2f} g, not ~1 g: a damaged chip or "
                           "the wrong accel_fs_g in robot.json", **measured)
    if accel_noise > 0.05 or gyro_noise > 2.0:
        return step_result("imu", WARN, f"noisy at rest (accel {accel_noise:.3f} g, gyro {gyro_noise:.2f} deg/s std): "
                           "a loose mount or vibration", **measured)
    return step_result("imu", PASS, f"MPU-6050 answers, {gravity:.2f} g at rest, gyro noise {gyro_noise:.2f} deg/s",
                       **measured)


def check_joint(driver, hello, j, rest):
    """Joint j alone: +-STEP_DEG about its rest pulse (which pot follows, gain, sign, play, settling, noise), then a
    staircase of small steps up from rest (the deadband: the smallest pulse change that moves it)."""
    joint = hello.joint(j)
    names = hello.joints
    i = names.index(j)
    us = STEP_DEG * abs(joint["us_per_deg"])
    levels = [0, us, 0, -us, 0]
    phases = []
    for k, level in enumerate(levels):
        pulses = list(rest)
        pulses[i] = rest[i] + level
        phases.append(driver.hold(pulses, HOLD_S if k else 0.6))
    stairs = []
    for step in DEADBAND_STEPS_US:  # approached from below: the last move (-STEP -> rest) took up the play
        pulses = list(rest)
        pulses[i] = rest[i] + step
        stairs.append(driver.hold(pulses, DEADBAND_HOLD_S))
    driver.hold(rest, 0.3)
    at = {n: [_settled(p, n + "_deg") for p in phases] for n in names}
    noise = {n: round(float(np.std(column(_tail(phases[0]), n + "_deg"))), 2) for n in names}
    swing = {n: at[n][1] - at[n][3] for n in names}
    gain = swing[j] / (2 * us)
    pin = joint.get("adc_pin")
    measured = {"pulse_swing_us": 2 * us, "swing_deg": {n: round(v, 2) for n, v in swing.items()},
                "gain_deg_per_us": round(gain, 4), "expected_deg_per_us": round(1 / abs(joint["us_per_deg"]), 4),
                "reversal_deg": round(at[j][2] - at[j][4], 2), "noise_deg": noise,
                "settling_ms": _settling_ms(phases[1], j), "imu_turn": _imu_turn(phases[1], phases[3]),
                "deadband_us": _deadband_us(phases[4], stairs, j, noise[j])}
    # another pot that moved: the wrong wiring, unless it is a floating input (noisy at rest) whose sample
    # capacitor leans to the pin read before it -- that pot fails its own step, this joint is fine
    others = [n for n in names if n != j and abs(swing[n]) >= CROSS_DEG and noise[n] <= NOISE_FAIL_DEG]
    step = f"joint {j}"
    if abs(swing[j]) < FOLLOW_DEG and others:
        o = others[0]
        return step_result(step, FAIL, f"commanding {j} (PWM GPIO {joint['pwm_pin']}) moves the {o} pot (GPIO "
                           f"{hello.joint(o)['adc_pin']}), not its own: the two pot wires (GPIO {pin} and "
                           f"{hello.joint(o)['adc_pin']}) or the two servo signal wires (GPIO {joint['pwm_pin']} and "
                           f"{hello.joint(o)['pwm_pin']}) are swapped; if the {j} horn turned, swap the pot wires",
                           **measured)
    if abs(swing[j]) < FOLLOW_DEG:
        wander = float(np.ptp(at[j]))  # a floating input drifts from hold to hold; a seized joint's pot stays put
        if noise[j] > NOISE_FAIL_DEG or wander > 2 * FOLLOW_DEG:
            return step_result(step, FAIL, f"the {j} pot (ADC GPIO {pin}) reads noise ({noise[j]:.1f} deg std, wandering "
                               f"{wander:.0f} deg) and does not follow {2 * us:.0f} us of command: its wiper wire is off "
                               "or broken", **measured)
        return step_result(step, FAIL, f"the {j} pot (GPIO {pin}) moved {swing[j]:.1f} deg for a {2 * STEP_DEG:.0f} deg "
                           f"command: the {j} joint does not move (seized gears, a jammed limb, or no power or signal on "
                           f"its servo: PWM GPIO {joint['pwm_pin']})", **measured)
    if others:
        return step_result(step, FAIL, f"commanding {j} moves the {others[0]} pot too ({swing[others[0]]:.1f} deg): the "
                           "joints are coupled (a pot wire touching the other's) or the limb is loose", **measured)
    if gain < 0:
        return step_result(step, FAIL, f"the {j} pot reads backwards ({gain:.3f} deg/us): its outer wires are swapped, or "
                           "its calibration (feedback.pot_v_per_deg) has the wrong sign", **measured)
    if noise[j] > NOISE_WARN_DEG:
        return step_result(step, WARN, f"the {j} pot is noisy at rest ({noise[j]:.1f} deg std): a shared ground with the "
                           "motors or a loose wiper contact", **measured)
    deadband = measured["deadband_us"]
    if deadband is None or deadband > DEADBAND_WARN_US:
        return step_result(step, WARN, f"{j} needs a pulse change of {'more than ' if deadband is None else ''}"
                           f"{deadband or DEADBAND_STEPS_US[-1]} us to move (an SG90 ~10 us): a worn servo, or too "
                           "little supply voltage at it", **measured)
    if abs(gain * abs(joint["us_per_deg"]) - 1) > GAIN_TOLERANCE:
        return step_result(step, WARN, f"{j} moves {gain:.3f} deg/us, the robot description says "
                           f"{1 / abs(joint['us_per_deg']):.3f}: recalibrate (`host check --write`)", **measured)
    return step_result(step, PASS, f"{j} follows: {gain:.3f} deg/us, deadband {deadband} us, play "
                       f"{abs(measured['reversal_deg']):.1f} deg, "
                       f"settles in {measured['settling_ms']} ms, noise {noise[j]:.2f} deg", **measured)


AXES = {"x": 0, "y": 1, "z": 2}


def check_directions(hello, joint_steps):
    """A +deg command must turn the limb the way the robot description says: the IMU (on the distal link) turns
    about imu.joint_axis ("+z": its z axis, counter-clockwise seen from +z) for every joint, the axes being
    parallel."""
    turns = {s["step"][6:]: s["measured"].get("imu_turn") for s in joint_steps if s["verdict"] != FAIL}
    turns = {j: np.asarray(v) for j, v in turns.items() if v is not None}
    measured = {"turns_deg": {j: [round(float(x), 2) for x in v] for j, v in turns.items()}}
    if not turns or not (hello.get("imu") or {}).get("ok"):
        return step_result("directions", SKIP, "needs the IMU and a joint that follows", **measured)
    spec = str((hello.robot.get("imu") or {}).get("joint_axis", ""))
    if spec[-1:] in AXES:
        axis = np.zeros(3)
        axis[AXES[spec[-1]]] = -1.0 if spec.startswith("-") else 1.0
        measured["joint_axis"] = spec
        wrong = [j for j, v in turns.items() if float(np.dot(v, axis)) < 0]
        if wrong and len(wrong) == len(turns) > 1:
            return step_result("directions", WARN, f"every joint turns the IMU about {spec} the other way: the IMU is "
                               f"mounted turned round; set imu.joint_axis to {'+' if spec.startswith('-') else '-'}"
                               f"{spec[-1]} in the robot description", **measured)
        if wrong:
            j = wrong[0]
            return step_result("directions", FAIL, f"+{STEP_DEG:g} deg on {j} turns the limb the wrong way (seen by the "
                               f"IMU, against imu.joint_axis {spec}): the {j} servo is mounted reversed; remount it "
                               "turned round (horn on the other side)", **measured)
        return step_result("directions", PASS, f"{' and '.join(turns)} turn{'' if len(turns) > 1 else 's'} the limb "
                           "the way the robot description says", **measured)
    if len(turns) < 2:
        return step_result("directions", SKIP, "no imu.joint_axis in the robot description and one joint to compare",
                           **measured)
    (a, ta), (b, tb) = list(turns.items())[:2]
    if float(np.dot(ta, tb)) < 0:
        return step_result("directions", FAIL, f"+{STEP_DEG:g} deg on {a} and on {b} turn the limb opposite ways (seen "
                           "by the IMU): one servo is mounted reversed; watch which horn turns clockwise seen from the "
                           "front for a + command and remount it (imu.joint_axis in the robot description names which)",
                           **measured)
    return step_result("directions", PASS, f"{a} and {b} turn the limb the same way for + commands", **measured)


def check_range(driver, hello, j, rest):
    """Outward slowly to each side until the soft limit or until the pot stops following; back off at once."""
    joint = hello.joint(j)
    i = hello.joints.index(j)
    ends, why, stalls = {}, {}, []
    for side, limit in ((+1, joint["max_us"]), (-1, joint["min_us"])):
        start = list(rest)
        driver.hold(start, 0.4)
        base = driver.rows[-1][j + "_deg"]
        speed = SWEEP_DEG_S * abs(joint["us_per_deg"])  # us/s
        seconds = abs(limit - rest[i]) / speed
        follow = _Follow()

        def path(t, side=side):
            p = list(rest)
            p[i] = rest[i] + side * min(t * speed, abs(limit - rest[i]))
            return p

        def guard(row, side=side):
            commanded = (row[j + "_cmd_us"] - rest[i]) / abs(joint["us_per_deg"]) * side
            moved = (row[j + "_deg"] - base) * side
            saturated = not RAW_FULL_SCALE[0] < row[j + "_raw"] < RAW_FULL_SCALE[1]
            return saturated or follow.stalled(commanded, moved)

        rows, tripped = driver.move(path, seconds + 0.3, guard)
        if tripped is not None:
            back = list(rest)
            reached = tripped[j + "_deg"]
            back[i] = rest[i] + side * max(0.0, abs(tripped[j + "_cmd_us"] - rest[i]) - 5 * abs(joint["us_per_deg"]))
            driver.hold(back, 0.2)
            raw = tripped[j + "_raw"]
            ends[side] = reached
            why[side] = "stopped following" if RAW_FULL_SCALE[0] < raw < RAW_FULL_SCALE[1] else "pot saturated"
            at_us = rest[i] + (reached - base) * abs(joint["us_per_deg"])  # the pulse of where it stopped
            stalls.append({"side": side, "at_deg": round(reached, 1), "at_us": round(at_us), "raw": raw,
                           "why": why[side]})
        else:
            ends[side] = _settled(rows, j + "_deg")
            why[side] = "soft limit"
        driver.ramp(rest, 2 * speed)
    span = ends[1] - ends[-1]
    measured = {"min_deg": round(ends[-1], 1), "max_deg": round(ends[1], 1), "span_deg": round(span, 1),
                "ends": {"max": why[1], "min": why[-1]}, "stalls": stalls,
                "soft_limits_us": [joint["min_us"], joint["max_us"]]}
    step = f"range {j}"
    saturated = [s for s in stalls if s["why"] == "pot saturated"]
    if saturated:
        s = saturated[0]
        return step_result(step, FAIL, f"the {j} pot reading saturates at {s['at_deg']:.0f} deg (ADC at full scale): the "
                           "pot's voltage leaves the ADC's range there; power the pot from 3.3 V or keep the joint inside "
                           "(`--write` stores the usable range as its limits)", **measured)
    if span < RANGE_MIN_DEG:
        return step_result(step, FAIL, f"{j} moves only {ends[-1]:.0f}..{ends[1]:.0f} deg before it stops following: "
                           "something blocks the limb (glue, a cable, the other link)", **measured)
    if stalls:
        return step_result(step, WARN, f"{j} reaches {ends[-1]:.0f}..{ends[1]:.0f} deg, then stops before its soft "
                           "limits: `host check --write` stores the usable range as its limits", **measured)
    return step_result(step, PASS, f"{j} reaches its soft limits, {ends[-1]:.0f}..{ends[1]:.0f} deg", **measured)


def check_supply(driver, hello, rest, following):
    """The joints that follow (a seized one is never driven into its stall) swung hard, one while the others hold,
    then together: does the board restart (brownout), does a held joint's reading sag."""
    names = hello.joints
    us = {n: SUPPLY_SWING_DEG * abs(hello.joint(n)["us_per_deg"]) for n in following}
    sag = {}
    try:
        for n in following:  # one joint swings, the others hold: their readings should not move
            k = names.index(n)
            base = driver.hold(rest, 0.4)
            rows = []
            for s in (1, -1, 1, -1, 0):
                pulses = list(rest)
                pulses[k] = rest[k] + s * us[n]
                rows += driver.hold(pulses, 0.35)
            for other in following:
                if other != n:
                    held = np.convolve(column(rows, other + "_deg"), np.ones(5) / 5, mode="valid")  # noise averaged
                    shift = float(np.max(np.abs(held - _settled(base, other + "_deg")))) if len(held) else 0.0
                    sag[other] = round(max(sag.get(other, 0.0), shift), 2)
        for s in (1, -1, 1, -1, 0):
            driver.hold([r + s * us.get(n, 0) for r, n in zip(rest, names)], 0.35)
        driver.alive()
    except Restarted:
        driver.resume()
        return step_result("supply", FAIL, "the board restarted while the servos moved (a brownout): power the servos "
                           "from their own 5 V supply (2 A) with a common ground, and put the 470 uF capacitor across "
                           "the servo rail", resets=1, held_reading_shift_deg=sag, swung=following)
    measured = {"resets": 0, "held_reading_shift_deg": sag, "swung": following}
    worst = max(sag.values()) if sag else 0.0
    if worst > SAG_WARN_DEG:
        return step_result("supply", WARN, f"a held joint's reading shifts {worst:.1f} deg while the other moves: the "
                           "supply sags under load (a thin USB cable, a weak port, or a pot fed from the servo rail)",
                           **measured)
    return step_result("supply", PASS, f"no restart and no sag while {' and '.join(following) or 'nothing'} moved",
                       **measured)


# -- the whole check ------------------------------------------------------------------------------------------
def check(port, out=None, stop=None, say=print, plot=None, write=False):
    """Run every step on the board at `port`; {"steps": [...], "session", "verdict", "board_id", ...}.
    write: store what was measured in the board's robot description (write_description), then restart it."""
    rec = Recorder(port, out, "check", {"program": {"name": "check", "params": {}, "seed": None}}, progress=False,
                   say=say)
    hello = rec.start()
    steps = []
    try:
        with rec:
            if rec.link.schema is None:
                raise DeviceError("the board announces no telemetry schema: run `host flash` to update its firmware")
            rest = [int(hello.joint(j).get("rest_us", hello.joint(j)["center_us"])) for j in hello.joints]
            rec.link.request_json("direct")
            driver = Driver(rec, stop)

            def run(name, fn, *args):
                say(f"  {name} ...")
                rec.marker({"event": "check step", "step": name})
                try:
                    result = fn(*args)
                except Restarted:
                    result = step_result(name, FAIL, "the board restarted during this step: a brownout (the supply "
                                         "sags when the servos pull) or a crash (`host monitor` shows its log)")
                    driver.resume()
                steps.append(result)
                say(f"{result['verdict']:<5} {result['step']}: {result['message']}")
                return result

            run("link", check_link, rec, driver, hello, rest)
            run("imu", check_imu, hello, _tail(driver.rows, 1.0))
            joints = [run(f"joint {j}", check_joint, driver, hello, j, rest) for j in hello.joints]
            run("directions", check_directions, hello, joints)
            for j, s in zip(hello.joints, joints):
                if s["verdict"] == FAIL:
                    steps.append(step_result(f"range {j}", SKIP, f"{j} does not follow its commands: fix that first"))
                    say(f"SKIP  range {j}: fix the joint first")
                else:
                    run(f"range {j}", check_range, driver, hello, j, rest)
            following = [j for j, s in zip(hello.joints, joints) if s["verdict"] != FAIL]
            run("supply", check_supply, driver, hello, rest, following)
            reason = "check done"
            rec.finish(reason)
    except Stopped as e:
        rec.finish(str(e), complete=False)
        raise UserError(f"check stopped ({e}); the joints are stopped; session kept: {rec.kept()}") from None
    verdicts = [s["verdict"] for s in steps]
    result = {"port": port, "board_id": hello.board_id, "firmware": hello.fw, "session": str(rec.path),
              "verdict": FAIL if FAIL in verdicts else WARN if WARN in verdicts else PASS, "steps": steps,
              "refused_sets": sorted(set(driver.refusals))}  # a `set` the board refused: the figures near it are suspect
    if plot:
        from host.sessions import load

        result["plot"] = str(plot_check(load(rec.path), result, plot))
    if write:
        result["written"] = write_description(port, described(hello, result), say)
    return result


def described(hello, result):
    """The board's robot description with what the check measured: each joint's limits pulled in to where it
    stopped following (less LIMIT_MARGIN_DEG), a pot that reads backwards turned round, and the check's record
    ("check": verdict, date, per-step verdicts), which collect and train look for."""
    robot = copy.deepcopy(hello.robot)
    steps = {s["step"]: s for s in result["steps"]}
    for joint in robot["joints"]:
        name, per_deg = joint["name"], abs(joint["us_per_deg"])
        rng = steps.get(f"range {name}")
        for stall in (rng or {}).get("measured", {}).get("stalls", []):
            side = stall["side"]
            pulse = round(stall["at_us"] - side * LIMIT_MARGIN_DEG * per_deg)
            key = "max_us" if side > 0 else "min_us"
            joint[key] = min(joint[key], pulse) if side > 0 else max(joint[key], pulse)
        for key in ("center_us", "rest_us"):
            joint[key] = min(max(joint[key], joint["min_us"]), joint["max_us"])
        moved = steps.get(f"joint {name}", {}).get("measured", {})
        if moved.get("gain_deg_per_us", 0) < 0 and "backwards" in steps[f"joint {name}"]["message"]:
            joint["feedback"]["pot_v_per_deg"] = -joint["feedback"]["pot_v_per_deg"]
    robot["check"] = {"verdict": result["verdict"], "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                      "host": __version__,  # short: it travels in every hello, whose frame holds 4 KB
                      "steps": {s["step"]: s["verdict"] for s in result["steps"] if s["verdict"] != PASS}}
    return robot


def write_description(port, robot, say=print):
    """Store `robot` as the board's robot.json (the one it ran kept as robot.prev.json), each file written whole
    by the board (temp file, then rename), then restart the board and read the description back."""
    try:
        config.check(copy.deepcopy(robot))  # what the firmware will check at boot: never store one it refuses
    except config.ConfigError as e:
        raise UserError(f"the measured description would not boot ({e}); nothing written") from None
    data = (json.dumps(robot, indent=1) + "\n").encode()
    with Link(port) as link:
        hello = link.connect()
        lean = {k: v for k, v in hello.items() if k not in ("programs", "track")}  # what a long hello drops (loop.py)
        size = len(json.dumps(dict(lean, robot=robot)).encode())
        if size > P.MAX_PAYLOAD - 128:  # the board sends its description in every hello: it must still fit a frame
            raise UserError(f"the measured description makes a {size}-byte hello, more than a frame holds "
                            f"({P.MAX_PAYLOAD}); nothing written: shorten the robot description")
        transfer(link, f"file:{PREVIOUS_FILE}", (json.dumps(hello.robot, indent=1) + "\n").encode())
        transfer(link, f"file:{ROBOT_FILE}", data)
        link.request("reset")  # acked, then machine.reset(): the board boots with the new description
    say(f"stored the measured description on the board ({len(data)} bytes; the previous one is {PREVIOUS_FILE}); "
        "restarting it ...")
    deadline = time.monotonic() + 20
    while True:
        time.sleep(0.5)
        try:
            with Link(port) as link:
                back = link.connect(timeout=3.0).robot
            break
        except DeviceError:
            if time.monotonic() > deadline:
                raise
    if back.get("check") != robot["check"]:
        raise DeviceError(f"the board restarted without the new description: {ROBOT_FILE} was not taken "
                          f"(the previous one is {PREVIOUS_FILE} on the board)")
    return {"file": ROBOT_FILE, "previous": PREVIOUS_FILE, "bytes": len(data),
            "limits_us": {j["name"]: [j["min_us"], j["max_us"]] for j in robot["joints"]}}


# -- analysis helpers -------------------------------------------------------------------------------------------
class _Follow:
    """Whether a joint still follows a sweep: over the last STALL_WINDOW frames its pot moved at least STALL_SHARE
    of what the command moved (each end averaged over 3 frames against the ADC's noise). A rate, not an error: a
    pot whose slope is off by 15 % still follows; one against an end stop does not."""

    def __init__(self):
        self.commanded, self.moved = [], []

    def stalled(self, commanded, moved):
        """commanded, moved: degrees outward from the sweep's start (the command's nominal, the pot's)."""
        if commanded < 10.0:  # starting: the servo takes a few ticks to get going
            return False
        self.commanded.append(commanded)
        self.moved.append(moved)
        n = STALL_WINDOW
        if len(self.commanded) < n + 3:
            return False
        c, m = np.asarray(self.commanded[-n - 3:]), np.asarray(self.moved[-n - 3:])
        dc, dm = c[-3:].mean() - c[:3].mean(), m[-3:].mean() - m[:3].mean()
        return dc > 2.0 and dm < STALL_SHARE * dc


def _tail(rows, seconds=TAIL_S):
    if not rows:
        return rows
    end = rows[-1]["t_host"]
    return [r for r in rows if r["t_host"] >= end - seconds] or rows[-1:]


def _settled(rows, name):
    return float(np.mean(column(_tail(rows), name))) if rows else float("nan")


def _deadband_us(before, stairs, j, noise):
    """The first step of the staircase whose settled angle left the one before the staircase by more than the
    reading's noise allows (3 sigma of a mean over the settled tail); None if even the last did not."""
    start = _settled(before, j + "_deg")
    for step, rows in zip(DEADBAND_STEPS_US, stairs):
        tail = _tail(rows, DEADBAND_HOLD_S / 2)
        if tail and float(np.mean(column(tail, j + "_deg"))) - start > max(0.3, 3 * noise / math.sqrt(len(tail))):
            return step
    return None


def _settling_ms(rows, j):
    """From the step's first tick at its new pulse to the last time the angle was outside +-1 deg of its final value."""
    if len(rows) < 10:
        return None
    cmd, deg = column(rows, j + "_cmd_us"), column(rows, j + "_deg")
    moved = np.flatnonzero(cmd == cmd[-1])
    if not len(moved):
        return None
    first = moved[0]
    final = float(np.mean(deg[-10:]))
    outside = np.flatnonzero(np.abs(deg[first:] - final) > max(1.0, 3 * np.std(deg[-10:])))
    last = outside[-1] + 1 if len(outside) else 0
    return round((rows[first + last]["t_host"] - rows[first]["t_host"]) * 1000) if first + last < len(rows) else None


def _imu_turn(plus, minus):
    """The limb's turn (axis x angle, deg, in the IMU's axes) from the joint at -STEP to +STEP: gravity, as the IMU
    sees it, turns the other way round."""
    if not plus or not minus or "ax" not in plus[0]:
        return None
    g = [np.array([_settled(rows, k) for k in ("ax", "ay", "az")]) for rows in (minus, plus)]
    if min(np.linalg.norm(v) for v in g) < 0.5:
        return None
    axis = np.cross(g[1], g[0])
    angle = math.degrees(math.atan2(np.linalg.norm(axis), float(np.dot(g[0], g[1]))))
    n = np.linalg.norm(axis)
    return [float(v) for v in (axis / n * angle if n > 0 else axis)]


def table(result):
    """Lines: one per step, then the verdict."""
    lines = [f"{s['verdict']:<5} {s['step']:<16} {s['message']}" for s in result["steps"]]
    lines.append(f"{result['verdict']}: board {result['board_id']} (firmware v{result['firmware']}); session "
                 f"{result['session']}")
    return lines


def plot_check(session, result, path):
    """PNG: per joint the commanded pulse (as nominal degrees) and the measured angle over the whole check,
    the steps marked; returns the path."""
    from host.sessions.plot import plot as plot_session

    bad = ", ".join(f"{s['step']} {s['verdict']}" for s in result["steps"] if s["verdict"] in (WARN, FAIL))
    plot_session(session, path, title=f"host check: {result['verdict']}" + (f" ({bad})" if bad else ""))
    return path

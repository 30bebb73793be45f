"""The limb's own angle during a run, for scoring beside what the pots show (host/EVAL.md "The scores").

A servo's pot rides on its gear train; the limb sits on the output, behind the gears' backlash. A controller
that tracks the pot perfectly can leave the limb a degree or two off, more with worn gears, and a score of
the pot angle does not see it. Two sources:

- `sim`: the virtual Gen0's plant knows the limb angle exactly. The simulator serves it keyed by the board
  clock (host/sim/truth.py); each telemetry tick gets the sample taken when its pots were read.
- `imu` (a real robot): see imu_forearm(): the MPU-6050 on the distal link gives that link's absolute angle
  from gravity, i.e. the *sum* of the joints' limb angles, and only while the arm is nearly still.
"""

import numpy as np

from host.sessions.stats import error
from host.sim import registry
from host.sim import truth as T


def sim_truth(port, session, rows):
    """{joint: limb angle (deg) at each of the session's rows} from the virtual Gen0 behind `port`, or None
    when `port` is no virtual Gen0 with a truth channel (a real robot, an older simulator) or it has no samples
    for these ticks (NaN where a tick has none)."""
    note = registry.find(port)
    if not note or not note.get("truth"):
        return None
    hello = session.segments[-1]["hello"]
    period_us = 1_000_000 // hello.rate_hz
    ticks = np.round(np.asarray(session.columns["t"])[rows] * 1e6).astype(np.int64)
    try:
        off, limb, _ = T.ask(note["truth"], ticks[0], ticks[-1] + period_us)
    except (OSError, ValueError):
        return None
    if not len(off):
        return None
    u = ticks - ticks[0]
    i = np.minimum(np.searchsorted(off, u), len(off) - 1)  # the first sample at or after the tick's start: its pot reads
    ok = (off[i] >= u) & (off[i] - u < period_us)
    return {j: np.where(ok, limb[i, k], np.nan) for k, j in enumerate(hello.joints)}


def scores(limb, targets, measured, min_cover=0.9):
    """{joint: figures} of the limb against the target over the ticks that have a limb angle; {} when fewer
    than min_cover of the ticks have one.

    The pot's own reading is off the limb by a constant too (its zero: the robot description's pot_v_at_0
    against this unit's pot; 2-6 deg on the virtual Gen0's units), which no controller on the pot sees and a
    one-point calibration removes. So: `limb_offset_deg`, the mean of limb - pot angle; `limb_rmse_deg` and
    `limb_max_deg`, of limb - offset - target: what the gears' play and compliance add to the pot's error;
    `limb_abs_rmse_deg`, of limb - target as it is; `limb_vs_pot_deg`, the RMS of limb - offset - pot: how far
    the limb strays from what the pot says (the gears' play shows here whatever the controller)."""
    out = {}
    for j, angle in (limb or {}).items():
        if np.isfinite(angle).mean() < min_cover:
            return {}
        target, pot = np.asarray(targets[j], float), np.asarray(measured[j], float)
        ok = np.isfinite(angle) & np.isfinite(pot)
        offset = float(np.mean(angle[ok] - pot[ok]))
        e, absolute, play = error(angle - offset, target), error(angle, target), error(angle - offset, pot)
        out[j] = {"limb_rmse_deg": e["rmse"], "limb_max_deg": e["max_abs"], "limb_offset_deg": round(offset, 3),
                  "limb_abs_rmse_deg": absolute["rmse"], "limb_vs_pot_deg": play["rmse"]}
    return out


STILL_DPS = 15.0  # imu_forearm(): a tick is still when the link's angle turns slower than this over STILL_S ...
STILL_S = 0.1
STILL_G = 0.03  # ... and the accelerometer reads its resting magnitude within this: gravity alone


def imu_forearm(session, rows, hello):
    """The IMU's link (imu.mounted_on: the distal one on a Gen0) against the targets, from gravity.

    Its accelerometer in the joints' plane gives the link's absolute angle from hanging, atan2(ay, -ax): the
    sum of the joints' limb angles plus where the links were glued on, and only while the arm is nearly
    still (STILL_DPS, STILL_G: at 150 deg/s the centripetal part alone tilts it by degrees; the gyro is not
    used: its offset is tens of deg/s on some units). The constant (the glue, the IMU's mounting, the pots'
    zeros) is the mean of IMU - pot sum over those ticks; then {"rmse_deg" (IMU - constant - target sum),
    "vs_pot_deg" (IMU - constant - pot sum), "ticks" (still ones), "offset_deg"}, or None without IMU
    readings, or with fewer than 20 still ticks."""
    c = session.columns
    if not all(k in c for k in ("ax", "ay", "az")) or "imu_missing" in hello.flags and \
            (np.asarray(c["flags"])[rows] & hello.flag("imu_missing")).any():
        return None
    ax, ay, az = (np.asarray(c[k], float)[rows] for k in ("ax", "ay", "az"))
    angle = np.degrees(np.unwrap(np.arctan2(ay, -ax)))
    g = np.sqrt(ax ** 2 + ay ** 2 + az ** 2)
    still = (_turn(angle, hello.rate_hz) < STILL_DPS) & (np.abs(g - np.median(g)) < STILL_G)
    for j in hello.joints:  # and no joint's pot moving (a link swinging through its lowest point reads still)
        still &= _turn(np.asarray(c[f"{j}_deg"], float)[rows], hello.rate_hz) < STILL_DPS
    if still.sum() < 20:
        return None
    target = sum(np.asarray(c[f"{j}_target_deg"], float)[rows] for j in hello.joints)
    pot = sum(np.asarray(c[f"{j}_deg"], float)[rows] for j in hello.joints)
    offset = float(np.mean(_wrap(angle - pot)[still]))
    angle = pot + _wrap(angle - pot - offset)
    e, vs = error(angle[still], target[still]), error(angle[still], pot[still])
    return {"rmse_deg": e["rmse"], "vs_pot_deg": vs["rmse"], "ticks": int(still.sum()), "offset_deg": round(offset, 3)}


def _turn(deg, rate_hz):
    """How fast (deg/s) an angle moves around each tick: its mean over the first and the last 3 ticks of a
    STILL_S window, apart (inf where the window leaves the run); the means keep the sensors' noise out."""
    half = max(3, round(STILL_S * rate_hz / 2))
    out = np.full(len(deg), np.inf)
    if len(deg) > 2 * half + 3:
        m = np.convolve(deg, np.ones(3) / 3, mode="valid")  # m[i]: mean of deg[i..i+2]
        out[half:len(deg) - half] = np.abs(m[2 * half - 2:] - m[:len(m) - 2 * half + 2]) / ((2 * half - 2) / rate_hz)
    return out


def _wrap(deg):
    return (np.asarray(deg) + 180.0) % 360.0 - 180.0

"""The linear calibration: pulse = a + b * deg per joint, least squares on settled samples of collected data.

What a careful user does by hand (command a pulse, wait, read the angle). `host eval`'s `linear`
controller runs it, and `host train` writes it into a model's blob as the fallback that drives the joints
while the model is outside what it learned (firmware/MLP.md "The learned region").
"""

import numpy as np

from host.errors import UserError
from host.sessions.stats import robot_of

SETTLED_S = 0.3  # a pulse held this long has settled


def calibrate(sessions):
    """Least-squares pulse = a + b * deg per joint, on the samples whose pulse had been held SETTLED_S.

    What a careful user does by hand (command a pulse, wait, read the angle), over every settled
    sample of the sessions. {"lin": [a0, b0, a1, b1, ...], "joints", "rows", "rmse_us", "sessions"}."""
    if not sessions:
        raise UserError("the linear calibration needs collected sessions: give --calibrate SESSION (`host sessions`)")
    joints, rate = robot_of(sessions)
    held = max(1, round(SETTLED_S * rate))
    lin, rows, errors = [], {}, {}
    for j in joints:
        x, y = [], []
        for s in sessions:
            c = s.columns
            if len(s) == 0 or f"{j}_cmd_us" not in c:
                continue
            pulse, deg, seg = np.asarray(c[f"{j}_cmd_us"]), np.asarray(c[f"{j}_deg"], dtype=float), c["segment"]
            change = np.ones(len(pulse), dtype=bool)
            change[1:] = (pulse[1:] != pulse[:-1]) | (seg[1:] != seg[:-1])
            starts = np.flatnonzero(change)
            age = np.arange(len(pulse)) - starts[np.cumsum(change) - 1]  # ticks since the pulse last changed
            ok = (age >= held) & (pulse > 0) & np.isfinite(deg)
            x.append(deg[ok])
            y.append(pulse[ok].astype(float))
        x, y = (np.concatenate(v) if v else np.zeros(0) for v in (x, y))
        if len(x) < 20 or np.ptp(x) < 10:
            raise UserError(f"too few settled samples of {j} in {', '.join(s.name for s in sessions)} ({len(x)}): "
                            f"collect with `host collect --program steps` (it holds pulses >= {SETTLED_S:g} s)")
        a = np.column_stack([np.ones_like(x), x])
        coef = np.linalg.lstsq(a, y, rcond=None)[0]
        lin += [round(float(coef[0]), 3), round(float(coef[1]), 4)]
        rows[j] = len(x)
        errors[j] = round(float(np.sqrt(np.mean((a @ coef - y) ** 2))), 2)
    return {"lin": lin, "joints": joints, "rows": rows, "rmse_us": errors, "settled_s": SETTLED_S,
            "sessions": [str(s.path) for s in sessions]}

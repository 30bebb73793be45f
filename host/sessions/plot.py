"""The session figure: per joint the commanded pulse (as nominal degrees) against the measured angle,
a model's predictions and their residuals when given, the IMU, the activities marked."""

import numpy as np

from host.errors import UserError
from host.files import save_figure
from host.sessions.stats import activities, error, nominal_deg, timeline


def plot(session, path, predicted=None, title=None):
    """PNG: per joint the commanded pulse (as nominal degrees) vs the measured angle, the accelerometer (g)
    and the gyro (deg/s) apart, the activity switches marked; returns the figure (closed, for its axes).

    predicted: {label: predicted columns} (as a `predict` returns them), drawn on their joint's panel --
    `<joint>_deg` as is, `<joint>_cmd_us` as nominal degrees; the first solid, the rest dashed -- and
    each joint's first prediction minus the logged value on a residual panel of its own, in its unit.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = session.columns
    if not len(session):
        raise UserError(f"{session.path} holds no telemetry to plot")
    robot = session.hello.robot
    joints = robot["joints"]
    x = timeline(session)
    residuals = _residuals(joints, predicted or {}, c)
    panels = len(joints) + len(residuals) + 2
    fig, axes = plt.subplots(panels, 1, figsize=(11, 1.9 * panels + 0.9), sharex=True, dpi=100)
    for ax, j in zip(axes, joints):
        name = j["name"]
        ax.plot(x, nominal_deg(j, c[name + "_cmd_us"]), lw=1, drawstyle="steps-post", label="commanded (nominal)")
        ax.plot(x, c[name + "_deg"], lw=1, label="measured (pot)")
        for i, (label, columns) in enumerate((predicted or {}).items()):
            if name + "_deg" in columns:
                ax.plot(x, columns[name + "_deg"], lw=1, ls="--" if i else "-", label=f"{label}: angle")
            if name + "_cmd_us" in columns:
                ax.plot(x, nominal_deg(j, columns[name + "_cmd_us"]), lw=1, ls="--" if i else "-",
                        label=f"{label}: pulse (nominal)")
        ax.set_ylabel(f"{name} angle (deg)")
    for ax, (name, what, unit, diff) in zip(axes[len(joints):], residuals):
        rms = error(np.zeros_like(diff), diff)["rmse"]
        ax.plot(x, diff, lw=0.8, color="tab:red", label=f"{what} − logged\n(rms {rms:.3g} {unit})")
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_ylabel(f"{name} error ({unit})")
    accel, gyro = axes[-2], axes[-1]
    imu = robot.get("imu") or {}
    for ax, keys, unit, full, colours in ((accel, ("ax", "ay", "az"), "g", imu.get("accel_fs_g"), ("C0", "C1", "C2")),
                                          (gyro, ("gx", "gy", "gz"), "deg/s", imu.get("gyro_fs_dps"), ("C3", "C4", "C9"))):
        for k, colour in zip(keys, colours):
            ax.plot(x, c[k], lw=0.7, color=colour, label=k)
        ax.set_ylabel(f"{'accel' if unit == 'g' else 'gyro'} ({unit})")
        clipped = sum(int(np.count_nonzero(np.abs(c[k]) >= 0.99 * full)) for k in keys) if full else 0
        if clipped:  # the MPU-6050 reads full scale for anything beyond: those peaks are cut off
            for sign in (1, -1):
                ax.axhline(sign * full, color="k", lw=0.8, ls="--")
            ax.plot([], [], color="k", lw=0.8, ls="--", label=f"±{full:g} {unit} full scale:\n{clipped} samples clipped")
    _mark_activities(session, x, axes)
    bounds = [x[np.argmax(c["segment"] == s)] for s in np.unique(c["segment"])[1:]]
    for ax in axes:
        for b in bounds:
            ax.axvline(b, color="k", ls=":", lw=1)
        ax.grid(True, color="0.92")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=10, frameon=False)
    axes[-1].set_xlabel("time since the first frame (s)" + ("; dotted: device reset, new segment" if bounds else ""))
    what = "commanded vs measured joint angles, model predictions and their error, IMU" if residuals else \
        "commanded vs measured joint angles and IMU"
    fig.suptitle(f"session {session.name}: {what}" + (f"\n{title}" if title else ""), fontsize=12)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    return fig


def _residuals(joints, predicted, c):
    """[(joint, what, unit, first prediction - logged)] per joint a prediction covers (its first one)."""
    out = []
    for j in joints:
        for label, columns in predicted.items():
            hit = next(((f, u) for f, u in (("_cmd_us", "µs"), ("_deg", "deg")) if j["name"] + f in columns), None)
            if hit:
                column = j["name"] + hit[0]
                out.append((j["name"], f"{label} {'pulse' if hit[1] == 'µs' else 'angle'}", hit[1],
                            np.asarray(columns[column], float) - np.asarray(c[column], float)))
                break
    return out


def _mark_activities(session, x, axes):
    """A vertical line where a program or track run starts, its name at the top of the first panel; idle
    stretches and ones under 2 % of the session (a program's few first or last ticks) are left unmarked."""
    rows = [row for row, _ in activities(session)] + [len(x) - 1]
    stretches = [(row, label) for (row, label), end in zip(activities(session), rows[1:])
                 if x[end] - x[row] >= 0.02 * (x[-1] - x[0]) and label != "idle"]
    if not stretches:
        return
    top = axes[0]
    for row, label in stretches:
        for ax in axes:
            ax.axvline(x[row], color="0.35", lw=0.9, ls="-.")
        top.annotate(label, (x[row], 1), xycoords=("data", "axes fraction"), xytext=(3, 3),
                     textcoords="offset points", fontsize=10, va="bottom", ha="left", annotation_clip=False)

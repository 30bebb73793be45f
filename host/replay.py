"""Replay a recorded session: offline (statistics and a plot) or onto a robot (--to-port).

Offline, the session's stored bytes go through the link's decoder again, chunk by chunk at
the recorded host timing divided by `speed` (or flat out): what a live consumer saw is what
a replay sees. The statistics come from the loader, which decodes with the same decoder.

Model-driven replay plugs in at `predict`: a function that takes the session's columns
(dict of numpy arrays, as `load(path).columns`) and returns predicted columns of the same
length under the names it predicts (e.g. {"shoulder_deg": ...}, NaN where it predicts
nothing); replay() scores them against the measured ones and plot() overlays them.
ModelRun is such a predictor for a trained model (`host replay SESSION --model MODEL`): it
builds the model's rows with training's own feature code (dataset.session_rows), runs them
through the host reference executor (int8, bit for bit the device) and, when the model
directory has its checkpoint, through the float network; output `<field>@+k` of the row
anchored at tick i lands in column `<field>` at tick i + k.

Onto a robot, the session's recorded servo pulses are streamed as `set` lines in direct
mode at the recorded device timing, while the Recorder of `host collect` records the
result as a new session; compare() then scores the two runs against each other.
"""

import time
from collections import deque
from pathlib import Path

import numpy as np

from polyniod_firmware import protocol as P

from host.collect import Recorder
from host.deploy import read_blob
from host.errors import UserError
from host.files import save_figure
from host.sessions import load
from host.sessions.store import BYTES, read_records
from host.train.dataset import dropped_text, feature_column, robot_of, session_rows

KEEPALIVE_S = 0.1  # resend the held pulses this often: the watchdog (300 ms) must not trip
ACK_TIMEOUT_S = 1.0  # a `set` without an ack after this long counts as lost
ACK_BYTES = 16  # an ack frame on the wire: flags, header, 3-byte payload, crc32
TAIL_S = 0.25  # recorded after the last command, so the last ticks land in the session


# -- offline ----------------------------------------------------------------------
def statistics(session, others=()):
    """Duration, frames, rate, device-loop interval (µs: p50/p99 beside mean/std/max), the largest gap and
    what the board sent in it, drops, CRC errors and segments of a loaded session.

    others: the frames that are not telemetry, (type, seq, ticks, payload) as the decoder gives them:
    a big one (the ~3.7 KB hello) holds the loop while it goes out, which std and max alone hide."""
    c, st = session.columns, session.stats
    t, seg = c["t"], c["segment"]
    same = np.flatnonzero(seg[1:] == seg[:-1])
    intervals_us = np.diff(t)[same] * 1e6
    duration = float(sum(t[seg == s][-1] - t[seg == s][0] for s in np.unique(seg)))
    hellos = [s["hello"] for s in session.segments if s["hello"] and s["hello"].get("rate_hz")]
    nominal = 1e6 * hellos[0].get("telemetry_every", 1) / hellos[0]["rate_hz"] if hellos else None
    figure = (lambda f: round(float(f(intervals_us)), 1)) if len(intervals_us) else (lambda f: None)
    out = {
        "duration_s": round(duration, 3),
        "frames": len(t),
        "rate_hz": round((len(t) - len(np.unique(seg))) / duration, 2) if duration else 0.0,
        "interval_us": {"unit": "us", "nominal": nominal, "mean": figure(np.mean), "jitter_std": figure(np.std),
                        "p50": figure(np.median), "p99": figure(lambda x: np.percentile(x, 99)),
                        "max": figure(np.max)},
        "drops": int(st["drops"]),
        "crc_errors": int(st["crc_errors"]),
        "segments": len(session.segments),
        "complete": bool(session.complete),
    }
    if len(intervals_us):
        out["largest_gap"] = largest_gap(session, int(same[np.argmax(intervals_us)]), others)
    return out


def largest_gap(session, row, others):
    """The interval after telemetry row `row`: its length, when (s since the first frame), and what the
    board sent in it ({"ms", "at_s", "row", "frames": [...], "why": one phrase})."""
    t = session.columns["t"]
    start, span = round(t[row] * 1e6) % P.TICKS_PERIOD, (t[row + 1] - t[row]) * 1e6
    baud = session.header.get("baud") or ((session.header.get("robot") or {}).get("link") or {}).get("baud")
    inside = [f for f in others if (f[2] - start) % P.TICKS_PERIOD <= span]
    frames = []
    for ftype, seq, _ticks, payload in inside:
        size = len(P.encode_frame(ftype, seq, _ticks, bytes(payload)))
        wire = f", {size * 10 / baud * 1000:.0f} ms at {baud} baud" if baud else ""
        if ftype == P.T_HELLO:
            what = f"the hello {'sent at boot' if seq == 0 else 'the host asked for'} ({size / 1000:.1f} KB{wire})"
        elif ftype == P.T_LOG:
            what = f"a log line ({size} B{wire}): {bytes(payload[1:61]).decode(errors='replace')}"
        else:
            what = f"a frame of type {ftype} ({size} B{wire})"
        frames.append({"type": ftype, "bytes": size, "what": what})
    big = [f for f in frames if f["type"] == P.T_HELLO or f["bytes"] > 512]
    if big:
        why = " + ".join(f["what"] for f in big) + ": the loop waits on the UART while it goes out"
    else:
        why = "no big frame from the board in it: the loop itself stalled"
    return {"ms": round(span / 1000, 1), "at_s": round(float(timeline(session)[row]), 3), "row": row,
            "frames": frames, "why": why}


def replay(session, speed=None, predict=None, on_frame=None):
    """Feed a loaded session's stored bytes through the link's decoder at the recorded host timing / speed.

    speed None (the default): as fast as possible -- offline, nothing waits. on_frame(host_time, frame)
    gets each decoded frame as it comes due. Returns the statistics, the frames the playback decoded,
    the wall time it took and the time it slept, and with `predict` the RMSE of each predicted column
    against the measured one.
    """
    records, _ = read_records(session.path.read_bytes())
    decoder = P.FrameDecoder()
    start = time.monotonic()
    t0 = None
    slept = 0.0
    others = []  # what is not telemetry: statistics() looks for what held the loop in them
    for kind, host_time, data in records:
        if kind != BYTES:
            continue
        t0 = host_time if t0 is None else t0
        if speed:
            wait = (host_time - t0) / speed - (time.monotonic() - start)
            if wait > 0:
                time.sleep(wait)
                slept += wait
        for frame in decoder.feed(data):
            if frame[0] != P.T_TELEMETRY:
                others.append(frame)
            if on_frame:
                on_frame(host_time, frame)
    out = statistics(session, others)
    out["played"] = {"frames": decoder.frames, "seconds": round(time.monotonic() - start, 3),
                     "slept_s": round(slept, 3), "speed": speed or "max"}
    if predict:
        predicted = predict(session.columns)
        out["model_rmse"] = {k: error(session.columns[k], v)["rmse"] for k, v in predicted.items()}
    return out


def error(measured, predicted):
    """RMSE and max |error| of predicted against measured, over the rows where both are numbers."""
    measured, predicted = np.asarray(measured, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    ok = np.isfinite(measured) & np.isfinite(predicted)
    if not ok.any():
        return {"rmse": None, "max_abs": None}
    diff = measured[ok] - predicted[ok]
    return {"rmse": round(float(np.sqrt(np.mean(diff ** 2))), 4), "max_abs": round(float(np.abs(diff).max()), 4)}


def timeline(session):
    """Seconds since the session's first frame: device time within a segment, host time between them."""
    c = session.columns
    t, seg = c["t"], c["segment"]
    x = np.empty_like(t, dtype=float)
    first_host = None
    for s in np.unique(seg):
        rows = seg == s
        host0 = c["t_host"][rows][0]
        first_host = host0 if first_host is None else first_host
        x[rows] = t[rows] - t[rows][0] + (host0 - first_host)
    return x


def nominal_deg(joint, pulses_us):
    """A pulse as the angle it asks for, by the robot description's nominal calibration (0 = no pulse)."""
    deg = (pulses_us.astype(float) - joint["center_us"]) / joint["us_per_deg"]
    return np.where(pulses_us > 0, deg, np.nan)


def activities(session):
    """[(first row, label)] of each stretch of one mode: the program the markers name for `program`
    (`chirp`, `steps`), the controller for `track`, else the mode (`idle`, `direct`)."""
    c = session.columns
    if not len(session):
        return []
    hello = next((s["hello"] for s in session.segments if s["hello"]), None) or {}
    modes = hello.get("modes") or []
    started = [(t, m) for t, m in session.markers if m.get("event") in ("program started", "track started")]
    mode = np.asarray(c["mode"]).astype(int)
    firsts = np.flatnonzero(np.concatenate(([True], (mode[1:] != mode[:-1]) | (c["segment"][1:] != c["segment"][:-1]))))
    out = []
    for row in firsts.tolist():
        label = modes[mode[row]] if 0 <= mode[row] < len(modes) else f"mode {mode[row]}"
        before = [m for t, m in started if t <= c["t_host"][row]]
        if label == "program" and before and before[-1].get("program"):
            label = before[-1]["program"]
        elif label == "track" and before and before[-1].get("controller"):
            label = f"track ({before[-1]['controller'].get('name')})"
        out.append((row, label))
    return out


def when(session, row):
    """{"t_s": seconds since the first frame, "row", "doing": the activity then} of a telemetry row."""
    doing = [label for first, label in activities(session) if first <= row]
    return {"t_s": round(float(timeline(session)[row]), 3), "row": int(row), "doing": doing[-1] if doing else None}


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
    robot = session.header.get("robot") or session.segments[0]["hello"]["robot"]
    joints = robot.get("joints") or session.segments[0]["hello"]["robot"]["joints"]
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


# -- a model over the session ------------------------------------------------------
JOINT_FIELDS = ("_cmd_us", "_raw", "_deg")  # what the telemetry logs of every joint (firmware TELEMETRY schema)


class ModelRun:
    """A model (models/NAME directory or .bin) run over the rows of one session, int8 and float.

    int8: the host reference executor, what the device computes. float: the PyTorch network of
    the directory's checkpoint.pt; a bare .bin has none, and float is then None with the reason
    in `float_unavailable` -- never stood in for by the int8 figures.
    """

    def __init__(self, model, session):
        _, self.reference = read_blob(model)
        ref = self.reference
        self.path, self.session = Path(model), session
        _check_fits(ref, session, model)
        try:
            rows = session_rows(session, ref.inputs, ref.outputs)
        except UserError as e:
            raise UserError(f"model {model}: {e}") from None
        self.x, self.y, self.anchors = rows["all"]
        self.dropped = rows["dropped"]
        if not len(self.x):
            raise UserError(f"session {session.name} gives model {model} no rows (left out: "
                            f"{dropped_text(self.dropped)}): record a longer session with the servos driven")
        self.targets = [feature_column(o, output=True) for o in ref.outputs]  # (column, ticks ahead)
        self.int8 = ref.infer(self.x)
        network, self.float_unavailable = float_network(self.path, ref)
        self.float = network(self.x) if network else None

    def columns(self, rows):
        """Per-row outputs [rows, n_out] -> session-length columns, each output at its anchor + k, NaN elsewhere."""
        out = {}
        for i, (column, k) in enumerate(self.targets):
            out[column] = np.full(len(self.session), np.nan)
            out[column][self.anchors + k] = rows[:, i]
        return out

    def predict(self, columns):
        """The `predict` of replay(): what the device would have computed (int8; the rows are this session's)."""
        return self.columns(self.int8)

    def predicted(self):
        """plot()'s overlays: int8, and float when the checkpoint is there."""
        overlays = {"model int8": self.columns(self.int8)}
        if self.float is not None:
            overlays["model float"] = self.columns(self.float)
        return overlays

    def title(self):
        """`model b31118e5 (inverse, models/mine)`: which model a plot shows."""
        return f"model {self.reference.model_id:08x} ({self.reference.task}, {self.path})"

    def report(self):
        """Model id and task, rows used and dropped, and per output the error of int8 and float vs the logged values."""
        ref, units = self.reference, self.session.units
        outputs = {}
        for i, (name, (column, k)) in enumerate(zip(ref.outputs, self.targets)):
            y, q, f = self.y[:, i], self.int8[:, i], None if self.float is None else self.float[:, i]
            worst = int(np.nanargmax(np.abs(q - y))) if np.isfinite(q - y).any() else None
            at = None if worst is None else when(self.session, self.anchors[worst] + k)
            if at and at["row"] > 0:  # a step in the logged value there: the error of a jump, not of a drift
                logged = self.session.columns[column]
                at["logged_step"] = round(float(logged[at["row"]] - logged[at["row"] - 1]), 3)
            outputs[name] = {"column": column, "ahead": k, "unit": units.get(column, ""), "int8": error(y, q),
                             "int8_max_at": at,
                             "float": None if f is None else error(y, f),
                             "int8_vs_float": None if f is None else error(f, q)}
        return {"path": str(self.path), "name": ref.spec.meta.get("name"), "model_id": f"{ref.model_id:08x}",
                "task": ref.task, "inputs": ref.inputs, "outputs": outputs,
                "rows": {"used": len(self.x), "dropped": self.dropped},
                "float": self.float is not None, "float_unavailable": self.float_unavailable}


def _check_fits(ref, session, model):
    """UserError unless the session's robot has the model's joints and runs at the model's rate."""
    if not any(seg["hello"] for seg in session.segments):
        raise UserError(f"session {session.name} holds no telemetry the board described (no hello): "
                        f"nothing to run model {model} over; record one with `host collect`")
    joints, rate = robot_of([session])
    wanted = [feature_column(n, output=False)[0] for n in ref.inputs] + \
             [feature_column(n, output=True)[0] for n in ref.outputs]
    foreign = sorted({c[:-len(f)] for c in wanted for f in JOINT_FIELDS if c.endswith(f) and c[:-len(f)] not in joints})
    if foreign:
        raise UserError(f"model {model} drives joints {', '.join(foreign)}; session {session.name}'s robot has "
                        f"{', '.join(joints)}: replay a session of the robot the model was trained for")
    missing = sorted(set(wanted) - set(session.columns))
    if missing:
        raise UserError(f"model {model} ({ref.task}) needs {', '.join(missing)}, which session {session.name} "
                        "does not log: give a model trained on sessions of this robot")
    trained = ref.spec.meta.get("rate_hz")
    if trained and rate and trained != rate:
        raise UserError(f"model {model} counts ticks at {trained} Hz, session {session.name} ran at {rate} Hz: "
                        "replay a session recorded at the model's rate")


def float_network(model, reference):
    """(inputs -> outputs in their units, None) from the checkpoint of a model directory, or (None, why not)."""
    if not model.is_dir():
        return None, f"{model} is a bare blob: the float network lives in its models/NAME directory's checkpoint.pt"
    if not (model / "checkpoint.pt").is_file():
        return None, f"{model} has no checkpoint.pt"
    from host.train import checkpoint as ckpt  # torch: only when a float network is there to run
    from host.train.fit import predict

    checkpoint = ckpt.load(model)
    if (checkpoint["inputs"], checkpoint["outputs"]) != (reference.inputs, reference.outputs):
        raise UserError(f"{model}: checkpoint.pt and model.bin map different inputs or outputs: train it again")
    n = {k: np.asarray(v, dtype=np.float64) for k, v in checkpoint["norm"].items()}
    network = ckpt.build(checkpoint)
    return (lambda x: predict(network, (x - n["in_mean"]) / n["in_std"]) * n["out_std"] + n["out_mean"]), None


# -- onto a robot -----------------------------------------------------------------
def recorded_commands(session):
    """(s since the first command, pulses [n, joints], joint names, their rows in the columns).

    From the segment with the most commanded frames, and only the frames where every joint got
    a pulse: a limp joint (pulse 0) cannot be asked for.
    """
    c = session.columns
    if not len(session):
        raise UserError(f"{session.path} holds no telemetry: nothing to replay")
    segment = session.segments[int(np.bincount(c["segment"]).argmax())]
    joints = [j["name"] for j in segment["hello"]["robot"]["joints"]]
    pulses = np.stack([c[j + "_cmd_us"] for j in joints], axis=1).astype(int)
    commanded = (pulses > 0).all(axis=1)
    segs, counts = np.unique(c["segment"][commanded], return_counts=True)
    if not len(segs):
        raise UserError(f"{session.path} has no servo commands to replay (every frame is limp)")
    rows = np.flatnonzero(commanded & (c["segment"] == segs[np.argmax(counts)]))
    t = c["t"][rows]
    return t - t[0], pulses[rows], joints, rows


class Streamer:
    """Sends recorded pulses as `set` lines when due, without waiting for acks; counts the acks.

    Late (the host stalled): only the newest due pulses are sent, never a burst. Unchanged
    pulses are resent every KEEPALIVE_S for the watchdog; changes come no closer than
    `min_gap` s, so the acks fit the link beside the telemetry.
    """

    def __init__(self, link, times, pulses, min_gap):
        self.link, self.times, self.pulses, self.min_gap = link, times, pulses, min_gap
        self.t0 = None
        self.sent = None
        self.sent_at = -1e9
        self.pending = deque()  # (seq, monotonic time sent)
        self.sets = self.acked = self.refused = self.lost = 0
        self.refusals = []

    def tick(self):
        """Send what is due; seconds until the next call is wanted, or None once all was sent and acked."""
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        t = now - self.t0
        i = int(np.searchsorted(self.times, t, side="right")) - 1
        end = self.times[-1] + TAIL_S
        if t <= end and i >= 0 and t - self.sent_at >= self.min_gap:
            want = tuple(int(p) for p in self.pulses[i])
            if want != self.sent or t - self.sent_at >= KEEPALIVE_S:
                try:
                    seq = self.link.send("set", *want)
                except (UserError, OSError):  # the port is going: the recorder sees link.error next
                    return 0.01
                self.pending.append((seq, now))
                self.sets += 1
                self.sent, self.sent_at = want, t
        self._take_acks(now)
        if t > end:
            return None if not self.pending else 0.01
        change = self.times[i + 1] if i + 1 < len(self.times) else end
        due = max(min(change, self.sent_at + KEEPALIVE_S), self.sent_at + self.min_gap)
        return max(0.0005, due - t)

    def _take_acks(self, now):
        while self.pending:
            seq, sent = self.pending[0]
            ack = self.link.take_ack(seq)
            if ack is None and now - sent < ACK_TIMEOUT_S:
                break
            self.pending.popleft()
            if ack is None:
                self.lost += 1
            elif ack[0] == P.E_OK:
                self.acked += 1
            else:
                self.refused += 1
                self.refusals.append(P.error_text(ack[0]))


def link_gap(hello, size):
    """Shortest spacing of `set` lines whose acks fit half of what the telemetry leaves of the link."""
    robot = hello.get("robot") or {}
    baud = (robot.get("link") or {}).get("baud") or 115200
    telemetry = hello["rate_hz"] / max(1, hello.get("telemetry_every", 1)) * (size + 13)
    free = baud / 10 - telemetry
    tick = 1 / hello["rate_hz"]
    return max(tick, ACK_BYTES / (0.5 * free)) if free > 0 else KEEPALIVE_S


def replay_to_port(path, port, name=None, out=None, stop=None, progress=True, say=None):
    """Stream the session's recorded pulses to the robot on `port` in direct mode, record the result.

    Returns {"session": the new session's summary, "commands": send/ack counts, "compare": compare()}.
    """
    original = load(path)
    times, pulses, joints, _rows = recorded_commands(original)
    header = {"program": {"name": "replay", "params": {}, "seed": None}, "replay_of": str(path),
              "replay_of_name": original.header.get("name")}
    rec = Recorder(port, out, name, header, progress, say)
    hello = rec.start()
    with rec:
        theirs = [j["name"] for j in (hello.get("robot") or {}).get("joints", [])]
        if theirs != joints:
            raise UserError(f"{port} has joints {theirs}, the session {joints}: replay onto the same kind of robot")
        rec.link.request_json("direct")
        streamer = Streamer(rec.link, times, pulses, link_gap(hello, rec.link.schema.size))
        rec.marker({"event": "program started", "program": "replay", "of": str(path), "commands": len(times)})
        reason = rec.record(stop=stop, total_s=float(times[-1]), tick=streamer.tick)
        summary = rec.finish(reason or rec.fault, complete=reason is not None)
    if reason is None or rec.write_error:
        raise UserError(f"{rec.fault or rec.write_error}; session kept: {rec.kept()}")
    counts = {"sets": streamer.sets, "acked": streamer.acked, "refused": streamer.refused,
              "lost": streamer.lost + len(streamer.pending), "refusals": sorted(set(streamer.refusals))}
    replayed = load(rec.path)
    held = 1 << hello["flags"].index("watchdog")  # direct mode got no `set` for watchdog_ms: holding
    counts["watchdog_frames"] = int(np.count_nonzero(replayed.columns["flags"].astype(int) & held))
    result = {"session": summary, "commands": counts}
    if reason == "done":
        result["compare"] = compare(original, replayed, direct_mode=hello["modes"].index("direct"))
    return result


def compare(original, replayed, direct_mode=1):
    """Per joint RMSE and max |difference| of the measured angles, by time since the replay's first command.

    The original's clock starts at its first replayed frame; the new session's at its first
    frame in direct mode that shows the first replayed pulses (the first `set` follows `direct`
    at once, so that is the tick the replay began).
    """
    times, pulses, joints, rows = recorded_commands(original)
    c = replayed.columns
    commanded = np.stack([c[j + "_cmd_us"] for j in joints], axis=1).astype(int)
    start = np.flatnonzero((c["mode"] == direct_mode) & (commanded == pulses[0]).all(axis=1))
    if not len(start):
        raise UserError("the replayed session never shows the first replayed pulses: nothing to compare")
    k = start[0]
    after = np.flatnonzero(c["segment"] == c["segment"][k])
    after = after[after >= k]
    t_new = c["t"][after] - c["t"][k]
    overlap = times <= t_new[-1]
    out = {"compared_s": round(float(times[overlap][-1]), 3), "frames": int(overlap.sum()), "joints": {}}
    for j in joints:
        diff = np.interp(times[overlap], t_new, c[j + "_deg"][after]) - original.columns[j + "_deg"][rows][overlap]
        out["joints"][j] = {"rmse_deg": round(float(np.sqrt(np.mean(diff ** 2))), 3),
                            "max_deg": round(float(np.abs(diff).max()), 3)}
    return out

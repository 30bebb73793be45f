"""What loaded sessions say: loop timing (p50/p99, the largest gap and what the board sent in it), what
the robot was doing when, the robot they share, and how far a prediction is from what was logged.

Offline figures, no link and no model: `host replay` prints them, evaluate and training use them.
"""

import numpy as np

from polyniod_firmware import protocol as P

from host.errors import UserError


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
    hellos = [s["hello"] for s in session.segments if s["hello"] and s["hello"].rate_hz]
    nominal = 1e6 / hellos[0].frame_hz if hellos else None
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
    baud = session.header.get("baud") or (session.hello.baud if session.hello else None)
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
    (`chirp`, `steps`), the controller for `track`, the `host check` step for `direct` in a check, else
    the mode (`idle`, `direct`)."""
    c = session.columns
    if not len(session):
        return []
    modes = session.hello.modes if session.hello else []
    started = [(t, m) for t, m in session.markers if m.get("event") in ("program started", "track started")]
    steps = [(t, m["step"]) for t, m in session.markers if m.get("event") == "check step" and m.get("step")]
    mode = np.asarray(c["mode"]).astype(int)
    change = np.concatenate(([True], (mode[1:] != mode[:-1]) | (c["segment"][1:] != c["segment"][:-1])))
    change[np.searchsorted(c["t_host"], [t for t, _ in steps]).clip(0, len(change) - 1)] = True
    out = []
    for row in np.flatnonzero(change).tolist():
        label = modes[mode[row]] if 0 <= mode[row] < len(modes) else f"mode {mode[row]}"
        before = [m for t, m in started if t <= c["t_host"][row]]
        step = [s for t, s in steps if t <= c["t_host"][row]]
        if label == "program" and before and before[-1].get("program"):
            label = before[-1]["program"]
        elif label == "track" and before and before[-1].get("controller"):
            label = f"track ({before[-1]['controller'].get('name')})"
        elif label == "direct" and step:
            label = step[-1]
        out.append((row, label))
    return out


def when(session, row):
    """{"t_s": seconds since the first frame, "row", "doing": the activity then} of a telemetry row."""
    doing = [label for first, label in activities(session) if first <= row]
    return {"t_s": round(float(timeline(session)[row]), 3), "row": int(row), "doing": doing[-1] if doing else None}


def check_warnings(sessions):
    """One line per board of the sessions that has never passed `host check` (Hello.check_warning)."""
    lines = {}
    for s in sessions:
        for seg in s.segments:
            if seg["hello"] and seg["hello"].check_warning():
                lines.setdefault(seg["hello"].board_id, seg["hello"].check_warning())
    return list(lines.values())


def robot_of(sessions):
    """(joint names, loop rate) shared by all the sessions' segments; UserError when they differ."""
    seen = {}
    for s in sessions:
        for seg in s.segments:
            if seg["hello"]:
                seen.setdefault(seg["hello"].same_robot(), f"{s.name} segment {seg['id']}")
    if not seen:
        raise UserError(f"{', '.join(s.name for s in sessions)}: no telemetry the board described (no hello)")
    if len(seen) > 1:
        raise UserError("the sessions differ in joints or loop rate (" + "; ".join(
            f"{where}: {', '.join(j)} at {r} Hz" for (j, r), where in seen.items()) + "): train on one kind")
    (joints, rate), = seen
    if not joints or not (isinstance(rate, (int, float)) and rate > 0):
        raise UserError(f"{seen[(joints, rate)]}: its board's hello names no joints or no loop rate: "
                        "record with `host collect` from a board running this firmware")
    return list(joints), rate

"""Replay a recorded session: offline through the link's decoder again, or onto a robot (--to-port).

Offline, the session's stored bytes go through the link's decoder again, chunk by chunk at
the recorded host timing divided by `speed` (or flat out): what a live consumer saw is what
a replay sees. The statistics come from the loader, which decodes with the same decoder
(host/sessions/stats.py); a `predict` (host/predict.py ModelRun) is scored against the logged columns.

Onto a robot, the session's recorded servo pulses are streamed as `set` lines in direct
mode at the recorded device timing, while the Recorder of `host collect` records the
result as a new session; compare() then scores the two runs against each other.
"""

import time
from collections import deque

import numpy as np

from polyniod_firmware import protocol as P

from host.collect import Recorder
from host.errors import UserError
from host.sessions import load
from host.sessions.stats import error, statistics
from host.sessions.store import BYTES, read_records

KEEPALIVE_S = 0.1  # resend the held pulses this often: the watchdog (300 ms) must not trip
ACK_TIMEOUT_S = 1.0  # a `set` without an ack after this long counts as lost
ACK_BYTES = 16  # an ack frame on the wire: flags, header, 3-byte payload, crc32
TAIL_S = 0.25  # recorded after the last command, so the last ticks land in the session


# -- offline ----------------------------------------------------------------------
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
    joints = segment["hello"].joints
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
    telemetry = hello.frame_hz * (size + 13)
    free = hello.baud / 10 - telemetry
    tick = 1 / hello.rate_hz
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
        theirs = hello.joints
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
    held = hello.flag("watchdog")  # direct mode got no `set` for watchdog_ms: holding
    counts["watchdog_frames"] = int(np.count_nonzero(replayed.columns["flags"].astype(int) & held))
    result = {"session": summary, "commands": counts}
    if reason == "done":
        result["compare"] = compare(original, replayed, direct_mode=hello.mode("direct"))
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

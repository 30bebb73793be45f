"""Training rows do not depend on how busy the host was: a session whose ticks ran late and were caught up
(as the firmware's schedule does on a loaded host) gives the same rows as the same ticks on time; only real
gaps (a lost frame, a pause in which the board dropped ticks, a reset) end a block."""

import numpy as np

from polyniod_firmware import protocol as P

from host.link.schema import TelemetrySchema
from host.sessions import load
from host.train.dataset import feature_column, from_sessions, session_rows, task_for
from tests.test_export import gen0_hello, in_reads
from tests.test_sessions import hello_frame, record

HELLO = gen0_hello(rate_hz=100)
PERIOD_US = 10_000
N = 1000
LOST, ACK_AFTER, PAUSE_AT = 500, 300, 700  # a lost frame, an ack between two ticks, a 200 ms pause (the board resyncs)


def tick_times(loaded):
    """Each tick's start (µs): on its deadline, or (loaded) every 20th tick 35 ms late and the next ones back to
    back until the schedule is caught up; from PAUSE_AT on, the schedule restarted 200 ms later."""
    t, deadline, late_until = [], 5000, -1
    for k in range(N):
        if k == PAUSE_AT:
            deadline += 200_000
        start = deadline
        if loaded and k % 20 == 5:
            start, late_until = deadline + 35_000, deadline + 35_000
        elif late_until > deadline:  # catching up: starts as soon as the previous tick ends (~1 ms)
            start = late_until = late_until + 1000
        t.append(start)
        deadline += PERIOD_US
    return t


def session(directory, name, loaded):
    schema = TelemetrySchema(HELLO["schema"])
    frames, seq = [hello_frame(0, HELLO, t_us=0)], 1
    for k, t_us in enumerate(tick_times(loaded)):
        values = dict.fromkeys(schema.names, 0)
        for j, name_ in enumerate(("shoulder", "elbow")):
            values[f"{name_}_cmd_us"] = 1500 + (k * 7 + j * 50) % 400
            values[f"{name_}_deg"] = (k * 13 + j * 500) % 4000 - 2000
        values["overruns"] = k // 20 if loaded else 0
        if k != LOST:  # its seq is spent, the frame never arrives
            frames.append(P.encode_frame(P.T_TELEMETRY, seq, t_us, schema.struct.pack(*(values[n] for n in schema.names))))
        seq += 1
        if k == ACK_AFTER:  # an ack takes a seq between two ticks: nothing is lost
            frames.append(P.encode_frame(P.T_ACK, seq, t_us + 500, P.ack_payload(3, P.E_OK, b"{}")))
            seq += 1
    record(directory, in_reads(frames), name=name)
    return load(directory / f"{name}.session")


def test_a_loaded_hosts_caught_up_ticks_keep_their_rows_and_real_gaps_end_blocks(tmp_path):
    quiet, loaded = session(tmp_path, "quiet", False), session(tmp_path, "loaded", True)
    assert loaded.lost.tolist() == quiet.lost.tolist() and quiet.lost.sum() == 1 == quiet.stats["drops"]
    assert quiet.lost[LOST] == 1  # the row after the lost frame says so; the ack's seq is not a loss
    steps = np.diff(loaded.columns["t"])
    assert (np.abs(steps - 0.01) > 0.005).sum() > 100  # late ticks all over (the old rule broke a block at each)
    task = task_for("inverse", [quiet])
    rows = {s.name: session_rows(s, task.inputs, task.outputs) for s in (quiet, loaded)}
    assert np.array_equal(rows["quiet"]["all"][2], rows["loaded"]["all"][2])  # the very same rows
    assert np.array_equal(rows["quiet"]["all"][0], rows["loaded"]["all"][0])
    assert rows["quiet"]["dropped"] == rows["loaded"]["dropped"]
    shifts = [feature_column(n, False)[1] for n in task.inputs] + [feature_column(n, True)[1] for n in task.outputs]
    lo, hi = min(0, *shifts), max(0, *shifts)
    blocks = [(0, LOST), (LOST, PAUSE_AT - 1), (PAUSE_AT - 1, N - 1)]  # rows (the lost tick has none) between gaps
    kept = 0
    for first, stop in blocks:  # every window of a block that fits, none across a gap
        inside = [a for a in rows["quiet"]["all"][2].tolist() if first <= a < stop]
        assert inside == list(range(first - lo, stop - hi))
        kept += len(inside)
    assert kept == len(rows["quiet"]["all"][2]) and rows["quiet"]["dropped"]["edges"] == 3 * (hi - lo)
    data = from_sessions([loaded], task)  # one session: its last 20 % validates, a fourth block
    assert data.dropped["edges"] == 4 * (hi - lo) and len(data.x_train) + len(data.x_val) > 0.85 * N


def test_the_pause_rule_is_the_firmwares_resync():
    from pathlib import Path
    import re

    from host.train.dataset import RESYNC_S

    loop = (Path(__file__).resolve().parent.parent / "firmware" / "loop.py").read_text()
    assert int(re.search(r"^RESYNC_US = (\d+)", loop, re.M).group(1)) == round(RESYNC_S * 1e6)

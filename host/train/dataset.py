"""Sessions -> rows of (inputs, targets) for a task, split into training and validation.

A row is anchored at one telemetry frame (one tick); the feature `<signal>@<k>` is the signal's
column k rows later. Rows are built inside blocks of consecutive ticks where the device drove the
servos, so a shift never crosses a device reset, a lost frame, a pause or a limp stretch.
Validation is held-out sessions, or with one session the end of each segment (TRAIN.md).
Sessions of several robots (units) are pooled; `of_unit` keeps one unit's.
"""

import inspect
import math
from dataclasses import dataclass, field

import numpy as np

from polyniod_firmware import features

from host.errors import UserError
from host.sessions import Session, find_session, load
from host.sessions.load import same_unit
from host.sessions.stats import robot_of
from host.train.tasks import TASKS

VAL_FRACTION = 0.2  # of the sessions (at least one), or of each segment when there is one session
SPLIT_GAP = features.MAX_FUTURE  # ticks between a segment's training part and its validation part
RESYNC_S = 0.05  # firmware/loop.py RESYNC_US: a tick this late makes the board drop the missed ticks (a pause)


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    inputs: list
    outputs: list
    split: str  # how validation was held out, in words
    rate_hz: float = None
    sessions: list = field(default_factory=list)  # per session: name, path, unit, role, rows, dropped
    dropped: dict = field(default_factory=dict)  # rows left out, by reason

    @property
    def units(self):
        """The unit ids of the boards whose sessions gave rows, in the order given (metrics.json's "units")."""
        return list(dict.fromkeys(i["unit"] for i in self.sessions if i["rows"]))


def task_for(name, sessions=(), **options):
    """The Task `name` for these sessions (their joints and rate), with its options (e.g. ahead=10)."""
    if name not in TASKS:
        raise UserError(f"no task {name!r}: the tasks are {', '.join(TASKS)} (host/train/tasks.py)")
    make = TASKS[name]
    params = inspect.signature(make).parameters
    unknown = set(options) - set(params)
    if unknown:
        raise UserError(f"task {name} takes no {', '.join('--' + o for o in sorted(unknown))}")
    if "joints" not in params:
        if sessions:
            raise UserError(f"task {name} makes its own data: give no sessions")
        return make(**options)
    if not sessions:
        raise UserError(f"task {name} learns from sessions: give one or more (see `host sessions`)")
    return make(*robot_of(sessions), **options)


def synthetic(task, seed):
    """The dataset of a task that brings its own data."""
    x, y, xv, yv = (np.asarray(a, dtype=np.float64) for a in task.data(seed))
    return Dataset(x, y, xv, yv, task.inputs, task.outputs, split=f"the validation rows task {task.name} makes")


def unit_of(session):
    """The unit id of the board that recorded a session (its hello's board_id), or None."""
    hello = session.hello
    return hello.board_id if hello else None


def of_unit(sessions, unit):
    """The sessions the board `unit` recorded (all of them when unit is None); UserError when none did."""
    if unit is None:
        return list(sessions)
    kept = [s for s in sessions if same_unit(unit_of(s), unit)]
    if not kept:
        units = sorted({str(unit_of(s)) for s in sessions})
        raise UserError(f"--unit {unit}: none of the {len(sessions)} session(s) given was recorded by it "
                        f"(their units: {', '.join(units) or 'none'}; see `host sessions`)")
    return kept


def from_sessions(sessions, task, n_val=None):
    """Rows of `task` from loaded sessions; validation: the last n_val sessions (default: a VAL_FRACTION of
    them, at least one), or with one session the end of each segment."""
    if n_val is None:
        n_val = math.ceil(len(sessions) * VAL_FRACTION) if len(sessions) > 1 else 0
    elif not 0 < n_val < len(sessions):
        raise UserError(f"{n_val} validation session(s) of {len(sessions)}: leave at least one to train on")
    parts = {"train": [], "val": []}
    infos, dropped = [], dict.fromkeys(("not_driven", "edges", "split_gap", "nan"), 0)
    for i, s in enumerate(sessions):
        role = "train+val" if n_val == 0 else "val" if i >= len(sessions) - n_val else "train"
        rows = session_rows(s, task.inputs, task.outputs, split=role == "train+val")
        info = {"name": s.name, "path": str(s.path), "unit": unit_of(s), "role": role, "rows": {},
                "dropped": rows["dropped"]}
        for part in ("train", "val"):
            x, y, _ = rows[part] if role == "train+val" else rows["all"] if role == part else (None, None, None)
            if x is not None:
                parts[part].append((x, y))
                info["rows"][part] = len(x)
        for k, v in rows["dropped"].items():
            dropped[k] += v
        infos.append(info)
    joined = {}
    for part, pieces in parts.items():
        n = sum(len(x) for x, _ in pieces)
        if n == 0:
            raise UserError(f"no {'training' if part == 'train' else 'validation'} rows for task {task.name} in "
                            f"{', '.join(s.name for s in sessions)} (left out: {dropped_text(dropped)}): "
                            "record longer sessions with the servos driven")
        joined[part] = tuple(np.concatenate(cols) for cols in zip(*pieces))
    split = (f"held-out sessions: {', '.join(i['name'] for i in infos if i['role'] == 'val')}" if n_val else
             f"held-out time: the last {VAL_FRACTION:.0%} of each segment, {SPLIT_GAP} ticks after its training part")
    _, rate = robot_of(sessions)
    return Dataset(*joined["train"], *joined["val"], task.inputs, task.outputs, split, rate, infos, dropped)


def session_rows(session, inputs, outputs, split=False):
    """{"all": (x, y, anchors)} (or "train" and "val" when split) and "dropped": counts, of one session.

    anchors: the row (index into session.columns) each row is anchored at: `<signal>@<k>` is row anchor + k."""
    shifts = [feature_column(name, output=False) for name in inputs] + [feature_column(n, True) for n in outputs]
    k_min, k_max = min(0, *(k for _, k in shifts)), max(0, *(k for _, k in shifts))
    dropped = dict.fromkeys(("not_driven", "edges", "split_gap", "nan"), 0)
    picked = {"train": [], "val": [], "all": []}
    c = session.columns
    for seg in session.segments:
        a, b = seg["rows"]
        if b == a:
            continue
        where = f"session {session.name}" + (f" segment {seg['id']}" if len(session.segments) > 1 else "")
        hello = seg["hello"]  # a segment with rows was described: its schema decoded them
        names = set(seg["schema"].names) if seg["schema"] else set()
        for (column, _), feature in zip(shifts, inputs + outputs):
            if column not in names:
                raise UserError(f"{where} has no field {column!r}, needed for {feature!r} "
                                f"(it has: {', '.join(sorted(names)) or 'nothing decodable'})")
        if hello.telemetry_every != 1:
            raise UserError(f"{where} logged every {hello.telemetry_every}th tick: features count ticks, "
                            "so record with `telemetry 1`")
        driven = _driven(c, a, b, hello)
        n = b - a
        part = np.zeros(n, dtype=np.int64)  # 0: all or train, 1: validation, -1: the gap between them
        if split:
            cut = round(n * (1 - VAL_FRACTION))
            part[cut:] = 1
            part[cut:cut + SPLIT_GAP] = -1
        breaks = np.ones(n, dtype=bool)
        breaks[1:] = _gaps(session, a, b, hello) | (part[1:] != part[:-1]) | (driven[1:] != driven[:-1])
        block = np.cumsum(breaks) - 1
        starts = np.flatnonzero(breaks)
        pos = np.arange(n) - starts[block]
        left = np.diff(np.append(starts, n))[block] - pos  # rows from this one to the block's end
        fits = driven & (part >= 0) & (pos >= -k_min) & (left > k_max)
        dropped["not_driven"] += int((~driven).sum())
        dropped["split_gap"] += int((driven & (part < 0)).sum())
        dropped["edges"] += int((driven & (part >= 0) & ~fits).sum())
        for p, key in ((0, "train" if split else "all"), (1, "val")):
            rows = a + np.flatnonzero(fits & (part == p))
            if len(rows):
                m = np.stack([np.asarray(c[col][rows + k], dtype=np.float64) for col, k in shifts], axis=1)
                ok = np.isfinite(m).all(axis=1)
                dropped["nan"] += int((~ok).sum())
                picked[key].append((m[ok], rows[ok]))
    out = {"dropped": dropped}
    n_in = len(inputs)
    for key in ("train", "val") if split else ("all",):
        m = np.concatenate([m for m, _ in picked[key]]) if picked[key] else np.zeros((0, len(shifts)))
        anchors = np.concatenate([r for _, r in picked[key]]) if picked[key] else np.zeros(0, dtype=np.int64)
        out[key] = (m[:, :n_in], m[:, n_in:], anchors)
    return out


def feature_column(name, output):
    """(session column, tick offset) of an input feature, or of an output (`<field>` or `<field>@+k`)."""
    if output:
        column, at, k = name.partition("@")
        try:
            k = int(k) if at else 0
        except ValueError:
            raise UserError(f"output {name!r}: the offset after @ is a whole number of ticks") from None
        if not 0 <= k <= features.MAX_FUTURE:
            raise UserError(f"output {name!r}: an output lies 0..{features.MAX_FUTURE} ticks ahead")
        return column, k
    try:
        signal, k = features.parse(name)
    except ValueError as e:
        raise UserError(str(e)) from None
    return features.logged_signal(signal), k


OUTPUT_UNITS = {"_cmd_us": ("pulse", "µs"), "_deg": ("angle", "deg"), "_raw": ("ADC", "counts")}


def output_label(name):
    """(joint, quantity, unit) of an output for people: `shoulder_cmd_us@+5` -> ("shoulder", "pulse", "µs");
    ("y", "", "") for a column no joint field names (the sin and xor tasks)."""
    column = name.partition("@")[0]
    for suffix, (quantity, unit) in OUTPUT_UNITS.items():
        if column.endswith(suffix) and len(column) > len(suffix):
            return column[:-len(suffix)], quantity, unit
    return column, "", ""


def _gaps(session, a, b, hello):
    """Whether ticks are missing between each row and the next (rows a..b of one segment): a frame lost on the
    way (Session.lost), or a pause in which the board dropped ticks (a step longer than RESYNC_S and a tick).
    A late tick the firmware caught up is no gap: the ticks are consecutive, their times the board's own,
    so the rows do not depend on how busy the host (or, under the virtual Gen0, its simulator) was."""
    step = np.diff(np.asarray(session.columns["t"][a:b], dtype=np.float64))
    lost = session.lost[a + 1:b] > 0 if len(session.lost) == len(session) else np.zeros(len(step), bool)
    return lost | (step > RESYNC_S + 1.0 / hello.rate_hz) | (step <= 0)


def _driven(c, a, b, hello):
    """Rows where the board sent pulses to every joint: not limp, no 0 µs (no pulse) command."""
    limp = hello.flag("limp") if "limp" in hello.flags else 0
    driven = (np.asarray(c["flags"][a:b]).astype(np.int64) & limp) == 0 if "flags" in c else np.ones(b - a, bool)
    for j in hello.joints:
        if f"{j}_cmd_us" in c:
            driven &= np.asarray(c[f"{j}_cmd_us"][a:b]) > 0
    return driven


def normalisation(x, y):
    """Mean and std of the training inputs and targets, as float32 (what the blob stores); std 0 -> 1."""
    def stats(v):
        mean = v.mean(axis=0).astype(np.float32)
        std = v.std(axis=0).astype(np.float32)
        std[~(std > 0)] = 1.0
        return mean.astype(np.float64), std.astype(np.float64)
    return (*stats(x), *stats(y))


def dropped_text(dropped):
    """Rows left out, by reason, in words: "5 not driven, 11 edges"."""
    return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in dropped.items() if v) or "nothing"


def load_sessions(items, hint=""):
    """Sessions given as paths, names (`host sessions`) or loaded Sessions, loaded."""
    out = []
    for item in items:
        if isinstance(item, Session):
            out.append(item)
            continue
        try:
            out.append(load(find_session(item)))
        except UserError as e:
            raise UserError(f"{e}{hint}") from None
    return out

"""Closed-loop evaluation: the robot follows reference trajectories in track mode, once per controller,
and each run is scored from its recorded session.

The controllers are the board's own (firmware/track.py): `naive` (the datasheet's 500-2500 µs over
-90..90 deg), `linear` (pulse = a + b * deg per joint, least squares on settled samples of collected
data: calibrate()) and `model` (the deployed MLP). The trajectories are made here, on the host, and
sent into the board's `traj` slot: steps of several sizes both ways, sines of several frequencies and
smooth random moves from a seed of their own. No excitation program produces them, so they are in no
training session: held out by construction.

A run is scored on its body, after a lead-in that holds the first target while the joint gets there:
RMSE and max of measured - target angle, and the lag, the delay of the measured angle that fits the
target best.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyniod_firmware import protocol as P

from host.calibration import calibrate  # noqa: F401 (host eval and the demo take it from here)
from host.collect import Recorder
from host.deploy import send_trajectory
from host.errors import DeviceError, UserError
from host.files import save_figure
from host import limb as limb_angles
from host.link.client import CommandError, Link
from host.models import find_model
from host.sessions import find_session, load
from host.sessions.stats import error

CONTROLLERS = ("naive", "linear", "model")
TRAJECTORIES = ("steps", "sines", "random")
SECONDS = 6.0  # of each trajectory's body
LEAD_IN_S = 0.5  # holding the first target before the scored body
MAX_LAG_S = 0.3  # the lag search range
STEP_SIZES = (5, 10, 20, 40)  # deg, each up and down
STEP_HOLD = 1 / 12  # of --seconds, each level (0.5 s at 6 s: the servo settles, then holds): 17 levels
SINES = ((0.5, 40.0), (1.0, 25.0), (2.0, 12.0))  # (Hz, amplitude deg): similar peak speeds, ~150 deg/s
RANDOM_AMP, RANDOM_KNOT_S = 35.0, 0.5  # smooth random: cosine-eased moves between random knots
EVAL_SEED = 9_000_001  # the random trajectory's own seed: no program draws from it
STALL_S = 0.05  # ticks this far behind their schedule: the run followed a slower trajectory, unclean (run_quality).
# The firmware's loop.RESYNC_US: up to it a late tick is caught up (the next ticks start at once), beyond it ticks are dropped.


@dataclass
class Trajectory:
    name: str
    about: str
    targets: np.ndarray  # [ticks, joints] deg: the lead-in, then the scored body
    lead_in: int  # ticks


# -- the held-out trajectories ------------------------------------------------------------------------
def check_plan(names=TRAJECTORIES, seconds=SECONDS, controllers=CONTROLLERS, lin=None):
    """What `host eval` (and the demo) can check before a port is opened: the trajectory and controller
    names, the seconds, and the linear calibration's numbers (finite, a pair per joint); UserError if not."""
    names, controllers = list(names), list(controllers)
    if not names:
        raise UserError(f"--trajectories: give at least one of {', '.join(TRAJECTORIES)}")
    unknown = [n for n in names if n not in TRAJECTORIES]
    if unknown:
        raise UserError(f"no trajectory {unknown[0]!r}: the trajectories are {', '.join(TRAJECTORIES)}")
    if not controllers:
        raise UserError(f"--controllers: give at least one of {', '.join(CONTROLLERS)}")
    for c in controllers:
        if c not in CONTROLLERS:
            raise UserError(f"no controller {c!r}: the controllers are {', '.join(CONTROLLERS)}")
    if not (isinstance(seconds, (int, float)) and 1.0 <= seconds <= 60):
        raise UserError(f"--seconds {seconds:g}: give 1 to 60 seconds per trajectory")
    if lin is not None:
        check_lin(lin)


def check_lin(lin, joints=None):
    """The linear controller's [a0, b0, a1, b1, ...]: finite, one (a, b) pair per joint (of `joints`, when known)."""
    text = ",".join(f"{v:g}" for v in lin)
    if not lin or len(lin) % 2 or not all(math.isfinite(v) for v in lin):
        raise UserError(f"--linear {text}: give finite numbers a,b for each joint (pulse = a + b * deg), "
                        f"e.g. --linear 1500,11,1500,11")
    if joints is not None and len(lin) != 2 * len(joints):
        raise UserError(f"--linear {text}: the robot has {len(joints)} joints ({', '.join(joints)}): "
                        f"give {2 * len(joints)} numbers, a,b for each")


def trajectories(n_joints, rate_hz, names=TRAJECTORIES, seconds=SECONDS, seed=EVAL_SEED):
    """The reference trajectories `names` for n_joints at rate_hz, each `seconds` long after its lead-in.

    Joint j > 0 runs each pattern in another order and direction, so the joints do not move in step."""
    check_plan(names, seconds)
    n = round(seconds * rate_hz)
    t = np.arange(n) / rate_hz
    lead_in = round(LEAD_IN_S * rate_hz)
    out = []
    for name in names:
        columns = []
        for j in range(n_joints):
            sign = -1.0 if j % 2 else 1.0
            if name == "steps":
                sizes = STEP_SIZES[::-1] if j % 2 else STEP_SIZES
                levels = [0.0] + [sign * v for s in sizes for v in (s, 0, -s, 0)]
                hold = round(seconds * STEP_HOLD * rate_hz)
                columns.append(np.repeat(levels, hold))
                about = (f"steps of {', '.join(map(str, STEP_SIZES))} deg up and down, "
                         f"{hold / rate_hz * 1000:.0f} ms each")
            elif name == "sines":
                parts = SINES[::-1] if j % 2 else SINES
                columns.append(sign * _sines(parts, t, seconds))
                about = "sines of " + ", ".join(f"{f:g} Hz +-{a:g} deg" for f, a in SINES) + f", up to {seconds / len(SINES):.1f} s each"
            else:
                rng = np.random.default_rng(seed + j)
                columns.append(_smooth_random(rng, t, seconds))
                about = f"smooth random within +-{RANDOM_AMP:g} deg, a new point every {RANDOM_KNOT_S:g} s"
        body = np.column_stack(columns)
        targets = np.vstack([np.repeat(body[:1], lead_in, axis=0), body])
        out.append(Trajectory(name, about, targets, lead_in))
    return out


def _sines(parts, t, seconds):
    """One segment per sine, of as many whole half-cycles as fit its share of `seconds`: each starts and ends at 0."""
    seg = seconds / len(parts)
    out = np.zeros_like(t)
    start = 0.0
    for f, amp in parts:
        half_cycles = max(1, math.floor(2 * f * seg + 1e-9))
        end = start + half_cycles / (2 * f)
        inside = (t >= start) & (t < end)
        out[inside] = amp * np.sin(2 * np.pi * f * (t[inside] - start))
        start = end
    return out


def _smooth_random(rng, t, seconds):
    """Random knots about every RANDOM_KNOT_S (the first and last at 0), cosine-eased between them."""
    k = max(1, round(seconds / RANDOM_KNOT_S))
    knots = rng.uniform(-RANDOM_AMP, RANDOM_AMP, k + 1)
    knots[0] = knots[-1] = 0.0
    u = t * k / seconds
    i = np.minimum(u.astype(int), k - 1)
    ease = (1 - np.cos(np.pi * (u - i))) / 2
    return knots[i] + (knots[i + 1] - knots[i]) * ease


# -- the linear calibration: host/calibration.py (train writes it into a blob as the model's fallback) --------


def trained_sessions(port, models="models"):
    """The sessions the model running on the board at `port` was trained on: the linear calibration's
    default data, so both learnt controllers see the same collected behaviour."""
    with Link(port) as link:
        model_id = link.connect().model
    trained = find_model(models, model_id)
    if trained is None:
        raise UserError(f"the linear calibration needs collected data: give --calibrate SESSION ... (the board's "
                        f"model {model_id or '(none)'} is not among {models}/, whose training sessions are the default)")
    return [load(find_session(s["path"])) for s in trained["sessions"]]


# -- running ------------------------------------------------------------------------------------------
def evaluate(port, lin, names=TRAJECTORIES, seconds=SECONDS, controllers=CONTROLLERS, out=None, say=print,
             stop=None, repeat=1, rerun=True):
    """Run each trajectory with each controller on the board at `port` (`repeat` times), recording a session
    per run; a run that is not clean (run_quality) is run once more (rerun), and scored as it then is.

    lin: the linear controller's [a0, b0, a1, b1, ...]. Returns {"runs": [...], "summary": ...,
    "trajectories": ...}; a controller the board cannot run (no model deployed) is skipped with a note."""
    out = Path(out or "sessions")
    runs, notes = [], []
    controllers = list(controllers)
    check_plan(names, seconds, controllers, lin if "linear" in controllers else None)
    with Link(port) as link:
        hello = link.connect()
    joints = hello.joints
    if "linear" in controllers:
        check_lin(lin, joints)  # this board's joints, before any run
    plan = trajectories(len(joints), hello.rate_hz, names, seconds)
    if "model" in controllers and not hello.model:
        notes.append("controller model skipped: no model on the board (deploy one: `host deploy MODEL --port P`)")
        controllers.remove("model")
    known = link.known  # each run's recording connects without asking for the hello again (Link.connect)
    for traj in plan:
        for c in controllers:
            args = [f"controller={c}"] + ([f"lin={','.join(f'{v:g}' for v in lin)}"] if c == "linear" else [])
            header = {"eval": {"trajectory": traj.name, "controller": c, "lead_in": traj.lead_in,
                               "lin": lin if c == "linear" else None}}
            for rep in range(repeat):
                name = f"eval-{traj.name}-{c}" + (f"-{rep + 1}" if repeat > 1 else "")
                first = None
                for attempt in (1, 2) if rerun else (1,):  # an unclean run (a stall, a lost frame) once more
                    send = c == controllers[0] and rep == 0 and attempt == 1
                    path, known = _record(port, out, name, header, traj, c, args, send, say, stop, known)
                    run = score(load(path), traj.lead_in, port)
                    if run["clean"] or attempt == 2 or not rerun:
                        break
                    first = {k: run[k] for k in ("overruns", "longest_gap_ms", "behind_ms", "lost")} | {"session": str(path)}
                    say(f"  {traj.name} {c}: {_quality_text(run)}: not clean, running it again")
                run.update(trajectory=traj.name, controller=c, session=str(path), repeat=rep + 1, attempts=attempt,
                           unclean_first=first)
                runs.append(run)
                say("  " + _run_line(run))
    return {"trajectories": {t.name: {"about": t.about, "ticks": len(t.targets), "lead_in": t.lead_in} for t in plan},
            "controllers": controllers, "lin": lin, "model_id": hello.model, "seconds": seconds,
            "runs": runs, "summary": summarize(runs), "notes": notes}


def _record(port, out, name, header, traj, c, args, send, say, stop, known=None):
    """One track run of traj with controller c, recorded as a session; its path and the link's `known` for the
    next. send: the trajectory first."""
    rec = Recorder(port, out, name, header, progress=False, say=say, known=known)
    rec.start()
    with rec:
        if send:
            say(f"  {traj.name}: {traj.about}; sending {len(traj.targets)} ticks ...")
            send_trajectory(rec.link, traj.targets)
        try:
            try:
                reason = rec.run("track", "traj", args, stop)
            except CommandError as e:  # the board restarted since: the trajectory is gone from RAM
                if e.code != P.E_NO_TRAJ:
                    raise
                say(f"  the board lost the {traj.name} trajectory (it restarted?): sending it again")
                send_trajectory(rec.link, traj.targets)
                reason = rec.run("track", "traj", args, stop)
        except CommandError as e:
            raise DeviceError(f"track {traj.name} with controller {c}: {e}") from None
        rec.finish(reason or rec.fault, complete=reason is not None)
    if reason is None:
        raise DeviceError(f"{rec.fault}; session kept: {rec.kept()}")
    if stop is not None and stop.is_set():
        raise UserError(f"stopped by the user; the sessions so far are in {out}")
    return rec.path, rec.link.known


def _quality_text(run):
    """A run's overruns, longest gap and lost frames in words."""
    return (f"{run['overruns']} overruns, longest gap {run['longest_gap_ms']:.0f} ms, {run['behind_ms']:.0f} ms behind "
            f"its schedule at most, {run['lost']} frames lost")


# -- scoring ------------------------------------------------------------------------------------------
def score(session, lead_in, port=None):
    """Per joint RMSE, max |error| (deg) and lag (ms) of one track run's session, after its lead-in; the limb's
    own RMSE and max when the board at `port` is a virtual Gen0 that serves its truth (host/limb.py); whether the
    run was clean (run_quality)."""
    c = session.columns
    hello = session.segments[-1]["hello"] if session.segments else None
    if not hello or not len(session):
        raise UserError(f"{session.path}: no telemetry recorded for the run")
    track = np.flatnonzero(np.asarray(c["mode"]) == hello.mode("track"))
    if len(track) <= lead_in or np.any(np.diff(track) != 1):
        raise DeviceError(f"{session.path}: the track run is not one unbroken stretch of ticks "
                          f"({len(track)} ticks, {session.stats['drops']} frames lost)")
    rows = track[lead_in:]
    rate = hello.rate_hz
    joints = {}
    for j in hello.joints:
        target, measured = np.asarray(c[f"{j}_target_deg"], float)[rows], np.asarray(c[f"{j}_deg"], float)[rows]
        e = error(target, measured)
        joints[j] = {"rmse_deg": e["rmse"], "max_deg": e["max_abs"], "lag_ms": _r(lag(target, measured, rate) * 1000, 1)}
    flagged = (np.asarray(c["flags"])[rows].astype(int) & hello.flag("fallback")) > 0 if "fallback" in hello.flags else None
    limb = limb_angles.sim_truth(port, session, rows) if port else None
    for j, v in limb_angles.scores(limb, {j: np.asarray(c[f"{j}_target_deg"], float)[rows] for j in joints},
                                   {j: np.asarray(c[f"{j}_deg"], float)[rows] for j in joints}).items():
        joints[j].update(v)
    limb_source = "sim" if "limb_rmse_deg" in joints[hello.joints[0]] else None
    forearm = limb_angles.imu_forearm(session, rows, hello)  # the IMU's link from gravity, at still ticks (a real robot too)
    return {"ticks": len(rows), "rate_hz": rate, "drops": int(session.stats["drops"]), "joints": joints,
            **run_quality(session, track, hello, lead_in), "limb_source": limb_source, "forearm_imu": forearm,
            "limb": limb if limb_source else None,
            "fallback": None if flagged is None else _r(flagged.mean(), 4),  # of the ticks: the model out of its region
            "t": (np.asarray(c["t"])[rows] - c["t"][rows[0]]), "targets": {j: np.asarray(c[f"{j}_target_deg"])[rows] for j in joints},
            "measured": {j: np.asarray(c[f"{j}_deg"])[rows] for j in joints}}


def run_quality(session, track, hello, lead_in=0):
    """Whether a run's scored ticks kept the board's schedule: {"overruns" (ticks that ended late, from the
    telemetry's counter), "longest_gap_ms" (the longest step between two frames), "behind_ms" (how far the
    ticks fell behind their schedule, at most), "lost" (frames), "clean"}.

    Targets advance a tick at a time, so a stalled run follows a slower trajectory and would score better than
    it should: a run whose ticks fell more than STALL_S behind (the loop then drops ticks), or that lost a
    frame, is unclean. A slow tick the loop catches up from (a GC pause: 20-50 ms at an ESP32's pace, then a
    few ticks that start at once, each an overrun) leaves the trajectory on its schedule: counted, not unclean.
    Counted from the last lead-in tick on: the `track` command's own tick is slow (the board sets the run up
    in it) while the first target is only held."""
    c = session.columns
    body = track[max(lead_in - 1, 0):]
    ov = np.asarray(c["overruns"], dtype=np.int64)[body] if "overruns" in c else np.zeros(len(body), np.int64)
    overruns = int(np.sum(np.diff(ov) & 0xFFFF))
    t = np.asarray(c["t"], dtype=float)[body]
    gap = float(np.diff(t).max()) if len(body) > 1 else 0.0
    offset = t - np.arange(len(body)) / hello.rate_hz  # each tick's start minus its place on the schedule
    behind = float(offset.max() - offset.min()) if len(body) else 0.0
    lost = int(session.lost[track[1:]].sum()) if len(session.lost) == len(session) else int(session.stats["drops"])
    clean = behind <= STALL_S and lost == 0
    return {"overruns": overruns, "longest_gap_ms": _r(gap * 1000, 1), "behind_ms": _r(behind * 1000, 1), "lost": lost,
            "clean": bool(clean)}


def lag(target, measured, rate_hz):
    """The delay (s, 0..MAX_LAG_S) of `measured` behind `target` that leaves the smallest RMS difference."""
    n = len(target)
    best, best_k = None, 0
    for k in range(min(round(MAX_LAG_S * rate_hz), n // 2) + 1):
        d = np.mean((measured[k:] - target[:n - k]) ** 2)
        if best is None or d < best:
            best, best_k = d, k
    return best_k / rate_hz


def summarize(runs):
    """Per controller and joint over all the runs: RMSE (pooled), max, mean lag; and the ratios to the model."""
    out = {}
    for c in dict.fromkeys(r["controller"] for r in runs):
        mine = [r for r in runs if r["controller"] == c]
        per = {}
        for j in mine[0]["joints"]:
            sq = sum(r["joints"][j]["rmse_deg"] ** 2 * r["ticks"] for r in mine)
            per[j] = {"rmse_deg": _r(math.sqrt(sq / sum(r["ticks"] for r in mine))),
                      "max_deg": max(r["joints"][j]["max_deg"] for r in mine),
                      "lag_ms": _r(np.mean([r["joints"][j]["lag_ms"] for r in mine]), 1)}
        total = sum(v["rmse_deg"] ** 2 for v in per.values())
        out[c] = {"joints": per, "rmse_deg": _r(math.sqrt(total / len(per)))}
        known = [r for r in mine if r.get("fallback") is not None]
        out[c]["fallback"] = _r(sum(r["fallback"] * r["ticks"] for r in known) / sum(r["ticks"] for r in known), 4) \
            if known else None
        _quality_limb_spread(out[c], mine)
    if "model" in out:
        for c in out:
            if c != "model":
                out[c]["rmse_vs_model"] = {j: _r(v["rmse_deg"] / max(out["model"]["joints"][j]["rmse_deg"], 1e-9), 2)
                                           for j, v in out[c]["joints"].items()}
    return out


def _pooled(runs, j, key="rmse_deg"):
    """The RMSE over all the ticks of these runs, from each run's RMSE."""
    return _r(math.sqrt(sum(r["joints"][j][key] ** 2 * r["ticks"] for r in runs) / sum(r["ticks"] for r in runs)))


def _quality_limb_spread(out, mine):
    """Into one controller's summary: how many of its runs were unclean; per joint the limb's pooled RMSE and
    max when every run has them; with several passes (--repeat), each pass's pooled RMSE: n, mean, std, min, max,
    per joint, over all trajectories and per trajectory."""
    out["runs"], out["unclean"] = len(mine), sum(1 for r in mine if not r.get("clean", True))
    for j, v in out["joints"].items():
        if all("limb_rmse_deg" in r["joints"][j] for r in mine):
            v["limb_rmse_deg"] = _pooled(mine, j, "limb_rmse_deg")
            v["limb_max_deg"] = max(r["joints"][j]["limb_max_deg"] for r in mine)
            v["limb_abs_rmse_deg"] = _pooled(mine, j, "limb_abs_rmse_deg")
            v["limb_vs_pot_deg"] = _pooled(mine, j, "limb_vs_pot_deg")
            v["limb_offset_deg"] = _r(np.mean([r["joints"][j]["limb_offset_deg"] for r in mine]))
    imu = [r["forearm_imu"] for r in mine if r.get("forearm_imu")]
    out["forearm_imu"] = {"rmse_deg": _r(math.sqrt(sum(f["rmse_deg"] ** 2 * f["ticks"] for f in imu) / sum(f["ticks"] for f in imu))),
                          "vs_pot_deg": _r(math.sqrt(sum(f["vs_pot_deg"] ** 2 * f["ticks"] for f in imu) / sum(f["ticks"] for f in imu))),
                          "ticks": sum(f["ticks"] for f in imu), "runs": len(imu)} if imu else None
    passes = sorted({r.get("repeat", 1) for r in mine})
    if len(passes) < 2:
        return

    def spread(runs, j):
        values = [_pooled([r for r in runs if r.get("repeat", 1) == p], j) for p in passes]
        return {"n": len(values), "mean": _r(np.mean(values)), "std": _r(np.std(values, ddof=1)),
                "min": min(values), "max": max(values)}

    for j, v in out["joints"].items():
        v["rmse_passes"] = spread(mine, j)
    out["per_trajectory"] = {}
    for name in dict.fromkeys(r["trajectory"] for r in mine):
        ours = [r for r in mine if r["trajectory"] == name]
        out["per_trajectory"][name] = {j: spread(ours, j) for j in out["joints"]}


def _r(v, digits=3):
    return round(float(v), digits)


def _run_line(run):
    figures = "   ".join(f"{j} rmse {v['rmse_deg']:5.2f}° max {v['max_deg']:5.1f}° lag {v['lag_ms']:3.0f} ms"
                         for j, v in run["joints"].items())
    fallback = f"   fallback {run['fallback'] * 100:.1f}% of ticks" if run.get("fallback") else ""
    limb = "   limb " + ", ".join(f"{j} {v['limb_rmse_deg']:.2f}°" for j, v in run["joints"].items()
                               if "limb_rmse_deg" in v) if any("limb_rmse_deg" in v for v in run["joints"].values()) else ""
    unclean = "" if run.get("clean", True) else f"   UNCLEAN ({_quality_text(run)})"
    return f"{run['trajectory']:<7} {run['controller']:<7} {figures}{fallback}{limb}{unclean}"


def combined(first, then):
    """One evaluation of two, run one after the other on the same board and trajectories (the demo evaluates
    the naive and linear controllers while the model trains, then the model): runs, controllers and notes in
    order, the summary over all the runs."""
    runs = first["runs"] + then["runs"]
    return {**first, "controllers": first["controllers"] + then["controllers"], "model_id": then["model_id"],
            "runs": runs, "summary": summarize(runs), "notes": first["notes"] + then["notes"]}


def public(result):
    """The result without the per-tick arrays: what --json prints and the run directory keeps."""
    return {**result, "runs": [{k: v for k, v in r.items() if k not in ("t", "targets", "measured", "limb")}
                               for r in result["runs"]]}


# -- showing ------------------------------------------------------------------------------------------
def table(result):
    """Lines of text: per joint and trajectory, RMSE / max / lag of each controller, then all trajectories."""
    runs, summary = result["runs"], result["summary"]
    controllers = list(summary)
    joints = list(runs[0]["joints"]) if runs else []
    head = f"{'joint':<9}{'trajectory':<11}" + "".join(f"{c + ' rmse/max/lag':>26}" for c in controllers)
    lines = [head, "-" * len(head)]
    for j in joints:
        for name in dict.fromkeys(r["trajectory"] for r in runs):
            cells = []
            for c in controllers:
                v = next((r["joints"][j] for r in runs if r["trajectory"] == name and r["controller"] == c), None)
                cells.append(f"{v['rmse_deg']:7.2f}° {v['max_deg']:6.1f}° {v['lag_ms']:4.0f} ms" if v else "-")
            lines.append(f"{j:<9}{name:<11}" + "".join(f"{x:>26}" for x in cells))
        cells = [summary[c]["joints"][j] for c in controllers]
        lines.append(f"{j:<9}{'all':<11}" + "".join(
            f"{v['rmse_deg']:7.2f}° {v['max_deg']:6.1f}° {v['lag_ms']:4.0f} ms".rjust(26) for v in cells))
    if summary.get("model", {}).get("fallback") is not None:
        per = ", ".join(f"{r['trajectory']} {r['fallback'] * 100:.1f}%" for r in runs if r["controller"] == "model")
        lines.append(f"model outside its learned region (linear fallback): {summary['model']['fallback'] * 100:.1f}% "
                     f"of ticks ({per})")
    lines += quality_limb_spread_lines(result)
    if "model" in summary:
        for c in controllers[:-1] if controllers[-1] == "model" else [x for x in controllers if x != "model"]:
            ratios = ", ".join(f"{j} {x:.1f}x" for j, x in summary[c]["rmse_vs_model"].items())
            lines.append(f"model RMSE is lower than {c}'s by: {ratios}")
    return lines


def quality_limb_spread_lines(result):
    """Lines under the table: the limb's RMSE beside the pot's per controller and joint (when known), the
    unclean runs, and the run-to-run spread of --repeat."""
    runs, summary = result["runs"], result["summary"]
    lines = []
    joints = list(runs[0]["joints"]) if runs else []
    if any("limb_rmse_deg" in summary[c]["joints"][j] for c in summary for j in joints):
        source = {"sim": "the virtual Gen0's plant"}.get(runs[0].get("limb_source"), runs[0].get("limb_source"))
        lines.append(f"limb angle (truth from {source}) vs pot angle, RMSE over all trajectories; the limb's "
                     "with the pot's constant offset removed (offset: limb - pot, mean):")
        for j in joints:
            lines.append(f"  {j:<9}" + "   ".join(
                f"{c} limb {v['limb_rmse_deg']:.2f}° / pot {v['rmse_deg']:.2f}° (offset {v['limb_offset_deg']:+.1f}°)"
                for c in summary if "limb_rmse_deg" in (v := summary[c]["joints"][j])))
    if any(summary[c].get("forearm_imu") for c in summary):
        lines.append("IMU: the forearm's angle from gravity (= the joints' limb angles summed), still ticks only, "
                     "its constant offset removed: RMSE vs the targets' sum / vs the pots' sum:")
        lines.append("  " + "   ".join(f"{c} {f['rmse_deg']:.2f}° / {f['vs_pot_deg']:.2f}° ({f['ticks']} ticks)"
                                       for c in summary if (f := summary[c].get("forearm_imu"))))
    unclean = [r for r in runs if not r.get("clean", True)]
    if unclean:
        lines.append(f"unclean runs (the board fell behind its schedule by over {STALL_S * 1000:.0f} ms or lost frames; scored as they ran): {len(unclean)} of {len(runs)}: "
                     + "; ".join(f"{r['trajectory']} {r['controller']}: {_quality_text(r)}"
                                 + (" (the second attempt)" if r.get("attempts") == 2 else "") for r in unclean))
    if any("rmse_passes" in summary[c]["joints"][j] for c in summary for j in joints):
        n = summary[next(iter(summary))]["joints"][joints[0]]["rmse_passes"]["n"]
        lines.append(f"run to run ({n} passes), pooled RMSE per pass: mean ± std (min..max)")
        for c in summary:
            lines.append(f"  {c:<7}" + "   ".join(
                f"{j} {v['mean']:.2f} ± {v['std']:.2f}° ({v['min']:.2f}..{v['max']:.2f})"
                for j, v in ((j, summary[c]["joints"][j]["rmse_passes"]) for j in joints)))
    return lines


CONTROLLER_NAMES = {"naive": "naive (datasheet 500-2500 µs)", "linear": "linear calibration (least squares)",
                    "model": "learned MLP (int8, on the robot)"}


def plot(result, path):
    """PNG: per trajectory and joint, the target and each controller's measured angle; RMSE bars below;
    one legend for all panels, outside them. Returns the figure (closed, for its axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    names = list(dict.fromkeys(r["trajectory"] for r in runs))
    joints = list(runs[0]["joints"])
    controllers = list(result["summary"])
    colours = {"naive": "tab:red", "linear": "tab:orange", "model": "tab:blue"}
    fig, axes = plt.subplots(len(names) + 1, len(joints), figsize=(6 * len(joints) + 2.5, 2.6 * (len(names) + 1) + 1),
                             squeeze=False, dpi=100)
    for row, name in enumerate(names):
        for col, j in enumerate(joints):
            ax = axes[row][col]
            mine = [r for r in runs if r["trajectory"] == name]
            ax.plot(mine[0]["t"], mine[0]["targets"][j], color="k", lw=1.6, label="target")
            for r in mine:
                ax.plot(r["t"], r["measured"][j], color=colours.get(r["controller"]), lw=0.9,
                        label=CONTROLLER_NAMES.get(r["controller"], r["controller"]))
                if r.get("limb") and "limb_offset_deg" in r["joints"][j]:  # the limb, its pot's constant offset removed
                    ax.plot(r["t"], r["limb"][j] - r["joints"][j]["limb_offset_deg"], color=colours.get(r["controller"]),
                            lw=0.7, ls="--", label=f"{r['controller']}: limb (truth)")
            ax.set_title(f"{j}, {name}: " + ", ".join(f"{r['controller']} {r['joints'][j]['rmse_deg']:.2f}°"
                                                      for r in mine) + " rms", fontsize=10)
            ax.set_ylabel(f"{j} angle (deg)")
            ax.grid(True, color="0.92")
    for col, j in enumerate(joints):
        ax = axes[-1][col]
        width = 0.8 / len(controllers)
        for k, c in enumerate(controllers):
            values = [next((r["joints"][j]["rmse_deg"] for r in runs if r["trajectory"] == n and r["controller"] == c),
                           np.nan) for n in names] + [result["summary"][c]["joints"][j]["rmse_deg"]]
            ax.bar(np.arange(len(values)) + k * width, values, width, color=colours.get(c))
        ax.set_xticks(np.arange(len(names) + 1) + 0.4 - width / 2, names + ["all (pooled)"])
        ax.set_ylabel(f"{j} RMSE (deg)")
        ax.set_title(f"{j}: tracking RMSE per trajectory (lower is better)", fontsize=10)
        ax.grid(True, axis="y", color="0.92")
    for ax in axes[-2]:
        ax.set_xlabel("time since the lead-in (s)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    labels, handles = zip(*dict(zip(labels, handles)).items())  # one entry each, however many passes (--repeat)
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.775, 0.96), fontsize=10, frameon=False)
    fig.suptitle("held-out trajectories: target vs measured joint angle, per controller", fontsize=12)
    fig.tight_layout(rect=(0, 0, 0.77, 1))
    save_figure(fig, path, dpi=100)
    return fig

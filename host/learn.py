"""Self-improvement rounds: the robot collects while its own learned controller tracks, and learns from that.

A model trained on excitation alone never sees the states its own control produces (DAgger's
argument: the errors of a policy compound in the states it visits). Each round:

1. on-policy data: the deployed (best so far) model tracks fresh random trajectories, recorded as a
   session -- the inverse task learns from any driven session, the angles reached being the targets;
2. retrain on every session so far (excitation + all rounds' sessions; the same validation session),
   CANDIDATES times with other seeds, and keep the one the training's closed-loop figure ranks best
   (the training seed alone moves a model's tracking by up to 0.6 deg: EVAL.md);
3. deploy the candidate and score it closed-loop on the held-out trajectories (host eval, model only);
4. keep the better model: a candidate worse than the best is replaced on the board by the best again,
   so the board ends every round running the best model measured.

Round 0 is the model the rounds start from, scored the same way. A table and a plot of the error
per round say whether rounds help and by how much.
"""

import math
import time
from pathlib import Path

import numpy as np

from host.collect import Recorder
from host.deploy import deploy, read_blob, send_trajectory
from host.errors import DeviceError, UserError
from host.evaluate import SECONDS, TRAJECTORIES, evaluate
from host.files import save_figure, write_json
from host.link.client import Link
from host.sessions import load
from host.train.candidates import CANDIDATES, train

COLLECT_S = 20.0  # of on-policy tracking per round
PIECE_S = 10.0  # one sent trajectory: RAM on the board holds ~10 s of targets at 100 Hz with room to spare
KNOT_S = (0.25, 1.0)  # the fresh trajectories' random moves: each lasts this long
AMP_DEG = 45.0  # within +-this of the centre (the eval trajectories reach 40)
ROUND_SEED = 7_000_000  # the fresh trajectories' seeds: seed + 1000 * round + piece, drawn by no program or eval
EPOCHS, PATIENCE = 60, 15


def fresh_trajectory(n_joints, rate_hz, seconds, seed):
    """[ticks, joints] deg: smooth random moves, each of a random duration in KNOT_S, from and back to 0.

    A lead-in holding 0 for 0.5 s first, like eval's, so the joints start where they are told."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate_hz)
    cols = []
    for _ in range(n_joints):
        times, t = [0.0], 0.0
        while t < seconds:
            t += rng.uniform(*KNOT_S)
            times.append(min(t, seconds))
        knots = rng.uniform(-AMP_DEG, AMP_DEG, len(times))
        knots[0] = knots[-1] = 0.0
        x = np.arange(n) / rate_hz
        i = np.clip(np.searchsorted(times, x, side="right") - 1, 0, len(times) - 2)
        span = np.maximum(np.asarray(times)[i + 1] - np.asarray(times)[i], 1e-9)
        ease = (1 - np.cos(np.pi * np.clip((x - np.asarray(times)[i]) / span, 0, 1))) / 2
        cols.append(knots[i] + (knots[i + 1] - knots[i]) * ease)
    body = np.column_stack(cols)
    return np.vstack([np.zeros((round(0.5 * rate_hz), n_joints)), body])


def collect_on_policy(port, out, name, seconds, seed, say=print, stop=None):
    """One session: the deployed model tracking fresh trajectories for `seconds`, PIECE_S at a time."""
    with Link(port) as link:
        hello = link.connect()
    if not hello.model:
        raise DeviceError("no model on the board to collect on-policy data with: deploy one first")
    pieces = max(1, math.ceil(seconds / PIECE_S))
    header = {"program": {"name": "on-policy", "controller": "model", "model_id": hello.model, "seed": seed,
                          "seconds": seconds}}
    rec = Recorder(port, out, name, header, progress=False, say=say)
    rec.start()
    reason = None
    with rec:
        for k in range(pieces):
            targets = fresh_trajectory(len(hello.joints), hello.rate_hz, seconds / pieces, seed + k)
            send_trajectory(rec.link, targets)
            reason = rec.run("track", "traj", ["controller=model"], stop)
            if reason is None or (stop is not None and stop.is_set()):
                break
        summary = rec.finish(reason or rec.fault or "stopped", complete=reason is not None)
    if reason is None:
        raise DeviceError(f"{rec.fault or 'stopped'}; session kept: {rec.kept()}")
    if stop is not None and stop.is_set():
        raise UserError(f"stopped by the user; the sessions so far are in {out}")
    return rec.path, summary


def _train(sessions, n_val, out, epochs, seed, say=lambda line: None):
    """The round's model: CANDIDATES seeds side by side, the one the closed-loop figure ranks best kept."""
    return train("inverse", sessions, out=out, progress=False, epochs=epochs, patience=PATIENCE,
                          seed=seed * CANDIDATES, val=n_val, candidates=CANDIDATES, say=say)


def _deploy(port, model_dir):
    blob, ref = read_blob(model_dir)
    with Link(port) as link:
        d = deploy(link, blob, ref, baud=link.connect().baud)
    if d["parity"] and d["parity"]["mismatches"]:
        raise DeviceError(f"the board's model disagrees with the host reference on {d['parity']['mismatches']} inputs")
    return d["model_id"]


def _score(port, names, seconds, out, say, stop):
    """Closed-loop figures of the deployed model: {"rmse_deg", "joints": {j: rmse}, "eval": public summary}."""
    result = evaluate(port, [], names, seconds, controllers=["model"], out=out, say=lambda m: None, stop=stop)
    s = result["summary"]["model"]
    return {"rmse_deg": s["rmse_deg"], "joints": {j: v["rmse_deg"] for j, v in s["joints"].items()},
            "lag_ms": {j: v["lag_ms"] for j, v in s["joints"].items()}}


def learn(port, train_sessions, val_sessions, rounds, out, model=None, score0=None, collect_s=COLLECT_S,
          epochs=EPOCHS, names=TRAJECTORIES, seconds=SECONDS, seed=0, say=print, stop=None):
    """Run `rounds` self-improvement rounds on the board at `port`; {"rounds": [...], "best": ..., ...}.

    train_sessions / val_sessions: paths of what the first model learned from (validation stays the
    same every round). model: the first model's directory (deployed and, with score0, scored already,
    as the demo leaves it); else it is trained here."""
    if not isinstance(rounds, int) or not 1 <= rounds <= 20:
        raise UserError(f"--rounds {rounds}: give 1 to 20 rounds")
    if not (isinstance(collect_s, (int, float)) and 5 <= collect_s <= 300):
        raise UserError(f"--collect {collect_s:g}: give 5 to 300 seconds of on-policy tracking per round")
    if not train_sessions or not val_sessions:
        raise UserError("host learn needs training sessions and a validation session (--val SESSION)")
    with Link(port) as link:  # the board first: a wrong port fails before minutes of training
        link.connect()
    out = Path(out)
    (out / "sessions").mkdir(parents=True, exist_ok=True)
    pool = [Path(p) for p in train_sessions]
    val = [Path(p) for p in val_sessions]
    table = []
    t0 = time.monotonic()
    if model is None:
        say("round 0: training the first model on the given sessions ...")
        model = Path(_train([load(p) for p in pool + val], len(val), out / "round0" / "model", epochs, seed)["path"])
    model = Path(model)
    if score0 is None:
        say(f"round 0: deploying {model} and scoring it on the held-out trajectories ...")
        _deploy(port, model)
        score0 = _score(port, names, seconds, out / "sessions", say, stop)
    best = {"round": 0, "model": str(model), **score0}
    table.append({"round": 0, "sessions": len(pool), "model": str(model), "kept": True, **score0,
                  "seconds": round(time.monotonic() - t0, 1)})
    say(_line(table[-1]))
    for r in range(1, rounds + 1):
        t = time.monotonic()
        say(f"round {r}: the best model (round {best['round']}) tracks {collect_s:g} s of fresh trajectories ...")
        path, summary = collect_on_policy(port, out / "sessions", f"onpolicy-{r}", collect_s,
                                          ROUND_SEED + seed * 100_000 + 1000 * r, say, stop)
        pool.append(path)
        say(f"round {r}: {summary['telemetry_frames']} frames, {summary['drops']} lost; retraining on "
            f"{len(pool)} sessions ...")
        loaded = [load(p) for p in pool + val]
        m = _train(loaded, len(val), out / f"round{r}" / "model", epochs, seed)
        candidate = Path(m["path"])
        say(f"round {r}: {CANDIDATES} candidates (training seeds), predicted tracking "
            + ", ".join(f"{x:.2f}°" for x in m["candidates"]["predicted_deg"] if x is not None)
            + f": deploying seed {m['candidates']['kept_seed']}'s")
        _deploy(port, candidate)
        score = _score(port, names, seconds, out / "sessions", say, stop)
        kept = score["rmse_deg"] < best["rmse_deg"]
        if kept:
            best = {"round": r, "model": str(candidate), **score}
        else:
            _deploy(port, best["model"])  # never leave a worse model running
        table.append({"round": r, "sessions": len(pool), "model": str(candidate), "kept": kept, **score,
                      "rows": m["rows"]["train"], "val_rmse": m["val_rmse"],
                      "closed_loop_deg": (m.get("closed_loop") or {}).get("rmse_deg"),
                      "candidates_predicted_deg": m["candidates"]["predicted_deg"],
                      "seconds": round(time.monotonic() - t, 1)})
        say(_line(table[-1]) + ("" if kept else f"   (worse than round {best['round']}: round {best['round']}'s "
                                                 "model redeployed)"))
    first, last = table[0]["rmse_deg"], best["rmse_deg"]
    result = {"rounds": table, "best": best, "first_rmse_deg": first, "best_rmse_deg": last,
              "gain": round(first / last, 3) if last else None, "sessions": [str(p) for p in pool],
              "validation": [str(p) for p in val], "collect_s": collect_s, "seconds": round(time.monotonic() - t0, 1)}
    write_json(out / "learn.json", result)
    plot(result, out / "learn.png")
    result["plot"] = str(out / "learn.png")
    return result


def _line(row):
    joints = ", ".join(f"{j} {v:.2f}°" for j, v in row["joints"].items())
    return (f"round {row['round']}: RMSE {row['rmse_deg']:.2f}° ({joints})"
            + (" kept" if row["kept"] and row["round"] else ""))


def table_lines(result):
    """The per-round table, for people."""
    rows = result["rounds"]
    joints = list(rows[0]["joints"])
    head = f"{'round':>5} {'sessions':>8} " + "".join(f"{j + ' rmse':>15}" for j in joints) + f"{'pooled':>9}  kept"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['round']:>5} {r['sessions']:>8} " + "".join(f"{r['joints'][j]:>14.2f}°" for j in joints)
                     + f"{r['rmse_deg']:>8.2f}°  " + ("best" if r["round"] == result["best"]["round"] else
                                                    "yes" if r["kept"] else "no"))
    lines.append(f"the rounds took the learned RMSE from {result['first_rmse_deg']:.2f}° to "
                 f"{result['best_rmse_deg']:.2f}° ({result['gain']:.2f}x); the board runs round "
                 f"{result['best']['round']}'s model")
    return lines


def plot(result, path):
    """PNG: learned RMSE per round and joint, the kept (best) model marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rounds"]
    x = [r["round"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for j in rows[0]["joints"]:
        ax.plot(x, [r["joints"][j] for r in rows], marker="o", label=f"{j}")
    ax.plot(x, [r["rmse_deg"] for r in rows], marker="s", color="k", lw=2, label="pooled")
    ax.axvline(result["best"]["round"], color="0.6", ls="--", lw=1, label="kept model")
    ax.set_xticks(x)
    ax.set_xlabel("round (0: the model before any on-policy data)")
    ax.set_ylabel("held-out tracking RMSE (deg)")
    ax.set_title("self-improvement rounds: learned controller's error per round (lower is better)", fontsize=10)
    ax.grid(True, color="0.92")
    ax.legend(fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    return fig

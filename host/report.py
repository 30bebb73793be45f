"""The demo's report: one Markdown page in the run directory with the before/after table, the plots,
what each step measured and the commands that reproduce the run.

Markdown because it reads as text in a terminal, renders on GitHub and in every editor, and the
plots sit next to it as PNG files the page links to.
"""

from host.evaluate import quality_limb_spread_lines
from host.files import write_atomic
from host.train.dataset import dropped_text

# Why the two figures of the learned model differ (a newcomer reads the first as "barely beats linear").
PULSE_VS_TRACKING = (
    "The training step's pulse error is open-loop: how far the predicted pulse lies from the one the servo was sent, "
    "on held-out rows, where many pulses reach the same angle (deadband, backlash, a servo still slewing), so no model "
    "gets it much lower; the tracking error above is closed-loop, the angle the robot reached vs the target, where "
    "the MLP's look-ahead removes the servo's lag that a static linear map keeps.")
# Why the training drops rows, by reason (host/train/dataset.py, TRAIN.md "Rows").
DROPPED_WHY = {
    "edges": "a lost frame, a reset or a pause the board did not catch up (a stall of over 50 ms) cuts the timeline, "
             "and rows whose feature window crosses a cut are left out (late ticks the board caught up do not): "
             "check the link (`host sessions`: drops) and, for a virtual Gen0, the host's load",
    "not_driven": "the servos were limp (boot, `idle limp`) for that part of the sessions",
    "split_gap": "the ticks between the training and validation parts of a segment are left out",
    "nan": "telemetry values that are NaN or infinite",
}
DROPPED_SHARE = 0.05  # more than this left out is worth a warning: the model learned from less than was recorded
NAMES = {"naive": "naive (datasheet 500-2500 us)", "linear": "linear calibration (least squares)",
         "model": "learned MLP (int8, on the robot)"}


def write_report(demo):
    """Write report.md into the demo's run directory (temp file, then rename); its path. A run that stopped
    (demo.facts["stopped"]) gets where and why at the top, the files it kept and how to go on."""
    f, d = demo.facts, demo.dir
    ev = f.get("eval") or {}
    summary = ev.get("summary") or {}
    stop = f.get("stopped")
    lines = [f"# Polyniod demo: {d.name}", ""]
    if stop:
        lines += [f"**Stopped {stop_text(stop)}.** The steps done and what they measured are below, then the "
                  "files this run directory kept and the commands that finish it.", ""]
    robot = f.get("flash") or {}
    lines += [f"- started {f['started']}, took **{f.get('seconds', 0):.0f} s**"
              + (f"; virtual Gen0 seed {f['seed']}" + (f", plant `{f['plant']}`" if f.get("plant") else "")
                 if f.get("sim") else f"; robot on `{f['port']}`"),
              f"- firmware {robot.get('firmware', '?')}, board {robot.get('board_id', '?')}, port `{f.get('port')}`", ""]
    if summary:
        lines += ["## Before and after: tracking the held-out trajectories", "",
                  "Measured angle vs target over every held-out trajectory, closed-loop (RMSE pooled over them, max, "
                  "mean lag):", ""]
        joints = list(next(iter(summary.values()))["joints"])
        lines.append("| controller | " + " | ".join(f"{j} RMSE | {j} max | {j} lag" for j in joints) + " | vs learned |")
        lines.append("|---|" + "---|" * (3 * len(joints) + 1))
        for c, s in summary.items():
            cells = " | ".join(f"{v['rmse_deg']:.2f}° | {v['max_deg']:.1f}° | {v['lag_ms']:.0f} ms" for v in s["joints"].values())
            ratio = ", ".join(f"{x:.1f}×" for x in s["rmse_vs_model"].values()) if "rmse_vs_model" in s else "—"
            lines.append(f"| {NAMES.get(c, c)} | {cells} | {ratio} |")
        lines += ["", "The last column: how many times larger that controller's RMSE is than the learned one's, per joint.", ""]
        for note in ev.get("notes") or []:
            lines.append(f"> {note}")
        scored = quality_limb_spread_lines(ev) if ev.get("runs") else []  # limb vs pot, unclean runs, --repeat spread
        if scored:
            lines += ["```"] + scored + ["```", ""]
        lines += ["![target vs measured per controller](eval.png)", ""]
        lines += ["### Per trajectory", "", "| trajectory | what | " + " | ".join(
            f"{c} RMSE" for c in summary) + " |", "|---|---|" + "---|" * len(summary)]
        for name, t in (ev.get("trajectories") or {}).items():
            cells = []
            for c in summary:
                run = next((r for r in ev["runs"] if r["trajectory"] == name and r["controller"] == c), None)
                cells.append(" / ".join(f"{v['rmse_deg']:.2f}°" for v in run["joints"].values()) if run else "—")
            lines.append(f"| {name} | {t['about']} | " + " | ".join(cells) + " |")
        lines += ["", "(one figure per joint: " + ", ".join(joints) + ")", ""]
    learn = f.get("learn") or {}
    if learn.get("rounds"):
        lines += ["## Self-improvement rounds", "",
                  "Each round the best model so far tracks fresh random trajectories, the model retrains on that data "
                  "too (three training seeds, each tuned in closed loop, the one the training's closed-loop figure ranks best), is redeployed and scored on the same held-out trajectories (learned controller only); a worse "
                  "one is replaced by the best again (`learn/learn.json`).", ""]
        joints = list(learn["rounds"][0]["joints"])
        lines += ["| round | sessions | " + " | ".join(f"{j} RMSE" for j in joints) + " | pooled | kept |",
                  "|---|---|" + "---|" * (len(joints) + 2)]
        for r in learn["rounds"]:
            kept = "best" if r["round"] == learn["best"]["round"] else "yes" if r["kept"] else "no"
            lines.append(f"| {r['round']} | {r['sessions']} | " + " | ".join(f"{r['joints'][j]:.2f}°" for j in joints)
                         + f" | {r['rmse_deg']:.2f}° | {kept} |")
        lines += ["", f"From {learn['first_rmse_deg']:.2f}° to {learn['best_rmse_deg']:.2f}° "
                  f"({learn['gain']:.2f}×); the board runs round {learn['best']['round']}'s model.", "",
                  "![error per round](learn/learn.png)", ""]
    lines += ["## Steps" + (" done" if stop else ""), ""]
    if demo.steps:
        lines += ["| step | seconds | what it measured |", "|---|---|---|"]
        for step, seconds in demo.steps.items():
            lines.append(f"| {step} | {seconds:.1f} | {_what(step, f.get(step) or {})} |")
    else:
        lines.append("None.")
    lines.append("")
    warning = dropped_warning((f.get("train") or {}).get("rows") or {})
    if warning:
        lines += [f"> **Warning:** {warning}", ""]
    if summary and f.get("train"):
        lines += [PULSE_VS_TRACKING, ""]
    for image, alt in (("excitation.png", "excitation session"), ("model/curves.png", "training curves")):
        if (d / image).exists():
            lines += [f"![{alt}]({image})", ""]
    full, steps = demo.commands()
    if stop:
        kept = f.get("files") or {}
        lines += ["## What this run directory kept", ""]
        lines += [f"- `{name}` ({size:,} B)" for name, size in kept.items()] or ["- nothing"]
        lines += ["", "A session cut short keeps every record written before the stop (host/sessions/SESSIONS.md): "
                  "`host info NAME` shows it.", "", "## Finishing it", ""]
        rest = demo.resume()
        lines += (["The steps from where it stopped (each writes into this run directory; a fresh virtual Gen0 needs "
                   "the firmware, and the evaluation the model, again):", "", "```sh", *rest, "```", ""] if rest else
                  ["Every step ran: their figures are in `demo.json`.", ""])
        lines += ["Or the whole run again, in a new run directory:", "", "```sh", full, "```", ""]
    else:
        lines += ["## Reproduce", "", "The whole run:", "", "```sh", full, "```", "",
                  "Step by step (one session per program; the demo records the training session's two in one):", "",
                  "```sh", *(cmd for _, cmd in steps), "```", "",
                  "Artefacts here: `sessions/` (excitation, validation and one session per evaluation run), `model/` "
                  "(model.bin, checkpoint, metrics.json, curves.png), `calibration.json`, `eval.json`, `demo.json` "
                  "(every figure above).", ""]
    return write_atomic(d / "report.md", "\n".join(lines))


def stop_text(stop):
    """"at step 4/8 (collect): interrupted by the user" from demo.json's "stopped"."""
    where = f"step {stop['step']}/{stop['of']} ({stop['name']})" if stop["step"] else "the start"
    return ("after " if stop["after"] else "at ") + where + ": " + stop["reason"]


def pulse_errors(train):
    """The training step's held-out figure, labelled as what it is: an open-loop pulse error."""
    errors = ", ".join(f"{k} {v:.0f} µs" for k, v in (train.get("int8_val_rmse") or {}).items())
    linear = ", ".join(f"{v:.0f}" for v in (train.get("linear_rmse") or {}).values())
    loop = train.get("closed_loop") or {}  # metrics.json "closed_loop" rmse_deg (TRAIN.md "Closed-loop figure")
    loop = ("; tracking through a learned servo along the eval trajectories (predicts eval): "
            + ", ".join(f"{j} {v:.2f}°" for j, v in loop.items())) if loop else ""
    shaped = train.get("preview")  # metrics.json "preview": the targets the board's model reads (firmware/preview.py)
    shaped = (f"; the model reads the targets {shaped['window_s']:g} s ahead, jumps shaped into ramps at each joint's "
              "measured speed (" + ", ".join(f"{j} {v} °/s" for j, v in shaped["slew_deg_s"].items()) + ")") if shaped else ""
    return f"open-loop pulse error on held-out rows: MLP (int8) {errors}, linear fit {linear} µs{loop}{shaped}"


def dropped_warning(rows):
    """A line when training left out more than DROPPED_SHARE of the rows recorded, with the reasons; else None."""
    dropped = {k: v for k, v in (rows.get("dropped") or {}).items() if v}
    total = sum(dropped.values()) + (rows.get("train") or 0) + (rows.get("val") or 0)
    if not total or sum(dropped.values()) <= DROPPED_SHARE * total:
        return None
    main = max(dropped, key=dropped.get)
    return (f"training left out {sum(dropped.values()) / total:.0%} of the rows recorded ("
            + dropped_text(dropped) + f"); mostly {main.replace('_', ' ')}: {DROPPED_WHY.get(main, 'see host/train/TRAIN.md, Rows')}")


def _what(step, f):
    if step == "sim":
        return f"port `{f.get('port')}`, MicroPython {f.get('micropython')}"
    if step == "flash":
        return f"firmware {f.get('firmware')} running (mpremote)"
    if step == "check":
        bad = [f"{k} {v}" for k, v in (f.get("steps") or {}).items() if v != "PASS"]
        return f"{f.get('verdict')}" + (f" ({', '.join(bad)})" if bad else ": every step") + " ([plot](check.png))"
    if step == "collect":
        return "; ".join(
            f"{c['name']}: " + ", then ".join(f"{p} {v['duration_ms'] / 1000:g} s" for p, v in c["plan"])
            + f" -- {c['telemetry_frames']} frames at {c['rate_hz']:.0f} Hz, {c['drops']} dropped, "
            f"link {c['link_utilisation'] * 100:.0f} %" for c in f.get("sessions", []))
    if step == "train":
        shape = "-".join(str(n) for n in [len(f.get("inputs", [])), *f.get("hidden", []), len(f.get("outputs", []))])
        c = f.get("candidates") or {}
        kept = (f"; kept seed {c['kept_seed']} of {len(c['seeds'])} candidates, predicted tracking "
                + ", ".join(f"{v:.2f}°" for v in c["predicted_deg"] if v is not None)) if c else ""
        t = f.get("tune") or {}
        tuned = (f"; tuned in closed loop through {len(t['servos'])} learned servos ({t['iterations']} iterations, "
                 f"{t['seconds']:.1f} s)") if "iterations" in t else (f"; {t['note']}" if t else "")
        meanwhile = f"; the naive and linear runs of the eval step ran meanwhile ({f['baseline_runs']})" if f.get("baseline_runs") else ""
        return (f"{shape} MLP, {f.get('rows', {}).get('train')} rows, {f.get('epochs_run')} epochs in "
                f"{f.get('train_s', 0):.1f} s{kept}{tuned}; {pulse_errors(f)}{meanwhile}")
    if step == "deploy":
        p = f.get("parity") or {}
        return (f"{f.get('bytes')} B in {f.get('seconds')} s (link floor {f.get('limit_seconds')} s); "
                f"{p.get('vectors', 0) - p.get('mismatches', 0)}/{p.get('vectors')} outputs bit-identical to the host reference")
    if step == "learn":
        return (f"{len(f.get('rounds', [])) - 1} round(s): RMSE {f.get('first_rmse_deg')}° -> {f.get('best_rmse_deg')}° "
                f"(kept round {(f.get('best') or {}).get('round')})")
    if step == "eval":
        runs = f.get("runs") or []
        return f"{len(runs)} runs, {sum(r['drops'] for r in runs)} frames lost"
    return ""

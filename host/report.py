"""The demo's report: one Markdown page in the run directory with the before/after table, the plots,
what each step measured and the commands that reproduce the run.

Markdown because it reads as text in a terminal, renders on GitHub and in every editor, and the
plots sit next to it as PNG files the page links to.
"""

from host.files import write_atomic

NAMES = {"naive": "naive (datasheet 500-2500 us)", "linear": "linear calibration (least squares)",
         "model": "learned MLP (int8, on the robot)"}


def write_report(demo):
    """Write report.md into the demo's run directory (temp file, then rename); its path."""
    f, d = demo.facts, demo.dir
    ev = f.get("eval") or {}
    summary = ev.get("summary") or {}
    lines = [f"# Polyniod demo: {d.name}", ""]
    robot = f.get("flash") or {}
    lines += [f"- started {f['started']}, took **{f.get('seconds', 0):.0f} s**"
              + (f"; virtual Gen0 seed {f['seed']}" + (f", plant `{f['plant']}`" if f.get("plant") else "")
                 if f.get("sim") else f"; robot on `{f['port']}`"),
              f"- firmware {robot.get('firmware', '?')}, board {robot.get('board_id', '?')}, port `{f.get('port')}`", ""]
    if summary:
        lines += ["## Before and after: tracking the held-out trajectories", "",
                  "Measured angle vs target over every held-out trajectory (RMSE pooled over them, max, mean lag):", ""]
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
    lines += ["## Steps", "", "| step | seconds | what it measured |", "|---|---|---|"]
    for step, seconds in demo.steps.items():
        lines.append(f"| {step} | {seconds:.1f} | {_what(step, f.get(step) or {})} |")
    lines += ["", "![excitation session](excitation.png)", ""]
    if (d / "model" / "curves.png").exists():
        lines += ["![training curves](model/curves.png)", ""]
    full, steps = demo.commands()
    lines += ["## Reproduce", "", "The whole run:", "", "```sh", full, "```", "",
              "Step by step (one session per program; the demo records the training session's two in one):", "", "```sh",
              *steps, "```", "",
              "Artefacts here: `sessions/` (excitation, validation and one session per evaluation run), `model/` (model.bin, "
              "checkpoint, metrics.json, curves.png), `calibration.json`, `eval.json`, `demo.json` (every figure above).", ""]
    return write_atomic(d / "report.md", "\n".join(lines))


def _what(step, f):
    if step == "sim":
        return f"port `{f.get('port')}`, MicroPython {f.get('micropython')}"
    if step == "flash":
        return f"firmware {f.get('firmware')} running (mpremote)"
    if step == "collect":
        return "; ".join(
            f"{c['name']}: " + ", then ".join(f"{p} {v['duration_ms'] / 1000:g} s" for p, v in c["plan"])
            + f" -- {c['telemetry_frames']} frames at {c['rate_hz']:.0f} Hz, {c['drops']} dropped, "
            f"link {c['link_utilisation'] * 100:.0f} %" for c in f.get("sessions", []))
    if step == "train":
        shape = "-".join(str(n) for n in [len(f.get("inputs", [])), *f.get("hidden", []), len(f.get("outputs", []))])
        errors = ", ".join(f"{k} {v:.0f} µs" for k, v in (f.get("int8_val_rmse") or {}).items())
        linear = ", ".join(f"{v:.0f}" for v in (f.get("linear_rmse") or {}).values())
        return (f"{shape} MLP, {f.get('rows', {}).get('train')} rows, {f.get('epochs_run')} epochs in "
                f"{f.get('train_s', 0):.1f} s; held-out pulse error (int8) {errors} vs linear {linear}")
    if step == "deploy":
        p = f.get("parity") or {}
        return (f"{f.get('bytes')} B in {f.get('seconds')} s (link floor {f.get('limit_seconds')} s); "
                f"{p.get('vectors', 0) - p.get('mismatches', 0)}/{p.get('vectors')} outputs bit-identical to the host reference")
    if step == "eval":
        runs = f.get("runs") or []
        return f"{len(runs)} runs, {sum(r['drops'] for r in runs)} frames lost"
    return ""

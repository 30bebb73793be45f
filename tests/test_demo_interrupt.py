"""A demo cut short (Ctrl-C, an error in a step) leaves report.md and demo.json that say where it stopped,
what it kept and how to go on (issue 11); a demo that ran through labels its figures for a newcomer.

In-process: the step runner with stand-in steps, one of which fails or is interrupted, for each of the 8
steps. As a user sees it: `host demo` at small scale, Ctrl-C to its process group as a step starts."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import host.demo as demo_mod
from host.demo import Demo
from host.errors import DeviceError, UserError
from host.link.hello import Hello
from host.report import PULSE_VS_TRACKING

STEPS = ["sim", "flash", "check", "collect", "train", "deploy", "eval", "report"]
JOINTS = ("shoulder", "elbow")
ROWS = {"train": 600, "val": 160, "dropped": {"not_driven": 3, "edges": 400, "split_gap": 0, "nan": 0}}  # 35 % left out


class FakeSim:
    """A virtual Gen0 that boots (or not) at once."""

    port, version, failed = "/nonexistent/gen0", "1.29.0", None

    def __init__(self, **_):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def wait_ready(self, _timeout):
        return self.failed is None


def metrics(**_):
    """What host.train.pipeline.train returns, as far as the demo reads it."""
    errors = {f"{j}_cmd_us": 53.0 + i for i, j in enumerate(JOINTS)}
    return {"path": "model", "model_id": "m1", "rows": ROWS, "epochs_run": 3, "val_rmse": errors,
            "int8": {"val_rmse": errors}, "baseline_rmse": {"linear": {k: v + 3 for k, v in errors.items()}},
            "sizes": {"blob_bytes": 2108}, "inputs": ["a", "b"], "outputs": list(errors),
            "config": {"hidden": [16]}, "timings": {"train_s": 0.1}}


def evaluation():
    """The evaluation's facts, enough for the report's tables."""
    joint = {"rmse_deg": 2.5, "max_deg": 20.0, "lag_ms": 3.0}
    summary = {"naive": {"joints": dict.fromkeys(JOINTS, joint), "rmse_vs_model": dict.fromkeys(JOINTS, 2.7)},
               "model": {"joints": dict.fromkeys(JOINTS, joint)}}
    return {"summary": summary, "trajectories": {}, "runs": [], "notes": []}


def stand_in(name, fails, result=None, facts=None):
    """A pipeline step that writes a file into the run directory, then fails if it is the one to."""
    def step(self, *_):
        self.step(name, f"{name} ...")
        (self.dir / "sessions").mkdir(exist_ok=True)
        (self.dir / "sessions" / f"{name}.session").write_bytes(b"x" * 10)
        if fails == name:
            raise DeviceError(f"{name} broke: check the cable")
        self.done(**(facts or {}))
        return result
    return step


def fake_demo(monkeypatch, tmp_path, fails=None, interrupt=None):
    """A demo on a virtual Gen0 whose steps are stand-ins (the runner, the train and deploy steps' own code
    and the report are the real ones); `fails`: the step that raises, `interrupt`: the step whose start
    brings a Ctrl-C. Returns the demo and what it said."""
    said = []

    def say(text):
        said.append(text)
        if interrupt and text.startswith(f"[{STEPS.index(interrupt) + 1}/{len(STEPS)}]"):
            raise KeyboardInterrupt

    sim = type("Sim", (FakeSim,), {"failed": "it panicked" if fails == "sim" else None})
    monkeypatch.setattr("host.sim.VirtualGen0", sim)

    def flash(port, say):
        if fails == "flash":
            raise DeviceError(f"{port} runs CircuitPython: write MicroPython first")
        return Hello({"fw": "0.2.0", "board_id": "b1"})

    def train(*_, **__):
        if fails == "train":
            raise UserError("no training rows: record longer sessions")
        return metrics()

    monkeypatch.setattr(demo_mod, "flash_firmware", flash)
    monkeypatch.setattr(demo_mod, "train", train)
    session = {"name": "excitation", "path": str(tmp_path / "run" / "sessions" / "collect.session"),
               "plan": [("chirp", {"duration_ms": 8000})], "telemetry_frames": 1600, "drops": 0, "crc_errors": 0,
               "rate_hz": 200.0, "link_utilisation": 0.4}
    monkeypatch.setattr(Demo, "_check", stand_in("check", fails, facts={"verdict": "PASS", "steps": {"link": "PASS"}}))
    monkeypatch.setattr(Demo, "_collect", stand_in("collect", fails, result=[], facts={"sessions": [session]}))
    if fails == "deploy":  # the real step: no board at the port
        monkeypatch.setattr(demo_mod, "read_blob", lambda _: (b"\0" * 100, None))
    else:
        monkeypatch.setattr(Demo, "_deploy", stand_in("deploy", fails))
    monkeypatch.setattr(Demo, "_baselines", lambda *_: {"runs": []})  # the naive and linear runs, during the training
    monkeypatch.setattr(Demo, "_evaluate", stand_in("eval", fails, facts=evaluation()))
    if fails == "report":
        calls = []
        real = demo_mod.write_report

        def write_report(demo):
            calls.append(1)
            if len(calls) == 1:
                raise UserError("cannot write report.md: No space left on device")
            return real(demo)
        monkeypatch.setattr(demo_mod, "write_report", write_report)
    return Demo(out=tmp_path / "run", say=say, collect_s=20, epochs=30), said


def check_stopped(out, step, reason):
    """report.md and demo.json of a run that stopped at `step`: where and why on top, the steps done with
    their figures, the files kept, the commands that finish it."""
    n = STEPS.index(step) + 1
    report = (out / "report.md").read_text()
    assert report.splitlines()[2].startswith(f"**Stopped at step {n}/{len(STEPS)} ({step}): {reason}"), report[:400]
    done = [line.split("|")[1].strip() for line in report.splitlines() if line.startswith("| ")
            and line.split("|")[1].strip() in STEPS]
    assert done == STEPS[:n - 1], report  # the steps done, in order, and none after
    facts = json.loads((out / "demo.json").read_text())
    assert facts["stopped"]["step"] == n and facts["stopped"]["name"] == step and not facts["stopped"]["after"]
    assert facts["stopped"]["reason"].startswith(reason) and list(facts["step_seconds"]) == STEPS[:n - 1]
    kept = report.split("## What this run directory kept")[1].split("##")[0]
    for name in facts["files"]:
        assert f"`{name}`" in kept
    finish = report.split("## Finishing it")[1]
    assert "\n```sh\nhost demo --seed 0 --collect " in finish  # the whole run again
    return report, facts, finish


@pytest.mark.parametrize("how", ["error", "interrupt"])
@pytest.mark.parametrize("step", STEPS)
def test_a_demo_stopped_at_any_step_reports_where_what_it_kept_and_how_to_go_on(monkeypatch, tmp_path, step, how):
    demo, said = fake_demo(monkeypatch, tmp_path, **{"fails" if how == "error" else "interrupt": step})
    with pytest.raises(KeyboardInterrupt if how == "interrupt" else UserError) as e:
        demo.run()
    reason = "interrupted by the user" if how == "interrupt" else f"error: {e.value}"
    report, facts, finish = check_stopped(tmp_path / "run", step, reason)
    assert said[-1].startswith(f"stopped at step {STEPS.index(step) + 1}/{len(STEPS)} ({step})") and str(demo.dir / "report.md") in said[-1]
    commands = finish.split("```sh")[1].split("```")[0] if step != "report" else ""
    if step == "report":
        assert "Every step ran" in finish
    else:  # the steps from the one that stopped on, after a fresh virtual board's firmware (and model)
        assert "host sim --seed 0" in commands and "host flash" in commands
        expect = {"sim": "host sim", "flash": "host flash", "check": "host check", "collect": "host collect", "train": "host train",
                  "deploy": "host deploy", "eval": "host eval"}
        for later in STEPS[STEPS.index(step):-1]:
            assert expect[later] in commands, (later, commands)
        if step in ("collect", "train"):
            assert "host deploy" in commands
        if step == "eval":
            assert "host deploy" in commands and "host train" not in commands and "host collect" not in commands
        if STEPS.index(step) > STEPS.index("collect"):  # train and eval read the sessions the demo recorded
            assert f"{demo.dir}/sessions/collect.session" in commands and "sessions/excitation-" not in commands
    if STEPS.index(step) > STEPS.index("collect"):
        assert "sessions/collect.session" in facts["files"]


def test_a_finished_demo_labels_its_figures_and_warns_of_dropped_rows(monkeypatch, tmp_path):
    """The training's held-out figure is an open-loop pulse error, not the tracking error, and says so; a
    third of the rows left out is a warning, on the console and in the report, with the reason."""
    demo, said = fake_demo(monkeypatch, tmp_path)
    facts = demo.run()
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Stopped" not in report and "## Reproduce" in report and "stopped" not in facts
    assert list(facts["step_seconds"]) == STEPS
    assert facts["report"] == str(tmp_path / "run" / "report.md")  # what `host demo` prints at the end
    assert "closed-loop" in report and PULSE_VS_TRACKING in report
    train_row = next(line for line in report.splitlines() if line.startswith("| train |"))
    assert "open-loop pulse error on held-out rows: MLP (int8) shoulder_cmd_us 53 µs" in train_row
    warning = next(line for line in said if "warning:" in line)
    assert "left out 35% of the rows" in warning and "400 edges" in warning
    assert "a lost frame, a reset or a pause" in warning
    assert "> **Warning:** training left out 35% of the rows recorded (3 not driven, 400 edges)" in report


# -- as a user sees it -----------------------------------------------------------------------------------

SMALL = ["--collect", "10", "--epochs", "60", "--seconds", "2", "--trajectories", "steps"]


@pytest.mark.sim  # `host demo` in a child process
@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("step,after_s", [("collect", 2.0), ("train", 0.0), ("eval", 1.0)])
def test_ctrl_c_during_a_step_of_a_real_demo(tmp_path, step, after_s):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) `after_s` after the step's progress line:
    exit 130, one line on stderr, and the run directory says where it stopped."""
    out = tmp_path / "run"
    n = STEPS.index(step) + 1
    proc = subprocess.Popen([sys.executable, "-m", "host", "demo", *SMALL, "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    err = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    said = []
    try:
        for line in proc.stdout:
            said.append(line)
            if line.startswith(f"[{n}/{len(STEPS)}]"):
                time.sleep(after_s)
                os.killpg(proc.pid, signal.SIGINT)
                break
        said.append(proc.stdout.read())
        proc.wait(timeout=120)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, "".join(said)[-2000:] + "".join(err)[-2000:]
    assert "Traceback" not in "".join(err) and err[-1].strip() == "interrupted", "".join(err)[-2000:]
    report, facts, finish = check_stopped(out, step, "interrupted by the user")
    assert f"stopped at step {n}/{len(STEPS)} ({step})" in "".join(said)
    assert "sessions/excitation.session" in facts["files"]  # cut short or whole, it stays
    if step == "eval":
        assert "model/model.bin" in facts["files"] and "host eval" in finish and "host deploy" in finish
        assert f"{out}/sessions/excitation.session {out}/sessions/validation.session" in finish

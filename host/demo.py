"""The whole loop in one run: flash -> collect excitation -> train -> deploy -> evaluate -> report.

By default on a virtual Gen0 started here (an empty board with MicroPython, like one fresh from
esptool); with `port` on a robot already connected. Every step's artefacts stay in one run
directory: the sessions, the model, the calibration, the evaluation and report.md, which says
how to reproduce each step with the single commands.
"""

import shlex
import threading
import time
from datetime import datetime
from pathlib import Path

from host.collect import Recorder
from host.deploy import deploy, read_blob
from host.errors import DeviceError, UserError
from host.evaluate import SECONDS, TRAJECTORIES, calibrate, combined, evaluate, plot as plot_eval, public, table
from host.files import write_json
from host.flash.firmware import flash_firmware
from host.link.client import Link
from host.report import dropped_warning, pulse_errors, stop_text, write_report
from host.sessions import load
from host.sessions.plot import plot as plot_session
from host.train.candidates import CANDIDATES, train  # no PyTorch in this process: the candidates' load it

COLLECT_S = 45.0  # of excitation, in all (excitation()): 20 s multisine, 20 s steps, 5 s validation steps
MULTISINE_SHARE, VALIDATION_SHARE = 4 / 9, 1 / 9  # of the excitation seconds (validation: early stopping only)
# 4 sines a joint, the joints' interleaved on 0.2-5 Hz (the servos' -3 dB band, EVAL.md "Excitation and inputs"),
# 10 deg each (tilt 0: equal amplitudes, up to ~650 deg/s in all, touching the ~550 deg/s slew limit; tracked
# better than amplitudes ~1/f, which tied a chirp, on all four units measured)
MULTISINE = {"f0_mhz": 200, "f1_mhz": 5000, "n": 4, "tilt": 0, "amp_us": 400}
EPOCHS = 60
BASELINES = ("naive", "linear")  # the controllers evaluated while the model trains (Demo._train)
TRAIN_NICE = 19  # the training's niceness meanwhile: the board's runs stay on schedule (at 10 one run in nine fell 55-72 ms behind)
STEPS_DWELL_MS = (150, 600)
ROUND_COLLECT_S, ROUND_SHARE = 20.0, 0.4  # on-policy seconds per self-improvement round: 40 % of --collect, at most 20


def excitation(collect_s, seed):
    """{session name: [(program, {param: value})]}: what the demo records to learn the servos from.

    The training session: a multisine (both joints at once, each at frequencies of its own across the
    band the servos follow), then random steps (pulses held, so the servo settles: also what the linear
    calibration fits). Chosen by closed-loop tracking error over a chirp + steps, steps alone and other
    mixes (EVAL.md "Excitation"). The validation session: steps from another seed -- a session of its
    own, since training never validates on rows of the sessions it trains on."""
    total = round(collect_s * 1000)
    sines, val = round(total * MULTISINE_SHARE), round(total * VALIDATION_SHARE)

    def steps(seed, ms):
        return "steps", {"seed": seed, "duration_ms": ms, "dwell_min_ms": STEPS_DWELL_MS[0],
                         "dwell_max_ms": STEPS_DWELL_MS[1]}

    return {"excitation": [("multisine", {"seed": seed, "duration_ms": sines, **MULTISINE}),
                           steps(seed, total - sines - val)],
            "validation": [steps(seed + 1000, val)]}


def run_dir(out=None, kind="demo"):
    """A new run directory: `out`, or runs/<kind>-<date>-<time> (never an existing one reused)."""
    if out:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {out} is not a directory (a file, a FIFO or a device): give a new directory")
        if path.exists() and any(path.iterdir()):
            raise UserError(f"--out {out} exists and is not empty: give a new directory")
    else:
        path = Path("runs") / datetime.now().strftime(f"{kind}-%Y%m%d-%H%M%S")
        n = 1
        while path.exists():
            n += 1
            path = path.with_name(f"{path.name.rsplit('~', 1)[0]}~{n}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the run directory {path}: {e.strerror}") from None
    return path



class Demo:
    """One demo run: the options, the run directory, what each step measured, the steps' wall times."""

    def __init__(self, port=None, plant=None, seed=0, out=None, collect_s=COLLECT_S, epochs=EPOCHS,
                 seconds=SECONDS, trajectories=TRAJECTORIES, flash=True, rounds=0, say=print):
        if not collect_s >= 10:
            raise UserError(f"--collect {collect_s:g}: give at least 10 seconds of excitation")
        if epochs < 1:
            raise UserError(f"--epochs {epochs}: give a whole number >= 1")
        self.port, self.plant, self.seed = port, plant, seed
        self.collect_s, self.epochs, self.seconds, self.names = collect_s, epochs, seconds, list(trajectories)
        self.flash, self.say, self.rounds = flash, say, rounds
        self.round_collect_s = max(5.0, min(ROUND_COLLECT_S, ROUND_SHARE * collect_s))
        self.dir = run_dir(out)
        self.total = 6 + (port is None) + flash + (rounds > 0)
        self.steps = {}  # name -> seconds, of the steps done
        self.facts = {"run_dir": str(self.dir), "seed": seed, "plant": plant, "port": port,
                      "started": datetime.now().isoformat(timespec="seconds")}
        self._n, self._name = 0, None  # the step started last

    def step(self, name, text):
        self._n, self._name = self._n + 1, name  # before saying it: a Ctrl-C from here on stops this step
        self._t = time.monotonic()
        self.say(f"[{self._n}/{self.total}] {text}")

    def done(self, **facts):
        self.steps[self._name] = round(time.monotonic() - self._t, 2)
        self.facts[self._name] = facts
        return facts

    def note(self, text):
        self.say("      " + text)

    # -- the pipeline -------------------------------------------------------------------------------
    def run(self):
        """Every step, then the report. A Ctrl-C or an error on the way still leaves report.md and demo.json,
        saying where the run stopped, what it kept and how to go on, and is raised again (exit 130 / 1)."""
        t0 = time.monotonic()
        try:
            self._steps()
            self.step("report", f"writing the report into {self.dir} ...")
            self.facts["seconds"] = round(time.monotonic() - t0, 1)
            report = str(write_report(self))
            self.done()  # the report step's time (its facts entry would be empty: the path goes in its place)
            self.facts["report"] = report
            self.facts["step_seconds"] = self.steps
            write_json(self.dir / "demo.json", self.facts)
        except (Exception, KeyboardInterrupt) as e:
            self._stopped(e, t0)
            raise
        return self.facts

    def _steps(self):
        if self.port is None:
            from host.sim import VirtualGen0

            self.step("sim", f"starting a virtual Gen0 (seed {self.seed}"
                      + (f", plant {self.plant}" if self.plant else "") + ") ...")
            with VirtualGen0(plant=self.plant, seed=self.seed) as sim:
                if not sim.wait_ready(20):
                    raise DeviceError(f"the virtual Gen0 did not boot: {sim.failed}")
                self.note(f"port {sim.port}: an empty board with MicroPython, like one fresh from esptool")
                self.done(port=sim.port, micropython=".".join(map(str, sim.version)))
                self.facts["port"] = sim.port
                self._pipeline(sim.port)
        else:
            self._pipeline(self.port)

    def _stopped(self, e, t0):
        """Mark the run as cut short: where, why, what it kept (report.md and demo.json, written whole). A
        failure to write them is said, never raised: the error that stopped the run is the one to see."""
        why = ("interrupted by the user" if isinstance(e, KeyboardInterrupt)
               else f"error: {e}" if isinstance(e, UserError) else f"error: {e.__class__.__name__}: {e}")
        name = self._name or "start"
        self.facts["stopped"] = {"step": self._n, "of": self.total, "name": name,
                                 "after": name in self.steps, "reason": why}
        self.facts["seconds"] = round(time.monotonic() - t0, 1)
        self.facts["step_seconds"] = self.steps
        try:
            self.facts["files"] = kept_files(self.dir)
            self.facts["report"] = str(write_report(self))
            write_json(self.dir / "demo.json", self.facts)
        except Exception as w:  # noqa: BLE001 -- whatever it is, the stop's own error is the one raised
            self.say(f"stopped {stop_text(self.facts['stopped'])}; could not write the report: {w}")
            return
        self.say(f"stopped {stop_text(self.facts['stopped'])}; what the run kept and how to go on: {self.facts['report']}")

    def _pipeline(self, port):
        if self.flash:
            self.step("flash", f"flashing the firmware onto {port} with mpremote ...")
            hello = flash_firmware(port, say=self.note)
            self.done(firmware=hello.fw, board_id=hello.board_id, micropython=hello.micropython)
        self._check(port)
        sessions = self._collect(port)
        model, baselines = self._train(sessions, port)
        self._deploy(port, model)
        self._evaluate(port, baselines)
        if self.rounds:
            self._learn(port, model)

    def _check(self, port):
        from host.check import FAIL, check  # numpy and the recorder: loaded when the demo gets here

        self.step("check", f"checking the robot on {port} (link, IMU, each joint, its range, the supply) ...")
        result = check(port, self.dir / "sessions", say=self.note, plot=self.dir / "check.png", write=True)
        self.done(verdict=result["verdict"], steps={s["step"]: s["verdict"] for s in result["steps"]},
                  session=result["session"])
        if result["verdict"] == FAIL:
            raise DeviceError("the robot failed `host check` (above): fix what it says, then run the demo again")

    def _collect(self, port):
        plans = excitation(self.collect_s, self.seed + 1)
        self.step("collect", f"collecting {self.collect_s:g} s of excitation: " + "; ".join(
            f"{name}: " + ", then ".join(f"{p} {v['duration_ms'] / 1000:g} s" for p, v in plan)
            for name, plan in plans.items()) + " ...")
        sessions, facts = [], []
        for name, plan in plans.items():
            header = {"program": {"name": "+".join(p for p, _ in plan), "plan": plan}}
            rec = Recorder(port, self.dir / "sessions", name, header, progress=True, say=self.note)
            rec.start()
            with rec:
                reason, summary = rec.run_plan(plan)
            if reason is None:
                raise DeviceError(f"{rec.fault}; session kept: {rec.kept()}")
            sessions.append(load(rec.path))
            self.note(f"{name}: {summary['telemetry_frames']} frames at {summary['rate_hz']:.0f} Hz, "
                      f"{summary['drops']} dropped, link {summary['link_utilisation'] * 100:.0f} % -> {rec.path}")
            facts.append({"name": name, "path": str(rec.path), "plan": plan, **{k: summary[k] for k in (
                "telemetry_frames", "drops", "crc_errors", "rate_hz", "link_utilisation")}})
        plot_session(sessions[0], self.dir / "excitation.png",
                     title="excitation: " + ", then ".join(p for p, _ in plans["excitation"]))
        self.done(sessions=facts)
        return sessions

    def _train(self, sessions, port):
        """Train (the candidates, niced, in processes of their own) while the naive and linear controllers, which
        need no model, are evaluated on the robot: the model's ~30 s of training cost the demo nothing."""
        self.step("train", f"training the inverse model (pulse from the angle wanted next) for up to {self.epochs} epochs, "
                  f"{CANDIDATES} seeds, then tuned in closed loop; meanwhile the naive and linear controllers are evaluated ...")
        said, outcome, stop = [], {}, threading.Event()

        def training():
            try:
                outcome["metrics"] = train("inverse", sessions, out=self.dir / "model", progress=False, epochs=self.epochs,
                                           patience=15, candidates=CANDIDATES, say=said.append, nice=TRAIN_NICE, stop=stop)
            except BaseException as e:  # noqa: BLE001 -- raised again in the demo's own thread, below
                outcome["error"] = e

        worker = threading.Thread(target=training, name="demo-training", daemon=True)
        worker.start()
        try:
            baselines = self._baselines(port, sessions)
            if worker.is_alive():
                self.note("waiting for the training ...")
            while worker.is_alive():
                worker.join(0.2)
        finally:
            stop.set()  # a Ctrl-C or an error here: the candidates are stopped, not left training
            worker.join(10)
        if "error" in outcome:
            raise outcome["error"]
        m = outcome["metrics"]
        for line in said:
            self.note(line)
        facts = self.done(path=m["path"], model_id=m["model_id"], rows=m["rows"], epochs_run=m["epochs_run"],
                          val_rmse=m["val_rmse"], int8_val_rmse=m["int8"]["val_rmse"],
                          linear_rmse=m["baseline_rmse"]["linear"], blob_bytes=m["sizes"]["blob_bytes"],
                          inputs=m["inputs"], outputs=m["outputs"], hidden=m["config"]["hidden"],
                          train_s=m["timings"]["train_s"], closed_loop=(m.get("closed_loop") or {}).get("rmse_deg"),
                          preview=m.get("preview"), candidates=m.get("candidates"), tune=m.get("tune"),
                          baseline_runs=len(baselines["runs"]))
        c, t = m.get("candidates"), m.get("tune")
        if c:
            self.note(f"{len(c['seeds'])} candidates (training seeds) in {c['seconds']:.1f} s, predicted tracking "
                      + ", ".join(f"{v:.2f}°" for v in c["predicted_deg"] if v is not None)
                      + f": kept seed {c['kept_seed']} (the closed-loop figure; the seed alone moves tracking by up to 0.6°)")
        if t and "note" in t:
            self.note(t["note"])
        elif t:
            self.note(f"closed-loop tuning: {t['iterations']} iterations through {len(t['servos'])} learned servos in "
                      f"{t['seconds']:.1f} s, tracking on its own runs {t['tracking_deg'][0]:.2f}° -> {t['tracking_deg'][1]:.2f}°")
        self.note(f"{m['rows']['train']} training rows, {m['epochs_run']} epochs in {m['timings']['train_s']:.1f} s; "
                  f"{pulse_errors(facts)} (the closed-loop tracking error comes with the evaluation)")
        warning = dropped_warning(m["rows"])
        if warning:
            self.note("warning: " + warning)
        return Path(m["path"]), baselines

    def _baselines(self, port, sessions):
        """The linear calibration of the sessions, then the naive and linear controllers on the held-out
        trajectories (the train step runs this while the model trains)."""
        self._calibration = cal = calibrate(sessions)
        write_json(self.dir / "calibration.json", cal)
        self.note("linear calibration (least squares, settled samples): "
                  + ", ".join(f"{j} {a:.0f} us + {b:.2f} us/deg" for j, a, b in
                              zip(cal["joints"], cal["lin"][::2], cal["lin"][1::2])))
        return evaluate(port, cal["lin"], self.names, self.seconds, controllers=BASELINES, out=self.dir / "sessions",
                        say=self.note)

    def _deploy(self, port, model):
        blob, ref = read_blob(model)
        self.step("deploy", f"deploying {model} ({len(blob)} B) over the link ...")
        with Link(port) as link:
            d = deploy(link, blob, ref, baud=link.connect().baud)
        p = d["parity"]
        self.note(f"model {d['model_id']} running: {d['bytes']} B in {d['seconds']:.2f} s; device vs host reference: "
                  f"{p['vectors'] - p['mismatches']}/{p['vectors']} bit-identical")
        if p["mismatches"]:
            raise DeviceError(f"the board's model disagrees with the host reference on {p['mismatches']} of "
                              f"{p['vectors']} inputs (first: {p['first_mismatch']})")
        self.done(**d)

    def _evaluate(self, port, baselines):
        self.step("eval", f"evaluating the learned controller on the held-out trajectories ({', '.join(self.names)}; "
                  f"{self.seconds:g} s each); the {' and '.join(BASELINES)} controllers ran during the training ...")
        result = combined(baselines, evaluate(port, self._calibration["lin"], self.names, self.seconds, controllers=("model",),
                                              out=self.dir / "sessions", say=self.note))
        plot_eval(result, self.dir / "eval.png")
        facts = public(result)
        write_json(self.dir / "eval.json", facts)
        self.done(**facts, calibration=self._calibration)
        self.say("")
        for line in table(result):
            self.say("  " + line)

    def _learn(self, port, model):
        from host.learn import learn, table_lines

        self.step("learn", f"{self.rounds} self-improvement round(s): the learned controller tracks fresh trajectories, "
                  "the model retrains on that too, is redeployed and evaluated; the better one is kept ...")
        sessions = [s["path"] for s in self.facts["collect"]["sessions"]]
        model_figures = self.facts["eval"]["summary"]["model"]
        score0 = {"rmse_deg": model_figures["rmse_deg"],
                  "joints": {j: v["rmse_deg"] for j, v in model_figures["joints"].items()},
                  "lag_ms": {j: v["lag_ms"] for j, v in model_figures["joints"].items()}}
        result = learn(port, sessions[:-1], sessions[-1:], self.rounds, self.dir / "learn", model=model,
                       score0=score0, collect_s=self.round_collect_s, epochs=self.epochs, names=self.names, seconds=self.seconds, seed=self.seed,
                       say=self.note)
        self.done(**{k: v for k, v in result.items() if k != "sessions"})
        self.say("")
        for line in table_lines(result):
            self.say("  " + line)

    # -- reproducing ---------------------------------------------------------------------------------
    def commands(self, sessions=None):
        """The commands that reproduce this run: the whole demo, then step by step as (step name, command);
        `sessions`: the session files train and eval read, when not those the collect commands make."""
        opts = ([f"--port {self.port}"] if self.port else []) + ([f"--plant {shlex.quote(self.plant)}"] if self.plant else [])
        opts += [f"--seed {self.seed}"] if self.port is None else []
        opts += [f"--collect {self.collect_s:g}"] if self.collect_s != COLLECT_S else []
        opts += [f"--epochs {self.epochs}"] if self.epochs != EPOCHS else []
        opts += [f"--seconds {self.seconds:g}"] if self.seconds != SECONDS else []
        opts += [f"--trajectories {','.join(self.names)}"] if self.names != list(TRAJECTORIES) else []
        opts += [f"--rounds {self.rounds}"] if self.rounds else []
        port = self.port or "/tmp/gen0"
        d = shlex.quote(str(self.dir))
        steps = []
        if self.port is None:
            steps.append(("sim", f"host sim --seed {self.seed}" + (f" --plant {shlex.quote(self.plant)}" if self.plant else "")
                          + f" --link {port} &"))
        steps.append(("flash", f"host flash --port {port}"))
        steps.append(("check", f"host check --port {port} --write --out {d}/sessions --plot {d}/check.png"))
        names = []
        for name, plan in excitation(self.collect_s, self.seed + 1).items():
            for program, params in plan:
                names.append(f"{name}-{program}" if len(plan) > 1 else name)
                steps.append(("collect", f"host collect --port {port} --program {program} --out {d}/sessions "
                              f"--name {names[-1]} " + " ".join(f"--param {k}={v}" for k, v in params.items())))
        sessions = " ".join(shlex.quote(str(p)) for p in sessions) if sessions else " ".join(
            f"{d}/sessions/{n}.session" for n in names)
        steps.append(("train", f"host train {sessions} --task inverse --epochs {self.epochs} --patience 15 --candidates {CANDIDATES} --out {d}/model --force"))
        steps.append(("deploy", f"host deploy {d}/model --port {port}"))
        steps.append(("eval", f"host eval --port {port} --calibrate {sessions} --seconds {self.seconds:g} "
                      f"--trajectories {','.join(self.names)} --out {d}/sessions --plot {d}/eval.png"))
        if self.rounds:
            steps.append(("learn", f"host learn --port {port} --model {d}/model --rounds {self.rounds} "
                          f"--collect {self.round_collect_s:g} --epochs {self.epochs} --seconds {self.seconds:g} --trajectories {','.join(self.names)} "
                          f"--seed {self.seed} --out {d}/learn"))
        return "host demo " + " ".join(opts), steps

    def resume(self):
        """The commands that finish a run that stopped: the steps from the one it stopped at (or the next,
        when it stopped between steps), after what a board needs again first -- a fresh virtual Gen0 is
        empty (sim, flash), and the evaluation runs the deployed model; train and eval read the sessions
        the demo recorded when its collect step finished."""
        stop = self.facts["stopped"]
        order = ["sim", "flash", "check", "collect", "train", "deploy", "eval", "learn", "report"]
        first = order.index(stop["name"]) + stop["after"] if stop["name"] in order else 0
        if first > order.index("learn" if self.rounds else "eval"):
            return []  # every step ran: their figures are in demo.json
        need = {"sim", "flash"} if self.port is None else set()
        need |= {"deploy"} if first in (order.index("eval"), order.index("learn")) else set()
        kept = [c["path"] for c in (self.facts.get("collect") or {}).get("sessions") or []] or None
        return [cmd for name, cmd in self.commands(kept)[1] if order.index(name) >= first or name in need]


def kept_files(path):
    """{relative path: bytes} of every file in the run directory (not the atomic writer's temp files)."""
    return {str(f.relative_to(path)): f.stat().st_size for f in sorted(Path(path).rglob("*"))
            if f.is_file() and not f.name.startswith(".")}

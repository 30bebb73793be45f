"""The learned region (issue 15 item 3, MLP.md "The learned region"): a model's blob records the input
ranges it was trained on and a linear fallback; track mode falls back to it on the ticks an input leaves
them (with a margin and hysteresis), crossfading so the pulse does not jump, and raises the `fallback` flag.

On the VM (every tick's frame): a target beyond the trained range, pulse for pulse against the rule.
On the virtual Gen0 (slow): a model trained on a narrow session, pushed by hand and sent past its range."""

import json

import numpy as np
import pytest

from host.export import quantize as Q
from host.export.reference import Reference
from host.link.schema import TelemetrySchema
from polyniod_firmware import protocol as P
from tests.test_firmware_units import ROBOT, acks_of, command_lines, frames_of, run_on_vm

INPUTS = ["shoulder_target_deg@2", "elbow_target_deg@2"]
TRAINED = [[-20.0, 20.0], [-20.0, 20.0]]  # deg: what the model "saw"
FALLBACK = [1480.0, 10.0, 1480.0, 10.0]  # pulse = a + b * deg per output: deliberately not the model's map
RATE = 200
FADE_S = 0.08  # track.FADE_S: the crossfade
F_FALLBACK = 32  # telemetry flag bit 5, "fallback" (the hello names it; asserted below)
MARGIN, MARGIN_MIN = 0.1, 2  # models.GUARD_MARGIN (of the trained span), GUARD_MIN (raw units): MLP.md


def guarded_blob(in_range=TRAINED, lin=FALLBACK):
    """A linear model pulse = 1500 + 11 * target, with a guard of in_range and fallback lin."""
    layers = [{"w": np.eye(2), "b": np.zeros(2), "act": "linear"}]
    x = np.random.default_rng(0).uniform(-1, 1, (200, 2))
    meta = {} if in_range is None else {"in_range": in_range, "fallback_lin": lin}
    return Q.export(layers, x, [0, 0], [20, 20], [1500, 1500], [220, 220], INPUTS,
                    ["shoulder_cmd_us", "elbow_cmd_us"], "guarded", meta=meta)


def run_traj(tmp_path, blob, targets):
    """Every tick's telemetry of `track traj` over targets [ticks, 2] (cdeg) at RATE: {field: array}, track start."""
    (tmp_path / "model.bin").write_bytes(blob)
    line = command_lines((1, "track", "traj"))
    body = ("import loop, config\nr = loop.Gen0(config.load())\nr.send_hello()\n"
            "r.mode_named('track').load(%r)\nr.run(3)\n"
            "r.commands.feed(%r, %d)\nr.run(%d)\n") % (targets.astype("<i2").tobytes(), line, len(line), len(targets) + 30)
    robot = dict(ROBOT, loop=dict(ROBOT["loop"], rate_hz=RATE), link={"baud": 0})
    frames = frames_of(run_on_vm(tmp_path, body, robot=robot))
    assert acks_of(frames)[1][0] == P.E_OK, acks_of(frames)[1]
    hello = json.loads(next(f[3] for f in frames if f[0] == P.T_HELLO))
    assert hello["flags"][5] == "fallback"
    schema = TelemetrySchema.from_hello(hello)
    rows = [schema.unpack(f[3]) for f in frames if f[0] == P.T_TELEMETRY]
    col = {n: np.array([r[i] for r in rows]) for i, n in enumerate(schema.names)}
    start = int(np.flatnonzero(col["mode"] == 3)[0])
    return {k: v[start:start + len(targets)] for k, v in col.items()}


def expected(blob, targets, fade):
    """The guard's rule on the host: per tick (falling, weight, pulses)."""
    n = len(targets)
    ahead = targets[np.minimum(np.arange(n) + 2, n - 1)]  # the inputs: each target 2 ticks ahead
    lo, hi = np.array(TRAINED).T * 100
    margin = np.maximum(MARGIN * (hi - lo), MARGIN_MIN)
    model = np.floor(Reference(blob).infer(ahead / 100) + 0.5)
    lin = np.array(FALLBACK[0::2]) + np.array(FALLBACK[1::2]) * targets / 100
    falling, w, state, weight = [], [], 0, 0
    for a in ahead:
        state = int(((a < lo) | (a > hi)).any()) if state else int(((a < lo - margin) | (a > hi + margin)).any())
        weight = min(weight + 1, fade) if state else max(weight - 1, 0)
        falling.append(state)
        w.append(weight)
    w = np.array(w)[:, None]
    return np.array(falling, bool), w[:, 0], model + np.floor((np.floor(lin + 0.5) - model) * w / fade)


def test_a_target_beyond_the_trained_range_falls_back_to_the_linear_map_without_a_jump(tmp_path):
    t = np.arange(600) / RATE
    shoulder = 40 * np.sin(2 * np.pi * 0.5 * t)  # twice the trained range, at ~125 deg/s peak
    targets = np.rint(np.column_stack([shoulder, 5 * np.sin(2 * np.pi * t)]) * 100)
    blob = guarded_blob()
    got = run_traj(tmp_path, blob, targets)
    fade = round(FADE_S * RATE)
    falling, w, want = expected(blob, targets, fade)
    flag = (got["flags"] & F_FALLBACK) > 0
    assert np.array_equal(flag, falling)  # raised exactly on the ticks an input is out (entered beyond 24 deg)
    assert 0.5 < falling.mean() < 0.7 and np.abs(targets[falling.argmax() + 2, 0]) > 2400
    pulses = np.column_stack([got["shoulder_cmd_us"], got["elbow_cmd_us"]])
    assert np.abs(pulses - want).max() <= 1  # the rule, tick for tick (rounding edges: one us)
    lin = np.array(FALLBACK[0::2]) + np.array(FALLBACK[1::2]) * targets / 100
    full = w == fade
    assert full.sum() > 100 and np.abs(pulses[full] - lin[full]).max() <= 1  # in fallback: the linear map
    inside = (w == 0) & ~falling
    assert np.abs(pulses[inside] - want[inside]).max() <= 1 and inside.sum() > 150  # back to the model after
    # no jump at the switches: the steepest tick-to-tick change is the trajectory's own, plus the gap / fade
    gap = np.abs(lin - np.floor(Reference(blob).infer(targets / 100) + 0.5))[falling].max()
    steepest = np.abs(np.diff(pulses, axis=0)).max()
    assert gap > 40 and steepest <= 11 * 40 * 2 * np.pi * 0.5 / RATE * 1.1 + gap / fade + 2


def test_a_blob_without_ranges_never_falls_back(tmp_path):
    targets = np.rint(np.column_stack([np.linspace(0, 60, 200), np.zeros(200)]) * 100)
    blob = guarded_blob(in_range=None)
    got = run_traj(tmp_path, blob, targets)
    assert not (got["flags"] & F_FALLBACK).any()
    last = np.floor(Reference(blob).infer([[60, 0]])[0, 0] + 0.5)
    assert abs(got["shoulder_cmd_us"][-1] - last) <= 1  # the model all the way, saturated: what the guard is for
    assert 1500 + 11 * 60 - last > 300


@pytest.mark.parametrize("meta, says", [({"in_range": [[0, 1]]}, "one [lo, hi] per input"),
                                        ({"in_range": [[1, 0], [0, 1]]}, "is not [lo, hi]"),
                                        ({"in_range": TRAINED, "fallback_lin": [1, 2]}, "fallback_lin"),
                                        ({"preview": [20, 500]}, "preview: [window ticks"),
                                        ({"preview": [20, 500, 0]}, "preview: [window ticks"),
                                        ({"preview": [64, 500, 500]}, "is more than 64")])
def test_a_bad_guard_is_refused_with_what_is_wrong(tmp_path, meta, says):
    layers = [{"w": np.eye(2), "b": np.zeros(2), "act": "linear"}]
    blob = Q.export(layers, np.zeros((4, 2)) + [[1, -1]], [0, 0], [20, 20], [1500, 1500], [220, 220], INPUTS,
                    ["shoulder_cmd_us", "elbow_cmd_us"], "bad", meta=meta)
    body = ("import config, mlp, models\ncfg = config.load()\ntry:\n"
            "    models.Binding(mlp.parse(%r), models.signals(cfg), cfg)\nexcept ValueError as e:\n    print(e)\n" % blob)
    assert says in run_on_vm(tmp_path, body).decode()


@pytest.mark.slow
def test_a_model_trained_on_a_narrow_range_falls_back_when_sent_beyond_it_or_pushed(make_sim, tmp_path):
    """Trained on steps within ~+-15 deg; then (a) a sine to 45 deg and (b) a push of the shoulder by hand."""
    from host.collect import collect
    from host.deploy import deploy, send_trajectory
    from host.link.client import Link
    from host.commands.monitor import watch
    from host.train.pipeline import train

    gen0 = make_sim(preload=True, speed=0)  # virtual clock, flat out: the push lasts board time
    session = collect(gen0.port, program="steps", seed=3, params={"lo_us": 1350, "hi_us": 1650}, duration=30,
                      name="narrow", out=tmp_path, progress=False)["session"]
    train("inverse", [session], out=tmp_path / "narrow", progress=False, epochs=15, hidden=(16, 16))
    blob = (tmp_path / "narrow" / "model.bin").read_bytes()
    ref = Reference(blob)
    trained, lin = ref.spec.meta["in_range"], ref.spec.meta["fallback_lin"]
    shoulder = ref.inputs.index(next(i for i in ref.inputs if i.startswith("shoulder_target_deg")))
    print("trained", trained[shoulder], "lin", lin)
    assert trained[shoulder][1] < 30 and len(lin) == 4 and 8 < lin[1] < 14  # a narrow range, a sane calibration
    window, *slews = ref.spec.meta["preview"]  # shaped targets (preview.py): 0.2 s, the servos' speed in the session
    print("preview", window, slews)
    assert window == round(0.2 * ref.spec.meta["rate_hz"]) and len(slews) == 2 and all(100 < s < 800 for s in slews)
    with Link(gen0.port) as link:
        hello = link.connect()
        rate = hello.rate_hz
        assert deploy(link, blob, ref, checks=16)["parity"]["mismatches"] == 0
        t = np.arange(round(1.5 * rate)) / rate
        sine = 45 * np.sin(np.pi * t / 1.5)  # (a) out to 45 deg and back
        hold = np.zeros(round(3.0 * rate))  # (b) held at 0 while a hand pushes the shoulder, then let go
        targets = np.column_stack([np.concatenate([np.zeros(rate // 2), sine, hold]), np.zeros(rate // 2 + len(t) + len(hold))])
        send_trajectory(link, targets)
        push_at = rate // 2 + len(t) + rate // 2
        link.request_json("track", "traj")
        rows = []
        while not rows or rows[-1]["mode"] == 3 or len(rows) < 10:
            frame = link.next_telemetry(5)
            assert frame, "telemetry stopped"
            if frame[3]["mode"] == 3 or rows:
                rows.append(frame[3])
            if len(rows) == push_at:
                gen0.board.push(0, -0.15, 0.8)  # the servo gives ~20 deg against it
        link.request_json("track", "traj")  # again, under `host monitor`'s eye: it shows the share flagged
        shown = watch(link, hello, duration=1.0, interval=1.0, quiet=True)
    rows = [r for r in rows if r["mode"] == 3]
    assert len(rows) == len(targets)
    flag = np.array([(int(r["flags"]) & F_FALLBACK) > 0 for r in rows])
    cmd = np.array([r["shoulder_cmd_us"] for r in rows], float)
    deg = np.array([r["shoulder_deg"] for r in rows])
    target = np.array([r["shoulder_target_deg"] for r in rows])
    a, b = rate // 2, rate // 2 + len(t)
    fade = round(FADE_S * rate)
    print("flagged: before %.2f sine %.2f push %.2f end %.2f; min deg in push %.1f"
          % (flag[:a].mean(), flag[a:b].mean(), flag[push_at:push_at + round(0.8 * rate)].mean(), flag[-rate // 2:].mean(),
             deg[push_at:].min()))
    assert not flag[:a].any() and not flag[-rate // 2:].any()  # the model drives inside its region, and again after
    assert flag[a:b][np.abs(target[a:b]) > 30].all()  # (a) beyond the range
    pushed = flag[push_at:push_at + round(0.8 * rate)]
    assert pushed.mean() > 0.5 and deg[push_at:].min() < trained[ref.inputs.index("shoulder_deg")][0] - 5  # (b)
    run = np.convolve(flag, np.ones(fade + 1), "valid") == fade + 1  # flagged ticks a full fade in
    full = np.flatnonzero(run) + fade
    want = np.floor(lin[0] + lin[1] * target[full] + 0.5)
    assert len(full) > rate // 2 and np.abs(cmd[full] - want).max() <= 1  # the linear map drove them
    jumps = np.abs(np.diff(cmd))
    print("largest pulse step %.0f us; the fallback's own %.0f" % (jumps.max(), lin[1] * np.abs(np.diff(target)).max()))
    assert jumps.max() <= lin[1] * np.abs(np.diff(target)).max() + 250 / fade  # a model-lin gap of 250 us, crossfaded
    assert 0 < shown["fallback_pct"] < 100


def test_falling_back_and_returning_allocates_nothing(tmp_path):
    """gc disabled: ticks inside, entering, in, and leaving the fallback (three times each) touch no heap."""
    (tmp_path / "model.bin").write_bytes(guarded_blob())
    t = np.arange(400) / RATE
    targets = np.rint(np.column_stack([40 * np.sin(2 * np.pi * t), np.zeros(len(t))]) * 100).astype("<i2")
    body = ("import gc, loop, config\nr = loop.Gen0(config.load())\n"
            "tr = r.mode_named('track')\ntr.load(%r)\nr.enter('track', ['traj'])\n"
            "def delta(n):\n    gc.collect()\n    a = gc.mem_alloc()\n    r.run(n)\n    return gc.mem_alloc() - a\n"
            "r.run(70)\ngc.disable()\nd = delta(320)\n"  # after the first ticks' one-off warm-up
            "print('ALLOC', d, tr.controller.falling, r.mode.name)\n") % targets.tobytes()
    robot = dict(ROBOT, loop=dict(ROBOT["loop"], rate_hz=RATE))
    text = run_on_vm(tmp_path, body, robot=robot).decode("latin-1")
    line = text[text.index("ALLOC"):].split("\n")[0]
    assert line.split()[1:] == ["0", "0", "track"], line  # back inside at the end (sin(2 pi 390/200) ~ -0.3)

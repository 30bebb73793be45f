"""Track mode: controllers follow trajectories on the virtual Gen0, a model fitted on the host
drives the joints, a host-sent trajectory runs and ends, and (on the VM) a model's inputs are
exactly the signals and look-ahead/history offsets its names say.
"""

import json
import time

import numpy as np
import pytest

from host.deploy import deploy, send_trajectory, transfer
from host.export import quantize as Q
from host.export.reference import Reference
from host.link.client import CommandError, Link
from polyniod_firmware import preview, programs
from polyniod_firmware import protocol as P
from tests.test_firmware_units import ROBOT, command_lines, frames_of, run_on_vm, acks_of
from host.link.schema import TelemetrySchema

JOINTS = [j["name"] for j in ROBOT["joints"]]
STEPS = ("steps", "seed=3", "duration_ms=3000", "dwell_min_ms=500", "dwell_max_ms=700", "lo_deg=-60", "hi_deg=60")
NOMINAL_INPUTS = ["shoulder_target_deg@2", "elbow_target_deg@2", "shoulder_deg@-1", "elbow_deg@-1"]


def nominal_blob(seed=0):
    """relu MLP fitted with numpy (least squares) to the nominal pulse = center_us + us_per_deg * target."""
    rng = np.random.default_rng(seed)
    target = rng.uniform(-85, 85, (4000, 2))
    x = np.column_stack([target, target + rng.normal(0, 5, target.shape)])
    y = np.array([j["center_us"] for j in ROBOT["joints"]]) + np.array([j["us_per_deg"] for j in ROBOT["joints"]]) * target
    mean, std, y_mean, y_std = x.mean(0), x.std(0), y.mean(0), y.std(0)
    xn = (x - mean) / std
    w1 = np.vstack([np.eye(4), -np.eye(4)])  # relu(x) - relu(-x) = x: the mapping is exact in floats
    hidden = np.column_stack([np.maximum(xn @ w1.T, 0), np.ones(len(x))])
    fit = np.linalg.lstsq(hidden, (y - y_mean) / y_std, rcond=None)[0]
    layers = [{"w": w1, "b": np.zeros(8), "act": "relu"}, {"w": fit[:-1].T, "b": fit[-1], "act": "linear"}]
    return Q.export(layers, xn, mean, std, y_mean, y_std, NOMINAL_INPUTS, [n + "_cmd_us" for n in JOINTS], "nominal")


@pytest.fixture
def link(gen0):
    with Link(gen0.port) as link:
        link.connect()
        yield link


def run_track(link, *args, timeout=15):
    """(ack, telemetry rows {field: value} from the track's first tick to the first idle one)."""
    while not link.telemetry.empty():
        link.telemetry.get_nowait()
    gaps = link.seq_gaps
    ack = link.request_json("track", *args)
    rows, done = [], False
    deadline = time.monotonic() + timeout
    while not (done and rows and rows[-1]["mode"] == 0):
        assert time.monotonic() < deadline, "track did not end"
        frame = link.next_telemetry(0.5)
        if frame:
            rows.append(frame[3])
        while not link.logs.empty():
            done = done or link.logs.get_nowait()[2] == "track done: " + args[0]
    assert link.seq_gaps == gaps, "frames lost during the track"
    start = next(i for i, r in enumerate(rows) if r["mode"] == 3)
    return ack, rows[start - 1:]  # with the tick before the start


def settled(rows, joint):
    """(targets, mean measured - target) over the last 100 ms of each dwell of a stepped trajectory."""
    run = [r for r in rows if r["mode"] == 3]
    target = np.array([r[joint + "_target_deg"] for r in run])
    measured = np.array([r[joint + "_deg"] for r in run])
    ends = list(np.flatnonzero(np.diff(target)) + 1) + [len(target)]
    return target[np.array(ends) - 1], np.array([np.mean(measured[e - 20:e] - target[e - 20:e]) for e in ends])


@pytest.mark.slow
def test_naive_and_linear_controllers_follow_a_builtin_trajectory(gen0, link):
    rate = link.hello["rate_hz"]
    errors = {}
    for controller in ("naive", "linear"):
        ack, rows = run_track(link, *STEPS, "controller=" + controller)
        run = [r for r in rows if r["mode"] == 3]
        assert ack["ticks"] == len(run) == 3000 * rate // 1000 and ack["controller"]["name"] == controller
        for j, joint in enumerate(ROBOT["joints"]):
            name = joint["name"]
            steps = programs.Steps(programs.Rng(3 + 0x9E37 * j), -6000, 6000, 500 * rate // 1000, 700 * rate // 1000)
            want = [steps.step() for _ in range(len(run))]  # the programs' integer generator, on angles
            target = np.array([r[name + "_target_deg"] for r in run])
            assert np.array_equal(np.rint(target * 100), want)
            cmd = np.array([r[name + "_cmd_us"] for r in run])
            if controller == "naive":  # the datasheet: -90..90 deg -> 500..2500 us
                assert np.array_equal(cmd, np.floor(500 + (target + 90) * 2000 / 180 + 0.5))
            else:  # robot.json nominal: center_us + us_per_deg * deg
                assert np.abs(cmd - (joint["center_us"] + joint["us_per_deg"] * target)).max() <= 0.5 + 1e-9
            targets, error = settled(rows, name)
            errors[controller, name] = error
            assert np.corrcoef(targets, targets + error)[0, 1] > 0.98  # the measured angles follow the steps
        assert rows[-1]["mode"] == 0 and rows[-1]["shoulder_target_deg"] == 0  # idle, holding; no target
        assert rows[-1]["shoulder_cmd_us"] == rows[-2]["shoulder_cmd_us"]
    for joint in ROBOT["joints"]:
        name = joint["name"]
        naive, linear = errors["naive", name], errors["linear", name]
        assert np.std(linear) < 2.5  # nominal: one offset per unit (its pot and ADC), then it follows
        # the naive mapping's error is its difference to this servo's ~10 us/deg around ~1450 us
        targets, _ = settled(rows, name)
        mapping = (500 + (targets + 90) * 2000 / 180 - (joint["center_us"] + joint["us_per_deg"] * targets)) / 10
        assert np.abs(naive - linear - mapping).max() < 2.5
        assert np.mean(np.abs(naive)) > np.mean(np.abs(linear)) + 1.5  # visible


@pytest.mark.slow
def test_a_model_fitted_on_the_host_drives_track_mode(gen0, link):
    blob = nominal_blob()
    ref = Reference(blob)
    assert deploy(link, blob, ref, checks=64)["parity"]["mismatches"] == 0
    ack, rows = run_track(link, *STEPS)  # controller=model is the default
    assert ack["controller"] == {"name": "model", "model_id": "%08x" % ref.model_id}
    run = rows[1:-1]
    assert len(run) == ack["ticks"] and all(r["mode"] == 3 for r in run)
    # the device's pulses are the reference's on the inputs the names ask for, taken from the telemetry
    x, got = [], []
    for i in range(1, len(rows) - 1):
        ahead = rows[min(i + 2, len(rows) - 2)]  # past the end: the last target again
        x.append([ahead["shoulder_target_deg"], ahead["elbow_target_deg"], rows[i - 1]["shoulder_deg"],
                  rows[i - 1]["elbow_deg"]])
        got.append([rows[i]["shoulder_cmd_us"], rows[i]["elbow_cmd_us"]])
    want = np.clip(np.floor(ref.infer(np.array(x)) + 0.5), 600, 2300)
    step = ref.dequantize_outputs([[1, 1]]) - ref.dequantize_outputs([[0, 0]])
    diff = np.abs(want - got)
    assert (diff <= 1).mean() > 0.97 and (diff <= 2 * step + 1).all()  # a value on a rounding edge may differ by a step
    # and it follows like the nominal mapping it was fitted to
    _, rows_linear = run_track(link, *STEPS, "controller=linear")
    for name in JOINTS:
        assert np.abs(settled(rows, name)[1] - settled(rows_linear, name)[1]).max() < 2.5


@pytest.mark.slow
def test_a_host_sent_trajectory_runs_and_ends(gen0, link):
    with pytest.raises(CommandError, match="no trajectory sent") as refused:
        link.request("track", "traj", "controller=naive")
    assert refused.value.code == P.E_NO_TRAJ  # what the host matches (never the text)
    ramp = np.concatenate([np.linspace(0, 30, 100), np.full(50, 30.0), np.linspace(30, -20.5, 100)])
    targets = np.column_stack([ramp, -ramp / 2])
    assert send_trajectory(link, targets)["ticks"] == len(targets)
    ack, rows = run_track(link, "traj", "controller=linear")
    assert ack["trajectory"] == {"name": "traj", "ticks": len(targets)}
    run = [r for r in rows if r["mode"] == 3]
    sent = np.rint(targets * 100) / 100
    assert np.allclose([[r[n + "_target_deg"] for n in JOINTS] for r in run], sent, atol=1e-9)
    assert rows[-1]["mode"] == 0
    assert link.request_json("status")["mode"] == "idle"
    with pytest.raises(CommandError, match=r"tick 1: joint 0 target 90.00 deg is outside -85.00..85.00") as refused:
        send_trajectory(link, [[0, 0], [90, 0]])
    assert refused.value.code == P.E_RANGE
    with pytest.raises(CommandError, match="no trajectory sent") as refused:  # a new one replaces the old from its start
        link.request("track", "traj", "controller=naive")
    assert refused.value.code == P.E_NO_TRAJ
    with pytest.raises(CommandError, match="2 per tick"):
        transfer(link, "traj", bytes(6))


@pytest.mark.parametrize("args,says", [
    (["circle"], "no trajectory 'circle'"),
    (["hold", "deg=1,2,3"], "deg=1,2,3: give one value or 2"),
    (["hold", "deg=100"], "outside joint 0's"),
    (["steps", "speed=2"], "steps takes no 'speed'"),
    (["sine", "f_mhz=60000"], "quarter of the loop rate"),
    (["sine", "amp_deg=80", "offset_deg=10"], "outside joint 0's"),
    (["hold", "controller=pid"], "controller=pid: one of model, naive, linear"),
    (["hold", "controller=linear", "lin=1,2,3"], "lin takes 4 numbers"),
    (["hold", "lin=1450,10,1450,10"], "lin= is for controller=linear"),
    (["hold"], "no model on this robot"),
])
def test_bad_track_arguments_say_what_is_wrong(tmp_path, args, says):
    body = "import loop, config\nr = loop.Gen0(config.load())\nr.run(5)\n"
    frames = frames_of(run_on_vm(tmp_path, body, stdin=command_lines((1, "track", *args))))
    code, data = acks_of(frames)[1]
    assert code in (P.E_ARG, P.E_STATE) and says in bytes(data).decode()


def test_model_inputs_are_the_signals_and_offsets_their_names_say(tmp_path):
    """On the VM at 1000 Hz: random host-sent targets, a model reading them up to MAX_PAST back and
    MAX_FUTURE ahead plus a measured angle; every tick's pulses equal the reference's."""
    rng = np.random.default_rng(4)
    inputs = ["shoulder_target_deg@64", "elbow_target_deg@-16", "shoulder_target_deg", "elbow_target_deg@5",
              "shoulder_deg@-3"]
    layers = [{"w": rng.uniform(-1, 1, (2, 5)), "b": rng.uniform(-0.2, 0.2, 2), "act": "linear"}]
    blob = Q.export(layers, rng.normal(size=(500, 5)), [0, 0, 0, 0, 100], [40, 40, 40, 40, 10], [1450, 1450],
                    [150, 150], inputs, ["shoulder_cmd_us", "elbow_cmd_us"], "offsets")
    (tmp_path / "model.bin").write_bytes(blob)
    targets = np.rint(rng.uniform(-85, 85, (300, 2)) * 100).astype("<i2")
    data = targets.tobytes()
    line = command_lines((1, "track", "traj"))
    body = ("import loop, config\nr = loop.Gen0(config.load())\nr.send_hello()\n"
            "r.mode_named('track').load(%r)\nr.run(3)\n"
            "r.commands.feed(%r, %d)\nr.run(330)\n") % (data, line, len(line))
    robot = dict(ROBOT, loop=dict(ROBOT["loop"], rate_hz=1000), link={"baud": 0})  # every tick's frame: no UART
    frames = frames_of(run_on_vm(tmp_path, body, robot=robot))
    assert acks_of(frames)[1][0] == P.E_OK
    schema = TelemetrySchema.from_hello(json.loads(next(f[3] for f in frames if f[0] == P.T_HELLO)))
    rows = [schema.unpack(f[3]) for f in frames if f[0] == P.T_TELEMETRY]
    names = schema.names
    col = {n: np.array([r[names.index(n)] for r in rows]) for n in names}
    start = int(np.flatnonzero(col["mode"] == 3)[0])
    n = len(targets)
    assert (col["mode"][start:start + n] == 3).all() and col["mode"][start + n] == 0
    before = np.array([col["shoulder_deg"][start - 1], col["elbow_deg"][start - 1]])  # where the joints were

    def target(t, j):  # the trajectory at tick t of the track: before it, where the joint was; after, its last
        return targets[min(t, n - 1), j] if t >= 0 else before[j]

    # history before the start is the state at the start (the row before it)
    x = [[target(t + 64, 0), target(t - 16, 1), target(t, 0), target(t + 5, 1),
          col["shoulder_deg"][max(start + t - 3, start - 1)]] for t in range(n)]
    values = np.array(x, dtype=np.float64) * 0.01
    ref = Reference(blob)
    pulses = ref.infer(values)
    want = np.clip(np.floor(pulses + 0.5), 600, 2300)
    got = np.column_stack([col["shoulder_cmd_us"][start:start + n], col["elbow_cmd_us"][start:start + n]])
    assert np.array_equal(col["shoulder_target_deg"][start:start + n], targets[:, 0])
    edge = on_a_rounding_edge(ref, values, pulses)
    assert (got == want).all(axis=1)[~edge].all() and edge.mean() < 0.15


def test_a_preview_model_reads_the_shaped_targets_the_host_computes(tmp_path):
    """On the VM (viper kernel): a model with meta `preview` reads targets shaped by preview.py; every tick's
    pulses equal the reference's fed by the host's plain run of the same kernel (jumps up and down, negative
    angles), and telemetry still shows the raw targets."""
    rng = np.random.default_rng(5)
    inputs = ["shoulder_target_deg@5", "elbow_target_deg@5", "shoulder_deg"]
    layers = [{"w": rng.uniform(-1, 1, (2, 3)), "b": rng.uniform(-0.2, 0.2, 2), "act": "linear"}]
    window, slews = 20, [550, 480]
    blob = Q.export(layers, rng.normal(size=(500, 3)), [0, 0, 0], [40, 40, 40], [1450, 1450], [150, 150], inputs,
                    ["shoulder_cmd_us", "elbow_cmd_us"], "preview", meta={"preview": [window] + slews})
    (tmp_path / "model.bin").write_bytes(blob)
    levels = rng.uniform(-85, 85, (8, 2))
    targets = np.rint(np.repeat(levels, 40, axis=0) * 100).astype("<i2")  # jumps of up to 170 deg, 40 ticks apart
    data = targets.tobytes()
    line = command_lines((1, "track", "traj"))
    body = ("import loop, config\nr = loop.Gen0(config.load())\nr.send_hello()\n"
            "r.mode_named('track').load(%r)\nr.run(3)\n"
            "r.commands.feed(%r, %d)\nr.run(%d)\n") % (data, line, len(line), len(targets) + 30)
    robot = dict(ROBOT, loop=dict(ROBOT["loop"], rate_hz=1000), link={"baud": 0})
    frames = frames_of(run_on_vm(tmp_path, body, robot=robot))
    assert acks_of(frames)[1][0] == P.E_OK
    schema = TelemetrySchema.from_hello(json.loads(next(f[3] for f in frames if f[0] == P.T_HELLO)))
    rows = [schema.unpack(f[3]) for f in frames if f[0] == P.T_TELEMETRY]
    col = {n: np.array([r[schema.names.index(n)] for r in rows]) for n in schema.names}
    start = int(np.flatnonzero(col["mode"] == 3)[0])
    n = len(targets)
    assert np.array_equal(col["shoulder_target_deg"][start:start + n], targets[:, 0])  # telemetry: the raw targets
    before = [int(col["shoulder_deg"][start - 1]), int(col["elbow_deg"][start - 1])]
    shaped = np.array(preview.shaped([[int(v) for v in targets[:, j]] for j in range(2)], window, slews, before)).T
    steps = np.abs(np.diff(shaped, axis=0))
    assert (steps <= slews).all() and steps.max(axis=0).tolist() == slews  # reachable, and it does ramp
    ahead = np.vstack([shaped[5:], np.repeat(shaped[-1:], 5, axis=0)])
    values = np.column_stack([ahead, col["shoulder_deg"][start:start + n]]).astype(np.float64) * 0.01
    ref = Reference(blob)
    pulses = ref.infer(values)
    want = np.clip(np.floor(pulses + 0.5), 600, 2300)
    got = np.column_stack([col["shoulder_cmd_us"][start:start + n], col["elbow_cmd_us"][start:start + n]])
    edge = on_a_rounding_edge(ref, values, pulses)
    assert (got == want).all(axis=1)[~edge].all() and edge.mean() < 0.15


def on_a_rounding_edge(ref, values, pulses, within=0.006):
    """Rows where an input lands within `within` int8 steps of a rounding boundary, or an output within
    `within` us: the device's fixed-point edges (models.Binding: off by < 0.005 steps) and the host's
    float ones may round those differently."""
    first = ref.spec.layers[0]
    gain = 1 / (np.array(ref.spec.in_std) * first.in_scale)
    q = values * gain + first.in_zp - np.array(ref.spec.in_mean) * gain
    return ((np.abs(q - np.floor(q) - 0.5) < within).any(axis=1)
            | (np.abs(pulses - np.floor(pulses) - 0.5) < within).any(axis=1))

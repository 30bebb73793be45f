"""Track mode: follow a target trajectory, a controller turning the targets into pulses each tick.

Targets are per joint in 0.01 deg, from a built-in trajectory (integer, deterministic, the
programs' generators run on angles) or from the host (xfer slot `traj`). They are produced
`horizon` ticks ahead into a ring, so a model can look into the future (features.MAX_FUTURE);
a model's past inputs come from rings of the signals it reads (features.MAX_PAST). Everything
per tick is integer and preallocated: no allocation, also with the model (infer_q, inputs
quantised in place by models.Binding).

A model runs inside its guard (MLP.md "The learned region"): while any input is outside the range
it was trained on (with a margin, and hysteresis), the blob's linear map drives its joints and
the telemetry flag `fallback` is raised; the switch is a crossfade over FADE_S, not a jump.
A model with meta `preview` reads targets shaped into moves its servos can make (preview.py), from a
second ring that trails the raw one by the preview window; telemetry shows the raw targets.
"""

import array

import emit
import models
import preview
import programs
import protocol as P
from features import MAX_PAST
from protocol import Refused
from telemetry import F_FALLBACK

RING = preview.RING  # target ring slots per joint (the shaped ring has the same layout)
HISTORY = 32  # history ring slots per signal: a power of two > MAX_PAST
PLAN = 12  # int32 per model input in Mlp.plan: source, offset, lo, hi, r0, a, b, shift, olo, ohi, ilo, ihi
HEAD = 3  # Mlp.plan starts t, n, guard (in: 1 while falling back; out: the inputs outside the guard)
FADE_S = 0.08  # model <-> fallback crossfade: no pulse jumps at the switch, and quick enough to be safe

# The model's inputs, quantised in place each tick (models.Binding has the arithmetic), and the guard:
# how many raw values lie outside [olo, ohi] (inside the model) or [ilo, ihi] (falling back). One
# source, compiled under viper where the build has it (~40x the bytecode's speed), else plain.
# ptr32 loads are zero-extended where a machine word is wider than 32 bits: `v -= (v & m) << 1`
# sign-extends them (m is bit 31 under viper, shifted at run time: a 1 << 31 literal does not fit the
# ESP32's small ints and the Xtensa emitter refuses it; 0 in plain Python, whose arrays give signed ints).
FEATURES = """
def features(x, plan, hist, ring):
    xs = ptr8(x)
    p = ptr32(plan)
    h = ptr32(hist)
    r = ptr32(ring)
    m = SIGN
    m <<= 31
    t = p[0]
    n = p[1]
    g = 8 + 2 * p[2]
    out = 0
    i = 0
    k = HEAD_SLOTS
    while i < n:
        src = p[k]
        src -= (src & m) << 1
        off = p[k + 1]
        off -= (off & m) << 1
        if src < 0:
            v = r[(-1 - src) * RING_SLOTS + ((t + off) & (RING_SLOTS - 1))]
        else:
            v = h[src * HISTORY_SLOTS + ((t + off) & (HISTORY_SLOTS - 1))]
        v -= (v & m) << 1
        glo = p[k + g]
        glo -= (glo & m) << 1
        ghi = p[k + g + 1]
        ghi -= (ghi & m) << 1
        if v < glo or v > ghi:
            out += 1
        lo = p[k + 2]
        lo -= (lo & m) << 1
        hi = p[k + 3]
        hi -= (hi & m) << 1
        if v < lo:
            v = lo
        elif v > hi:
            v = hi
        r0 = p[k + 4]
        r0 -= (r0 & m) << 1
        a = p[k + 5]
        b = p[k + 6]
        b -= (b & m) << 1
        q = ((v - r0) * a + b) >> p[k + 7]
        if q < -128:
            q = -128
        elif q > 127:
            q = 127
        xs[i] = q & 0xFF
        i += 1
        k += PLAN_SLOTS
    p[2] = out
""".replace("RING_SLOTS", str(RING)).replace("HISTORY_SLOTS", str(HISTORY)).replace("HEAD_SLOTS", str(HEAD)) \
    .replace("PLAN_SLOTS", str(PLAN))


features = (emit.under("@micropython.viper", FEATURES.replace("SIGN", "1"), "features")
            or emit.build(FEATURES.replace("SIGN", "0"), "features", {"ptr8": emit.same, "ptr32": emit.same}))

# The shaped targets a model with meta `preview` reads (preview.py): same compile choice as features.
shape = (emit.under("@micropython.viper", preview.SOURCE.replace("SIGN", "1"), "shape") or preview.plain())

# name -> ((param, default), ...). *_deg and f_mhz take one value, or one per joint ("10,-20").
TRAJECTORIES = {
    "hold": (("duration_ms", 5000), ("deg", "0")),
    "steps": (("seed", 1), ("duration_ms", 20000), ("lo_deg", None), ("hi_deg", None),
              ("dwell_min_ms", 200), ("dwell_max_ms", 1000)),
    "sine": (("duration_ms", 20000), ("amp_deg", "30"), ("f_mhz", "500"), ("offset_deg", "0")),
    "traj": (),  # the trajectory the host sent (xfer slot traj)
}
CONTROLLERS = ("model", "naive", "linear")


def limits(joint):
    """The joint's angle range in 0.01 deg: its pulse limits through robot.json's nominal gain."""
    per_deg = joint.get("us_per_deg", 10.0)
    lo = round((joint["min_us"] - joint["center_us"]) * 100 / per_deg)
    hi = round((joint["max_us"] - joint["center_us"]) * 100 / per_deg)
    return min(lo, hi), max(lo, hi)


def _per_joint(key, text, n, cdeg):
    parts = str(text).split(",")
    if len(parts) == 1:
        parts = parts * n
    if len(parts) != n:
        raise ValueError("%s=%s: give one value or %d, one per joint" % (key, text, n))
    try:
        return [round(float(p) * 100) if cdeg else int(p) for p in parts]
    except ValueError:
        raise ValueError("%s=%s: expected %s" % (key, text, "numbers" if cdeg else "integers"))


class Hold:
    def __init__(self, cdeg):
        self.cdeg = cdeg

    def step(self):
        return self.cdeg


class Sent:
    """One joint's column of the host's trajectory: int16 LE, joints interleaved tick by tick."""

    def __init__(self, buf, j, n_joints):
        self.buf, self.at, self.stride = buf, 2 * j, 2 * n_joints

    def step(self):
        b, a = self.buf, self.at
        v = b[a] | (b[a + 1] << 8)
        self.at = a + self.stride
        return v - ((v & 0x8000) << 1)


def trajectory(name, given, joints, rate_hz, sent):
    """(resolved params, ticks, [generator per joint]) of a trajectory; ValueError if bad."""
    if name not in TRAJECTORIES:
        raise ValueError("no trajectory %r (trajectories: %s)" % (name, ", ".join(sorted(TRAJECTORIES))))
    spec = TRAJECTORIES[name]
    programs.check_known(name, given, spec)
    nj = len(joints)
    lims = [limits(j) for j in joints]
    if name == "traj":
        if sent is None:
            raise Refused(P.E_NO_TRAJ, "no trajectory sent: send one with `xfer begin traj ...` first")
        n = len(sent) // (2 * nj)
        return {"name": name, "ticks": n}, n, [Sent(sent, j, nj) for j in range(nj)]
    p = {"name": name}
    for k, default in spec:
        v = given.get(k, default)
        if v is None:
            v = [lim[0 if k == "lo_deg" else 1] for lim in lims]
        elif k == "deg" or k.endswith("_deg") or k == "f_mhz":
            v = _per_joint(k, v, nj, k != "f_mhz")
        else:
            try:
                v = int(v)
            except ValueError:
                raise ValueError("%s=%s: expected an integer" % (k, v))
        p[k] = v
    if not 1 <= p["duration_ms"] <= programs.MAX_DURATION_MS:
        raise ValueError("duration_ms must be 1..%d" % programs.MAX_DURATION_MS)
    n = programs.ticks(p["duration_ms"], rate_hz)
    gens = []
    for j in range(nj):
        lo, hi = lims[j]
        if name == "hold":
            a = b = p["deg"][j]
            gens.append(Hold(a))
        elif name == "steps":
            a, b = p["lo_deg"][j], p["hi_deg"][j]
            dwell_lo, dwell_hi = programs.ticks(p["dwell_min_ms"], rate_hz), programs.ticks(p["dwell_max_ms"], rate_hz)
            if not 1 <= p["dwell_min_ms"] <= p["dwell_max_ms"] or dwell_hi - dwell_lo >= programs.MAX_DRAW:
                raise ValueError("need 1 <= dwell_min_ms <= dwell_max_ms (spread under %d ticks)" % programs.MAX_DRAW)
            if b - a >= programs.MAX_DRAW:
                raise ValueError("steps: lo_deg..hi_deg spans more than %.2f deg" % (programs.MAX_DRAW / 100))
            if not 0 <= p["seed"] <= programs.MASK30:
                raise ValueError("seed must be 0..%d" % programs.MASK30)
            gens.append(programs.Steps(programs.Rng(p["seed"] + 0x9E37 * j), a, b, dwell_lo, dwell_hi))
        else:
            amp, f = p["amp_deg"][j], p["f_mhz"][j]
            a, b = p["offset_deg"][j] - abs(amp), p["offset_deg"][j] + abs(amp)
            if not 0 <= f * 4 <= rate_hz * 1000:
                raise ValueError("f_mhz=%d: 0 up to a quarter of the loop rate (%d Hz)" % (f, rate_hz))
            step = programs.phase_step(f, rate_hz)
            gens.append(programs.Sine(p["offset_deg"][j], amp, step, step, n))
        if not lo <= a <= b <= hi:
            raise ValueError("%s: %.2f..%.2f deg is outside joint %d's %.2f..%.2f deg"
                             % (name, a / 100, b / 100, j, lo / 100, hi / 100))
    for k in p:
        if k == "deg" or k.endswith("_deg"):
            p[k] = [v / 100 for v in p[k]]
    return p, n, gens


class Naive:
    """The datasheet mapping: -90..90 deg -> 500..2500 us, linearly."""

    name = "naive"
    horizon = window = 0

    def info(self):
        return {"name": self.name}

    def step(self, robot, track):
        cur = robot.target_cdeg
        t = robot.target
        for j in range(len(t)):
            t[j] = 500 + (2 * (cur[j] + 9000) + 9) // 18  # 500 + (deg + 90) * 2000 / 180, rounded


class Linear:
    """pulse_j = a_j + b_j * deg_j (`lin=a0,b0,a1,b1,...`; default: robot.json center_us, us_per_deg)."""

    name = "linear"
    horizon = window = 0

    def __init__(self, joints, text):
        if text is None:
            self.lin = []
            for j in joints:
                self.lin += [float(j["center_us"]), float(j.get("us_per_deg", 10.0))]
        else:
            try:
                self.lin = [float(v) for v in text.split(",")]
            except ValueError:
                raise ValueError("lin=%s: expected numbers a0,b0,a1,b1,..." % text)
        if len(self.lin) != 2 * len(joints):
            raise ValueError("lin takes %d numbers: a_j,b_j (pulse = a_j + b_j * deg) per joint" % (2 * len(joints)))
        self.a, self.b, self.shift = [], [], []
        for j in range(len(joints)):
            a, b, shift = models.linear_fixed(self.lin[2 * j], self.lin[2 * j + 1])
            self.a.append(a)
            self.b.append(b)
            self.shift.append(shift)

    def info(self):
        return {"name": self.name, "lin": self.lin}

    def step(self, robot, track):
        cur = robot.target_cdeg
        t = robot.target
        a, b, s = self.a, self.b, self.shift
        for j in range(len(t)):
            t[j] = (a[j] + b[j] * cur[j]) >> s[j]


class Mlp:
    """The active MLP: inputs from the signal history and the target ring, outputs pulses."""

    name = "model"

    def __init__(self, robot):
        store = robot.models
        if store.model is None:
            raise Refused(P.E_STATE, "no model on this robot: deploy one (`host deploy`), or use controller=naive|linear")
        if store.binding is None:
            raise Refused(P.E_STATE, "model %s (%s) drives no joints (outputs %s): it runs under mtest only"
                          % (store.hex_id, store.model.task, ", ".join(store.model.outputs)))
        self.model, self.binding, self.model_id = store.model, store.binding, store.hex_id
        b = self.binding
        self.window = b.window  # > 0: the model reads shaped targets (preview.py), this many ticks behind the raw
        self.horizon = b.horizon + b.window
        nj = len(robot.target)
        self.ref = array.array("i", [0] * (RING * nj)) if b.window else None
        self.shape_plan = array.array("i", [0, b.window, nj] + list(b.slew))
        self.kinds = [k for k, _ in b.signals]
        self.index = [i for _, i in b.signals]
        self.hist = array.array("i", [0] * (HISTORY * len(b.signals)))
        self.x = bytearray(self.model.n_in)
        self.y = bytearray(self.model.n_out)
        n = self.model.n_in
        self.plan = array.array("i", [0, n, 0] + [0] * (PLAN * n))
        for i in range(n):
            self.plan[HEAD + PLAN * i:HEAD + PLAN * (i + 1)] = array.array("i", (
                b.source[i], b.offset[i], b.lo[i], b.hi[i], b.r0[i], b.a[i], b.b[i], b.shift[i],
                b.olo[i], b.ohi[i], b.ilo[i], b.ihi[i]))
        self.fade = max(1, round(FADE_S * robot.rate_hz))  # ticks of the crossfade
        self.falling = 0  # 1 while an input is outside the guard: the fallback drives
        self.w = 0  # crossfade weight of the fallback, 0..fade

    def info(self):
        info = {"name": self.name, "model_id": self.model_id}
        if self.binding.guarded:
            info["guard"] = {"fade_ticks": self.fade}
        return info

    def start(self, robot, track):
        """Before the first tick: the history is the present state, as far back as it reaches; the shaped
        targets start where the joints stand and reach as far ahead as the raw ones allow."""
        self.falling = self.w = 0
        if self.window:
            ring, ref = track.ring, self.ref
            for j in range(len(robot.target)):
                for u in range(-MAX_PAST, 0):
                    ref[j * RING + (u & (RING - 1))] = ring[j * RING + (u & (RING - 1))]
            for u in range(track.horizon - self.window + 1):
                self.shaped(track.ring, u)
        for s in range(len(self.kinds)):
            v = self.read(robot, s)
            for i in range(HISTORY):
                self.hist[s * HISTORY + i] = v

    def shaped(self, ring, u):
        """The shaped targets of tick u, from the raw ones up to u + window."""
        self.shape_plan[0] = u
        shape(ring, self.ref, self.shape_plan)

    def read(self, robot, s):
        kind, i = self.kinds[s], self.index[s]
        if kind == models.DEG:
            return robot.feedbacks[i].cdeg
        if kind == models.RAW:
            return robot.feedbacks[i].raw
        if kind == models.CMD:
            return robot.servos[i].us
        b = robot.imu.buf
        v = (b[i] << 8) | b[i + 1]
        return v - ((v & 0x8000) << 1)

    def step(self, robot, track):
        t = track.k
        hist = self.hist
        for s in range(len(self.kinds)):
            v = self.read(robot, s)
            if self.kinds[s] == models.CMD:  # the pulse last tick sent: its row; this row's until decided
                hist[s * HISTORY + ((t - 1) & (HISTORY - 1))] = v
            hist[s * HISTORY + (t & (HISTORY - 1))] = v
        b = self.binding
        plan = self.plan
        plan[0] = t
        plan[2] = self.falling
        features(self.x, plan, hist, self.ref if self.window else track.ring)
        y = self.y
        self.model.infer_q(self.x, y)
        target = robot.target
        for o in range(len(y)):
            target[b.joint[o]] = (((y[o] ^ 0x80) - 0x80) * b.g[o] + b.h[o]) >> b.out_shift[o]
        if plan[2] or self.w:  # an input outside the guard, or the crossfade under way (falling implies w > 0)
            self.guard(robot, plan[2])

    def guard(self, robot, outside):
        """Hysteresis and crossfade: the model's pulses in robot.target moved w / fade toward the fallback's."""
        falling = 1 if outside else 0  # outside the outer limits, or (falling) not yet back inside the inner ones
        self.falling = falling
        w = self.w
        if falling:
            robot.latched |= F_FALLBACK
            if w < self.fade:
                w += 1
        else:
            w -= 1
        self.w = w
        if not w:
            return
        b = self.binding
        target = robot.target
        cur = robot.target_cdeg
        fade = self.fade
        for o in range(len(b.joint)):
            j = b.joint[o]
            pulse = target[j]
            target[j] = pulse + ((((b.la[o] + b.lb[o] * cur[j]) >> b.lshift[o]) - pulse) * w) // fade


class Track:
    """`track <trajectory> [key=value ...] [controller=model|naive|linear] [lin=...]`, then idle."""

    name = "track"
    flags = 0

    def __init__(self, cfg):
        self.joints = cfg["joints"]
        self.ring = array.array("i", [0] * (RING * len(self.joints)))
        self.sent = None  # the host's trajectory (xfer slot traj)
        self.params = self.controller = None
        self.gens = ()
        self.k = self.n = self.horizon = 0

    def enter(self, robot, args):
        if not args:
            raise ValueError("track <trajectory> [key=value ...] [controller=%s]; trajectories: %s"
                             % ("|".join(CONTROLLERS), ", ".join(sorted(TRAJECTORIES))))
        given = programs.key_values(args[1:], "track")
        kind = given.pop("controller", "model")
        lin = given.pop("lin", None)
        if kind not in CONTROLLERS:
            raise ValueError("controller=%s: one of %s" % (kind, ", ".join(CONTROLLERS)))
        if lin is not None and kind != "linear":
            raise ValueError("lin= is for controller=linear")
        params, n, gens = trajectory(args[0], given, self.joints, robot.rate_hz, self.sent)
        if kind == "model":
            controller = Mlp(robot)
        elif kind == "linear":
            controller = Linear(self.joints, lin)
        else:
            controller = Naive()
        self.params, self.n, self.gens, self.controller = params, n, gens, controller
        self.k = 0
        self.horizon = controller.horizon
        ring = self.ring
        for j in range(len(self.joints)):
            for u in range(-MAX_PAST, 0):  # before the start: where the joint is
                ring[j * RING + (u & (RING - 1))] = robot.feedbacks[j].cdeg
        for u in range(self.horizon + 1):
            self.produce(u)
        if kind == "model":
            controller.start(robot, self)
        return {"mode": "track", "trajectory": params, "controller": controller.info(), "rate_hz": robot.rate_hz,
                "ticks": n}

    def produce(self, u):
        """Targets of tick u into the ring; past the end, the last one again."""
        ring = self.ring
        gens = self.gens
        for j in range(len(gens)):
            if u < self.n:
                v = gens[j].step()
            else:
                v = ring[j * RING + ((u - 1) & (RING - 1))]
            ring[j * RING + (u & (RING - 1))] = v

    def step(self, robot):
        t = self.k
        if t >= self.n:  # a tick after the last target, so that one's frame still shows it
            robot.enter("idle", ("hold",))
            robot.port.log(P.LOG_INFO, "track done: %s" % self.params["name"])
            return
        ring = self.ring
        cur = robot.target_cdeg
        for j in range(len(cur)):
            cur[j] = ring[j * RING + (t & (RING - 1))]
        c = self.controller
        c.step(robot, self)
        self.produce(t + self.horizon + 1)
        if c.window:
            c.shaped(ring, t + self.horizon + 1 - c.window)
        self.k = t + 1

    def load(self, data):
        """Keep the host's trajectory (xfer slot traj) after checking it fits the joints."""
        nj = len(self.joints)
        if not data or len(data) % (2 * nj):
            raise ValueError("a trajectory is int16 targets, %d per tick (one per joint): %d bytes is not" % (nj, len(data)))
        lims = [limits(j) for j in self.joints]
        gens = [Sent(data, j, nj) for j in range(nj)]
        for k in range(len(data) // (2 * nj)):
            for j in range(nj):
                v = gens[j].step()
                if not lims[j][0] <= v <= lims[j][1]:
                    raise Refused(P.E_RANGE, "tick %d: joint %d target %.2f deg is outside %.2f..%.2f deg"
                                  % (k, j, v / 100, lims[j][0] / 100, lims[j][1] / 100))
        self.sent = data
        return {"ticks": len(data) // (2 * nj)}

"""Excitation programs: deterministic pulse sequences, one pulse per joint per loop tick.

Integer arithmetic only, every value inside the ESP32's 31-bit small ints, so the board
(single-precision floats, no big ints on the hot path) and CPython produce the very same
pulses: the host regenerates a program's commands with this module from the resolved
parameters the board acked and the joints of its hello.

Each program is an object whose step() returns the next pulse in µs. resolve() checks a
program's parameters and fills in defaults, build() makes one step object per driven joint,
pulses() runs a whole program (the host's replay of it).
"""

MASK30 = 0x3FFFFFFF
PHASE_BITS = 24  # phase accumulator: one cycle = 2**24
PHASE_MASK = (1 << PHASE_BITS) - 1
MAX_DRAW = 1 << 15  # Rng.below() range limit


class Rng:
    """LCG x -> (a*x + c) mod 2**30 (full period: a % 4 == 1, c odd).

    The product is formed from 15-bit halves, so no intermediate leaves the small ints.
    """

    A_LO = 29773421 & 0x7FFF
    A_HI = 29773421 >> 15
    C = 12345

    def __init__(self, seed):
        self.x = seed & MASK30

    def next(self):
        x = self.x
        xl = x & 0x7FFF
        xh = x >> 15
        lo = xl * self.A_LO + self.C
        mid = ((xh * self.A_LO) & 0x7FFF) + ((xl * self.A_HI) & 0x7FFF) + (lo >> 15)
        self.x = ((mid & 0x7FFF) << 15) | (lo & 0x7FFF)
        return self.x

    def below(self, n):
        """An integer in [0, n) from the 15 high bits (n <= 2**15)."""
        return ((self.next() >> 15) * n) >> 15


# sin(pi/2 * z) ~ z * (A - z^2 * (B - z^2 * C)), z in Q14: f(1) = 1, f'(1) = 0, error < 0.1 %.
SIN_A = 25736  # pi/2
SIN_B = 10512  # pi - 5/2
SIN_C = 1160  # pi/2 - 3/2


def sin_q14(p):
    """sin(2*pi * p / 65536) * 16384 for a phase p in [0, 65536)."""
    if p >= 32768:  # odd symmetry keeps the rounding symmetric too
        return -sin_q14(p - 32768)
    z = p if p < 16384 else 32768 - p
    z2 = (z * z) >> 14
    t = SIN_B - ((SIN_C * z2) >> 14)
    t = SIN_A - ((z2 * t) >> 14)
    return (z * t) >> 14


def phase_step(f_mhz, rate_hz):
    """Phase advance per tick (2**-24 cycles) of a sine at f_mhz millihertz."""
    return (f_mhz << PHASE_BITS) // (1000 * rate_hz)


class Steps:
    """Random targets in [lo, hi], each held for a random dwell in [dwell_lo, dwell_hi] ticks."""

    def __init__(self, rng, lo, hi, dwell_lo, dwell_hi):
        self.rng = rng
        self.lo = lo
        self.span = hi - lo + 1
        self.dwell_lo = dwell_lo
        self.dwell_span = dwell_hi - dwell_lo + 1
        self.left = 0
        self.us = lo

    def step(self):
        if self.left <= 0:
            self.us = self.lo + self.rng.below(self.span)
            self.left = self.dwell_lo + self.rng.below(self.dwell_span)
        self.left -= 1
        return self.us


class Sine:
    """center + amp * sin(phase), the frequency (phase steps per tick) going from f0 to f1:
    linearly over n ticks (chirp, the remainder carried Bresenham-style so it stays exact),
    or in `levels` equal stairs of n // levels ticks (stepped sine). The phase never jumps.
    """

    def __init__(self, center, amp, f0, f1, n, levels=0):
        self.center = center
        self.amp = amp
        self.phase = 0
        self.f = f0
        self.levels_left = levels - 1
        if levels:
            self.seg = self.left = max(1, n // levels)
            self.df = (f1 - f0) // (levels - 1) if levels > 1 else 0
        else:
            self.seg = 0
            self.q, self.r = divmod(f1 - f0, n)
            self.n = n
            self.acc = 0

    def step(self):
        us = self.center + ((self.amp * sin_q14(self.phase >> (PHASE_BITS - 16)) + 8192) >> 14)
        self.phase = (self.phase + self.f) & PHASE_MASK
        if self.seg:
            self.left -= 1
            if self.left == 0 and self.levels_left > 0:
                self.levels_left -= 1
                self.left = self.seg
                self.f += self.df
        else:
            self.f += self.q
            self.acc += self.r
            if self.acc >= self.n:
                self.acc -= self.n
                self.f += 1
        return us


class Prbs:
    """Maximal-length 15-bit LFSR (x^15 + x^14 + 1): center +- amp, one bit per bit_ticks."""

    def __init__(self, center, amp, bit_ticks, seed):
        self.center = center
        self.amp = amp
        self.bit_ticks = bit_ticks
        self.state = seed % 32767 + 1  # any non-zero 15-bit state
        self.left = 0
        self.us = center

    def step(self):
        if self.left <= 0:
            s = self.state
            bit = ((s >> 14) ^ (s >> 13)) & 1
            self.state = ((s << 1) | bit) & 0x7FFF
            self.us = self.center + self.amp if bit else self.center - self.amp
            self.left = self.bit_ticks
        self.left -= 1
        return self.us


class Multisine:
    """center + the sum of n sines of fixed frequencies and random phases (a multisine).

    Every component has its own phase accumulator; the amplitudes sum to at most amp, so the pulse
    never leaves center +- amp. tilt=1 gives each component an amplitude ~ 1/f (the same peak speed
    at every frequency, what a slew-limited servo can follow), tilt=0 equal amplitudes.
    """

    def __init__(self, center, amp, steps, weights, rng):
        self.center = center
        total = sum(weights)
        self.amps = [amp * w // total for w in weights]
        self.steps = steps
        self.phases = [(rng.next() >> 6) & PHASE_MASK for _ in steps]

    def step(self):
        acc = 8192
        amps, steps, phases = self.amps, self.steps, self.phases
        for i in range(len(steps)):
            acc += amps[i] * sin_q14(phases[i] >> (PHASE_BITS - 16))
            phases[i] = (phases[i] + steps[i]) & PHASE_MASK
        return self.center + (acc >> 14)


def multisine_mhz(f0, f1, n, rank, count):
    """The n frequencies (mHz) of the rank-th of `count` driven joints: the joints' sets interleave on an
    even grid from f0 to f1, so no two joints share a frequency and each joint's response to the other
    shows at frequencies of its own."""
    last = n * count - 1
    return [f0 + (i * count + rank) * (f1 - f0) // last if last else f0 for i in range(n)]


# name -> ((param, default), ...); None = from the joint's limits. Every value is an integer.
PROGRAMS = {
    "steps": (("seed", 1), ("duration_ms", 20000), ("joints", None), ("lo_us", None), ("hi_us", None),
              ("dwell_min_ms", 200), ("dwell_max_ms", 1000)),
    "chirp": (("duration_ms", 20000), ("joints", None), ("f0_mhz", 100), ("f1_mhz", 3000),
              ("center_us", None), ("amp_us", 300)),
    "sweep": (("duration_ms", 20000), ("joints", None), ("f0_mhz", 250), ("f1_mhz", 4000), ("levels", 8),
              ("center_us", None), ("amp_us", 300)),
    "prbs": (("seed", 1), ("duration_ms", 20000), ("joints", None), ("bit_ms", 100), ("center_us", None),
             ("amp_us", 200)),
    "multisine": (("seed", 1), ("duration_ms", 20000), ("joints", None), ("f0_mhz", 200), ("f1_mhz", 5000),
                  ("n", 4), ("tilt", 0), ("center_us", None), ("amp_us", 400)),
}
MAX_SINES = 16  # multisine components per joint
MAX_DURATION_MS = 3600000


def key_values(args, what):
    """{key: value} of `key=value` command arguments; ValueError names the one that is not."""
    given = {}
    for a in args:
        k, eq, v = a.partition("=")
        if not eq:
            raise ValueError("%s parameters are key=value, not %r" % (what, a))
        given[k] = v
    return given


def check_known(name, given, spec):
    """ValueError naming the first given parameter that `spec` ([(key, default)]) does not take."""
    known = [k for k, _ in spec]
    for k in given:
        if k not in known:
            raise ValueError("%s takes no %r (parameters: %s)" % (name, k, ", ".join(known) or "none"))


def resolve(name, params, n_joints):
    """The full parameter dict of a program from the given {key: int or str} (ValueError if bad)."""
    if name not in PROGRAMS:
        raise ValueError("no program %r (programs: %s)" % (name, ", ".join(sorted(PROGRAMS))))
    spec = PROGRAMS[name]
    check_known(name, params, spec)
    out = {"name": name}
    for k, default in spec:
        v = params.get(k, default)
        if k == "joints":
            v = _joints(v, n_joints)
        elif v is not None:
            v = integer(v, k)
        out[k] = v
    _check(out)
    return out


def _joints(v, n_joints):
    if v is None:
        return list(range(n_joints))
    if isinstance(v, str):
        try:
            v = [int(s) for s in v.split(",")]
        except ValueError:
            raise ValueError("joints=%s: give joint numbers like 0,1" % v)
    v = sorted(set(v))
    if not v or v[0] < 0 or v[-1] >= n_joints:
        raise ValueError("joints=%s: joints are 0..%d" % (",".join(str(j) for j in v), n_joints - 1))
    return v


def integer(text, what):
    """int(text), or a ValueError that names what was expected (program, track and command arguments)."""
    try:
        return int(text)
    except ValueError:
        raise ValueError("%s must be an integer, not %r" % (what, text))


def _check(p):
    def need(ok, what):
        if not ok:
            raise ValueError(what)

    need(1 <= p["duration_ms"] <= MAX_DURATION_MS, "duration_ms must be 1..%d" % MAX_DURATION_MS)
    if "seed" in p:
        need(0 <= p["seed"] <= MASK30, "seed must be 0..%d" % MASK30)
    if "dwell_min_ms" in p:
        need(1 <= p["dwell_min_ms"] <= p["dwell_max_ms"] <= 30000, "need 1 <= dwell_min_ms <= dwell_max_ms <= 30000")
    if "f0_mhz" in p:
        need(p["f0_mhz"] >= 0 and p["f1_mhz"] >= 0, "frequencies must be >= 0")
    if "n" in p:
        need(1 <= p["n"] <= MAX_SINES, "n must be 1..%d" % MAX_SINES)
        need(1 <= p["f0_mhz"] <= p["f1_mhz"], "need 1 <= f0_mhz <= f1_mhz")
        need(p["tilt"] in (0, 1), "tilt must be 0 (equal amplitudes) or 1 (amplitude ~ 1/f)")
    if "levels" in p:
        need(1 <= p["levels"] <= 64, "levels must be 1..64")
    if "bit_ms" in p:
        need(1 <= p["bit_ms"] <= 60000, "bit_ms must be 1..60000")
    if "amp_us" in p:
        need(p["amp_us"] >= 0, "amp_us must be >= 0")


def ticks(ms, rate_hz):
    """Whole loop ticks in ms milliseconds (at least one)."""
    return max(1, ms * rate_hz // 1000)


def build(params, joints, rate_hz):
    """(n_ticks, [step object or None per joint]) for resolved params on the robot's joints.

    Joint-dependent defaults come from each joint's limits; everything stays inside them.
    """
    name = params["name"]
    n = ticks(params["duration_ms"], rate_hz)
    gens = [None] * len(joints)
    for j in params["joints"]:
        lo, hi = joints[j]["min_us"], joints[j]["max_us"]
        if name == "steps":
            a = max(lo, params["lo_us"] if params["lo_us"] is not None else lo)
            b = min(hi, params["hi_us"] if params["hi_us"] is not None else hi)
            if a > b:
                raise ValueError("lo_us..hi_us is outside joint %d's limits %d..%d" % (j, lo, hi))
            dwell_lo = ticks(params["dwell_min_ms"], rate_hz)
            dwell_hi = ticks(params["dwell_max_ms"], rate_hz)
            if b - a + 1 > MAX_DRAW or dwell_hi - dwell_lo + 1 > MAX_DRAW:
                raise ValueError("steps: range or dwell spread too large (max %d)" % MAX_DRAW)
            gens[j] = Steps(Rng(params["seed"] + 0x9E37 * j), a, b, dwell_lo, dwell_hi)
            continue
        center = params["center_us"] if params["center_us"] is not None else joints[j]["center_us"]
        if not lo <= center <= hi:
            raise ValueError("center_us=%d is outside joint %d's limits %d..%d" % (center, j, lo, hi))
        amp = min(params["amp_us"], center - lo, hi - center)
        if name == "prbs":
            gens[j] = Prbs(center, amp, ticks(params["bit_ms"], rate_hz), params["seed"] + 0x9E37 * j)
            continue
        top = max(params["f0_mhz"], params["f1_mhz"])
        if top * 4 > rate_hz * 1000:
            raise ValueError("%d mHz is above a quarter of the loop rate (%d Hz)" % (top, rate_hz))
        if name == "multisine":
            fs = multisine_mhz(params["f0_mhz"], params["f1_mhz"], params["n"], params["joints"].index(j),
                               len(params["joints"]))
            weights = [(1 << 18) // f if params["tilt"] else 1 for f in fs]
            gens[j] = Multisine(center, amp, [phase_step(f, rate_hz) for f in fs], weights,
                                Rng(params["seed"] + 0x9E37 * j))
            continue
        f0, f1 = phase_step(params["f0_mhz"], rate_hz), phase_step(params["f1_mhz"], rate_hz)
        gens[j] = Sine(center, amp, f0, f1, n, params["levels"] if name == "sweep" else 0)
    return n, gens


def pulses(params, joints, rate_hz, current=None):
    """Every tick's commanded pulses [(us_j0, us_j1, ...)] of a program (the host's replay of it).

    Joints the program does not drive keep `current` (default: their center_us).
    """
    n, gens = build(params, joints, rate_hz)
    now = list(current) if current else [j["center_us"] for j in joints]
    out = []
    for _ in range(n):
        for j, g in enumerate(gens):
            if g is not None:
                now[j] = g.step()
        out.append(tuple(now))
    return out

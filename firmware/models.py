"""The model store: the MLP this robot runs, kept on flash across reboots, replaced whole.

`model.bin` is the active blob, `model.prev` the one before it. A deploy (xfer slot `model`)
checks the blob (mlp.parse), then the I/O of a model that drives joints against this robot
(Binding; a model with no `<joint>_cmd_us` output runs under mtest only), builds the Model, and
only then touches flash: write model.tmp, rename model.bin -> model.prev, model.tmp ->
model.bin; the new model replaces the old one between two ticks. Killed anywhere, the next
boot finds model.bin (old, or new once the last rename happened) or, between the two renames,
only model.prev (old), which boot falls back to. A refused blob leaves all of it untouched.

A Binding is how a model attaches to this robot: each input a signal (features.parse) this
robot has, each output a joint's pulse, with the float edges of mlp.MLP.md folded into integer
fixed point so that the tick quantises in place without allocating. It also holds the model's
guard (MLP.md "The learned region"): each input's trained range in raw units, and the linear map
that drives the model's joints while an input is outside it.
"""

import errno
import gc
import json
import os

import features
import mlp
import preview
import telemetry

ACTIVE = "model.bin"
PREVIOUS = "model.prev"
TEMP = "model.tmp"

# signal kinds: where the tick reads a signal's raw integer (its telemetry field's raw value)
DEG, RAW, CMD, TARGET, IMU = 0, 1, 2, 3, 4
IMU_AT = {"ax": 0, "ay": 2, "az": 4, "gx": 8, "gy": 10, "gz": 12}  # in the MPU-6050's 14-byte burst
RAW_RANGE = {"h": (-32768, 32767), "H": (0, 65535)}
PULSE = "_cmd_us"  # a model with an output named <joint>_cmd_us drives joints (track mode)
SMALL = 1 << 29  # every fixed-point intermediate stays below this (ESP32 small ints: 2**30)
IN_SHIFT = 20
OUT_SHIFT = 16
INFO_MAX = 900  # bytes of info JSON in the `xfer end` ack (an ack carries 1021 with slot, size, crc)
GUARD_MARGIN = 0.1  # of an input's trained span, each side: beyond it the model has left what it learned
GUARD_MIN = 2  # raw units: the least margin (an input that hardly varied in training)
NO_GUARD = 1 << 20  # beyond every raw value: the guard of a blob without ranges never trips


def signals(cfg):
    """{name: (kind, index, type, scale)} of the telemetry fields a model may read.

    The loop's bookkeeping (busy_us, overruns, mode, flags, model) is not robot state: no input."""
    joints = [j["name"] for j in cfg["joints"]]
    out = {}
    for f in telemetry.schema(cfg):
        name = f["name"]
        if name in IMU_AT:
            out[name] = (IMU, IMU_AT[name], f["type"], f["scale"])
            continue
        joint, _, what = name.rpartition("_")
        if what == "deg" and joint.endswith("_target"):
            joint, what = joint[:-7], "target"
        elif what == "us" and joint.endswith("_cmd"):
            joint, what = joint[:-4], "cmd"
        kind = {"deg": DEG, "raw": RAW, "cmd": CMD, "target": TARGET}.get(what)
        if kind is not None and joint in joints:
            out[name] = (kind, joints.index(joint), f["type"], f["scale"])
    return out


def rename_over(src, dst):
    """Rename src to dst, replacing dst (LittleFS and POSIX replace; FAT needs the old one gone)."""
    try:
        os.rename(src, dst)
    except OSError as e:
        if e.args[0] != errno.EEXIST:
            raise
        os.remove(dst)
        os.rename(src, dst)


def _fixed(value, shift):
    """round(value * 2**shift) as a small int."""
    return int(value * (1 << shift) + (0.5 if value >= 0 else -0.5))


def linear_fixed(a, b):
    """pulse = a + b * deg in fixed point: (A, B, shift) with pulse = (A + B * cdeg) >> shift, rounded
    half up, every product below SMALL for |deg| <= 327.67 (track mode's `linear`, a guard's fallback)."""
    if not (-5000 < a < 5000 and -200 < b < 200):
        raise ValueError("lin: a_j within +-5000 us and b_j within +-200 us/deg")
    shift = 16
    while (abs(a) + 1 + abs(b) * 330) * (1 << shift) >= SMALL:
        shift -= 1
    return _fixed(a + 0.5, shift), _fixed(b / 100, shift), shift


class Binding:
    """A parsed blob's inputs and outputs on this robot, in integers; ValueError if they do not fit.

    Input i: the raw value v of its signal (self.source) `offset` ticks from now (telemetry units
    are raw x scale), then q = clamp(((clamp(v, lo, hi) - r0) * a + b) >> shift, -128, 127): the
    blob's edge `v * scale * gain + offset` (MLP.md) rounded half up, to within |v - r0| / 2**(shift + 1)
    steps (the rounding of a; ~0.005 for angles, at most 0.016). Clamping v to [lo, hi], where q
    is saturated anyway, keeps every product below 2**29. Output o: pulse = (y * g + h) >> out_shift
    for joint `joint`, rounded half up to within 0.002 us.

    The guard (meta `in_range`, `fallback_lin`; MLP.md "The learned region"): input i is outside
    while v < olo or v > ohi (its trained range widened by GUARD_MARGIN of its span) and back
    inside once ilo <= v <= ihi (the trained range itself): hysteresis. Without `in_range` the
    limits are +-NO_GUARD and never trip (guarded False). Output o's fallback pulse is
    (la + lb * target_cdeg) >> lshift: `fallback_lin`'s (a, b), else robot.json's center_us, us_per_deg.
    Meta `preview` (preview.py): the targets the model reads are shaped over `window` ticks at `slew`.
    """

    def __init__(self, spec, sigs, cfg):
        first, last = spec.layers[0], spec.layers[-1]
        self.signals = []  # distinct non-target signals read from the history: (kind, index)
        self.source = []  # per input: index into self.signals, or -1 - joint for a target
        self.offset = []  # per input: ticks from now
        self.lo, self.hi, self.r0, self.a, self.b, self.shift = [], [], [], [], [], []
        self.horizon = 0  # furthest target looked ahead
        self.olo, self.ohi, self.ilo, self.ihi = [], [], [], []
        ranges = spec.meta.get("in_range")
        self.guarded = ranges is not None
        if self.guarded and not (isinstance(ranges, list) and len(ranges) == len(spec.inputs)):
            raise ValueError("in_range: one [lo, hi] per input (%d)" % len(spec.inputs))
        for i, name in enumerate(spec.inputs):
            signal, k = features.parse(name)
            if signal not in sigs:
                raise ValueError("input %r: this robot has no signal %r (signals: %s)"
                                 % (name, signal, ", ".join(sorted(sigs))))
            kind, index, typ, scale = sigs[signal]
            if kind == TARGET:
                self.source.append(-1 - index)
                self.horizon = max(self.horizon, k)
            else:
                if (kind, index) not in self.signals:
                    self.signals.append((kind, index))
                self.source.append(self.signals.index((kind, index)))
            self.offset.append(k)
            gain = 1 / (spec.in_std[i] * first.in_scale)
            self._input(name, scale * gain, first.in_zp - spec.in_mean[i] * gain, RAW_RANGE[typ])
            self._guard(name, ranges[i] if self.guarded else None, scale)
        joints = [j["name"] for j in cfg["joints"]]
        self.joint, self.g, self.h, self.out_shift = [], [], [], []
        for o, name in enumerate(spec.outputs):
            joint = name[:-len(PULSE)] if name.endswith(PULSE) else None
            if joint not in joints:
                raise ValueError("output %r: a model that drives joints gives <joint>%s of %s, and only those"
                                 % (name, PULSE, ", ".join(joints)))
            if joints.index(joint) in self.joint:
                raise ValueError("output %r: two outputs drive %s" % (name, joint))
            self.joint.append(joints.index(joint))
            gain = last.out_scale * spec.out_std[o]
            offset = spec.out_mean[o] - last.out_zp * gain
            shift = OUT_SHIFT
            while not (128 * abs(gain) + abs(offset) + 1) * (1 << shift) < SMALL:
                if shift == 0:
                    raise ValueError("output %r: scaling %g us/step + %g us does not fit integers" % (name, gain, offset))
                shift -= 1
            self.g.append(_fixed(gain, shift))
            self.h.append(_fixed(offset + 0.5, shift))
            self.out_shift.append(shift)
        self._preview(spec.meta.get("preview"), len(joints))
        lin = spec.meta.get("fallback_lin")
        if lin is not None and not (isinstance(lin, list) and len(lin) == 2 * len(spec.outputs)):
            raise ValueError("fallback_lin: a, b (pulse = a + b * deg) per output (%d numbers)" % (2 * len(spec.outputs)))
        self.la, self.lb, self.lshift = [], [], []
        for o, j in enumerate(self.joint):
            a, b = (lin[2 * o], lin[2 * o + 1]) if lin else (cfg["joints"][j]["center_us"], cfg["joints"][j].get("us_per_deg", 10.0))
            a, b, shift = linear_fixed(float(a), float(b))
            self.la.append(a)
            self.lb.append(b)
            self.lshift.append(shift)

    def _preview(self, given, n_joints):
        """Meta `preview` (preview.py): [window ticks, slew per joint]; none: the model reads the raw targets."""
        self.window, self.slew = 0, [preview.FREE] * n_joints
        if given is None:
            return
        if not (isinstance(given, list) and len(given) == 1 + n_joints and all(isinstance(v, int) and v > 0 for v in given)):
            raise ValueError("preview: [window ticks, slew per joint in 0.01 deg a tick], %d whole numbers > 0" % (1 + n_joints))
        if self.horizon + given[0] > features.MAX_FUTURE:
            raise ValueError("preview: a %d-tick window past targets %d ticks ahead is more than %d"
                             % (given[0], self.horizon, features.MAX_FUTURE))
        self.window, self.slew = given[0], given[1:]

    def _guard(self, name, trained, scale):
        """Input `name`'s guard limits in raw units from its trained [lo, hi] in its own units (None: never)."""
        if trained is None:
            self.olo.append(-NO_GUARD)
            self.ohi.append(NO_GUARD)
            self.ilo.append(-NO_GUARD)
            self.ihi.append(NO_GUARD)
            return
        try:
            lo, hi = float(trained[0]) / scale, float(trained[1]) / scale
        except (TypeError, ValueError, IndexError):
            lo = hi = None
        if lo is None or not -NO_GUARD < lo <= hi < NO_GUARD:
            raise ValueError("input %r: in_range %r is not [lo, hi] within the signal's range" % (name, trained))
        margin = max(GUARD_MARGIN * (hi - lo), GUARD_MIN)
        self.ilo.append(int(lo) - (1 if lo < int(lo) else 0))  # floor
        self.ihi.append(int(hi) + (1 if hi > int(hi) else 0))  # ceil
        self.olo.append(max(int(lo - margin) - 1, -NO_GUARD))
        self.ohi.append(min(int(hi + margin) + 1, NO_GUARD))

    def _input(self, name, k, c, raw_range):
        """Fixed point for q = v * k + c (k > 0: steps per raw unit), v within raw_range."""
        if not 1e-9 < k < 1e6 or not -1e9 < c < 1e9:
            raise ValueError("input %r: normalisation of %g steps per unit does not fit integers" % (name, k))
        lo = min(max(raw_range[0], int((-129 - c) / k) - 1), raw_range[1])  # q < -128 below lo ...
        hi = max(min(raw_range[1], int((128 - c) / k) + 1), lo)  # ... and > 127 above hi: clamping v there is exact
        r0 = (lo + hi) // 2
        z = min(max(c + r0 * k, -200.0), 200.0)  # q at r0; capped where the window is one saturated point
        span = max(hi - r0, r0 - lo)
        shift = IN_SHIFT
        while (abs(z) + 1 + k * span) * (1 << shift) >= SMALL:
            if shift == 0:
                raise ValueError("input %r: normalisation of %g steps per unit does not fit integers" % (name, k))
            shift -= 1
        self.lo.append(lo)
        self.hi.append(hi)
        self.r0.append(r0)
        self.a.append(_fixed(k, shift))
        self.b.append(_fixed(z + 0.5, shift))
        self.shift.append(shift)


class Store:
    """The active model (or None), its binding and its ids; boot() loads it from flash."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.signals = signals(cfg)
        self.model = self.binding = None
        self.hex_id = ""  # hello / status `model`
        self.short_id = 0  # telemetry `model`: model_id % 255 + 1; 0 = none
        self.note = ""  # what boot found wrong, for a LOG

    def build(self, blob):
        """(Model, Binding) of a blob; mlp.BlobError, ValueError (I/O) or MemoryError if refused.

        The Binding is None for a model that drives no joints (sin(x), a learned servo): it runs
        under `mtest` only, whatever its names."""
        gc.collect()  # what lives on is allocated into the heap's low holes, not across its big free block
        spec = mlp.parse(blob)
        binding = Binding(spec, self.signals, self.cfg) if any(o.endswith(PULSE) for o in spec.outputs) else None
        spec = None  # its per-channel tuples go before the Model's buffers come
        gc.collect()
        return mlp.Model(blob), binding

    def boot(self):
        """Run model.bin, else model.prev, else nothing; self.note says what was skipped and why
        (empty on a board that never had a model)."""
        self.model = self.binding = None
        self.hex_id, self.short_id = "", 0
        notes = []
        missing = 0
        for name in (ACTIVE, PREVIOUS):
            try:
                with open(name, "rb") as f:
                    blob = f.read()
                self._use(*self.build(blob))
            except OSError as e:
                if e.args[0] == errno.ENOENT:
                    missing += 1
                    notes.append(name + " missing")
                else:
                    notes.append("%s unreadable (%s)" % (name, e))
                continue
            except (ValueError, MemoryError) as e:
                notes.append("%s refused (%s)" % (name, e))
                continue
            if notes:
                notes.append("running %s" % name)
            break
        self.note = "" if missing == 2 else "; ".join(notes)

    def install(self, blob):
        """Check, store (temp + renames) and swap in a blob; the ack data. Raises before
        anything changes: mlp.BlobError, ValueError (I/O), MemoryError; OSError while storing."""
        model, binding = self.build(blob)
        with open(TEMP, "wb") as f:
            f.write(blob)
        try:
            rename_over(ACTIVE, PREVIOUS)
        except OSError as e:
            if e.args[0] != errno.ENOENT:  # the first model has no predecessor
                raise
        rename_over(TEMP, ACTIVE)
        self._use(model, binding)
        gc.collect()
        return self.info()

    def _use(self, model, binding):
        self.model, self.binding = model, binding
        self.hex_id = "%08x" % model.model_id
        self.short_id = model.model_id % 255 + 1

    def info(self):
        m = self.model
        drives = [self.cfg["joints"][j]["name"] for j in self.binding.joint] if self.binding else []
        info = {"model_id": self.hex_id, "task": m.task, "inputs": m.inputs, "outputs": m.outputs, "emitter": m.emitter,
                "drives": drives}
        if len(json.dumps(info)) > INFO_MAX:  # long name lists: their counts (the host has the blob)
            info["inputs"], info["outputs"] = len(m.inputs), len(m.outputs)
        return info

"""The virtual Gen0's body: two SG90s on a hot-glued two-link limb, fed by one sagging 5 V supply.

The limb hangs from the shoulder servo in a vertical plane; the elbow servo is glued on the end of
the upper link. Angles are rad inside (deg at the edges), positive counter-clockwise seen from the
front, 0 = pulse centre (the limb hangs straight down there, up to the glue error).

Per servo, in the order a command travels (figures: REFERENCE.md, values: hardware/plant_gen0.json):
- The ESP32 latches a new duty at the next PWM period boundary (channels of one frequency share a
  timer, so the servos' boundaries coincide) and the servo knows a pulse only when it ends, so a command waits up to one 20 ms frame. Pulses outside the rate/width window are
  ignored; without valid pulses for limp_after_ms the motor is off (limp).
- The analog P-controller compares the pot with the pulse: motor voltage = gain x error outside a
  dead band, clamped at the supply. Its gain scales with the pulse rate (it drives after each pulse).
- A DC motor seen at the output: torque = stall x (V/V_rated - w/w_no_load), current likewise,
  so torque and slew sag with the supply.
- The pot rides on the gear train; the limb sits on the output with `backlash` of play. The servo
  and the ESP32 see the pot, the limb (and its IMU) may sit anywhere within the play.
- Gravity of the glued links (the distal link hangs on the upper one), Coulomb friction with
  stiction on both sides of the play, end stops on the gear train.
One supply resistance feeds both motors, so one servo's stall slows the other.

Dynamics couple the joints through gravity and supply only: the reflected motor inertia
(~1.2e-4 kg m^2) dominates each joint, so the links' inertial cross terms are left out.
Integration: semi-implicit Euler at a fixed step from t = 0, advanced lazily to the time asked.
A step depends only on the previous state and the inputs registered before it, so the same calls
at the same t_us give the same run whatever the calling pattern.
"""

import json
import math
import random
from pathlib import Path

from host.sim import faults as F

# What a plant file must hold: section -> {key: check}. Checks: "pos" > 0, "nonneg" >= 0,
# "num" any finite number, "periods" a list of numbers > 0, "curve" [[volts, raw], ...] rising in volts.
SCHEMA = {
    "sim": {"dt_us": "pos"},
    "supply": {"volts": "pos", "source_ohm": "nonneg", "esp32_a": "nonneg"},
    "servo": {k: "pos" for k in (
        "rated_v", "stall_torque_nm", "no_load_dps", "stall_current_a", "full_drive_error_deg",
        "ref_pulse_hz", "inertia_kgm2", "us_per_deg", "center_us", "end_stop_deg", "min_pulse_us",
        "max_pulse_us", "min_hz", "max_hz", "limp_after_ms")} | {k: "nonneg" for k in (
        "idle_current_a", "gear_friction_nm", "gear_stiction_nm", "output_friction_nm",
        "output_stiction_nm", "backlash_deg", "deadband_us")} | {"horn_glue_deg": "num"},
    "pot": {"v_at_0": "pos", "v_per_deg": "pos", "slope_variation": "nonneg", "wobble_periods_deg": "periods"},
    "wiring": {"ground_own_ohm": "nonneg", "ground_shared_ohm": "nonneg"},
    "adc": {"vref_mv": "pos", "curve_11db": "curve", "inl_lsb": "nonneg", "dnl_lsb": "nonneg",
            "noise_lsb": "nonneg", "noise_lsb_per_a": "nonneg"},
    "esp32": {"adc_read_us": "pos", "i2c_call_us": "nonneg", "pwm_update_us": "nonneg", "gpio_call_us": "nonneg",
              "ticks_call_us": "nonneg"},
    "limb": {k: "pos" for k in (
        "upper_arm_m", "upper_arm_kg", "elbow_servo_kg", "forearm_m", "forearm_kg", "imu_kg",
        "imu_radius_m", "gravity_mps2")} | {"settle_deg": "nonneg"},
    "imu": {k: "nonneg" for k in ("gyro_noise_dps_rthz", "accel_noise_ug_rthz")} | {k: "num" for k in (
        "gyro_offset_dps", "accel_offset_xy_mg", "accel_offset_z_mg", "scale_error", "cross_axis",
        "mount_yaw_deg", "mount_roll_deg", "temp_c")},
}


def _is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_params(params, where="plant file"):
    """Raise ValueError (one line: where, which key, what is wrong) unless params fits SCHEMA."""
    if not isinstance(params, dict):
        raise ValueError(f"{where}: must hold one JSON object")
    for section, keys in SCHEMA.items():
        if not isinstance(params.get(section), dict):
            raise ValueError(f"{where}: section '{section}' missing")
        for key, check in keys.items():
            name = f"{section}.{key}"
            entry = params[section].get(key)
            if not isinstance(entry, dict) or "value" not in entry:
                raise ValueError(f"{where}: {name} missing (need {{\"value\": ...}})")
            value = entry["value"]
            if check == "periods":
                if not (isinstance(value, list) and value and all(_is_num(x) and x > 0 for x in value)):
                    raise ValueError(f"{where}: {name} must be a non-empty list of numbers > 0, got {value!r}")
                continue
            if check == "curve":
                pairs = isinstance(value, list) and len(value) >= 2 and all(
                    isinstance(p, list) and len(p) == 2 and all(_is_num(x) for x in p) for p in value)
                if not (pairs and all(a[0] < b[0] for a, b in zip(value, value[1:]))):
                    raise ValueError(f"{where}: {name} must be >= 2 [volts, raw] pairs rising in volts, got {value!r}")
                continue
            bounds = [value] + list(entry.get("per_unit", []))
            if "per_unit" in entry and not (isinstance(entry["per_unit"], list) and len(entry["per_unit"]) == 2):
                raise ValueError(f"{where}: {name}.per_unit must be [lo, hi], got {entry['per_unit']!r}")
            for x in bounds:
                if not _is_num(x) or (check == "pos" and x <= 0) or (check == "nonneg" and x < 0):
                    need = {"pos": "a number > 0", "nonneg": "a number >= 0", "num": "a number"}[check]
                    raise ValueError(f"{where}: {name} must be {need}, got {x!r}")
            if "per_unit" in entry and entry["per_unit"][0] > entry["per_unit"][1]:
                raise ValueError(f"{where}: {name}.per_unit has lo > hi: {entry['per_unit']!r}")
    servo = params["servo"]
    for lo, hi in (("min_pulse_us", "max_pulse_us"), ("min_hz", "max_hz"), ("gear_friction_nm", "gear_stiction_nm"),
                   ("output_friction_nm", "output_stiction_nm")):
        if servo[lo]["value"] > servo[hi]["value"]:
            raise ValueError(f"{where}: servo.{lo} must not exceed servo.{hi}")
    return params


def load_params(path, _seen=()):
    """The checked plant parameters of a JSON file (ValueError, one line, for anything wrong).

    A variant file names the plant it differs from, `"base": "plant_gen0.json"` (relative to the
    variant's own folder), and holds only what differs: each entry it gives replaces the base's
    entry whole (value, per_unit, doc), so a variant never inherits a per-unit range by accident."""
    try:
        with open(path) as f:
            params = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"plant file {path} not found; pass an existing --plant FILE") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"plant file {path} is not valid JSON ({e})") from None
    except OSError as e:
        raise ValueError(f"plant file {path} cannot be read ({e.strerror}); pass a readable --plant FILE") from None
    if isinstance(params, dict) and "base" in params:
        base = params["base"]
        if not isinstance(base, str) or not base:
            raise ValueError(f"plant file {path}: base must name a plant file, got {base!r}")
        base_path = (Path(path).parent / base).resolve()
        if base_path in _seen:
            raise ValueError(f"plant file {path}: base {base} leads back to itself")
        merged = load_params(base_path, _seen + (Path(path).resolve(),))
        for section, entries in params.items():
            if section in ("base", "name", "doc"):
                merged[section if section != "base" else "based_on"] = entries if section != "base" else str(base_path)
                continue
            if not isinstance(entries, dict):
                raise ValueError(f"plant file {path}: section '{section}' must be an object of entries")
            merged.setdefault(section, {}).update(entries)
        params = merged
    return check_params(params, f"plant file {path}")


class Unit:
    """One physical unit: unit("servo.backlash_deg", joint) is that part's value for this seed.

    Each (parameter, index) has its own RNG stream, so adding a parameter to the file does not
    change the values already drawn. Seed 0 is a draw like any other (not the nominal unit).
    """

    def __init__(self, params, seed):
        self.params = params
        self.seed = seed

    def __call__(self, name, index=0):
        section, key = name.split(".")
        entry = self.params[section][key]
        if "per_unit" not in entry:
            return entry["value"]
        lo, hi = entry["per_unit"]
        return self.rng(f"{name}/{index}").uniform(lo, hi)

    def rng(self, name):
        return random.Random(f"gen0/{self.seed}/{name}")


def coulomb(w, tau, inertia, kinetic, static, dt):
    """Velocity after dt of a body under torque tau with Coulomb friction; at rest it sticks while |tau| <= static."""
    if w == 0.0:
        if -static <= tau <= static:
            return 0.0
        return (tau - kinetic if tau > 0 else tau + kinetic) / inertia * dt
    w2 = w + (tau - kinetic if w > 0 else tau + kinetic) / inertia * dt
    return w2 if (w2 > 0) == (w > 0) else 0.0


class Servo:
    """One SG90, its pot and the link glued to its horn.

    Its state is in its own frame (the pulse's direction); `sign` maps it to the limb's (-1: mounted
    the other way round, fault reversed-servo).
    """

    def __init__(self, unit, j, faults=()):
        def u(name):
            return unit("servo." + name, j)

        self.rated_v = u("rated_v")
        self.stall_torque = u("stall_torque_nm")
        self.inv_w0 = 1 / math.radians(u("no_load_dps"))
        self.stall_current = u("stall_current_a")
        self.idle_current = u("idle_current_a")
        self.kp_per_hz = self.rated_v / math.radians(u("full_drive_error_deg")) / u("ref_pulse_hz")
        self.inertia = u("inertia_kgm2")
        self.gear_kinetic, self.gear_static = u("gear_friction_nm"), u("gear_stiction_nm")
        self.out_kinetic, self.out_static = u("output_friction_nm"), u("output_stiction_nm")
        self.half_play = math.radians(u("backlash_deg")) / 2
        self.center_us, self.us_per_deg = u("center_us"), u("us_per_deg")
        self.deadband = math.radians(u("deadband_us") / 2 / self.us_per_deg)
        self.stop = math.radians(u("end_stop_deg"))
        self.glue = math.radians(u("horn_glue_deg"))
        self.pulse_range = (u("min_pulse_us"), u("max_pulse_us"))
        self.hz_range = (u("min_hz"), u("max_hz"))
        self.limp_us = u("limp_after_ms") * 1000
        self.sign = -1.0 if j in F.joints_with(faults, "reversed-servo") else 1.0
        if j in F.joints_with(faults, "stuck-joint"):
            self.gear_kinetic = self.gear_static = F.SEIZED_NM
        self.pot_ref_v = F.POT_REF_V if j in F.joints_with(faults, "pot-clipped") else None

        self.pot_v0 = unit("pot.v_at_0", j)
        self.pot_slope = math.degrees(unit("pot.v_per_deg", j))  # V/rad
        rng = unit.rng(f"pot.wobble/{j}")
        periods = unit.params["pot"]["wobble_periods_deg"]["value"]
        weights = [rng.random() for _ in periods]
        amplitude = unit("pot.slope_variation", j) / sum(weights)
        # local slope factor 1 + sum(a sin(k x + p)), k in 1/rad
        self.wobble = [(amplitude * w, 2 * math.pi / math.radians(period), rng.uniform(0, 2 * math.pi))
                       for w, period in zip(weights, periods)]

        # mechanical state: gear train (carries the pot) and limb, rad and rad/s
        self.gear = self.limb = 0.0
        self.w_gear = self.w_limb = self.a_limb = 0.0
        self.contact = 0  # +1: gear pushes the limb +, -1: pushes it -, 0: limb free in the play
        # electronics
        self.target = 0.0
        self.pulse_us = None  # width of the last valid pulse
        self.kp = 0.0
        self.last_pulse_at = -math.inf
        self.drive = 0.0  # motor voltage / supply voltage
        self.current = 0.0  # drawn from the supply, A
        # the ESP32's PWM channel on this servo's pin
        self.period_us = None
        self.duty_us = 0.0  # the duty register
        self.latched_us = 0.0  # the duty latched for the pulse under way
        self.next_edge = math.inf  # next period boundary
        self.pulse_end = math.inf  # end of the pulse under way
        self.next_event = math.inf

    def nonlinearity(self, x):
        """Pot reading minus true angle (rad) at angle x, and its slope (the integral of the wobble from 0)."""
        n = dn = 0.0
        for a, k, p in self.wobble:
            n += a / k * (math.cos(p) - math.cos(k * x + p))
            dn += a * math.sin(k * x + p)
        return n, dn

    def pot_v(self):
        """Wiper voltage (V) at the gear train's angle."""
        return self.pot_v0 + self.pot_slope * (self.gear + self.nonlinearity(self.gear)[0])

    def set_pwm(self, t_us, freq_hz, duty_ns, edge=None):
        """The ESP32 changed this pin's PWM at t_us (the plant already stands at t_us). edge: the next period
        boundary of the LEDC timer already running at this frequency, None when there is none."""
        if duty_ns is None or freq_hz <= 0:
            self.period_us = None
            self.next_edge = self.pulse_end = math.inf  # a pulse cut short is no pulse
        else:
            period = 1e6 / freq_hz
            if period != self.period_us:  # a new timer starts now; a running one keeps its boundaries
                self.period_us = period
                self.next_edge = t_us if edge is None else edge
                self.pulse_end = math.inf
            self.duty_us = duty_ns / 1000
        self.next_event = min(self.next_edge, self.pulse_end)

    def _pwm_events(self, t_us):
        """Handle the period boundaries and pulse ends up to t_us, in time order."""
        while self.next_event <= t_us:
            if self.pulse_end <= self.next_edge:
                self._pulse(self.pulse_end, self.latched_us)
                self.pulse_end = math.inf
            else:
                self.latched_us = self.duty_us
                if 0 < self.latched_us < self.period_us:
                    self.pulse_end = self.next_edge + self.latched_us
                self.next_edge += self.period_us
            self.next_event = min(self.next_edge, self.pulse_end)

    def _pulse(self, at_us, width_us):
        hz = 1e6 / self.period_us
        if not (self.hz_range[0] <= hz <= self.hz_range[1] and self.pulse_range[0] <= width_us <= self.pulse_range[1]):
            return
        self.last_pulse_at = at_us
        self.kp = self.kp_per_hz * hz
        if width_us != self.pulse_us:
            self.pulse_us = width_us
            self.target = self.angle_for_pot(math.radians((width_us - self.center_us) / self.us_per_deg))

    def angle_for_pot(self, reading):
        """The angle where the pot reads `reading` (rad): the controller's target."""
        x = reading
        for _ in range(4):
            n, dn = self.nonlinearity(x)
            x -= (x + n - reading) / (1 + dn)
        return x

    def step(self, t_us, dt, supply_v, tau_gravity, limb_inertia):
        """Advance dt seconds to t_us; returns the supply current."""
        if self.next_event <= t_us:
            self._pwm_events(t_us)
        tau_motor = 0.0
        self.drive = self.current = 0.0
        if t_us - self.last_pulse_at < self.limp_us:
            error = self.target - self.gear
            if error > self.deadband or error < -self.deadband:
                v = self.kp * error
                v = supply_v if v > supply_v else -supply_v if v < -supply_v else v
                u = v / self.rated_v - self.w_gear * self.inv_w0
                tau_motor = self.stall_torque * u
                self.drive = v / supply_v
                i = self.stall_current * u * self.drive  # H-bridge: supply sees motor current x duty
                self.current = i if i > 0 else 0.0
        w_limb = self.w_limb
        if self.contact:
            self._move_together(dt, tau_motor, tau_gravity, limb_inertia)
        if not self.contact:
            self._move_apart(dt, tau_motor, tau_gravity, limb_inertia)
        if self.gear > self.stop or self.gear < -self.stop:
            self.gear = self.stop if self.gear > 0 else -self.stop
            self.w_gear = 0.0
            if self.contact:
                self.limb = self.gear - self.contact * self.half_play
                self.w_limb = 0.0
        self.a_limb = (self.w_limb - w_limb) / dt
        return self.current + self.idle_current

    def _move_together(self, dt, tau_motor, tau_gravity, limb_inertia):
        """Gear and limb in contact move as one body, unless the gear would have to pull the limb."""
        side = self.contact
        w = self.w_gear
        w2 = coulomb(w, tau_motor + tau_gravity, self.inertia + limb_inertia, self.gear_kinetic + self.out_kinetic,
                     self.gear_static + self.out_static, dt)
        if w2 == 0.0 and w == 0.0:
            leaves = tau_gravity * side > self.out_static
        else:
            on_limb = tau_gravity - (self.out_kinetic if (w2 or w) > 0 else -self.out_kinetic)
            leaves = (limb_inertia * (w2 - w) / dt - on_limb) * side < 0
        if leaves:
            self.contact = 0
            return
        self.w_gear = self.w_limb = w2
        self.gear += w2 * dt
        self.limb = self.gear - side * self.half_play

    def _move_apart(self, dt, tau_motor, tau_gravity, limb_inertia):
        """Gear and limb move on their own until one reaches the other side of the play."""
        self.w_gear = coulomb(self.w_gear, tau_motor, self.inertia, self.gear_kinetic, self.gear_static, dt)
        self.w_limb = coulomb(self.w_limb, tau_gravity, limb_inertia, self.out_kinetic, self.out_static, dt)
        self.gear += self.w_gear * dt
        self.limb += self.w_limb * dt
        play = self.limb - self.gear
        if -self.half_play <= play <= self.half_play:
            return
        self.contact = -1 if play > 0 else 1
        self.limb = self.gear - self.contact * self.half_play
        total = self.inertia + limb_inertia  # inelastic: the clunk
        self.w_gear = self.w_limb = (self.inertia * self.w_gear + limb_inertia * self.w_limb) / total


class Plant:
    """Both servos, the limb's gravity and inertia, and the supply they share."""

    def __init__(self, params, seed=0, mount_link=1, faults=()):
        """faults: host.sim.faults.Fault tuple (the plant's: reversed-servo, stuck-joint, pot-clipped, weak-supply)."""
        unit = Unit(params, seed)
        self.dt_us = int(unit("sim.dt_us"))
        self.dt = self.dt_us / 1e6
        self.servos = [Servo(unit, 0, faults), Servo(unit, 1, faults)]
        self.supply_open_v = unit("supply.volts")
        self.source_ohm = unit("supply.source_ohm")
        weak = F.has(faults, "weak-supply")
        if weak:
            self.source_ohm = F.WEAK_SOURCE_OHM
        # the healthy model leaves brown-outs out (SIM.md); a weak supply brings them in
        self.brownout_v = F.BROWNOUT_SUPPLY_V if weak else -math.inf
        self.brownout_at = None  # plant time of the brown-out the ESP32 has not restarted from yet
        self.rearm_at = math.inf  # plant time the restarted ESP32 arms its detector again
        self.detector_k = 1 - math.exp(-self.dt / F.DETECTOR_S)
        self.esp32_a = unit("supply.esp32_a")
        self.ground_own = unit("wiring.ground_own_ohm")
        self.ground_shared = unit("wiring.ground_shared_ohm")

        def limb(name):
            return unit("limb." + name)

        g = self.gravity = limb("gravity_mps2")
        l1, m1, m_elbow = limb("upper_arm_m"), limb("upper_arm_kg"), limb("elbow_servo_kg")
        l2, m2, m_imu = limb("forearm_m"), limb("forearm_kg"), limb("imu_kg")
        self.l1 = l1
        self.mount_link = mount_link  # 0: IMU on the upper link, 1: on the distal link
        self.imu_radius = limb("imu_radius_m")
        r_imu = self.imu_radius
        m_distal = m2 + (m_imu if mount_link == 1 else 0)
        moment_distal = m2 * l2 / 2 + (m_imu * r_imu if mount_link == 1 else 0)  # about the elbow
        inertia_distal = m2 * l2 * l2 / 3 + (m_imu * r_imu * r_imu if mount_link == 1 else 0)
        moment_upper = m1 * l1 / 2 + m_elbow * l1 + (m_imu * r_imu if mount_link == 0 else 0)
        inertia_upper = m1 * l1 * l1 / 3 + m_elbow * l1 * l1 + (m_imu * r_imu * r_imu if mount_link == 0 else 0)
        self.gravity_upper = g * (moment_upper + m_distal * l1)  # N m at horizontal, the whole limb
        self.gravity_distal = g * moment_distal
        self.inertia_distal = inertia_distal
        # shoulder sees inertia_shoulder + inertia_shoulder_cos * cos(elbow)
        self.inertia_shoulder = inertia_upper + inertia_distal + m_distal * l1 * l1
        self.inertia_shoulder_cos = 2 * l1 * moment_distal

        settle = math.radians(limb("settle_deg"))
        rng = unit.rng("power_on")
        for s in self.servos:  # hanging, left where friction stopped it; limb anywhere in the play
            s.limb = (-s.glue + rng.uniform(-settle, settle)) * s.sign
            s.gear = s.limb + rng.uniform(-s.half_play, s.half_play)
        self.t_us = 0
        self.supply_v = self.supply_open_v - self.source_ohm * (self.esp32_a + sum(s.idle_current for s in self.servos))
        self.detected_v = self.supply_v  # the rail as the brownout detector sees it (smoothed)
        self.observer = None  # called as observer(t_us, along, across, rate) after each step: the IMU
        self.pushes = []  # external torques: (joint, N m, from_us, until_us), push()

    def advance(self, t_us):
        """Step until the next step would pass t_us."""
        dt_us, dt = self.dt_us, self.dt
        shoulder, elbow = self.servos
        while self.t_us + dt_us <= t_us:
            t = self.t_us + dt_us
            phi1 = shoulder.sign * shoulder.limb + shoulder.glue
            rel = elbow.sign * elbow.limb + elbow.glue
            tau_distal = -self.gravity_distal * math.sin(phi1 + rel)
            tau_shoulder = tau_distal - self.gravity_upper * math.sin(phi1)
            if self.pushes:
                tau_shoulder += self._pushed(0, t)
                tau_distal += self._pushed(1, t)
            current = self.esp32_a
            supply_v = self.supply_v
            current += shoulder.step(t, dt, supply_v, shoulder.sign * tau_shoulder,
                                     self.inertia_shoulder + self.inertia_shoulder_cos * math.cos(rel))
            current += elbow.step(t, dt, supply_v, elbow.sign * tau_distal, self.inertia_distal)
            self.supply_v = self.supply_open_v - self.source_ohm * current
            self.t_us = t
            if self.brownout_v > 0.0:
                self.detected_v += (self.supply_v - self.detected_v) * self.detector_k
                if self.detected_v < self.brownout_v:
                    self._brownout(t)
            elif t >= self.rearm_at:
                self.brownout_v, self.detected_v, self.rearm_at = F.BROWNOUT_SUPPLY_V, self.supply_v, math.inf
            if self.observer is not None:
                self.observer(t, *self.mount_motion())

    def push(self, joint, torque_nm, from_us, until_us):
        """A hand on the limb: torque_nm (the joint's positive direction) on joint's link from_us until until_us."""
        self.pushes.append((joint, float(torque_nm), from_us, until_us))

    def _pushed(self, joint, t_us):
        """The external torque on joint at t_us; pushes that ended are dropped."""
        tau = 0.0
        for j, torque, start, end in self.pushes:
            if j == joint and start <= t_us < end:
                tau += torque
        if joint == 1 and any(end <= t_us for *_, end in self.pushes):
            self.pushes = [p for p in self.pushes if p[3] > t_us]
        return tau

    def _brownout(self, t_us):
        """The ESP32's rail fell below its brownout threshold: it resets, its PWM stops (board.py restarts it)."""
        self.brownout_at = t_us
        self.brownout_v = -math.inf  # re-armed when the ESP32 runs again
        for s in self.servos:
            s.set_pwm(t_us, 0, None)

    def restarted(self):
        """The ESP32 restarts after a brown-out: its app arms the detector again once it has booted."""
        self.brownout_at = None
        self.rearm_at = self.t_us + F.REARM_S * 1e6

    def mount_motion(self):
        """Specific force (m/s^2) along the IMU's link and across it, and the link's rate (rad/s)."""
        s1, s2 = self.servos
        phi1 = s1.sign * s1.limb + s1.glue
        if self.mount_link == 0:
            lever, rel, w1, a1, w, a = 0.0, 0.0, 0.0, 0.0, s1.sign * s1.w_limb, s1.sign * s1.a_limb
        else:
            lever, rel, w1, a1 = self.l1, s2.sign * s2.limb + s2.glue, s1.sign * s1.w_limb, s1.sign * s1.a_limb
            w, a = w1 + s2.sign * s2.w_limb, a1 + s2.sign * s2.a_limb
        phi = phi1 + rel
        r, g = self.imu_radius, self.gravity
        sr, cr = math.sin(rel), math.cos(rel)
        along = lever * (a1 * sr - w1 * w1 * cr) - r * w * w - g * math.cos(phi)
        across = lever * (a1 * cr + w1 * w1 * sr) + r * a + g * math.sin(phi)
        return along, across, w

    def mount_pose(self):
        """Where the IMU is: (x, y) m from the shoulder axis (y up), its link's angle from hanging (rad)."""
        s1, s2 = self.servos
        phi1 = s1.sign * s1.limb + s1.glue
        if self.mount_link == 0:
            return self.imu_radius * math.sin(phi1), -self.imu_radius * math.cos(phi1), phi1
        phi = phi1 + s2.sign * s2.limb + s2.glue
        x = self.l1 * math.sin(phi1) + self.imu_radius * math.sin(phi)
        y = -self.l1 * math.cos(phi1) - self.imu_radius * math.cos(phi)
        return x, y, phi

    def set_pwm(self, t_us, joint, freq_hz, duty_ns):
        """Channels of one frequency share a LEDC timer (ports/esp32/machine_pwm.c reuses the timer already
        at that frequency), so their pulses start together however far apart their duties were written."""
        self.advance(t_us)
        servo = self.servos[joint]
        edge = None
        if duty_ns is not None and freq_hz > 0:
            edge = next((s.next_edge for s in self.servos if s is not servo and s.period_us == 1e6 / freq_hz), None)
        servo.set_pwm(t_us, freq_hz, duty_ns, edge)

    def adc_pin_v(self, joint):
        """Wiper voltage as the ESP32 sees it: lifted by motor current in the ground leads.
        A pot fed from the supply (pot-clipped) scales with it."""
        s = self.servos[joint]
        v = s.pot_v() if s.pot_ref_v is None else s.pot_v() * self.supply_v / s.pot_ref_v
        return v + self.ground_own * s.current + self.ground_shared * self.motor_current()

    def motor_current(self):
        return self.servos[0].current + self.servos[1].current

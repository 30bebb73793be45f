"""Everything the ESP32's pins see on a Gen0: the interface between the VM's `machine` shim and the plant.

The pin map comes from the robot description (hardware/gen0.json: joints[i].pwm_pin/adc_pin, imu),
the physics from a plant file (hardware/plant_gen0.json). Times are µs since power-on; a call that
goes back in time is taken as happening now. One thread drives the board; truth() may be called
from another (a lock serialises them).

The ESP32 ADC (REFERENCE.md): at 11 dB the raw count follows the measured curve of a 1100 mV-Vref
chip (piecewise linear through 0.5..3.0 V -> 464..3775, compressed above ~2.5 V, 0 below ~0.13 V,
4095 from ~3.19 V), scaled by this chip's Vref; other attenuations follow ESP-IDF's linear
characteristic. On top: a smooth INL, a fixed per-code DNL, and noise that grows with motor current.
read_uv() is ESP-IDF's calibration as MicroPython calls it: eFuse Vref (7 mV steps), linear
0.806 mV/LSB + 142 mV at 11 dB, whole millivolts, and above raw 2880 ESP-IDF's lookup table.

Wiring faults (host/sim/faults.py) change which servo a PWM pin drives, which wiper an ADC pin
reads, whether a pin floats and where the IMU answers; a brown-out (plant.py) takes the ESP32 down
until power_on().
"""

import json
import math
import threading
from pathlib import Path

from host.firmware_files import HARDWARE_DIR
from host.sim import faults as F
from host.sim.mpu6050 import MPU6050
from host.sim.plant import Plant, Unit, check_params, load_params

ADC1_PINS = range(32, 40)
ATTEN_11DB = 3
# ESP-IDF esp_adc_cal (ESP32, ADC1, eFuse Vref): mV = vref * scale / 65536 / 4096 * raw + offset
IDF_SCALE = (57431, 76236, 105481, 196602)
IDF_OFFSET_MV = (75, 78, 107, 142)
IDF_LUT_FROM, IDF_LUT_STEP = 2880, 64
IDF_LUT_VREF_1000 = (2240, 2297, 2352, 2405, 2457, 2512, 2564, 2616, 2664, 2709,
                     2754, 2795, 2832, 2868, 2903, 2937, 2969, 3000, 3030, 3060)
IDF_LUT_VREF_1200 = (2667, 2706, 2745, 2780, 2813, 2844, 2873, 2901, 2928, 2956,
                     2982, 3006, 3032, 3059, 3084, 3110, 3135, 3160, 3184, 3209)
ESPRESSIF_OUI = bytes((0x24, 0x0A, 0xC4))  # ESP32 base MACs (machine.unique_id) start with an Espressif OUI


def adc_counts(volts, atten, vref_mv, curve_11db):
    """Noise-free raw count (float, 0..4095) at a pin voltage; curve_11db: [V, raw] of a 1100 mV-Vref chip."""
    if atten == ATTEN_11DB:
        v = volts * 1100 / vref_mv
        i = 0
        while i < len(curve_11db) - 2 and v >= curve_11db[i + 1][0]:
            i += 1
        (v0, r0), (v1, r1) = curve_11db[i], curve_11db[i + 1]
        raw = r0 + (v - v0) * (r1 - r0) / (v1 - v0)
    else:
        raw = (volts * 1000 - IDF_OFFSET_MV[atten]) * 4096 * 65536 / (vref_mv * IDF_SCALE[atten])
    return min(max(raw, 0.0), 4095.0)


def idf_millivolts(raw, atten, efuse_vref_mv):
    """ESP-IDF's calibrated mV for a raw count (what ADC.read_uv() // 1000 returns)."""
    coeff_a = efuse_vref_mv * IDF_SCALE[atten] // 4096
    linear = (coeff_a * raw + 32768) // 65536 + IDF_OFFSET_MV[atten]
    if atten != ATTEN_11DB or raw < IDF_LUT_FROM:
        return linear
    i = min((raw - IDF_LUT_FROM) // IDF_LUT_STEP, len(IDF_LUT_VREF_1000) - 2)
    x2, x1 = 1200 - efuse_vref_mv, efuse_vref_mv - 1000
    y2 = (i + 1) * IDF_LUT_STEP + IDF_LUT_FROM - raw
    y1 = raw - (i * IDF_LUT_STEP + IDF_LUT_FROM)
    lo, hi = IDF_LUT_VREF_1000, IDF_LUT_VREF_1200
    lut = (lo[i] * x2 * y2 + hi[i] * x1 * y2 + lo[i + 1] * x2 * y1 + hi[i + 1] * x1 * y1 + 200 * 64 // 2) // (200 * 64)
    if raw > IDF_LUT_FROM + IDF_LUT_STEP:
        return lut
    x = raw - IDF_LUT_FROM
    return (linear * IDF_LUT_STEP + lut * x - linear * x + IDF_LUT_STEP // 2) // IDF_LUT_STEP


class Esp32Adc:
    """This chip's ADC1: its Vref, INL, DNL and noise."""

    def __init__(self, unit, noise):
        self.vref_mv = unit("adc.vref_mv")
        steps = max(-15, min(15, round((self.vref_mv - 1100) / 7)))  # eFuse: 5 bits of 7 mV around 1100
        self.efuse_vref_mv = 1100 + 7 * steps
        self.curve = unit.params["adc"]["curve_11db"]["value"]
        rng = unit.rng("adc.nonlinearity")
        self.inl = (unit("adc.inl_lsb"), rng.uniform(1.5, 3.0) * math.pi / 4096, rng.uniform(0, 2 * math.pi))
        dnl = unit("adc.dnl_lsb")
        self.dnl = [round(rng.uniform(-dnl, dnl)) for _ in range(4096)]
        self.noise_lsb = unit("adc.noise_lsb")
        self.noise_lsb_per_a = unit("adc.noise_lsb_per_a")
        self.noise = noise

    def read(self, volts, atten, motor_a):
        """One conversion of a pin at `volts` while the motors draw motor_a amperes."""
        x = adc_counts(volts, atten, self.vref_mv, self.curve)
        if 0 < x < 4095:
            amplitude, k, phase = self.inl
            x += amplitude * math.sin(k * x + phase)
        x += self.noise.gauss(0, self.noise_lsb + self.noise_lsb_per_a * motor_a)
        code = min(max(round(x), 0), 4095)
        return min(max(code + self.dnl[code], 0), 4095) if 0 < code < 4095 else code


class FloatingInput:
    """An ADC1 pin with nothing on it (no pull-ups on 34-39), as an ESP32 reads it.

    What it reads is the charge left on the SAR's sample capacitor and the pin's few pF: each
    conversion pulls it part of the way to the voltage converted before (the neighbour pin the
    firmware read first), leakage pulls it towards a level that wanders slowly, and the dangling
    wire picks up mains hum and noise. Figures: host/sim/faults.py.
    """

    def __init__(self, rng):
        self.rng = rng
        self.leak_v = rng.uniform(*F.FLOAT_LEAK_V)
        self.v = self.leak_v
        self.hum_phase = rng.uniform(0, 2 * math.pi)
        self.t_us = 0

    def volts(self, t_us, last_converted_v):
        dt = max(t_us - self.t_us, 0) / 1e6
        self.t_us = t_us
        lo, hi = F.FLOAT_LEAK_V
        self.leak_v = min(max(self.leak_v + self.rng.gauss(0, F.FLOAT_WALK_V_RTS * math.sqrt(dt)), lo), hi)
        self.v += (self.leak_v - self.v) * (1 - math.exp(-dt / F.FLOAT_LEAK_S))
        self.v += F.FLOAT_SHARE * (last_converted_v - self.v)
        hum = F.FLOAT_HUM_V * math.sin(2 * math.pi * F.FLOAT_HUM_HZ * t_us / 1e6 + self.hum_phase)
        return max(0.0, self.v + hum + self.rng.gauss(0, F.FLOAT_NOISE_V))


def _robot_pins(robot):
    """(pwm pins, adc pins, imu address or None, index of the link carrying the IMU) from a robot description."""
    try:
        joints = robot["joints"]
        if len(joints) != 2:
            raise ValueError(f"the virtual Gen0's limb has 2 joints, the robot description lists {len(joints)}")
        pwm = [j["pwm_pin"] for j in joints]
        adc = [j["adc_pin"] for j in joints]
        imu = robot.get("imu")
        if not imu:
            return pwm, adc, None, 1
        names = [j.get("name") for j in joints]
        mounted_on = imu.get("mounted_on", names[1])
        if mounted_on not in names:
            raise ValueError(f"imu.mounted_on {mounted_on!r} is none of the joints {names}")
        return pwm, adc, imu["addr"], names.index(mounted_on)
    except (KeyError, TypeError) as e:
        raise ValueError(f"robot description: missing or bad {e} in joints/imu") from None


class VirtualBoard:
    """Everything the ESP32's pins see, driven by the plant; `faults` (host/sim/faults.py) wire it wrong."""

    def __init__(self, robot: dict, plant: dict, seed: int = 0, faults=()):
        check_params(plant, "plant parameters")
        self.pwm_pins, self.adc_pins, self.imu_addr, mount_link = _robot_pins(robot)
        for pin in self.adc_pins:
            if pin not in ADC1_PINS:
                raise ValueError(f"robot description: adc_pin {pin} is not an ADC1 pin (32..39)")
        self.faults = F.parse(faults, [j.get("name") for j in robot["joints"]])
        unit = Unit(plant, seed)
        self.plant = Plant(plant, seed, mount_link, self.faults)
        self._wire(unit)
        self.adc = Esp32Adc(unit, unit.rng("adc.noise"))
        self.imu = MPU6050(unit, self.plant.dt)
        self.costs = {"adc": unit("esp32.adc_read_us"), "i2c": unit("esp32.i2c_call_us"),
                      "pwm": unit("esp32.pwm_update_us"), "gpio": unit("esp32.gpio_call_us"),
                      "clock": unit("esp32.ticks_call_us")}
        self.unique_id = ESPRESSIF_OUI + unit.rng("unique_id").randbytes(3)
        self.now = 0
        self.levels = {}  # pin -> GPIO level written
        self.pwm_out = {}  # pin -> (freq_hz, duty_ns) of every running PWM
        self.epoch = 0  # board time at the ESP32's last restart after a brown-out (its clock starts at 0 again)
        self.in_reset = False  # browned out: the ESP32 is down until power_on()
        self.brownouts = 0
        self.truth_log = None  # a truth.TruthLog while a simulator serves the limb's truth: a sample per conversion
        self._brownout_news = False
        self._lock = threading.Lock()

    def _wire(self, unit):
        """Which servo each PWM pin drives, which wiper each ADC pin reads, where the IMU answers."""
        faults = self.faults
        joints = [0, 1]
        servo_of = joints[::-1] if F.has(faults, "joints-swapped") else joints
        wiper_of = joints[::-1] if F.has(faults, "swapped-pots") else joints
        self.servo_on = dict(zip(self.pwm_pins, servo_of))  # pin -> servo
        self.wiper_on = dict(zip(self.adc_pins, wiper_of))  # pin -> the joint whose pot it reads
        self.floating = {j: FloatingInput(unit.rng(f"fault.floating/{j}")) for j in F.joints_with(faults, "pot-disconnected")}
        self.last_adc_v = 0.0  # what the sample capacitor holds from the last conversion
        if F.has(faults, "imu-absent"):
            self.imu_addr = None
        elif F.has(faults, "imu-address") and self.imu_addr is not None:
            self.imu_addr = F.IMU_AD0_HIGH

    @classmethod
    def from_files(cls, robot_path=None, plant_path=None, seed=0, faults=()):
        robot_path = Path(robot_path or HARDWARE_DIR / "gen0.json")
        try:
            robot = json.loads(robot_path.read_text())
        except FileNotFoundError:
            raise ValueError(f"robot description {robot_path} not found") from None
        except ValueError as e:
            raise ValueError(f"robot description {robot_path} is not valid JSON ({e})") from None
        return cls(robot, load_params(plant_path or HARDWARE_DIR / "plant_gen0.json"), seed, faults)

    def _at(self, t_us):
        """Bring the plant to t_us on the ESP32's clock (never backwards) and return the board time used."""
        t_us += self.epoch
        if t_us > self.now:
            self.now = int(t_us)
            self.plant.advance(self.now)
            if self.plant.brownout_at is not None and not self.in_reset:
                self._browned_out()
        return self.now

    def _browned_out(self):
        """The ESP32 reset itself (weak-supply): its LEDC and GPIOs are off until power_on()."""
        self.in_reset = True
        self.brownouts += 1
        self._brownout_news = True
        self.pwm_out.clear()
        self.levels.clear()

    def take_brownout(self) -> bool:
        """True once after each brown-out: the bus tells the supervisor, which restarts the ESP32."""
        if not self._brownout_news:  # the common case, without the lock
            return False
        with self._lock:
            news, self._brownout_news = self._brownout_news, False
            return news

    def restart(self):
        """The ESP32 restarts (machine.reset(), a watchdog, a panic): its clock restarts at 0 while the limb's
        time goes on, and its pins stop driving (no servo pulses) until the firmware sets them up again; the
        MPU-6050, still powered, keeps its state."""
        with self._lock:
            self.epoch = self.now
            for pin, joint in self.servo_on.items():
                if pin in self.pwm_out:
                    self.plant.set_pwm(self.now, joint, 0, None)
            self.pwm_out.clear()
            self.levels.clear()

    def power_on(self):
        """The ESP32 starts again after a brown-out: as restart(), and the MPU-6050, whose rail sagged as far,
        powers up asleep."""
        self.restart()
        with self._lock:
            self.in_reset = False
            self.plant.restarted()
            self.imu.reset(self.now)
            self.plant.observer = None

    def push(self, joint: int, torque_nm: float, seconds: float) -> None:
        """Push joint's link (any thread): torque_nm in its positive direction for `seconds` from the limb's now,
        as a hand or a new payload would (the servo fights it up to its stall torque, ~0.17 N m)."""
        with self._lock:
            self.plant.push(joint, torque_nm, self.now, self.now + round(seconds * 1e6))

    def pwm(self, t_us: int, pin: int, freq_hz: float, duty_ns: "int | None") -> None:
        with self._lock:
            t = self._at(t_us)
            if self.in_reset:
                return
            if pin in self.servo_on:
                self.plant.set_pwm(t, self.servo_on[pin], freq_hz, duty_ns)
            if duty_ns is None:
                self.pwm_out.pop(pin, None)
            else:
                self.pwm_out[pin] = (freq_hz, duty_ns)

    def adc_read(self, t_us: int, pin: int, atten: int) -> int:
        self._check_adc(pin, atten)
        with self._lock:
            t = self._at(t_us)
            plant = self.plant
            if self.truth_log is not None:  # in the firmware's sense stage: the limb as its pots are read
                self.truth_log.add(t - self.epoch, self.epoch, plant.servos)
            joint = self.wiper_on.get(pin)
            if joint is None:
                volts = 0.0
            elif joint in self.floating:
                volts = self.floating[joint].volts(t, self.last_adc_v)
            else:
                volts = plant.adc_pin_v(joint)
            self.last_adc_v = volts
            return self.adc.read(volts, atten, plant.motor_current())

    def adc_uv(self, pin: int, raw: int, atten: int) -> int:
        self._check_adc(pin, atten)
        if not 0 <= raw <= 4095:
            raise ValueError(f"raw ADC count {raw} outside 0..4095")
        return idf_millivolts(int(raw), atten, self.adc.efuse_vref_mv) * 1000

    @staticmethod
    def _check_adc(pin, atten):
        if pin not in ADC1_PINS:
            raise ValueError(f"pin {pin} is not an ADC1 pin (32..39); ADC2 pins stop working once Wi-Fi starts")
        if atten not in (0, 1, 2, 3):
            raise ValueError(f"ADC attenuation {atten} is none of 0..3 (0, 2.5, 6, 11 dB)")

    def i2c_write(self, t_us: int, addr: int, data: bytes) -> bool:
        if addr != self.imu_addr or self.in_reset:
            return False
        with self._lock:
            t = self._at(t_us)
            self.imu.write(t, bytes(data))
            self.plant.observer = self.imu.track if self.imu.awake else None
        return True

    def i2c_read(self, t_us: int, addr: int, n: int) -> "bytes | None":
        if addr != self.imu_addr or self.in_reset:
            return None
        with self._lock:
            self._at(t_us)
            return self.imu.read(n)

    def pin_write(self, t_us: int, pin: int, value: int) -> None:
        """A GPIO level; on a servo pin this also ends its PWM (the pin is plain GPIO now)."""
        with self._lock:
            t = self._at(t_us)
            if self.in_reset:
                return
            if pin in self.servo_on:
                self.plant.set_pwm(t, self.servo_on[pin], 0, None)
            self.pwm_out.pop(pin, None)
            self.levels[pin] = 1 if value else 0

    def pin_read(self, t_us: int, pin: int) -> int:
        """The level last written; else 1 on GPIO0 (the BOOT button's pull-up), 0 elsewhere."""
        with self._lock:
            self._at(t_us)
            return self.levels.get(pin, 1 if pin == 0 else 0)

    def cost_us(self, op: str, nbytes: int = 0, i2c_freq: int = 400000, restart: int = 0) -> float:
        """Modeled duration of one ESP32 peripheral call: 'adc', 'pwm', 'gpio', 'clock' (ticks_us), or
        'i2c': address + nbytes, 9 clocks each, start and stop; restart > 0: a memory read that first
        writes `restart` register-address bytes, then repeats the start and the device address."""
        if op not in self.costs:
            raise ValueError(f"unknown operation {op!r}: one of {sorted(self.costs)}")
        if op != "i2c":
            return self.costs[op]
        if i2c_freq <= 0:
            raise ValueError(f"I2C frequency {i2c_freq} must be > 0")
        clocks = 9 * (nbytes + 1) + 2
        if restart:
            clocks += 9 * (restart + 1) + 1
        return self.costs["i2c"] + math.ceil(clocks * 1e6 / i2c_freq)

    def truth(self, t_us: "int | None" = None) -> dict:
        """Ground truth at t_us (advances the plant: only from the driving thread) or now (any thread).
        A joint's angle_deg/velocity_dps are the limb's, gear_deg its servo's own (what its pot shows)."""
        with self._lock:
            if t_us is not None:
                self._at(t_us)
            plant = self.plant
            joints = []
            for j, s in enumerate(plant.servos):
                driving = plant.t_us - s.last_pulse_at < s.limp_us
                joints.append({
                    "angle_deg": math.degrees(s.sign * s.limb),
                    "velocity_dps": math.degrees(s.sign * s.w_limb),
                    "gear_deg": math.degrees(s.gear),
                    "target_deg": math.degrees(s.target) if driving else None,
                    "pulse_us": s.pulse_us if driving else None,
                    "drive": s.drive,
                    "current_a": s.current,
                    "pot_v": s.pot_v(),
                    "adc_pin_v": plant.adc_pin_v(j),
                })
            x, y, link = plant.mount_pose()
            along, across, rate = plant.mount_motion()
            return {
                "t_us": plant.t_us,
                "joints": joints,
                "supply_v": plant.supply_v,
                "imu": {"x_m": x, "y_m": y, "link_deg": math.degrees(link), "along_g": along / 9.80665,
                        "across_g": across / 9.80665, "rate_dps": math.degrees(rate), "awake": self.imu.awake},
                "gpio": dict(self.levels),
                "pwm": dict(self.pwm_out),
            }

"""MPU-6050 at the register level, as the firmware talks to it over I2C (address 0x68).

Registers (MPU-6000/6050 register map rev 4.2): a write is [register, data...], a read continues
from the register pointer, which auto-increments on every byte. PWR_MGMT_1 (0x6B) powers up as
0x40: SLEEP set, the data registers hold their values (0 after power-on) until SLEEP is cleared.
DEVICE_RESET (bit 7) restores every register. WHO_AM_I (0x75) reads 0x68. SMPLRT_DIV (0x19), CONFIG
(0x1A, DLPF_CFG bits 2:0), GYRO_CONFIG (0x1B) and ACCEL_CONFIG (0x1C, full-scale bits 4:3) set rate,
filtering and LSB scaling. 0x3B..0x48: accel X, Y, Z, TEMP, gyro X, Y, Z as big-endian int16.
INT_STATUS (0x3A) bit 0 says a new sample arrived since it was last read. Self-test, FIFO, the
auxiliary bus and low-power cycling are not modelled (those registers just store what is written).

Signal: every plant step the plant reports the specific force at the mount (along and across the
link, m/s^2) and the link's rate (rad/s). The DLPF is a single pole whose time constant is the
datasheet delay of the chosen setting; a sample is latched every 1/(1 or 8 kHz)*(1 + SMPLRT_DIV)
and the data registers hold the latest one. Each sample then gets this unit's mount misalignment,
cross-axis and scale errors, offsets, and white noise of density x sqrt(bandwidth x pi/2).
Sensor frame: X along the link towards its tip, Y across it (towards + rotation), Z out of the
limb's plane towards the viewer (the joint axes): at rest, hanging, accel X reads -1 g.
"""

import math
import struct

ADDRESS = 0x68
SMPLRT_DIV, CONFIG, GYRO_CONFIG, ACCEL_CONFIG = 0x19, 0x1A, 0x1B, 0x1C
INT_STATUS, ACCEL_XOUT_H = 0x3A, 0x3B
PWR_MGMT_1, WHO_AM_I = 0x6B, 0x75
SLEEP, DEVICE_RESET = 0x40, 0x80
READ_ONLY = set(range(INT_STATUS, 0x61)) | {WHO_AM_I}  # status, data, external sensor data
STANDARD_G = 9.80665
DATA = struct.Struct(">7h")  # accel X Y Z, TEMP, gyro X Y Z
# DLPF_CFG -> accel (bandwidth Hz, delay ms), gyro (bandwidth Hz, delay ms), gyro output rate Hz
DLPF = [((260, 0.0), (256, 0.98), 8000), ((184, 2.0), (188, 1.9), 1000), ((94, 3.0), (98, 2.8), 1000),
        ((44, 4.9), (42, 4.8), 1000), ((21, 8.5), (20, 8.3), 1000), ((10, 13.8), (10, 13.4), 1000),
        ((5, 19.0), (5, 18.6), 1000), ((260, 0.0), (256, 0.98), 8000)]  # 7 is reserved: behaves as 0
ACCEL_LSB_PER_G = (16384, 8192, 4096, 2048)
GYRO_LSB_PER_DPS = (131, 65.5, 32.8, 16.4)


def _errors(unit, first_scale, first_cross, yaw, roll):
    """3x3 link-frame -> sensor-frame matrix: scale x (1 + cross-axis) x mount rotation."""
    cy, sy, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(roll), math.sin(roll)
    mount = [[cy, sy, 0.0], [-sy * cr, cy * cr, sr], [sy * sr, -cy * sr, cr]]  # (Rz(yaw) Rx(roll))^T
    cross = [[1.0 if i == k else unit("imu.cross_axis", first_cross + 3 * i + k) for k in range(3)]
             for i in range(3)]
    return [[(1 + unit("imu.scale_error", first_scale + i)) * sum(cross[i][m] * mount[m][k] for m in range(3))
             for k in range(3)] for i in range(3)]


class MPU6050:
    """One MPU-6050 breakout; dt is the plant step (s) at which track() is called."""

    def __init__(self, unit, dt):
        self.dt = dt
        yaw, roll = math.radians(unit("imu.mount_yaw_deg")), math.radians(unit("imu.mount_roll_deg"))
        self.accel_m = _errors(unit, 0, 0, yaw, roll)
        self.gyro_m = _errors(unit, 3, 9, yaw, roll)
        self.accel_offset_g = [unit("imu.accel_offset_xy_mg", 0) / 1000, unit("imu.accel_offset_xy_mg", 1) / 1000,
                               unit("imu.accel_offset_z_mg") / 1000]
        self.gyro_offset_dps = [unit("imu.gyro_offset_dps", i) for i in range(3)]
        self.accel_density_g = unit("imu.accel_noise_ug_rthz") * 1e-6
        self.gyro_density_dps = unit("imu.gyro_noise_dps_rthz")
        self.temp_c = unit("imu.temp_c")
        self.noise = unit.rng("imu.noise")
        self.reset(0)

    def reset(self, t_us):
        """Power-on / DEVICE_RESET: default registers, asleep, no samples."""
        self.regs = bytearray(128)
        self.regs[PWR_MGMT_1] = SLEEP
        self.regs[WHO_AM_I] = ADDRESS
        self.pointer = 0
        self.awake = False
        self.filtered = None  # (along, across, rate) after the DLPF; None until the first step awake
        self.latched = None
        self.samples = 0  # samples latched so far
        self.shown = 0  # sample now in the data registers
        self._configure(t_us)

    def _configure(self, t_us):
        (accel_bw, accel_delay), (gyro_bw, gyro_delay), rate = DLPF[self.regs[CONFIG] & 7]
        self.period_us = 1e6 / rate * (1 + self.regs[SMPLRT_DIV])
        self.next_sample = t_us + self.period_us
        self.accel_k = 1 - math.exp(-self.dt / (accel_delay / 1000)) if accel_delay else 1.0
        self.gyro_k = 1 - math.exp(-self.dt / (gyro_delay / 1000)) if gyro_delay else 1.0
        self.accel_sigma_g = self.accel_density_g * math.sqrt(accel_bw * math.pi / 2)
        self.gyro_sigma_dps = self.gyro_density_dps * math.sqrt(gyro_bw * math.pi / 2)
        self.accel_lsb = ACCEL_LSB_PER_G[(self.regs[ACCEL_CONFIG] >> 3) & 3]
        self.gyro_lsb = GYRO_LSB_PER_DPS[(self.regs[GYRO_CONFIG] >> 3) & 3]

    def write(self, t_us, data):
        """An I2C write: data[0] sets the register pointer, the rest are written from there."""
        if not data:
            return
        self.pointer = data[0] & 0x7F
        for value in data[1:]:
            reg = self.pointer
            self.pointer = (self.pointer + 1) & 0x7F
            if reg == PWR_MGMT_1 and value & DEVICE_RESET:
                self.reset(t_us)
                continue
            if reg in READ_ONLY:
                continue
            self.regs[reg] = value
            if reg == PWR_MGMT_1:
                awake = not value & SLEEP
                if awake and not self.awake:
                    self.filtered = None
                    self.next_sample = t_us + self.period_us
                self.awake = awake
            elif reg in (SMPLRT_DIV, CONFIG, GYRO_CONFIG, ACCEL_CONFIG):
                self._configure(t_us)

    def read(self, n):
        """An I2C read of n bytes from the register pointer (a burst read sees one sample)."""
        if self.samples != self.shown:
            self._show_sample()
        out = bytearray(n)
        for i in range(n):
            reg = self.pointer
            self.pointer = (self.pointer + 1) & 0x7F
            out[i] = self.regs[reg]
            if reg == INT_STATUS:
                self.regs[INT_STATUS] &= 0xFE  # DATA_RDY clears when read
        return bytes(out)

    def track(self, t_us, along, across, rate):
        """One plant step of the mount's motion: run the DLPF, latch samples that fall due."""
        f = self.filtered
        if f is None:
            f = self.filtered = [along, across, rate]
        else:
            f[0] += self.accel_k * (along - f[0])
            f[1] += self.accel_k * (across - f[1])
            f[2] += self.gyro_k * (rate - f[2])
        if t_us >= self.next_sample:
            skipped = int((t_us - self.next_sample) // self.period_us) + 1
            self.next_sample += skipped * self.period_us
            self.samples += skipped
            self.latched = (f[0], f[1], f[2])
            self.regs[INT_STATUS] |= 1

    def _show_sample(self):
        """Turn the latched sample into data-register counts (errors and noise of this sample)."""
        along, across, rate = self.latched
        gauss = self.noise.gauss
        ax, ay, dps = along / STANDARD_G, across / STANDARD_G, math.degrees(rate)
        a_sigma, a_lsb, g_sigma, g_lsb = self.accel_sigma_g, self.accel_lsb, self.gyro_sigma_dps, self.gyro_lsb
        words = [(row[0] * ax + row[1] * ay + offset + gauss(0, a_sigma)) * a_lsb
                 for row, offset in zip(self.accel_m, self.accel_offset_g)]
        words.append((self.temp_c + gauss(0, 0.05) - 36.53) * 340)
        words += [(row[2] * dps + offset + gauss(0, g_sigma)) * g_lsb
                  for row, offset in zip(self.gyro_m, self.gyro_offset_dps)]
        DATA.pack_into(self.regs, ACCEL_XOUT_H, *[max(-32768, min(32767, round(w))) for w in words])
        self.shown = self.samples

"""MPU-6050 over I2C through its real register protocol: identify, wake, configure, burst-read.

A missing or failing IMU is not fatal: .ok goes False, .error says why, the loop runs on
and flags it in telemetry.
"""

import machine

WHO_AM_I = 0x75
PWR_MGMT_1 = 0x6B
SMPLRT_DIV = 0x19
CONFIG = 0x1A
GYRO_CONFIG = 0x1B
ACCEL_CONFIG = 0x1C
ACCEL_XOUT_H = 0x3B  # 14 bytes from here: accel xyz, temperature, gyro xyz (big-endian int16)
MPU6050_ID = 0x68

ACCEL_FS_G = (2, 4, 8, 16)  # ACCEL_CONFIG AFS_SEL 0..3
GYRO_FS_DPS = (250, 500, 1000, 2000)  # GYRO_CONFIG FS_SEL 0..3
GYRO_LSB_PER_DPS = (131.0, 65.5, 32.8, 16.4)  # datasheet sensitivities


def accel_g_per_lsb(fs_g):
    return fs_g / 32768


def gyro_dps_per_lsb(fs_dps):
    return 1 / GYRO_LSB_PER_DPS[GYRO_FS_DPS.index(fs_dps)]


class Mpu6050:
    def __init__(self, cfg):
        self.buf = bytearray(14)
        self.ok = False
        self.error = None
        if cfg is None:
            self.error = "no imu in robot.json"
            return
        self.addr = cfg["addr"]
        where = "I2C%d address 0x%02x (SCL %d, SDA %d)" % (cfg["i2c_id"], self.addr, cfg["scl_pin"], cfg["sda_pin"])
        try:
            self.i2c = machine.I2C(cfg["i2c_id"], scl=machine.Pin(cfg["scl_pin"]), sda=machine.Pin(cfg["sda_pin"]),
                                   freq=cfg["i2c_freq"])
            who = self.i2c.readfrom_mem(self.addr, WHO_AM_I, 1)[0]
        except OSError as e:
            self.error = "no MPU-6050 answers on %s (%s); %s" % (where, e, self._scan())
            return
        if who != MPU6050_ID:
            self.error = "the chip on %s says WHO_AM_I=0x%02x, an MPU-6050 says 0x68" % (where, who)
            return
        try:
            self._set(PWR_MGMT_1, 0x01)  # clear SLEEP (set at power-on), clock from the X gyro PLL
            self._set(SMPLRT_DIV, cfg["smplrt_div"])
            self._set(CONFIG, cfg["dlpf_cfg"])
            self._set(GYRO_CONFIG, GYRO_FS_DPS.index(cfg["gyro_fs_dps"]) << 3)
            self._set(ACCEL_CONFIG, ACCEL_FS_G.index(cfg["accel_fs_g"]) << 3)
        except OSError as e:
            self.error = "MPU-6050 on %s refused its configuration (%s)" % (where, e)
            return
        self.ok = True

    def _scan(self):
        """What does answer on the bus, in words: an MPU-6050 at the other address (AD0), or nothing at all."""
        try:
            found = self.i2c.scan()
        except Exception:  # a bus that cannot even scan says nothing more
            found = []
        if not found:
            return "nothing answers on the bus: check its wiring and power"
        return "the bus answers at %s%s" % (", ".join("0x%02x" % a for a in found),
                                             " (AD0 high: set imu.addr to %d)" % found[0] if len(found) == 1 and
                                             found[0] in (0x68, 0x69) else "")

    def _set(self, reg, value):
        self.i2c.writeto_mem(self.addr, reg, bytes((value,)))

    def read(self):
        """Burst-read the 14 measurement bytes into .buf; on a bus error zero them, set .ok False."""
        try:
            self.i2c.readfrom_mem_into(self.addr, ACCEL_XOUT_H, self.buf)
        except OSError as e:
            self.ok = False
            self.error = "MPU-6050 stopped answering (%s)" % e
            for i in range(14):
                self.buf[i] = 0

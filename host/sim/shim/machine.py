"""The ESP32's `machine`, installed in the virtual Gen0's VM: what the firmware's pins reach.

Every call that touches a pin is one round trip to the supervisor (gen0bus), which
applies it to the VirtualBoard at the board's time, answers reads and bills the
call's modeled ESP32 duration on the board's clock. Arguments are checked the way
the ESP32 port checks them, so firmware errors show up here first. Methods are
@micropython.native: like the ESP32's C, they do not show up in tracebacks.
"""

import micropython
from micropython import const

import gen0bus as bus
import vtime

_UNWIRED = const(0x80)  # flag on an I2C address: this bus is not the IMU's

_GPIO = const(0xFF0EEFFFFF)  # ESP32 GPIOs: 0-19, 21-23, 25-27, 32-39
_ADC_PINS = const(0xFF0E00F015)  # ADC1: 32-39; ADC2: 0, 2, 4, 12-15, 25-27
_FIRST_INPUT_ONLY = const(34)

PWRON_RESET = const(1)
HARD_RESET = const(2)
WDT_RESET = const(3)
DEEPSLEEP_RESET = const(4)
SOFT_RESET = const(5)

_uid = b""
_cause = PWRON_RESET
_cpu_hz = 160000000


@micropython.native
def _init(uid, cause, mhz):
    """Called once by the bootstrap (the bus is up)."""
    global _uid, _cause, _cpu_hz
    _uid, _cause, _cpu_hz = uid, cause, mhz * 1000000


@micropython.native
def _halt(op):
    """Ask the supervisor to reset us, and wait to be replaced."""
    bus.send(op)
    while bus._rx.readinto(bus.rep):
        pass
    raise SystemExit


@micropython.native
def _pin_id(pin):
    if isinstance(pin, Pin):
        return pin._id
    if not isinstance(pin, int) or not 0 <= pin < 40 or not (_GPIO >> pin) & 1:
        raise ValueError("invalid pin")
    return pin


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    PULL_HOLD = 4
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    @micropython.native
    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        self._id = _pin_id(id)
        self.init(mode, pull, value=value)

    @micropython.native
    def init(self, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        if mode in (3, 7) and self._id >= _FIRST_INPUT_ONLY:
            raise ValueError("pin can only be input")
        if value is not None:
            self.value(value)

    @micropython.native
    def value(self, v=None):
        if v is None:
            return bus.call(bus.PIN_R, self._id, 0, 0, 0)
        bus.call(bus.PIN_W, self._id, 0, 1 if v else 0, 0)

    __call__ = value

    @micropython.native
    def on(self):
        bus.call(bus.PIN_W, self._id, 0, 1, 0)

    @micropython.native
    def off(self):
        bus.call(bus.PIN_W, self._id, 0, 0, 0)

    @micropython.native
    def __repr__(self):
        return "Pin(%d)" % self._id


@micropython.native
def _duty_resolution(freq):
    """Bits of the LEDC timer at this frequency, as the ESP32 port picks them (16 at most)."""
    div = ((1000000 if freq < 10 else 80000000) + freq // 2) // freq
    bits = 0
    while div > 1:
        div >>= 1
        bits += 1
    return 16 if bits > 16 else bits


class PWM:
    """LEDC PWM: the duty is kept in the unit last used and quantised to the timer's resolution."""

    @micropython.native
    def __init__(self, dest, *, freq=-1, duty=-1, duty_u16=-1, duty_ns=-1, invert=False):
        self._pin = _pin_id(dest)
        if self._pin >= _FIRST_INPUT_ONLY:
            raise ValueError("pin can only be input")
        self._freq = 5000
        self._bits = _duty_resolution(5000)
        self._unit = 16  # 16: duty_u16, 10: duty, 1: duty_ns
        self._ui = 32768
        self._hw = 0  # duty in timer counts
        self.init(freq=freq, duty=duty, duty_u16=duty_u16, duty_ns=duty_ns)

    @micropython.native
    def init(self, *, freq=-1, duty=-1, duty_u16=-1, duty_ns=-1, invert=False):
        self._active = True
        if freq != -1:
            self._set_freq(freq)
        if duty_u16 != -1:
            self._set(16, duty_u16)
        elif duty_ns != -1:
            self._set(1, duty_ns)
        elif duty != -1:
            self._set(10, duty)
        else:
            self._apply()

    @micropython.native
    def deinit(self):
        if self._active:
            self._active = False
            bus.call(bus.PWM, self._pin, 0, self._freq, -1)

    @micropython.native
    def freq(self, freq=None):
        if freq is None:
            return self._freq
        self._set_freq(freq)
        self._apply()

    @micropython.native
    def duty_u16(self, duty=None):
        if duty is None:
            return self._u16()
        self._set(16, duty)

    @micropython.native
    def duty_ns(self, ns=None):
        if ns is None:
            return self._to_ns(self._u16())
        self._set(1, ns)

    @micropython.native
    def duty(self, duty=None):
        if duty is None:
            return self._u16() >> 6
        self._set(10, duty)

    @micropython.native
    def _set_freq(self, freq):
        if not 0 < freq <= 40000000:
            raise ValueError("frequency must be from 1Hz to 40MHz")
        self._freq = freq
        self._bits = _duty_resolution(freq)

    @micropython.native
    def _set(self, unit, v):
        self._check()
        if unit == 16:
            if not 0 <= v <= 65535:
                raise ValueError("duty_u16 must be from 0 to 65536")
            v = 65536 if v == 65535 else v
        elif unit == 10:
            if not 0 <= v <= 1023:
                raise ValueError("duty must be from 0 to 1023")
            v = 1024 if v == 1023 else v
        elif not 0 <= v <= self._to_ns(65536):
            raise ValueError("duty_ns must be from 0 to %d ns" % self._to_ns(65536))
        self._unit = unit
        self._ui = v
        self._apply()

    @micropython.native
    def _apply(self):
        unit, ui, f = self._unit, self._ui, self._freq
        if unit == 1:
            d = (ui * 65536 * f + 500000000) // 1000000000
            d = 1 if ui > 0 and d == 0 else (65536 if d > 65536 else d)
        else:
            d = ui << 6 if unit == 10 else ui
        self._hw = d >> (16 - self._bits)
        scale = f << self._bits
        bus.call(bus.PWM, self._pin, 0, f, (self._hw * 1000000000 + scale // 2) // scale)

    @micropython.native
    def _u16(self):
        self._check()
        d = self._hw << (16 - self._bits)
        return 65535 if d == 65536 else d

    @micropython.native
    def _to_ns(self, d16):
        f = self._freq
        return (d16 * 1000000000 + f * 32768) // (f * 65536)

    @micropython.native
    def _check(self):
        if not self._active:
            raise RuntimeError("PWM is inactive")

    @micropython.native
    def __repr__(self):
        if not self._active:
            return "PWM(Pin(%d))" % self._pin
        return "PWM(Pin(%d), freq=%d, duty_u16=%d)" % (self._pin, self._freq, self._u16())


class ADC:
    """ADC1/ADC2 pin, 12-bit; read_u16 scales like the ESP32 port, read_uv is its calibration."""

    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12

    @micropython.native
    def __init__(self, pin, *, atten=-1):
        self._pin = _pin_id(pin)
        if not (_ADC_PINS >> self._pin) & 1:
            raise ValueError("invalid pin")
        self._atten = 0
        self._bits = 12
        self.init(atten=atten)

    @micropython.native
    def init(self, *, atten=-1):
        if atten != -1:
            self.atten(atten)

    @micropython.native
    def atten(self, atten):
        if not 0 <= atten <= 3:
            raise ValueError("invalid attenuation")
        self._atten = atten

    @micropython.native
    def width(self, bits):
        if not 9 <= bits <= 12:
            raise ValueError("invalid bit-width")
        self._bits = bits

    @micropython.native
    def read_u16(self):
        raw = bus.call(bus.ADC, self._pin, 0, self._atten, 0)
        if raw < 0:
            raise OSError(-raw)
        return raw << 4 | raw >> 8

    @micropython.native
    def read(self):
        return self.read_u16() >> (16 - self._bits)

    @micropython.native
    def read_uv(self):
        uv = bus.call(bus.ADC, self._pin, 0, self._atten, 1)
        if uv < 0:
            raise OSError(-uv)
        return uv

    @micropython.native
    def __repr__(self):
        return "ADC(Pin(%d), atten=%d)" % (self._pin, self._atten)


class SoftI2C:
    """I2C master. NACK -> OSError(ENODEV) like the ESP32; a whole mem read/write is one round trip."""

    @micropython.native
    def __init__(self, scl, sda, *, freq=400000, timeout=50000):
        self._bus(_pin_id(scl), _pin_id(sda), freq)

    @micropython.native
    def _bus(self, scl, sda, freq):
        if freq <= 0:
            raise ValueError("freq must be > 0")
        self._freq = freq
        self._flag = 0 if bus.call(bus.I2C_INIT, 0, 0, scl, sda) else _UNWIRED

    @micropython.native
    def scan(self):
        found = bytearray(16)
        bus.call(bus.I2C_SCAN, self._flag, 0, self._freq, 0, found, 16)
        return [a for a in range(0x08, 0x78) if found[a >> 3] >> (a & 7) & 1]

    @micropython.native
    def writeto(self, addr, buf, stop=True):
        self._write(addr, 0, 0, buf)
        return len(buf)

    @micropython.native
    def writevto(self, addr, vector, stop=True):
        return self.writeto(addr, b"".join(vector), stop)

    @micropython.native
    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self._read(addr, 0, 0, buf)
        return bytes(buf)

    @micropython.native
    def readfrom_into(self, addr, buf, stop=True):
        self._read(addr, 0, 0, buf)

    @micropython.native
    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        self._write(addr, memaddr, addrsize >> 3, buf)

    @micropython.native
    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        buf = bytearray(nbytes)
        self._read(addr, memaddr, addrsize >> 3, buf)
        return bytes(buf)

    @micropython.native
    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        self._read(addr, memaddr, addrsize >> 3, buf)

    @micropython.native
    def _write(self, addr, memaddr, m, buf):
        n = bus.load(memaddr, m, buf)
        v = bus.call(bus.I2C_W, addr & 0x7F | self._flag, n, self._freq, 0)
        if v < 0:
            raise OSError(-v)

    @micropython.native
    def _read(self, addr, memaddr, m, buf):
        bus.load(memaddr, m, b"")
        v = bus.call(bus.I2C_R, addr & 0x7F | self._flag, m, self._freq, len(buf), buf, len(buf))
        if v < 0:
            raise OSError(-v)


class I2C(SoftI2C):
    """Hardware I2C 0/1 with the ESP32 port's default pins; the GPIO matrix routes it anywhere."""

    @micropython.native
    def __init__(self, id=-1, *, scl=None, sda=None, freq=400000, timeout=50000):
        if id == -1:
            id = 0
        if id not in (0, 1):
            raise ValueError("I2C(%s) doesn't exist" % id)
        scl = _pin_id(scl) if scl is not None else (18, 25)[id]
        sda = _pin_id(sda) if sda is not None else (19, 26)[id]
        self._bus(scl, sda, freq)


class WDT:
    """Task watchdog: not fed within timeout ms -> hard reset (WDT_RESET); survives soft resets."""

    @micropython.native
    def __init__(self, id=0, timeout=5000):
        if timeout < 1:
            raise ValueError("WDT timeout too short")
        bus.send(bus.WDT, 0, 0, timeout, 0)

    @micropython.native
    def feed(self):
        bus.send(bus.WDT, 0, 0, 0, 0)


@micropython.native
def unique_id():
    return _uid


@micropython.native
def reset():
    _halt(bus.RESET)


@micropython.native
def soft_reset():
    _halt(bus.SOFT_RESET)


@micropython.native
def reset_cause():
    return _cause


@micropython.native
def freq(hz=None):
    global _cpu_hz
    if hz is None:
        return _cpu_hz
    if hz not in (20000000, 40000000, 80000000, 160000000, 240000000):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    bus.set_factor(bus.call(bus.FREQ, 0, 0, hz // 1000000, 0))
    _cpu_hz = hz
    vtime._cpu_mhz = hz // 1000000


@micropython.native
def idle():
    vtime.sleep_us(0)


@micropython.native
def disable_irq():
    return 0


@micropython.native
def enable_irq(state=0):
    pass

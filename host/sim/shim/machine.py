"""The ESP32's `machine`, installed in the virtual Gen0's VM: what the firmware's pins reach.

Every call that touches a pin is one small binary message to the supervisor
(host/sim/bus.py has the layout), stamped with the VM's clock (vtime.now());
the supervisor applies it to the VirtualBoard and, for reads, answers. Calls
then take the ESP32's modeled duration (vtime.spend). Arguments are checked the
way the ESP32 port checks them, so firmware errors show up here first.

Allocation-light: the firmware calls this 500+ times a second, so requests are
packed into one preallocated buffer and replies decoded byte by byte.
"""

import struct
from micropython import const

import vtime

# Bus layout (host/sim/bus.py has the same table): request <BBHHxxiiq (op, a, n, seq, x, y,
# t_us) + n payload bytes in one write; every reply is _REPLY bytes: <HHiI (seq, data bytes,
# value, cost_us) + data, padded, so that one readinto takes exactly one reply.
_HDR = "<BBHHxxiiq"
_HDR_SIZE = const(24)
_REPLY = const(64)
_REPLY_HEAD = const(12)
_MAX_PAYLOAD = const(4000)  # a request is one atomic pipe write (PIPE_BUF)
_OP_PWM = const(1)
_OP_PIN_W = const(2)
_OP_PIN_R = const(3)
_OP_ADC = const(4)
_OP_I2C_INIT = const(5)
_OP_I2C_W = const(6)
_OP_I2C_R = const(7)
_OP_I2C_SCAN = const(8)
_OP_RESET = const(9)
_OP_SOFT_RESET = const(10)
_OP_WDT = const(11)
_OP_TIME = const(12)
_OP_READY = const(13)
_OP_EXIT = const(14)
_UNWIRED = const(0x80)  # flag on an I2C address: this bus is not the IMU's

_GPIO = const(0xFF0EEFFFFF)  # ESP32 GPIOs: 0-19, 21-23, 25-27, 32-39
_ADC_PINS = const(0xFF0E00F015)  # ADC1: 32-39; ADC2: 0, 2, 4, 12-15, 25-27
_FIRST_INPUT_ONLY = const(34)

PWRON_RESET = const(1)
HARD_RESET = const(2)
WDT_RESET = const(3)
DEEPSLEEP_RESET = const(4)
SOFT_RESET = const(5)

_req = bytearray(_HDR_SIZE + 40)  # header + memaddr + small payloads
_rep = bytearray(_REPLY)
_tx = None
_rx = None
_seq = 0
_pwm_cost = 0
_uid = b""
_cause = PWRON_RESET
_cpu_hz = 240000000


def _init(rfd, wfd, uid, cause, pwm_cost, wdt_running):
    """Called once by the bootstrap, which then tells the supervisor the VM is up."""
    global _rx, _tx, _uid, _cause, _pwm_cost
    _rx = open(rfd, "rb")
    _tx = open(wfd, "wb")
    _uid, _cause, _pwm_cost = uid, cause, pwm_cost
    if wdt_running:
        vtime.report = _report
    _send(_OP_READY, 0, 0, 0, 0)


def _exiting():
    """The VM is leaving (Ctrl-D, sys.exit): hand the clock over for the next boot."""
    _send(_OP_EXIT, 0, 0, 0, 0)


def _send(op, a, n, x, y):
    """A message that needs no answer (PWM, pin writes, WDT): one atomic pipe write."""
    struct.pack_into(_HDR, _req, 0, op, a, n, 0, x, y, vtime.now())
    _tx.write(_req, _HDR_SIZE + n)


def _call(op, a, n, x, y, into=None, size=0):
    """A round trip: the signed value; `size` data bytes go into `into`; the call takes its modeled time.

    A Ctrl-C (KeyboardInterrupt) can cut a call short anywhere, leaving its reply in
    the pipe: replies carry the request's seq, and stale ones are skipped here.
    """
    global _seq
    _seq = seq = (_seq + 1) & 0xFFFF
    start = vtime.now()
    struct.pack_into(_HDR, _req, 0, op, a, n, seq, x, y, start)
    _tx.write(_req, _HDR_SIZE + n)
    r = _rep
    got = 0
    while True:
        if not _rx.readinto(r, _REPLY):
            raise OSError(5)  # the supervisor is gone
        if r[0] | r[1] << 8 == seq:
            k = r[2] | r[3] << 8
            for i in range(k):
                into[got + i] = r[_REPLY_HEAD + i]
            got += k
            if got >= size:
                break
    vtime.spend(start, r[8] | r[9] << 8 | r[10] << 16 | r[11] << 24)
    v = r[4] | r[5] << 8 | r[6] << 16 | r[7] << 24
    return v - 0x100000000 if v & 0x80000000 else v


def _report():
    """Virtual clock with a WDT running: the supervisor learns the time at every sleep."""
    _send(_OP_TIME, 0, 0, 0, 0)


def _halt(op):
    """Ask the supervisor to reset us, and wait to be replaced."""
    _send(op, 0, 0, 0, 0)
    while _rx.readinto(_rep, _REPLY):
        pass
    raise SystemExit


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

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        self._id = _pin_id(id)
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        if mode in (3, 7) and self._id >= _FIRST_INPUT_ONLY:
            raise ValueError("pin can only be input")
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return _call(_OP_PIN_R, self._id, 0, 0, 0)
        _send(_OP_PIN_W, self._id, 0, 1 if v else 0, 0)

    __call__ = value

    def on(self):
        _send(_OP_PIN_W, self._id, 0, 1, 0)

    def off(self):
        _send(_OP_PIN_W, self._id, 0, 0, 0)

    def __repr__(self):
        return "Pin(%d)" % self._id


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

    def deinit(self):
        if self._active:
            self._active = False
            start = vtime.now()
            _send(_OP_PWM, self._pin, 0, self._freq, -1)
            vtime.spend(start, _pwm_cost)

    def freq(self, freq=None):
        if freq is None:
            return self._freq
        self._set_freq(freq)
        self._apply()

    def duty_u16(self, duty=None):
        if duty is None:
            return self._u16()
        self._set(16, duty)

    def duty_ns(self, ns=None):
        if ns is None:
            return self._to_ns(self._u16())
        self._set(1, ns)

    def duty(self, duty=None):
        if duty is None:
            return self._u16() >> 6
        self._set(10, duty)

    def _set_freq(self, freq):
        if not 0 < freq <= 40000000:
            raise ValueError("frequency must be from 1Hz to 40MHz")
        self._freq = freq
        self._bits = _duty_resolution(freq)

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

    def _apply(self):
        unit, ui, f = self._unit, self._ui, self._freq
        if unit == 1:
            d = (ui * 65536 * f + 500000000) // 1000000000
            d = 1 if ui > 0 and d == 0 else (65536 if d > 65536 else d)
        else:
            d = ui << 6 if unit == 10 else ui
        self._hw = d >> (16 - self._bits)
        scale = f << self._bits
        start = vtime.now()
        _send(_OP_PWM, self._pin, 0, f, (self._hw * 1000000000 + scale // 2) // scale)
        vtime.spend(start, _pwm_cost)

    def _u16(self):
        self._check()
        d = self._hw << (16 - self._bits)
        return 65535 if d == 65536 else d

    def _to_ns(self, d16):
        f = self._freq
        return (d16 * 1000000000 + f * 32768) // (f * 65536)

    def _check(self):
        if not self._active:
            raise RuntimeError("PWM is inactive")

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

    def __init__(self, pin, *, atten=-1):
        self._pin = _pin_id(pin)
        if not (_ADC_PINS >> self._pin) & 1:
            raise ValueError("invalid pin")
        self._atten = 0
        self._bits = 12
        self.init(atten=atten)

    def init(self, *, atten=-1):
        if atten != -1:
            self.atten(atten)

    def atten(self, atten):
        if not 0 <= atten <= 3:
            raise ValueError("invalid attenuation")
        self._atten = atten

    def width(self, bits):
        if not 9 <= bits <= 12:
            raise ValueError("invalid bit-width")
        self._bits = bits

    def read_u16(self):
        raw = _call(_OP_ADC, self._pin, 0, self._atten, 0)
        if raw < 0:
            raise OSError(-raw)
        return raw << 4 | raw >> 8

    def read(self):
        return self.read_u16() >> (16 - self._bits)

    def read_uv(self):
        uv = _call(_OP_ADC, self._pin, 0, self._atten, 1)
        if uv < 0:
            raise OSError(-uv)
        return uv

    def __repr__(self):
        return "ADC(Pin(%d), atten=%d)" % (self._pin, self._atten)


class SoftI2C:
    """I2C master. NACK -> OSError(ENODEV) like the ESP32; a whole mem read/write is one round trip."""

    def __init__(self, scl, sda, *, freq=400000, timeout=50000):
        self._bus(_pin_id(scl), _pin_id(sda), freq)

    def _bus(self, scl, sda, freq):
        if freq <= 0:
            raise ValueError("freq must be > 0")
        self._freq = freq
        self._flag = 0 if _call(_OP_I2C_INIT, 0, 0, scl, sda) else _UNWIRED

    def scan(self):
        found = bytearray(16)
        _call(_OP_I2C_SCAN, self._flag, 0, self._freq, 0, found, 16)
        return [a for a in range(0x08, 0x78) if found[a >> 3] >> (a & 7) & 1]

    def writeto(self, addr, buf, stop=True):
        self._write(addr, 0, 0, buf)
        return len(buf)

    def writevto(self, addr, vector, stop=True):
        return self.writeto(addr, b"".join(vector), stop)

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self._read(addr, 0, 0, buf)
        return bytes(buf)

    def readfrom_into(self, addr, buf, stop=True):
        self._read(addr, 0, 0, buf)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        self._write(addr, memaddr, addrsize >> 3, buf)

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        buf = bytearray(nbytes)
        self._read(addr, memaddr, addrsize >> 3, buf)
        return bytes(buf)

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        self._read(addr, memaddr, addrsize >> 3, buf)

    def _write(self, addr, memaddr, m, buf):
        n = _load(memaddr, m, buf)
        v = _call(_OP_I2C_W, addr & 0x7F | self._flag, n, self._freq, 0)
        if v < 0:
            raise OSError(-v)

    def _read(self, addr, memaddr, m, buf):
        _load(memaddr, m, b"")
        v = _call(_OP_I2C_R, addr & 0x7F | self._flag, m, self._freq, len(buf), buf, len(buf))
        if v < 0:
            raise OSError(-v)


class I2C(SoftI2C):
    """Hardware I2C 0/1 with the ESP32 port's default pins; the GPIO matrix routes it anywhere."""

    def __init__(self, id=-1, *, scl=None, sda=None, freq=400000, timeout=50000):
        if id == -1:
            id = 0
        if id not in (0, 1):
            raise ValueError("I2C(%s) doesn't exist" % id)
        scl = _pin_id(scl) if scl is not None else (18, 25)[id]
        sda = _pin_id(sda) if sda is not None else (19, 26)[id]
        self._bus(scl, sda, freq)


def _load(memaddr, m, buf):
    """Put the memory address (big-endian, m bytes) and buf after the request header; return the length."""
    global _req
    n = m + len(buf)
    if n > _MAX_PAYLOAD:
        raise OSError(22)  # EINVAL: keep I2C writes under 4 KB
    if _HDR_SIZE + n > len(_req):
        _req = bytearray(_HDR_SIZE + n)
    i = _HDR_SIZE
    while m:
        m -= 1
        _req[i] = (memaddr >> (8 * m)) & 0xFF
        i += 1
    for j in range(len(buf)):
        _req[i + j] = buf[j]
    return n


class WDT:
    """Task watchdog: not fed within timeout ms -> hard reset (WDT_RESET); survives soft resets."""

    def __init__(self, id=0, timeout=5000):
        if timeout < 1:
            raise ValueError("WDT timeout too short")
        _send(_OP_WDT, 0, 0, timeout, 0)
        vtime.report = _report

    def feed(self):
        _send(_OP_WDT, 0, 0, 0, 0)


def unique_id():
    return _uid


def reset():
    _halt(_OP_RESET)


def soft_reset():
    _halt(_OP_SOFT_RESET)


def reset_cause():
    return _cause


def freq(hz=None):
    global _cpu_hz
    if hz is None:
        return _cpu_hz
    if hz not in (20000000, 40000000, 80000000, 160000000, 240000000):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    _cpu_hz = hz
    vtime.cpu_mhz = hz // 1000000


def idle():
    vtime.sleep_us(0)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass

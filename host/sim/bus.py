"""The supervisor's end of the wire between the VM's shims (gen0bus) and the VirtualBoard.

Two pipes per VM, inherited by the child as plain fds (the unix VM opens them
with open(fd)). Binary and small because the firmware makes thousands of
calls a second:

    request  <BBHHHIIii  op, a, n, seq, reads, work_us, shown_us, x, y   + n payload bytes (one write)
    reply    <HHiIq      seq, k, value, wait_us, board_us    + k data bytes, padded to REPLY_SIZE

Every pin call is a round trip, and so is a clock read unless the VM could
answer it (gen0bus.clock: `reads` of them since the last call, the latest
`shown_us` past that call's end; the clock never falls behind what the VM
showed). work_us is the VM's own measure of how long it worked since its
previous call returned; the clock
(host/sim/clock.py) bills it, bounded by the VM's CPU time from the kernel
(exact here: the VM is blocked on the reply), plus the call's modeled duration,
on the board's clock. value < 0 is -errno; wait_us
is how long the VM must wait before it goes on (it ran ahead of the board);
board_us is the board's clock when the call ends. Every reply is REPLY_SIZE
bytes written at once, so the VM reads each whole with one readinto; more data
than fits goes in several replies with the same seq. A Ctrl-C in the VM can
abandon a call at any point; the seq lets it skip the late reply. Op | CAL is a
calibration call: answered at once with zeros, the board untouched. One-way
(seq 0, no reply): WDT, READY; RESET/SOFT_RESET are never answered
(the VM is replaced). One thread serves each VM until its end of the pipe
closes; resets and WDT events go to the supervisor through `events`.

| op | name       | a              | n              | x           | y                  | reply |
|----|------------|----------------|----------------|-------------|--------------------|------------|
| 1  | PWM        | pin            | 0              | freq Hz     | duty ns, -1 = stop | -          |
| 2  | PIN_W      | pin            | 0              | level       |                    | -          |
| 3  | PIN_R      | pin            | 0              |             |                    | value=level|
| 4  | ADC        | pin            | 0              | atten       | 1 = µV, 0 = raw    | value      |
| 5  | I2C_INIT   |                | 0              | scl pin     | sda pin            | value=1 if wired to the IMU |
| 6  | I2C_W      | addr (+0x80 unwired) | len      | bus freq    |                    | value 0/-ENODEV |
| 7  | I2C_R      | addr (+0x80 unwired) | memaddr len | bus freq | bytes to read      | y bytes    |
| 8  | I2C_SCAN   | 0x80 if unwired| 0              | bus freq    |                    | 16-byte bitmap |
| 9  | RESET      |                |                |             |                    | never      |
| 10 | SOFT_RESET |                |                |             |                    | never      |
| 11 | WDT        |                |                | timeout ms, 0 = feed |           | one-way    |
| 12 | CLOCK      | (time.ticks_us() and friends)                                    | board_us   |
| 13 | READY      | (the VM is up: shims installed)                                  | one-way    |
| 14 | SLEEP      |                |                | µs          |                    | wait = the sleep |
| 15 | FREQ       |                |                | MHz         |                    | value = the factor x 1024 |
| 16 | GC         |                |                | 1 = gc.collect() starts, 0 = ends |   | -          |
| 17 | CAL_DONE   |                |                | cold µs x100 | cold ratio x100   | value = a clock call's shim µs x100 |
"""

import errno
import os
import struct
import sys
import threading

REQUEST = struct.Struct("<BBHHHIIii")
REPLY = struct.Struct("<HHiIq")
REPLY_SIZE = 64
REPLY_DATA = REPLY_SIZE - REPLY.size
OPS = {name: code for code, name in enumerate(
    "PWM PIN_W PIN_R ADC I2C_INIT I2C_W I2C_R I2C_SCAN RESET SOFT_RESET WDT CLOCK READY SLEEP FREQ GC CAL_DONE".split(), 1)}
(PWM, PIN_W, PIN_R, ADC, I2C_INIT, I2C_W, I2C_R, I2C_SCAN, RESET, SOFT_RESET, WDT, CLOCK, READY, SLEEP, FREQ, GC,
 CAL_DONE) = OPS.values()
CAL = 0x40
ONE_WAY = (RESET, SOFT_RESET, WDT, READY)
EVENTS = {RESET: "reset", SOFT_RESET: "soft_reset", WDT: "wdt", READY: "ready"}
DATA_BYTES = {I2C_SCAN: 16}  # reply data of a call that failed in the board (I2C_R: y bytes)
UNWIRED = 0x80
SCAN_FIRST, SCAN_LAST = 0x08, 0x77


def pack_reply(seq, value, wait, board_us, data):
    """The fixed-size replies for one answer: data split REPLY_DATA bytes at a time."""
    chunks = [data[i:i + REPLY_DATA] for i in range(0, len(data), REPLY_DATA)] or [b""]
    return b"".join(REPLY.pack(seq, len(c), value, wait, int(board_us)) + c.ljust(REPLY_DATA, b"\0") for c in chunks)


class Bus:
    """Pipes for one VM and the thread that answers it from the board, on the board's clock."""

    def __init__(self, board, imu_pins, clock, events):
        """imu_pins: (scl, sda) the IMU hangs on, or None. clock: the board's BoardClock.
        events(kind, arg) gets 'ready', 'reset', 'soft_reset', 'wdt' (arg = timeout ms, 0 = feed), and
        'brownout' when the board's rail fell below the ESP32's brownout threshold."""
        self.board = board
        self.imu_pins = imu_pins
        self.clock = clock
        self.events = events
        self.ops = 0
        self._requests, self._vm_requests = os.pipe()  # the VM writes, we read
        self._vm_replies, self._replies = os.pipe()  # we write, the VM reads
        self.thread = None

    def child_fds(self):
        """(read fd, write fd) the VM gets; pass them with Popen(pass_fds=...)."""
        return self._vm_replies, self._vm_requests

    def start(self):
        """After the child is spawned: drop its ends, serve until it closes them."""
        os.close(self._vm_replies)
        os.close(self._vm_requests)
        self._vm_replies = self._vm_requests = None
        self.thread = threading.Thread(target=self._serve, name="gen0-bus", daemon=True)
        self.thread.start()

    def close(self):
        """Close what is still ours (never a number twice: it may belong to someone else by now)."""
        for name in ("_requests", "_replies", "_vm_replies", "_vm_requests"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)

    def _serve(self):
        requests = os.fdopen(self._requests, "rb", buffering=65536, closefd=False)
        try:
            while True:
                head = requests.read(REQUEST.size)
                if len(head) < REQUEST.size:
                    return
                op, a, n, seq, reads, work, shown, x, y = REQUEST.unpack(head)
                payload = requests.read(n) if n else b""
                self.ops += 1
                if op in ONE_WAY:
                    self.event(op, x)
                    continue
                try:
                    self.clock.local_reads(reads, shown, self.board.cost_us("clock"))
                    reply = self.answer(op, work, a, x, y, payload)
                except Exception as e:  # a board bug must not leave the VM waiting forever
                    print(f"host sim: bus op {op} failed: {e!r}", file=sys.stderr)
                    reply = (-errno.EIO, 0, self.clock.now(), bytes(y if op == I2C_R else DATA_BYTES.get(op, 0)))
                reply = pack_reply(seq, *reply)
                for i in range(0, len(reply), 4096):  # atomic pipe writes: the VM never sees part of a reply
                    os.write(self._replies, reply[i:i + 4096])
        except OSError:
            return  # the VM is gone and the supervisor closed our pipes

    def event(self, op, x):
        """A one-way message: the supervisor's business (or the clock's)."""
        if op == READY:
            self.clock.ready()
        self.events(EVENTS[op], x)

    def answer(self, op, work, a, x, y, payload):
        """A round trip after `work` µs of the VM's own work: (value, wait µs, board µs at its end, data)."""
        clock = self.clock
        if op & CAL:
            wait = x if op & ~CAL == SLEEP else 0  # a calibration sleep really waits: the VM times what follows
            if not wait:
                clock.calibrate(op & ~CAL, work)
            return 0, wait, clock.now(), bytes(y if op & ~CAL == I2C_R else DATA_BYTES.get(op & ~CAL, 0))
        if op == CAL_DONE:
            return round(clock.calibrated(x / 100 if x else None, y / 100 if y else None) * 100), 0, clock.now(), b""
        if op == CLOCK:
            _, end, wait = clock.call(op, work, self.board.cost_us("clock"))
            return 0, wait, end, b""
        if op == SLEEP:
            end, wait = clock.sleep(op, work, x)
            return 0, wait, end, b""
        if op == FREQ:
            _, end, wait = clock.set_freq(op, work, x)
            return clock.factor_q(), wait, end, b""
        if op == GC:
            _, end, wait = clock.gc(op, work, x == 1)
            return 0, wait, end, b""
        start, end, wait = clock.call(op, work, self.cost(op, a, x, y, payload))
        value, data = self.act(op, start, a, x, y, payload)
        if self.board.take_brownout():  # this call's plant steps sagged the rail too far (weak-supply)
            self.events("brownout", 0)
        return value, wait, end, data

    def cost(self, op, a, x, y, payload):
        """Modeled ESP32 µs of a pin call."""
        board = self.board
        if op == PWM:
            return board.cost_us("pwm")
        if op in (PIN_W, PIN_R):
            return board.cost_us("gpio")
        if op == ADC:
            return board.cost_us("adc")
        if op == I2C_W:
            return board.cost_us("i2c", len(payload), x)
        if op == I2C_R:
            return board.cost_us("i2c", y, x, restart=len(payload))
        if op == I2C_SCAN:
            return board.cost_us("i2c", 0, x) * (SCAN_LAST + 1 - SCAN_FIRST)
        return 0

    def act(self, op, t, a, x, y, payload):
        """Apply a pin call that starts at board time t: (value, reply data)."""
        board = self.board
        if op == PWM:
            board.pwm(t, a, x, None if y < 0 else y)
        elif op == PIN_W:
            board.pin_write(t, a, x)
        elif op == PIN_R:
            return board.pin_read(t, a), b""
        elif op == ADC:
            try:
                raw = board.adc_read(t, a, x)
                return (board.adc_uv(a, raw, x) if y else raw), b""
            except ValueError:  # an ADC2 pin: nothing is wired there
                return 0, b""
        elif op == I2C_INIT:
            return (1 if self.imu_pins == (x, y) else 0), b""
        elif op == I2C_W:
            return (0 if not a & UNWIRED and board.i2c_write(t, a, payload) else -errno.ENODEV), b""
        elif op == I2C_R:
            data = None
            if not a & UNWIRED and (not payload or board.i2c_write(t, a, payload)):
                data = board.i2c_read(t, a, y)
            if data is None:
                return -errno.ENODEV, bytes(y)
            return 0, bytes(data[:y]).ljust(y, b"\0")
        elif op == I2C_SCAN:
            found = bytearray(16)
            each = board.cost_us("i2c", 0, x)
            for i, addr in enumerate(range(SCAN_FIRST, SCAN_LAST + 1)):
                if not a & UNWIRED and board.i2c_write(t + (i + 1) * each, addr, b""):
                    found[addr >> 3] |= 1 << (addr & 7)
            return 0, bytes(found)
        else:
            print(f"host sim: unknown bus op {op} from the VM", file=sys.stderr)
            return -errno.EINVAL, b""
        return 0, b""

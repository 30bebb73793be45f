"""The supervisor's end of the wire between the VM's `machine` shim and the VirtualBoard.

Two pipes per VM, inherited by the child as plain fds (the unix VM opens them
with open(fd)). Binary and small because the firmware makes thousands of
calls a second:

    request  <BBHHxxiiq  op, a, n, seq, x, y, t_us   + n payload bytes (one write)
    reply    <HHiI       seq, k, value, cost_us      + k data bytes, padded to REPLY_SIZE

t_us is the VM's clock (µs since its power-on, not wrapped). value < 0 is
-errno. Every reply is REPLY_SIZE bytes written at once, so the VM reads each
whole with one readinto; more data than fits goes in several replies with the
same seq. A Ctrl-C in the VM can abandon a call at any point; the seq lets it
skip the late reply. PWM, pin writes, WDT and clock reports are one-way (seq 0);
a reset request is never answered (the VM is replaced). One thread serves each
VM until its end of the pipe closes; resets and WDT events go to the supervisor
through `events`.

| op | name       | a              | n              | x           | y                  | reply data |
|----|------------|----------------|----------------|-------------|--------------------|------------|
| 1  | PWM        | pin            | 0              | freq Hz     | duty ns, -1 = stop | one-way    |
| 2  | PIN_W      | pin            | 0              | level       |                    | one-way    |
| 3  | PIN_R      | pin            | 0              |             |                    | value=level|
| 4  | ADC        | pin            | 0              | atten       | 1 = µV, 0 = raw    | value      |
| 5  | I2C_INIT   |                | 0              | scl pin     | sda pin            | value=1 if wired to the IMU |
| 6  | I2C_W      | addr (+0x80 unwired) | len      | bus freq    |                    | value 0/-ENODEV |
| 7  | I2C_R      | addr (+0x80 unwired) | memaddr len | bus freq | bytes to read      | y bytes    |
| 8  | I2C_SCAN   | 0x80 if unwired| 0              | bus freq    |                    | 16-byte bitmap |
| 9  | RESET      |                |                |             |                    | never      |
| 10 | SOFT_RESET |                |                |             |                    | never      |
| 11 | WDT        |                |                | timeout ms, 0 = feed |           | one-way    |
| 12 | TIME       | (virtual clock report)                                            | one-way    |
| 13 | READY      | (the VM is up: shims installed)                                  | one-way    |
| 14 | EXIT       | (the VM is leaving: its last time)                               | one-way    |
"""

import errno
import os
import struct
import sys
import threading

REQUEST = struct.Struct("<BBHHxxiiq")
REPLY = struct.Struct("<HHiI")
REPLY_SIZE = 64
REPLY_DATA = REPLY_SIZE - REPLY.size
OPS = {name: code for code, name in enumerate(
    "PWM PIN_W PIN_R ADC I2C_INIT I2C_W I2C_R I2C_SCAN RESET SOFT_RESET WDT TIME READY EXIT".split(), 1)}
PWM, PIN_W, PIN_R, ADC, I2C_INIT, I2C_W, I2C_R, I2C_SCAN, RESET, SOFT_RESET, WDT, TIME, READY, EXIT = OPS.values()
ANSWERED = (PIN_R, ADC, I2C_INIT, I2C_W, I2C_R, I2C_SCAN)
EVENTS = {RESET: "reset", SOFT_RESET: "soft_reset", WDT: "wdt", TIME: "time", READY: "ready", EXIT: "exit"}
UNWIRED = 0x80
SCAN_FIRST, SCAN_LAST = 0x08, 0x77


def pack_reply(seq, value, cost, data):
    """The fixed-size replies for one answer: data split REPLY_DATA bytes at a time."""
    chunks = [data[i:i + REPLY_DATA] for i in range(0, len(data), REPLY_DATA)] or [b""]
    return b"".join(REPLY.pack(seq, len(c), value, cost) + c.ljust(REPLY_DATA, b"\0") for c in chunks)


class Bus:
    """Pipes for one VM and the thread that answers it from the board."""

    def __init__(self, board, imu_pins, events):
        """imu_pins: (scl, sda) the IMU hangs on, or None. events(kind, t_us, arg) gets
        'ready', 'exit', 'time', 'reset', 'soft_reset', 'wdt' (arg = timeout ms, 0 = feed)."""
        self.board = board
        self.imu_pins = imu_pins
        self.events = events
        self.ops = 0
        self.last_t = 0  # the VM's clock at its latest request
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
                op, a, n, seq, x, y, t = REQUEST.unpack(head)
                payload = requests.read(n) if n else b""
                self.ops += 1
                self.last_t = t
                try:
                    answer = self.handle(op, a, x, y, t, payload)
                except Exception as e:  # a board bug must not leave the VM waiting forever
                    print(f"host sim: bus op {op} failed: {e!r}", file=sys.stderr)
                    answer = (-errno.EIO, 0, bytes({I2C_R: y, I2C_SCAN: 16}.get(op, 0))) if op in ANSWERED else None
                if answer is not None:
                    reply = pack_reply(seq, *answer)
                    for i in range(0, len(reply), 4096):  # atomic pipe writes: the VM never sees part of a reply
                        os.write(self._replies, reply[i:i + 4096])
        except OSError:
            return  # the VM is gone and the supervisor closed our pipes

    def handle(self, op, a, x, y, t, payload):
        """Apply one request to the board: (value, cost_us, data) to answer, or None (one-way)."""
        board = self.board
        if op == PWM:
            board.pwm(t, a, x, None if y < 0 else y)
        elif op == PIN_W:
            board.pin_write(t, a, x)
        elif op == PIN_R:
            return board.pin_read(t, a), 0, b""
        elif op == ADC:
            try:
                raw = board.adc_read(t, a, x)
                value = board.adc_uv(a, raw, x) if y else raw
            except ValueError:  # an ADC2 pin: nothing is wired there
                value = 0
            return value, board.cost_us("adc"), b""
        elif op == I2C_INIT:
            return (1 if self.imu_pins == (x, y) else 0), 0, b""
        elif op == I2C_W:
            acked = not a & UNWIRED and board.i2c_write(t, a, payload)
            return (0 if acked else -errno.ENODEV), board.cost_us("i2c", len(payload), x), b""
        elif op == I2C_R:
            data = None
            if not a & UNWIRED and (not payload or board.i2c_write(t, a, payload)):
                data = board.i2c_read(t, a, y)
            cost = board.cost_us("i2c", len(payload) + y, x)
            if data is None:
                return -errno.ENODEV, cost, bytes(y)
            return 0, cost, bytes(data[:y]).ljust(y, b"\0")
        elif op == I2C_SCAN:
            found = bytearray(16)
            cost = 0
            for addr in range(SCAN_FIRST, SCAN_LAST + 1):
                cost += board.cost_us("i2c", 0, x)
                if not a & UNWIRED and board.i2c_write(t + cost, addr, b""):
                    found[addr >> 3] |= 1 << (addr & 7)
            return 0, cost, bytes(found)
        elif op in EVENTS:
            self.events(EVENTS[op], t, x)
        else:
            print(f"host sim: unknown bus op {op} from the VM", file=sys.stderr)
        return None

"""Host commands: each text line gets exactly one ack (seq + code + optional data).

Handlers return the ack's data (dict -> JSON, or None) or raise Refused(code, why);
a ValueError is a bad argument. The host retries a command whose ack it missed with
the same seq, so a repeat of the last line is re-acked from memory, not run twice.
Big payloads come as an acked chunked transfer (`xfer`) into a named slot.
"""

import binascii
import errno
import gc
import json
import os
import time

import machine
import protocol as P
import telemetry

RATE_RANGE = (10, 1000)
FILE_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"


class Refused(Exception):
    """A command the board will not (or cannot) carry out: the ack's code and why."""

    def __init__(self, code, why):
        super().__init__(why)
        self.code = code


def write_file_atomically(name, data):
    """name.tmp, then rename over name (LittleFS and POSIX replace; FAT needs the old one gone)."""
    tmp = name + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.rename(tmp, name)
    except OSError as e:
        if e.args[0] != errno.EEXIST:
            raise
        os.remove(name)
        os.rename(tmp, name)


def check_file_name(name):
    if not name or name in (".", "..") or any(c not in FILE_NAME_CHARS for c in name):
        raise ValueError("file name %r: use letters, digits and _ . -" % name)


# slot kind -> (check the slot's argument at begin, store the received bytes at end)
SLOTS = {"file": (check_file_name, write_file_atomically)}


class Transfer:
    """One chunked upload: announced size and CRC, chunks in order, checked at the end."""

    def __init__(self, slot, size, crc, max_bytes):
        kind, _, arg = slot.partition(":")
        if kind not in SLOTS:
            raise ValueError("no slot kind %r (kinds: %s)" % (kind, ", ".join(SLOTS)))
        SLOTS[kind][0](arg)
        if size > max_bytes:
            raise Refused(P.E_TOO_BIG, "%d bytes is more than the %d this board holds" % (size, max_bytes))
        gc.collect()
        try:
            self.buf = bytearray(size)
        except MemoryError:
            raise Refused(P.E_TOO_BIG, "no %d bytes of RAM free (%d free)" % (size, gc.mem_free()))
        self.slot, self.kind, self.arg = slot, kind, arg
        self.size, self.crc, self.n = size, crc, 0

    def put(self, offset, data):
        if offset != self.n:
            raise Refused(P.E_OFFSET, "expected offset %d, got %d" % (self.n, offset))
        if self.n + len(data) > self.size:
            raise Refused(P.E_TOO_BIG, "chunk runs past the announced %d bytes" % self.size)
        self.buf[self.n:self.n + len(data)] = data
        self.n += len(data)

    def end(self):
        if self.n != self.size:
            raise Refused(P.E_CHECK, "got %d of %d bytes" % (self.n, self.size))
        crc = binascii.crc32(self.buf)
        if crc != self.crc:
            raise Refused(P.E_CHECK, "crc32 %08x, announced %08x" % (crc, self.crc))
        try:
            SLOTS[self.kind][1](self.arg, self.buf)
        except OSError as e:
            raise Refused(P.E_IO, "storing %s failed: %s" % (self.slot, e))
        return {"slot": self.slot, "size": self.size, "crc": "%08x" % crc}


def _int(text, what):
    try:
        return int(text)
    except ValueError:
        raise ValueError("%s must be an integer, not %r" % (what, text))


class Commands:
    """Parses the host's lines (fed from the loop's rx poll) and runs them on the robot."""

    def __init__(self, robot):
        self.robot = robot
        self.port = robot.port
        self.reader = P.CommandReader()
        self.transfer = None
        self.last = None  # (seq, name, args) of the last command run ...
        self.last_ack = None  # ... and its (code, data)
        self.table = {
            "hello": self.hello, "ping": self.ping, "status": self.status, "set": self.set,
            "stop": self.stop, "rate": self.rate, "telemetry": self.telemetry, "xfer": self.xfer, "reset": self.reset,
        }

    def feed(self, buf, n):
        for seq, name, args in self.reader.feed(buf, n):
            self.run(seq, name, args)

    def run(self, seq, name, args):
        if name is None:  # a bad line: args is the error code
            self.robot.latched |= telemetry.F_RX_ERROR
            self.port.ack(seq, args, P.error_text(args).encode())
            return
        key = (seq, name, args)
        if key == self.last and name != "hello":  # the host's retry: same answer, no second run
            self.port.ack(seq, self.last_ack[0], self.last_ack[1])
            return
        handler = self.table.get(name)
        try:
            if handler is not None:
                data = handler(args)
            elif name in self.robot.mode_names:
                data = self.robot.enter(name, args)
            else:
                raise Refused(P.E_UNKNOWN, "no command %r" % name)
            code = P.E_OK
            data = json.dumps(data).encode() if data is not None else b""
        except Refused as e:
            code, data = e.code, str(e).encode()
        except ValueError as e:
            code, data = P.E_ARG, str(e).encode()
        except OSError as e:
            code, data = P.E_IO, str(e).encode()
        except MemoryError:
            code, data = P.E_TOO_BIG, b"out of memory"
        self.last, self.last_ack = key, (code, data)
        self.port.ack(seq, code, data)
        if name == "hello" and code == P.E_OK:
            self.robot.send_hello()
        elif name == "reset":
            time.sleep_ms(50)  # let the ack leave the UART
            machine.reset()

    def hello(self, args):
        return None

    def ping(self, args):
        return None

    def stop(self, args):
        if args:
            raise ValueError("stop takes no arguments")
        return self.robot.enter("idle", ())

    def reset(self, args):
        self.robot.safe()
        return None

    def status(self, args):
        r = self.robot
        rd = self.reader
        prog = r.modes[r.mode_names.index("program")]
        return {
            "mode": r.mode.name, "rate_hz": r.rate_hz, "telemetry_every": r.telemetry_every,
            "ticks": r.ticks, "overruns": r.overruns, "busy_us": r.busy_us,
            "rx": {"bytes": r.rx_bytes, "lines": rd.lines, "crc": rd.crc_errors, "syntax": rd.syntax_errors,
                   "overflow": rd.overflows},
            "tx_frames": self.port.frames, "uptime_ms": time.ticks_diff(time.ticks_ms(), r.started_ms),
            "mem_free": gc.mem_free(), "program": prog.params if r.mode is prog else None,
            "progress": [prog.k, prog.n] if r.mode is prog else None,
            "imu": r.imu.ok, "imu_error": r.imu.error, "watchdog": bool(r.mode.flags & telemetry.F_WATCHDOG), "limp": r.limp(),
            "model": "", "transfer": [self.transfer.slot, self.transfer.n, self.transfer.size] if self.transfer else None,
        }

    def set(self, args):
        r = self.robot
        if r.mode.name != "direct":
            raise Refused(P.E_STATE, "set needs direct mode (send `direct` first); mode is %s" % r.mode.name)
        if len(args) != len(r.servos):
            raise ValueError("set takes %d pulses in us, one per joint" % len(r.servos))
        r.mode.setpoint([_int(a, "pulse") for a in args])
        return None

    def rate(self, args):
        if len(args) != 1:
            raise ValueError("rate takes one argument: the loop rate in Hz")
        hz = _int(args[0], "rate")
        if not RATE_RANGE[0] <= hz <= RATE_RANGE[1]:
            raise Refused(P.E_RANGE, "rate must be %d..%d Hz" % RATE_RANGE)
        if self.robot.mode.name == "program":
            raise Refused(P.E_BUSY, "a program is running at %d Hz; `stop` it first" % self.robot.rate_hz)
        self.robot.set_rate(hz)
        return {"rate_hz": hz}

    def telemetry(self, args):
        if len(args) != 1:
            raise ValueError("telemetry takes one argument: send a frame every N ticks (0 = off)")
        every = _int(args[0], "telemetry")
        if not 0 <= every <= 1000:
            raise Refused(P.E_RANGE, "telemetry must be 0..1000 ticks")
        self.robot.telemetry_every = every
        return {"telemetry_every": every}

    def xfer(self, args):
        op = args[0] if args else ""
        if op == "begin":
            if len(args) != 4:
                raise ValueError("xfer begin <slot> <size> <crc32hex>")
            size = _int(args[2], "size")
            try:
                crc = int(args[3], 16)
            except ValueError:
                raise ValueError("crc32 must be 8 hex digits, not %r" % args[3])
            if size < 0:
                raise ValueError("size must be >= 0")
            self.transfer = None  # a new begin replaces an unfinished transfer
            self.transfer = Transfer(args[1], size, crc, self.robot.cfg["xfer_max_bytes"])
            return {"slot": args[1], "size": size, "chunk": P.CHUNK}
        if op == "abort":
            self.transfer = None
            gc.collect()
            return None
        if op not in ("put", "end"):
            raise ValueError("xfer begin|put|end|abort, not %r" % op)
        t = self.transfer
        if t is None:
            raise Refused(P.E_STATE, "no transfer in progress (xfer begin first)")
        if op == "put":
            if len(args) != 3:
                raise ValueError("xfer put <offset> <base64>")
            t.put(_int(args[1], "offset"), P.decode_chunk(args[2]))
            return None
        self.transfer = None  # end: finished either way; a failed one must start again
        done = t.end()
        gc.collect()
        return done

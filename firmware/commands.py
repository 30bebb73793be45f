"""Host commands: each text line gets exactly one ack (seq + code + optional data).

Handlers return the ack's data (dict -> JSON, bytes -> as they are, or None) or raise
protocol.Refused(code, why); a ValueError is a bad argument. The host retries a command whose ack it
missed with the same seq, so a repeat of the last line is re-acked from memory, not run twice.
Big payloads come as a transfer (`xfer`) into a slot -- a file, the model store, or the
trajectory that track mode follows -- their data as binary records, several in flight, each
acked (PROTOCOL.md "Records"), or as base64 chunks, one a line.
"""

import binascii
import gc
import json
import time

import machine
import mlp
import models
import programs
import protocol as P
import telemetry
from protocol import Refused

RATE_RANGE = (10, 1000)
FILE_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
TIMED_MODES = ("program", "track")  # their tick counts were fixed at the rate they started with
MTIME_MAX = 10000  # `mtime` runs at most this many inferences ...
MTIME_BUDGET_US = 20000  # ... and no more than fit this long: one command phase, a few ticks late at most


_DONE = (P.E_OK, b"")  # the ack of a `set` that ran


def check_file_name(robot, name):
    if not name or name in (".", "..") or any(c not in FILE_NAME_CHARS for c in name):
        raise ValueError("file name %r: use letters, digits and _ . -" % name)


def store_file(robot, name, data):
    """name.tmp, then renamed over name."""
    tmp = name + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    models.rename_over(tmp, name)


def _model_driving(robot):
    return robot.mode.name == "track" and robot.mode.controller.name == "model"


def check_model_slot(robot, arg):
    if arg:
        raise ValueError("slot model takes no name (xfer begin model <size> <crc32hex>)")
    if _model_driving(robot):
        raise Refused(P.E_BUSY, "the model is driving the joints (track); `stop` first")


def store_model(robot, arg, blob):
    """The model store's install, its refusals as protocol codes; the active model stays on any."""
    check_model_slot(robot, arg)
    try:
        return robot.models.install(blob)
    except mlp.BlobError as e:
        raise Refused(getattr(P, e.kind), str(e))
    except MemoryError:
        gc.collect()
        raise Refused(P.E_TOO_BIG, "no RAM to build the model (%d bytes free)" % gc.mem_free())


def check_traj_slot(robot, arg):
    """A new trajectory replaces the held one: unless track mode is following it, it goes first, so
    the two need not fit the (fragmenting) heap at once."""
    if arg:
        raise ValueError("slot traj takes no name (xfer begin traj <size> <crc32hex>)")
    track = robot.mode_named("track")
    if robot.mode is not track:
        track.sent = None


def store_traj(robot, arg, data):
    return robot.mode_named("track").load(data)


# slot kind -> (check(robot, argument) at begin, store(robot, argument, bytes) at end -> dict or None)
SLOTS = {
    "file": (check_file_name, store_file),
    "model": (check_model_slot, store_model),
    "traj": (check_traj_slot, store_traj),
}


class Transfer:
    """One chunked upload: announced size and CRC, chunks in order, checked at the end."""

    def __init__(self, robot, slot, size, crc, max_bytes):
        kind, _, arg = slot.partition(":")
        if kind not in SLOTS:
            raise ValueError("no slot kind %r (kinds: %s)" % (kind, ", ".join(SLOTS)))
        SLOTS[kind][0](robot, arg)
        if size > max_bytes:
            raise Refused(P.E_TOO_BIG, "%d bytes is more than the %d this board holds" % (size, max_bytes))
        gc.collect()
        try:
            self.buf = bytearray(size)
        except MemoryError:
            raise Refused(P.E_TOO_BIG, "no %d bytes of RAM in one piece (%d free in all, in pieces); `reset` "
                                       "defragments it (the board boots with its model)" % (size, gc.mem_free()))
        self.robot, self.slot, self.kind, self.arg = robot, slot, kind, arg
        self.size, self.crc, self.n = size, crc, 0

    def put(self, offset, src, at, n):
        """src[at:at + n] as the bytes from offset on: they must be the next ones (E_OFFSET says which
        offset is expected) and fit the announced size. Allocation-free where viper copies."""
        if offset != self.n:
            raise Refused(P.E_OFFSET, "expected offset %d, got %d" % (self.n, offset))
        if offset + n > self.size:
            raise Refused(P.E_TOO_BIG, "chunk runs past the announced %d bytes" % self.size)
        P.copy(self.buf, offset, src, at, n)
        self.n = offset + n

    def end(self):
        if self.n != self.size:
            raise Refused(P.E_CHECK, "got %d of %d bytes" % (self.n, self.size))
        crc = binascii.crc32(self.buf)
        if crc != self.crc:
            raise Refused(P.E_CHECK, "crc32 %08x, announced %08x" % (crc, self.crc))
        try:
            stored = SLOTS[self.kind][1](self.robot, self.arg, self.buf)
        except OSError as e:
            raise Refused(P.E_IO, "storing %s failed: %s" % (self.slot, e))
        done = {"slot": self.slot, "size": self.size, "crc": "%08x" % crc}
        if stored:
            done.update(stored)
        return done


class Commands:
    """Parses the host's lines (fed from the loop's rx poll) and runs them on the robot.

    Each line is handled as it completes. A plain `set` in direct mode takes the fast path: parsed
    in place by the reader (CommandReader.take), the pulses into preallocated ints, the ack from
    the port's preallocated frame: allocation-free, so a stream of them never wakes the garbage
    collector. Everything else (and `set` in any other shape or mode) goes the general way, run(),
    which gives the fast path's lines the same answers: E_STATE, E_ARG, the retry's re-ack.
    """

    def __init__(self, robot):
        self.robot = robot
        self.port = robot.port
        self.reader = P.CommandReader()
        self.transfer = None
        self.last_ack = None  # (code, data) of the last command run, whose line is ...
        self.prev = bytearray(P.MAX_LINE - 1)  # ... prev[:prev_n] (a line is its (seq, name, args) one to one)
        self.prev_n = -1
        self.prev_seq = -1
        self.fast = True  # the fast path for `set` (False: every line the general way; the tests compare)
        self.pulses = [0] * len(robot.servos)  # the fast path's pulses
        self.on_line = self.line  # a bound method made once: the reader calls it for every line
        self.table = {
            "hello": self.hello, "ping": self.ping, "status": self.status, "set": self.set,
            "stop": self.stop, "rate": self.rate, "telemetry": self.telemetry, "xfer": self.xfer, "reset": self.reset,
            "mtest": self.mtest, "mtime": self.mtime, "stages": self.stages,
        }

    def feed(self, buf, n):
        self.reader.feed_each(buf, n, self.on_line)

    def line(self, line, k, over):
        """One completed line, line[:k] (the reader's buffer, this call only); over: it ran past MAX_LINE."""
        if line[0] == P.RECORD and not over:
            self.record(line, k)
            return
        if self.fast and not over and self.robot.mode.name == "direct":
            seq = self.reader.take(line, k, b"set", self.pulses)
            if seq:
                if seq == self.prev_seq and self.repeats(line, k):
                    ack = self.last_ack
                    self.port.ack(seq, ack[0], ack[1])
                    return
                self.robot.mode.setpoint(self.pulses)
                self.keep(line, k, seq, _DONE)
                self.port.ack(seq, P.E_OK, b"")
                return
        seq, name, args = self.reader.finish(line, k, over)
        self.run(seq, name, args, line, k)

    def record(self, line, k):
        """A transfer's binary record (PROTOCOL.md "Records"): its data stored at its offset, acked by its
        seq. No command: no duplicate check (an offset is stored once) and no garbage collection after
        it (records stream). Allocation-free when it is the expected one."""
        n = self.reader.open_record(line, k)
        if n < 0:  # corrupted or cut by dropped bytes: its seq cannot be trusted; the next record says the gap
            self.robot.latched |= telemetry.F_RX_ERROR
            self.port.ack(0, P.E_CRC, b"")
            return
        seq = self.reader.record[0]
        t = self.transfer
        try:
            if t is None:
                raise Refused(P.E_STATE, "no transfer in progress (xfer begin first)")
            t.put(self.reader.record[1], line, P.REC_HEAD, n)
        except Refused as e:
            self.port.ack(seq, e.code, (b"%d" % t.n) if e.code == P.E_OFFSET else str(e).encode())
            return
        self.port.ack(seq, P.E_OK, b"")

    def repeats(self, line, k):
        """line[:k] is the line of the last command run (the host's retry)."""
        if k != self.prev_n:
            return False
        prev = self.prev
        for i in range(k):
            if line[i] != prev[i]:
                return False
        return True

    def keep(self, line, k, seq, ack):
        self.prev[:] = line  # the whole buffer: a slice of it would allocate
        self.prev_n = k
        self.prev_seq = seq
        self.last_ack = ack

    def run(self, seq, name, args, line, k):
        """(seq, name, args) from the reader's finish() for the line line[:k]: run it and ack."""
        if name is None:  # a bad line: args is the error code
            self.robot.latched |= telemetry.F_RX_ERROR
            self.port.ack(seq, args, P.error_text(args).encode())
            return
        if name != "hello" and seq == self.prev_seq and self.repeats(line, k):  # the host's retry: same answer
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
            if data is None:
                data = b""
            elif not isinstance(data, bytes):
                data = json.dumps(data).encode()
        except Refused as e:
            code, data = e.code, str(e).encode()
        except ValueError as e:
            code, data = P.E_ARG, str(e).encode()
        except OSError as e:
            code, data = P.E_IO, str(e).encode()
        except MemoryError:
            code, data = P.E_TOO_BIG, b"out of memory"
        self.keep(line, k, seq, (code, data))
        self.port.ack(seq, code, data)
        if name == "hello" and code == P.E_OK:
            self.robot.send_hello()
        elif name == "reset":
            self.port.flush()
            time.sleep_ms(50)  # let the ack leave the UART
            machine.reset()
        if name != "set":  # `set` streams fast and allocates little
            gc.collect()  # so the next command's objects fill the heap's small holes, not its big pieces

    def hello(self, args):
        return None

    def ping(self, args):
        """`ping [token]`: the token comes back as the ack's data, so the host can tell this answer from
        answers to an earlier connection's lines (PROTOCOL.md "Connections")."""
        return " ".join(args).encode() if args else None

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
        timed = r.mode.name in TIMED_MODES
        return {
            "mode": r.mode.name, "rate_hz": r.rate_hz, "telemetry_every": r.telemetry_every,
            "ticks": r.ticks, "overruns": r.overruns, "busy_us": r.busy_us,
            "rx": {"bytes": r.rx_bytes, "lines": rd.lines, "crc": rd.crc_errors, "syntax": rd.syntax_errors,
                   "overflow": rd.overflows},
            "tx_frames": self.port.frames, "tx_dropped": self.port.dropped, "tx_waits": self.port.waited, "uptime_ms": time.ticks_diff(time.ticks_ms(), r.started_ms),
            "mem_free": gc.mem_free(), "program": r.mode.params if r.mode.name == "program" else None,
            "track": ({"trajectory": r.mode.params, "controller": r.mode.controller.info()}
                      if r.mode.name == "track" else None),
            "progress": [r.mode.k, r.mode.n] if timed else None,
            "imu": r.imu.ok, "imu_error": r.imu.error, "watchdog": bool(r.mode.flags & telemetry.F_WATCHDOG), "limp": r.limp(),
            "model": r.models.hex_id, "model_note": r.models.note,
            "transfer": [self.transfer.slot, self.transfer.n, self.transfer.size] if self.transfer else None,
        }

    def stages(self, args):
        """Where the ticks since the last `stages` went: per stage mean and longest µs (then start again)."""
        if args:
            raise ValueError("stages takes no arguments")
        return dict(self.robot.stages.take(), rate_hz=self.robot.rate_hz, tx_waits=self.port.waited,
                    tx_dropped=self.port.dropped)

    def set(self, args):
        r = self.robot
        if r.mode.name != "direct":
            raise Refused(P.E_STATE, "set needs direct mode (send `direct` first); mode is %s" % r.mode.name)
        if len(args) != len(r.servos):
            raise ValueError("set takes %d pulses in us, one per joint" % len(r.servos))
        r.mode.setpoint([programs.integer(a, "pulse") for a in args])
        return None

    def rate(self, args):
        if len(args) != 1:
            raise ValueError("rate takes one argument: the loop rate in Hz")
        hz = programs.integer(args[0], "rate")
        if not RATE_RANGE[0] <= hz <= RATE_RANGE[1]:
            raise Refused(P.E_RANGE, "rate must be %d..%d Hz" % RATE_RANGE)
        if self.robot.mode.name in TIMED_MODES:
            raise Refused(P.E_BUSY, "%s is running at %d Hz; `stop` it first" % (self.robot.mode.name, self.robot.rate_hz))
        self.robot.set_rate(hz)
        return {"rate_hz": hz}

    def telemetry(self, args):
        if len(args) != 1:
            raise ValueError("telemetry takes one argument: send a frame every N ticks (0 = off)")
        every = programs.integer(args[0], "telemetry")
        if not 0 <= every <= 1000:
            raise Refused(P.E_RANGE, "telemetry must be 0..1000 ticks")
        self.robot.telemetry_every = every
        return {"telemetry_every": every}

    def xfer(self, args):
        op = args[0] if args else ""
        if op == "begin":
            if len(args) != 4:
                raise ValueError("xfer begin <slot> <size> <crc32hex>")
            size = programs.integer(args[2], "size")
            try:
                crc = int(args[3], 16)
            except ValueError:
                raise ValueError("crc32 must be 8 hex digits, not %r" % args[3])
            if size < 0:
                raise ValueError("size must be >= 0")
            self.transfer = None  # a new begin replaces an unfinished transfer
            self.transfer = Transfer(self.robot, args[1], size, crc, self.robot.cfg["xfer_max_bytes"])
            return {"slot": args[1], "size": size, "chunk": P.CHUNK, "window": self.robot.rx_window()}
        if op == "abort":
            self.transfer = None
            return None
        if op not in ("put", "end"):
            raise ValueError("xfer begin|put|end|abort, not %r" % op)
        t = self.transfer
        if t is None:
            raise Refused(P.E_STATE, "no transfer in progress (xfer begin first)")
        if op == "put":
            if len(args) != 3:
                raise ValueError("xfer put <offset> <base64>")
            data = P.decode_chunk(args[2])
            t.put(programs.integer(args[1], "offset"), data, 0, len(data))
            return None
        self.transfer = None  # end: finished either way; a failed one must start again
        return t.end()

    def mtest(self, args):
        """The active model's int8 outputs (raw bytes, row after row) for int8 input rows (base64)."""
        model = self.robot.models.model
        if model is None:
            raise Refused(P.E_STATE, "no model on this robot: deploy one (`host deploy`)")
        if len(args) != 1:
            raise ValueError("mtest <base64 of int8 input rows, %d bytes each>" % model.n_in)
        data = P.decode_chunk(args[0])
        if not data or len(data) % model.n_in:
            raise ValueError("%d bytes is not a whole number of %d-byte input rows" % (len(data), model.n_in))
        x, y = bytearray(model.n_in), bytearray(model.n_out)
        out = bytearray()
        for r in range(0, len(data), model.n_in):
            x[:] = data[r:r + model.n_in]
            model.infer_q(x, y)
            out += y
        return bytes(out)

    def mtime(self, args):
        """µs per inference of the active model: infer_q on fixed inputs, n times or until MTIME_BUDGET_US.

        One run first sizes batches of ~1/8 of the budget; the clock is read between batches only,
        so it costs the figure nothing and a slow board (or a big model, or a busy host under the
        virtual Gen0) still stops near the budget."""
        if len(args) != 1:
            raise ValueError("mtime <n>: run the active model n times (1..%d)" % MTIME_MAX)
        n = programs.integer(args[0], "n")
        if not 1 <= n <= MTIME_MAX:
            raise Refused(P.E_RANGE, "mtime runs 1..%d inferences, not %d" % (MTIME_MAX, n))
        model = self.robot.models.model
        if model is None:
            raise Refused(P.E_STATE, "no model on this robot to time: deploy one (`host deploy`)")
        x, y = bytearray(model.n_in), bytearray(model.n_out)
        for i in range(model.n_in):
            x[i] = (i * 37 + 11) & 0xFF  # fixed int8 inputs, not all zero
        infer = model.infer_q
        t = time.ticks_us()
        infer(x, y)
        batch = max(1, MTIME_BUDGET_US // 8 // max(time.ticks_diff(time.ticks_us(), t), 1))
        done = us = 0
        t = time.ticks_us()
        while done < n and us < MTIME_BUDGET_US:
            k = min(batch, n - done)
            for _ in range(k):
                infer(x, y)
            done += k
            us = time.ticks_diff(time.ticks_us(), t)
        return {"n": done, "us": us, "us_per_inference": round(us / done, 2), "model": self.robot.models.hex_id,
                "emitter": model.emitter}

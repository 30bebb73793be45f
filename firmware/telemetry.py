"""What the board tells the host: hello, telemetry, acks and logs, as protocol frames.

The telemetry payload is described field by field in the hello (name, struct type,
unit, scale) and packed in place into a preallocated frame, so a tick allocates
nothing. Every frame carries the next sequence number (all types share one counter,
so the host counts lost frames) and a device timestamp in µs.
"""

import json
import struct
import time

import emit
import imu
import protocol as P

# flags byte, bit i = FLAGS[i]
FLAGS = ("watchdog", "limp", "clamped", "imu_missing", "rx_error", "fallback")
F_WATCHDOG = 1  # direct mode: the host went silent, holding
F_LIMP = 2  # some joint gets no pulses (idle limp, or nothing commanded yet)
F_CLAMPED = 4  # a pulse was clamped to its joint's limits since the last frame
F_IMU_MISSING = 8  # no IMU readings (absent or failed); ax..gz are 0
F_RX_ERROR = 16  # a bad command line (CRC, syntax, too long) since the last frame
F_FALLBACK = 32  # track: a model input left its trained range since the last frame; the fallback drove

ENDIAN = "<"
ACK_MAX_PAYLOAD = 1024  # acks and logs (longer ones: protocol.ack_into/log_into); the hello is framed separately


def schema(cfg):
    """[{name, type, unit, scale}] of the telemetry payload, in packing order."""
    fields = [("busy_us", "H", "us", 1), ("overruns", "H", "", 1), ("mode", "B", "", 1), ("flags", "B", "", 1)]
    for j in cfg["joints"]:
        n = j["name"]
        fields += [(n + "_cmd_us", "H", "us", 1), (n + "_raw", "H", "counts", 1), (n + "_deg", "h", "deg", 0.01),
                   (n + "_target_deg", "h", "deg", 0.01)]
    m = cfg.get("imu") or {"accel_fs_g": 2, "gyro_fs_dps": 250}
    g = imu.accel_g_per_lsb(m["accel_fs_g"])
    w = imu.gyro_dps_per_lsb(m["gyro_fs_dps"])
    fields += [("ax", "h", "g", g), ("ay", "h", "g", g), ("az", "h", "g", g)]
    fields += [("gx", "h", "deg/s", w), ("gy", "h", "deg/s", w), ("gz", "h", "deg/s", w)]
    fields.append(("model", "B", "", 1))
    return [{"name": n, "type": t, "unit": u, "scale": s} for n, t, u, s in fields]


TX_FIFO = 128  # the ESP32 UART's hardware TX FIFO
TX_FILL = 112  # fill the modeled FIFO to this at most: the model's clock is the board's, not the UART's
TX_QUEUE = 2048  # frames waiting for the UART (an ack or a log of up to ACK_MAX_PAYLOAD fits many times)

# A frame into the queue, a ring: allocation-free (a slice of a view would allocate one), viper where the build has it.
PUT = """
def put(q, at: int, src, n: int):
    d = ptr8(q)
    s = ptr8(src)
    i = 0
    while i < n:
        d[at] = s[i]
        at += 1
        if at == QUEUE:
            at = 0
        i += 1
""".replace("QUEUE", str(TX_QUEUE))
_put = emit.under("@micropython.viper", PUT, "put") or emit.build(PUT, "put", {"ptr8": emit.same})


class Port:
    """Frames out to a stream (sys.stdout.buffer on the board) that takes write(buf, off, n), paced for the UART.

    An ESP32's stdout writer puts what fits into the UART's 128-byte FIFO and, while bytes remain,
    sleeps until the next FreeRTOS tick (10 ms): a 200-byte ack would cost a 200 Hz loop two ticks.
    So frames go into a ring, and pump() (once a tick) writes only what the FIFO has room for, by
    a model of it that drains at baud/10 bytes a second: the loop never waits on the UART, acks and
    logs go out over the next ticks, frames leave whole and in order. When the ring is full, a
    telemetry frame is dropped (its seq is spent: the host counts it lost) -- more telemetry than
    the link carries costs frames, not the loop's rate -- and anything else is written out at once
    with what waits (the loop then waits on the UART), as is the hello (~3.7 KB, rare). baud 0
    (native USB, no UART to pace): frames are written at once.
    """

    def __init__(self, out, baud=0):
        self.out = out
        self.seq = 0
        self.frames = 0
        self.general = P.FrameWriter(ACK_MAX_PAYLOAD)
        self.q = bytearray(TX_QUEUE)
        self.head = self.count = 0  # count bytes wait from q[head], wrapping at TX_QUEUE
        self.us_per_byte = (10000000 + baud - 1) // baud if baud else 0  # rounded up: never overfill
        self.fifo = 0  # bytes the modeled FIFO holds at fifo_t
        self.fifo_t = time.ticks_us()
        self.waited = 0  # times the ring was full and written out at once
        self.dropped = 0  # telemetry frames the ring had no room for

    def send(self, writer, ftype, t_us, n):
        """Frame the n payload bytes already in writer's payload view and queue it (allocation-free)."""
        size = writer.pack(ftype, self.seq, t_us, None, n)
        self.seq = (self.seq + 1) & 0xFFFF
        self.frames = self.frames + 1 if self.frames < 0x3FFFFFFF else 0
        if not self.us_per_byte:
            self.out.write(writer.buf, size)
            return
        if self.count + size > TX_QUEUE:
            if ftype == P.T_TELEMETRY:
                self.dropped = self.dropped + 1 if self.dropped < 0x3FFFFFFF else 0
                return
            self.waited += 1
            self.flush()
            if size > TX_QUEUE:
                self.out.write(writer.buf, size)
                return
        at = self.head + self.count
        _put(self.q, at - TX_QUEUE if at >= TX_QUEUE else at, writer.buf, size)
        self.count += size

    def _write(self, n):
        """The first n waiting bytes out (one or two writes around the ring's end)."""
        head = self.head
        first = TX_QUEUE - head if head + n > TX_QUEUE else n
        self.out.write(self.q, head, first)
        if first < n:
            self.out.write(self.q, 0, n - first)
        head += n
        self.head = head - TX_QUEUE if head >= TX_QUEUE else head
        self.count -= n

    def pump(self, now_us):
        """Write what the UART's FIFO has room for now (once a tick)."""
        if not self.count:
            return
        upb = self.us_per_byte
        elapsed = time.ticks_diff(now_us, self.fifo_t)
        if elapsed > TX_FIFO * upb:
            elapsed = TX_FIFO * upb
        drained = elapsed // upb if elapsed > 0 else 0
        fifo = self.fifo - drained if drained < self.fifo else 0
        self.fifo_t = time.ticks_add(self.fifo_t, drained * upb) if fifo else now_us
        n = TX_FILL - fifo
        if n > self.count:
            n = self.count
        if n > 0:
            self._write(n)
            fifo += n
        self.fifo = fifo

    def flush(self):
        """Write everything queued now (the writer waits on the UART as long as that takes)."""
        if self.count:
            self._write(self.count)
        self.head = 0
        self.fifo = TX_FIFO
        self.fifo_t = time.ticks_us()

    def ack(self, cmd_seq, code, data=b""):
        w = self.general
        self.send(w, P.T_ACK, time.ticks_us(), P.ack_into(w.payload_view(), cmd_seq, code, data))

    def log(self, level, text):
        w = self.general
        self.send(w, P.T_LOG, time.ticks_us(), P.log_into(w.payload_view(), level, text))

    def hello(self, info):
        self.flush()
        P.write_frame(self.out, P.T_HELLO, self.seq, time.ticks_us(), json.dumps(info))
        self.seq = (self.seq + 1) & 0xFFFF
        self.frames = self.frames + 1 if self.frames < 0x3FFFFFFF else 0
        self.fifo_t = time.ticks_us()


class Telemetry:
    """Packs one tick's state into its own preallocated frame."""

    def __init__(self, cfg):
        self.fields = schema(cfg)
        self.format = ENDIAN + "".join(f["type"] for f in self.fields)
        self.size = struct.calcsize(self.format)
        self.writer = P.FrameWriter(self.size)
        self.view = self.writer.payload_view()
        self.n_joints = len(cfg["joints"])

    def emit(self, port, t_us, busy_us, overruns, mode, flags, servos, feedbacks, targets, imu_buf, model):
        v = self.view
        struct.pack_into("<HHBB", v, 0, busy_us if busy_us < 0xFFFF else 0xFFFF, overruns & 0xFFFF, mode, flags)
        o = 6
        for j in range(self.n_joints):
            f = feedbacks[j]
            struct.pack_into("<HHhh", v, o, servos[j].us, f.raw, f.cdeg, targets[j])
            o += 8
        b = imu_buf  # big-endian ax ay az temp gx gy gz -> little-endian ax ay az gx gy gz
        v[o] = b[1]
        v[o + 1] = b[0]
        v[o + 2] = b[3]
        v[o + 3] = b[2]
        v[o + 4] = b[5]
        v[o + 5] = b[4]
        v[o + 6] = b[9]
        v[o + 7] = b[8]
        v[o + 8] = b[11]
        v[o + 9] = b[10]
        v[o + 10] = b[13]
        v[o + 11] = b[12]
        v[o + 12] = model
        port.send(self.writer, P.T_TELEMETRY, t_us, self.size)

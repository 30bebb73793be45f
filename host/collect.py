"""Record what a board sends into a session: every byte as read, from the first one on.

The link's reader thread hands each chunk to the session writer before decoding it, so
the session holds exactly what arrived -- the hello that connect() asks for included,
which makes it self-describing. The loop here only watches: progress, the end (duration,
the program's "program done", Ctrl-C/SIGTERM via `stop`), and the faults (port gone,
disk full) after which the session is closed incomplete with the reason, never lost.

`Recorder` is the machinery (`host replay --to-port` drives the board through it);
`collect()` is `host collect`: run an on-device program and record it.
"""

import math
import queue
import sys
import threading
import time

from polyniod_firmware import programs
from polyniod_firmware import protocol as P

from host.errors import UserError
from host.firmware_files import load_robot
from host.link.client import Link
from host.sessions import SessionWriteError, SessionWriter, load, sessions_dir

GRACE_S = 2.0  # past a program's own duration, how long to wait for its "program done"
SHOW_EVERY_S = 0.5


class Recorder:
    """One session being recorded from the board on `port`; as a context manager it always closes it."""

    def __init__(self, port, out=None, name=None, header=None, progress=True, say=None):
        self.port = port
        self.out, self.name, self.extra = sessions_dir(out), name, dict(header or {})
        self.progress = progress
        self.say = say or _print_err
        self.link = Link(port, on_bytes=self._on_bytes)
        self.writer = None
        self.hello = None
        self.telemetry = 0  # telemetry frames received
        self.first_t = self.last_t = None  # host times of the first and last of them
        self.latest = None  # payload of the newest one
        self.on_telemetry = None  # on_telemetry(host_time, seq, t_us, payload) for each, as the recording loop takes it
        self.fault = None  # why the recording could not go on
        self.summary = None
        self.closed = False
        self._write_error = None  # raised by the writer in the reader thread
        self._pending = []  # chunks read before the header exists (the hello is among them)
        self._lock = threading.Lock()
        self._shown = False

    # -- bytes in (the link's reader thread) ------------------------------------
    def _on_bytes(self, host_time, data):
        with self._lock:
            if self.writer is None:
                self._pending.append((host_time, bytes(data)))
            elif self._write_error is None and not self.closed:
                try:
                    self.writer.append_bytes(host_time, data)
                except SessionWriteError as e:  # the loop sees it and ends the session
                    self._write_error = e

    @property
    def write_error(self):
        return self._write_error or (self.writer.error if self.writer else None)

    # -- lifetime -----------------------------------------------------------------
    def start(self):
        """Open the port, connect (versions checked), write the header; returns the hello."""
        self.link.open()
        try:
            self.hello = self.link.connect()
            header = {"port": self.port, "baud": self.baud, "hello": self.hello.data, "robot": self.hello.robot,
                      **self.extra}
            with self._lock:
                try:
                    self.writer = SessionWriter(self.out, name=self.name, header=header)
                    for t, data in self._pending:
                        self.writer.append_bytes(t, data)
                except OSError as e:
                    raise SessionWriteError(f"cannot write a session in {self.out}: {e.strerror or e}") from None
                self._pending = []
        except BaseException:
            self.link.close()
            raise
        return self.hello

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if not self.closed:
            self.finish(f"{kind.__name__}: {exc}" if kind else "closed", complete=kind is None)

    @property
    def path(self):
        return self.writer.path if self.writer else None

    @property
    def baud(self):
        """The link's baud rate by the robot description (what utilisation is a fraction of)."""
        return self.hello.baud if self.hello else self.link.baud

    def marker(self, event):
        """An event on the session's timeline (program started, stopped, error)."""
        try:
            self.writer.marker(time.time(), event)
        except SessionWriteError as e:
            self._write_error = self._write_error or e

    # -- watching -----------------------------------------------------------------
    def run(self, kind, name, args=(), stop=None):
        """`program NAME args` or `track NAME args` on the board, recorded until its "done" log; the reason.

        The ack (resolved parameters, ticks) goes into the session as a "<kind> started" marker."""
        ack = self.link.request_json(kind, name, *args)
        params = ack.get("program") or ack.get("trajectory")
        self.marker({"event": f"{kind} started", kind: name, "params": params, "rate_hz": ack["rate_hz"],
                     "ticks": ack["ticks"], **({"controller": ack["controller"]} if "controller" in ack else {})})
        total = ack["ticks"] / ack["rate_hz"]
        return self.record(until=time.monotonic() + total + GRACE_S, done=f"{kind} done: {name}", stop=stop,
                           total_s=total)

    def record(self, until=None, done=None, stop=None, total_s=None, tick=None):
        """Watch until monotonic time `until`, the board's LOG line `done` (e.g. "program done: steps"), or `stop`.

        `tick()`, when given, is called every pass (a driver streaming commands); it returns the
        seconds until it wants to be called again, or None when it is done (returns "done").
        Returns why the recording ended; on a fault (port gone, disk error) None, with self.fault.
        """
        link = self.link
        start = time.monotonic()
        mark = (start, link.rx_bytes, self.telemetry)
        next_show = start + SHOW_EVERY_S
        resets = link.resets
        while True:
            finished = self._drain(done)
            if self.write_error or link.error:
                self.fault = str(self.write_error or link.error)
                return None
            if finished:
                return done
            if stop is not None and stop.is_set():
                return "stopped by the user"
            now = time.monotonic()
            if until is not None and now >= until:
                return "duration reached"
            if link.resets != resets:
                resets = link.resets
                self._line(f"device reset: new segment {resets + 1} (the board restarted; still recording)")
            if self.progress and now >= next_show:
                self._show(now - start, total_s, mark, now)
                mark = (now, link.rx_bytes, self.telemetry)
                next_show = now + SHOW_EVERY_S
            wait = tick() if tick else 0.05
            if wait is None:
                return "done"
            time.sleep(min(wait, 0.05))

    def _drain(self, done=None):
        """Take the link's telemetry and logs; True when the board logged `done`."""
        link = self.link
        try:
            while True:
                now, seq, t_us, payload = link.telemetry.get_nowait()
                self.telemetry += 1
                self.first_t = self.first_t or now
                self.last_t, self.latest = now, payload
                if self.on_telemetry:
                    self.on_telemetry(now, seq, t_us, payload)
        except queue.Empty:
            pass
        finished = False
        while not link.logs.empty():
            _, level, text = link.logs.get_nowait()
            if done and text == done:
                finished = True
            elif level >= P.LOG_WARN:
                self._line(f"[device] {text}")
        return finished

    # -- the end ------------------------------------------------------------------
    def finish(self, reason, complete=True):
        """Servos safe (`stop`), the session closed with its summary; returns the summary."""
        if self.closed:
            return self.summary
        if self.writer is None:  # never got past connect: there is no session
            self.closed = True
            self.link.close()
            return None
        self.marker({"event": "stopped", "reason": reason})
        if not self.link.error:
            try:
                self.link.request("stop")
            except (UserError, OSError) as e:  # the port may be going (pyserial raises OSErrors)
                self.marker({"event": "error", "error": str(e)})
            time.sleep(0.05)  # the last bytes in flight
        self.link.close()
        self._drain()
        if self._shown:
            sys.stderr.write("\n")
        complete = complete and self.fault is None and self.write_error is None
        self.summary = self._summary(reason, complete)
        with self._lock:
            self.closed = True
        try:
            self.writer.close(complete=complete, reason=reason, summary=self.summary)
        except SessionWriteError as e:
            self._write_error = self._write_error or e
        return self.summary

    def _summary(self, reason, complete):
        link = self.link
        span = (self.last_t - self.first_t) if self.telemetry > 1 else 0.0
        return {
            "session": str(self.path), "complete": complete, "reason": reason,
            "telemetry_frames": self.telemetry, "drops": link.seq_gaps, "crc_errors": link.decoder.crc_errors,
            "segments": link.resets + 1, "duration_s": round(span, 3),
            "rate_hz": round((self.telemetry - 1) / span, 2) if span else 0.0,
            "link_utilisation": round(link.rx_bytes * 10 / span / self.baud, 4) if span else 0.0,
        }

    def kept(self):
        """'PATH (incomplete, N frames)': what a fault left, as it loads back from disk."""
        try:
            s = load(self.path)
            return f"{self.path} ({'complete' if s.complete else 'incomplete'}, {s.stats['telemetry_frames']} frames)"
        except UserError as e:
            return f"{self.path} (does not load: {e})"

    # -- showing ------------------------------------------------------------------
    def _show(self, elapsed, total_s, mark, now):
        t0, rx0, n0 = mark
        dt = max(now - t0, 1e-6)
        util = (self.link.rx_bytes - rx0) * 10 / dt / self.baud
        of = f"/{total_s:.0f}" if total_s else ""
        line = (f"{elapsed:5.1f}{of} s  {(self.telemetry - n0) / dt:6.1f} frames/s  link {util * 100:4.1f}%"
                f"  drops {self.link.seq_gaps}  crc errors {self.link.decoder.crc_errors}  {self._joints()}")
        if sys.stderr.isatty():
            sys.stderr.write("\r\x1b[K" + line)
            sys.stderr.flush()
            self._shown = True
        else:
            _print_err(line)

    def _joints(self):
        schema, payload = self.link.schema, self.latest
        raw = schema.unpack(payload) if schema and payload else None
        if raw is None:
            return ""
        values = schema.to_units(raw)
        return "  ".join(f"{j} {values[j + '_deg']:7.2f}°" for j in self.hello.joints if j + "_deg" in values)

    def _line(self, msg):
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            self._shown = False
        self.say(msg)


def collect(port, program="steps", seed=None, params=None, duration=None, name=None, out=None,
            stop=None, progress=True, say=None):
    """Run `program` on the board at `port` and record it; the summary dict of the closed session.

    program "idle" sends nothing and records for `duration` (or until `stop`). Otherwise the
    program runs for `duration` s (its duration_ms, unless params set it) and the recording ends
    at its "program done". Faults raise UserError after the session is closed incomplete.
    """
    given = {k: str(v) for k, v in (params or {}).items()}
    if seed is not None:
        given["seed"] = str(seed)
    if duration is not None and not 0 < duration < math.inf:
        raise UserError(f"--duration {duration:g}: give seconds > 0"
                        + (" (leave --duration out to record until Ctrl-C)" if duration == math.inf else ""))
    if program == "idle":
        if given:
            raise UserError("--program idle takes no --seed or --param: it only records")
        if duration is None and stop is None:
            raise UserError("--program idle records until --duration ends: give --duration S")
    else:
        if duration is not None:
            given.setdefault("duration_ms", str(max(1, round(duration * 1000))))
        try:  # refuse a bad program before anything is opened (the board checks again)
            programs.resolve(program, given, len(load_robot()["joints"]))
        except ValueError as e:
            raise UserError(f"--program {program}: {e}") from None
    header = {"program": {"name": program, "params": given, "seed": seed}}
    rec = Recorder(port, out, name, header, progress, say)
    hello = rec.start()
    with rec:
        if hello.check_warning():
            rec.say(f"warning: {hello.check_warning()}")
        rec.say(f"recording {rec.path} from {port}")
        if program != "idle":
            reason = rec.run("program", program, [f"{k}={v}" for k, v in given.items()], stop)
        else:
            until = time.monotonic() + duration if duration is not None else None
            reason = rec.record(until=until, stop=stop, total_s=duration)
        summary = rec.finish(reason or rec.fault, complete=reason is not None)
    if reason is None or rec.write_error:
        raise UserError(f"{rec.fault or rec.write_error}; session kept: {rec.kept()}")
    return summary


def _print_err(msg):
    print(msg, file=sys.stderr, flush=True)

"""Record what a board sends into a session: every byte as read, from the first one on.

The link's reader thread hands each chunk to the session writer before decoding it, so
the session holds exactly what arrived -- the hello that connect() asks for included,
which makes it self-describing. The loop here only watches: progress, the end (duration,
the program's "program done", Ctrl-C/SIGTERM via `stop`), and the faults (port gone,
disk full) after which the session is closed incomplete with the reason, never lost.

`Recorder` is the machinery (`host replay --to-port` drives the board through it);
`collect()` is `host collect`: run an on-device program and record it; `collect_many()` is the same on
several boards at once (`host collect --port A --port B`), a thread and a session a board.
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
from host.sessions.store import safe_name

GRACE_S = 2.0  # past a program's own duration, how long to wait for its "program done"
SHOW_EVERY_S = 0.5


class Recorder:
    """One session being recorded from the board on `port`; as a context manager it always closes it.

    name: the session's name, or name(hello) -> it, for a name that carries the board's unit id."""

    def __init__(self, port, out=None, name=None, header=None, progress=True, say=None, known=None):
        self.port, self.known = port, known  # known: Link.known of the previous recording (Link.connect)
        self.out, self.name, self.extra = sessions_dir(out), name, dict(header or {})
        self.progress = progress
        self.say = say or _print_err
        self.console = Console(self.say)
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
            self.hello = self.link.connect(known=self.known)
            header = {"port": self.port, "baud": self.baud, "hello": self.hello.data, "robot": self.hello.robot,
                      **self.extra}
            with self._lock:
                try:
                    name = self.name(self.hello) if callable(self.name) else self.name
                    self.writer = SessionWriter(self.out, name=name, header=header)
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

    def run_plan(self, plan, stop=None):
        """[(program, {param: value})] one after another, then finish: (the last reason, or None on a fault; summary)."""
        reason = None
        for program, params in plan:
            reason = self.run("program", program, [f"{k}={v}" for k, v in params.items()], stop)
            if reason is None:
                break
        return reason, self.finish(reason or self.fault, complete=reason is not None)

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
        self.console.end()
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
        fps, util = self.rates(mark, now)
        of = f"/{total_s:.0f}" if total_s else ""
        self.console.show(f"{elapsed:5.1f}{of} s  {fps:6.1f} frames/s  link {util * 100:4.1f}%  drops "
                          f"{self.link.seq_gaps}  crc errors {self.link.decoder.crc_errors}  {self._joints()}")

    def rates(self, mark, now):
        """(telemetry frames a second, fraction of the link used) since mark."""
        t0, rx0, n0 = mark
        dt = max(now - t0, 1e-6)
        return (self.telemetry - n0) / dt, (self.link.rx_bytes - rx0) * 10 / dt / self.baud

    def _joints(self):
        schema, payload = self.link.schema, self.latest
        raw = schema.unpack(payload) if schema and payload else None
        if raw is None:
            return ""
        values = schema.to_units(raw)
        return "  ".join(f"{j} {values[j + '_deg']:7.2f}°" for j in self.hello.joints if j + "_deg" in values)

    def _line(self, msg):
        self.console.say(msg)


class Console:
    """Progress on one stderr line (rewritten in place on a terminal), and messages above it."""

    def __init__(self, say):
        self._say = say
        self._shown = False
        self._lock = threading.Lock()  # several recordings may share one

    def show(self, line):
        with self._lock:
            if sys.stderr.isatty():
                sys.stderr.write("\r\x1b[K" + line)
                sys.stderr.flush()
                self._shown = True
            else:
                _print_err(line)

    def say(self, msg):
        with self._lock:
            if self._shown:
                sys.stderr.write("\r\x1b[K")
                self._shown = False
            self._say(msg)

    def end(self):
        with self._lock:
            if self._shown:
                sys.stderr.write("\n")
                self._shown = False


def collect(port, program="steps", seed=None, params=None, duration=None, name=None, out=None,
            stop=None, progress=True, say=None):
    """Run `program` on the board at `port` and record it; the summary dict of the closed session.

    program "idle" sends nothing and records for `duration` (or until `stop`). Otherwise the
    program runs for `duration` s (its duration_ms, unless params set it) and the recording ends
    at its "program done". Faults raise UserError after the session is closed incomplete.
    """
    given, header = _program(program, seed, params, duration, stop)
    return _record(Recorder(port, out, name, header, progress, say), program, given, duration, stop)


def collect_many(ports, program="steps", seed=None, params=None, duration=None, name=None, out=None,
                 stop=None, progress=True, say=None):
    """collect() on several boards at once, a thread and a session each; a result dict per port, in order.

    A result is {"port", "board_id", **summary}, or {"port", "board_id", "error"} for a board whose
    recording failed: as one board's collect, its session is closed incomplete and kept, and the others go
    on. `stop` ends them all. Sessions are named NAME_<unit id> (<port> for a board that gives none), NAME
    being the date and time unless given: one for the run, so its sessions sort together and never collide.
    """
    twice = [p for p in ports if ports.count(p) > 1]
    if twice:
        raise UserError(f"--port {twice[0]} is given twice: each board is recorded once")
    given, header = _program(program, seed, params, duration, stop)
    base = safe_name(name)
    console = Console(say or _print_err)
    recorders = [Recorder(port, out, lambda hello, port=port: f"{base}_{hello.board_id or safe_name(port)}", header,
                          progress=False, say=lambda msg, port=port: console.say(f"{port}: {msg}")) for port in ports]
    results, crashed = [None] * len(ports), []

    def work(i, rec):
        try:
            results[i] = _record(rec, program, given, duration, stop)
        except UserError as e:
            results[i] = {"error": str(e)}
        except BaseException as e:  # a bug: the others finish first, then it is raised
            crashed.append(e)
            results[i] = {"error": f"{type(e).__name__}: {e}"}

    threads = [threading.Thread(target=work, args=(i, rec), name=f"collect {rec.port}", daemon=True)
               for i, rec in enumerate(recorders)]
    for t in threads:
        t.start()
    _watch(threads, recorders, console, duration if program == "idle" else None, progress)
    if crashed:
        raise crashed[0]
    return [{"port": rec.port, "board_id": rec.hello.board_id if rec.hello else None, **result}
            for rec, result in zip(recorders, results)]


def _watch(threads, recorders, console, total_s, progress):
    """Until every recording thread has ended: the boards' figures on one progress line."""
    start = shown = time.monotonic()
    marks = [(start, 0, 0)] * len(recorders)
    while any(t.is_alive() for t in threads):
        time.sleep(0.05)
        now = time.monotonic()
        if progress and now >= shown + SHOW_EVERY_S:
            of = f"/{total_s:.0f}" if total_s else ""
            parts = []
            for i, rec in enumerate(recorders):
                if rec.writer is not None and not rec.closed:  # short: a terminal line for them all
                    fps, _ = rec.rates(marks[i], now)
                    parts.append(f"{rec.hello.board_id or rec.port} {fps:.0f}/s {rec.link.seq_gaps} drops")
                marks[i] = (now, rec.link.rx_bytes, rec.telemetry)
            if parts:
                console.show(f"{now - start:5.1f}{of} s  " + " | ".join(parts))
            shown = now
    console.end()


def _program(program, seed, params, duration, stop):
    """(the program's parameters as strings, the session header): the program refused before any port is opened."""
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
    return given, {"program": {"name": program, "params": given, "seed": seed}}


def _record(rec, program, given, duration, stop):
    """Connect rec's board, run the program on it (or only record) and close the session; its summary."""
    hello = rec.start()
    with rec:
        if hello.check_warning():
            rec.say(f"warning: {hello.check_warning()}")
        rec.say(f"recording {rec.path} from {rec.port}")
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

"""The host side of the wire protocol: one open board, its frames and its commands.

A reader thread turns the byte stream into frames with the shared protocol
decoder; commands wait for their acks (with retries, so a dropped line costs a
retry, not a hang). Everything the board sends that is not a frame (REPL text,
tracebacks) is kept so errors can show what MicroPython printed.

Acks carry only the command's seq, and the board may still be answering an earlier
connection's lines (a board that was slow to boot, a host that gave up): so a connection
first sends `ping <token>` and takes no ack before the one that echoes its token, then
only acks of seqs it sent and still waits for (PROTOCOL.md "Connections").
"""

import json
import queue
import secrets
import threading
import time

from polyniod_firmware import protocol as P
from polyniod_firmware.version import FIRMWARE_VERSION

from host.errors import DeviceError, UserError
from host.link.port import DEFAULT_BAUD, open_port, write
from host.link.hello import Hello


RECORD_S = 0.05  # reads handed to on_bytes at once: one session record each, ~10 frames at 200 Hz
RESUME_WAIT_S = 0.2  # connect(known=...): for a telemetry frame after the ping (the board streams at 100 Hz)
RESUME_SLACK_S = 0.25  # its clock against the host's since known's frame (a restart lands ~the whole uptime off)


class CommandError(DeviceError):
    """The firmware answered a command with an error code."""

    def __init__(self, name, code, detail=""):
        self.code = code
        super().__init__(f"the board refused `{name}`: {P.error_text(code)}{' (' + detail + ')' if detail else ''}")


class Link:
    """An open connection to a Gen0 running our firmware."""

    def __init__(self, port, baud=DEFAULT_BAUD, on_bytes=None, on_frame=None):
        self.port_name = port
        self.baud = baud
        self.on_bytes = on_bytes  # on_bytes(host_time, data): every byte read, RECORD_S at a time (session recording)
        self.on_frame = on_frame  # on_frame(host_time, frame): every decoded frame, with its bytes' host_time
        self.serial = None
        self.decoder = P.FrameDecoder()
        self.hello = None
        self.schema = None
        self.telemetry = queue.Queue(maxsize=100000)
        self.logs = queue.Queue(maxsize=10000)
        self.rx_bytes = 0
        self.frames = 0
        self.seq_gaps = 0  # frames the device sent that never arrived (sequence gaps)
        self.resets = 0  # restarts of the device seen (a hello that starts the sequence again)
        self._last_seq = None
        self._seq = secrets.randbelow(65535)  # the last seq used: a connection's numbering starts anywhere
        self._acks = {}  # seq -> (code, data) of acks of this connection's commands, until taken
        self._pending = set()  # seqs of this connection's commands whose ack is still wanted
        self._barrier = None  # (seq, token) of the ping that opens this connection's acks
        self._synced = False  # its echo came: every ack from here on answers a line of this connection
        self._no_echo = False  # an ack of the ping came without the token (firmware older than the host)
        self._ack_cv = threading.Condition()
        self._hello_event = threading.Event()
        self._text = bytearray()
        self._stop = threading.Event()
        self._thread = None
        self.error = None  # set when the port vanished under us
        self.last_telemetry = None  # (board t_us, host monotonic s) of the newest telemetry frame

    # -- lifetime -------------------------------------------------------------
    def open(self):
        self.serial = open_port(self.port_name, self.baud)
        self._thread = threading.Thread(target=self._reader, name="gen0-link-reader", daemon=True)
        self._thread.start()
        return self

    def close(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=1)
        if self.serial:
            try:
                self.serial.close()
            except OSError:
                pass

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    # -- reading --------------------------------------------------------------
    def _reader(self):
        """Read what is waiting, or wait (up to the port's timeout) for the next byte, so an ack is seen
        as soon as it arrives. Recording callbacks get the reads of RECORD_S at once (_hand_over)."""
        window, frames, first, last = bytearray(), [], None, None
        while not self._stop.is_set():
            try:
                data = self.serial.read(self.serial.in_waiting or 1)
            except (OSError, TypeError, AttributeError) as e:  # port vanished (cable pulled)
                self.error = f"lost the connection to {self.port_name} ({e.__class__.__name__}: {e})"
                break
            except Exception as e:  # pyserial raises SerialException on a vanished pty
                self.error = f"lost the connection to {self.port_name} ({e})"
                break
            now = time.time()
            if data:
                self.rx_bytes += len(data)
                decoded = self.decoder.feed(data)
                for frame in decoded:
                    self._dispatch(now, frame)
                text = self.decoder.take_text()
                if text:
                    self._text += text
                    del self._text[:-8192]
                if self.on_bytes or self.on_frame:
                    first, last = first or now, now
                    window += data
                    frames += decoded
            if first is not None and now - first >= RECORD_S:
                self._hand_over(last, window, frames)
                window, frames, first = bytearray(), [], None
        if first is not None:
            self._hand_over(last, window, frames)
        with self._ack_cv:
            self._ack_cv.notify_all()
        self._hello_event.set()

    def _hand_over(self, host_time, data, frames):
        """One window of reads to the recording callbacks, stamped with its last read's time: a session
        stores it as one record, and its frames carry the time they get when the session loads."""
        if self.on_bytes:
            self.on_bytes(host_time, bytes(data))
        if self.on_frame:
            for frame in frames:
                self.on_frame(host_time, frame)

    def _dispatch(self, now, frame):
        ftype, seq, t_us, payload = frame
        self.frames += 1
        if ftype == P.T_HELLO:
            hello = Hello.parse(payload)
            if hello is None:
                return
            if self.hello is not None and seq == 0 and self._last_seq != 0xFFFF:
                self.resets += 1  # a boot's first frame; a hello we asked for continues the sequence
            self.hello = hello
            self.schema = hello.schema
            self._last_seq = seq
            self._hello_event.set()
        else:
            if self._last_seq is not None:
                self.seq_gaps += (seq - self._last_seq - 1) & 0xFFFF
            self._last_seq = seq
        if ftype == P.T_ACK and len(payload) >= 3:
            cmd_seq, code, data = P.parse_ack(payload)
            with self._ack_cv:
                if self._synced:
                    if cmd_seq in self._pending:
                        self._acks[cmd_seq] = (code, bytes(data))
                elif self._barrier and cmd_seq == self._barrier[0] and code == P.E_OK:
                    if data == self._barrier[1]:
                        self._synced = True  # the acks before it answered lines of earlier connections
                        self._acks.clear()
                    elif not data:
                        self._no_echo = True
                self._ack_cv.notify_all()
        elif ftype == P.T_TELEMETRY:
            self.last_telemetry = (t_us, time.monotonic())
            self._put(self.telemetry, (now, seq, t_us, payload))
        elif ftype == P.T_LOG and payload:
            self._put(self.logs, (now, *P.parse_log(payload)))

    @staticmethod
    def _put(q, item):
        try:
            q.put_nowait(item)
        except queue.Full:  # nobody is consuming: keep the newest
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            q.put_nowait(item)

    def device_text(self):
        """What the board printed outside frames (REPL output, tracebacks), decoded."""
        return bytes(self._text).decode("utf-8", "replace")

    # -- commands -------------------------------------------------------------
    def send_raw(self, data):
        """Write `data`; a port that stops taking bytes ends the link with a PortError (port.write)."""
        try:
            write(self.serial, self.port_name, data)
        except UserError as e:
            self.error = str(e)
            raise

    def request(self, name, *args, timeout=0.5, retries=3):
        """Send a command and return the ack's data bytes; CommandError on a refusal.

        A lost line or ack costs a retry: the same line again, which the board answers from memory
        when it ran it already."""
        if not self._synced:
            self._sync(name, timeout, retries)
        seq = self._next_seq()
        line = P.encode_command(seq, name, [str(a) for a in args])
        try:
            self._exchange(line, lambda: seq in self._acks, timeout, retries)
        finally:
            with self._ack_cv:
                self._pending.discard(seq)
                ack = self._acks.pop(seq, None)
        if ack is None:
            raise DeviceError(self._no_answer(name, retries))
        code, data = ack
        if code != P.E_OK:
            raise CommandError(name, code, data.decode("utf-8", "replace"))
        return data

    def send(self, name, *args):
        """Send a command without waiting for its ack (streaming `set` at a fixed rate); returns its seq.

        The ack, when it comes, waits in take_ack(seq): collect them, or they pile up.
        """
        if self.error:
            raise DeviceError(self.error)
        if not self._synced:
            self._sync(name, 0.5, 3)
        seq = self._next_seq()
        self.send_raw(P.encode_command(seq, name, [str(a) for a in args]))
        return seq

    def send_record(self, data, start):
        """Send the transfer record of data from offset `start` without waiting (PROTOCOL.md "Records"):
        (seq, end, its bytes on the wire); it carries data[start:end]. Its ack waits in wait_ack(seq)."""
        if self.error:
            raise DeviceError(self.error)
        if not self._synced:
            self._sync("xfer", 0.5, 3)
        seq = self._next_seq()
        line, end = P.encode_record(seq, data, start)
        self.send_raw(line)
        return seq, end, len(line)

    def take_ack(self, seq):
        """(code, data) of the ack of a command sent with send(), or None while it has not come."""
        with self._ack_cv:
            ack = self._acks.pop(seq, None)
            if ack is not None:
                self._pending.discard(seq)
            return ack

    def wait_ack(self, seq, timeout):
        """take_ack(seq), waiting up to `timeout` s for the ack to come; None if it has not."""
        deadline = time.monotonic() + timeout
        with self._ack_cv:
            while seq not in self._acks and not self.error:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ack_cv.wait(left)
        if self.error:
            raise DeviceError(self.error)
        return self.take_ack(seq)

    def forget(self, seqs):
        """Stop waiting for the acks of these seqs (sent with send()): any that come later are dropped."""
        with self._ack_cv:
            for seq in seqs:
                self._pending.discard(seq)
                self._acks.pop(seq, None)

    def _next_seq(self):
        """The next seq, registered as waiting for its ack (a seq used 65535 commands ago is forgotten)."""
        with self._ack_cv:
            self._seq = self._seq % 65535 + 1
            self._acks.pop(self._seq, None)
            self._pending.add(self._seq)
            return self._seq

    def _exchange(self, line, answered, timeout, retries):
        """Send line until answered() (checked under the ack lock) or retries + 1 tries have timed out."""
        for _attempt in range(retries + 1):
            if self.error:
                raise DeviceError(self.error)
            self.send_raw(line)
            deadline = time.monotonic() + timeout
            with self._ack_cv:
                while not answered() and not self.error:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._ack_cv.wait(left)
                if answered():
                    return True
        return False

    def _sync(self, name, timeout, retries):
        """Open this connection's acks: `ping <token>` until the ack echoing the token comes. Acks before
        it answer lines an earlier connection left with the board and are dropped (see _dispatch); `name`
        is the command that waits, for the error message."""
        with self._ack_cv:
            if self._barrier is None:
                self._seq = self._seq % 65535 + 1
                self._barrier = (self._seq, secrets.token_hex(8).encode())
            seq, token = self._barrier
        self.send_raw(b"\n")  # ends a half line an earlier connection may have left in the board's buffer
        if not self._exchange(P.encode_command(seq, "ping", [token.decode()]), lambda: self._synced, timeout, retries):
            raise DeviceError(self._no_answer(name, retries))

    def _no_answer(self, name, retries):
        port = self.port_name
        if self._no_echo:
            return (f"the firmware on {port} answers `ping` without echoing its token: it is older than this "
                    f"host, run `host flash --port {port}` to update it")
        return (f"no answer to `{name}` from {port} after {retries + 1} tries: "
                f"is the firmware running? (`host flash --port {port}` installs and starts it)")

    def request_json(self, name, *args, **kw):
        data = self.request(name, *args, **kw)
        return json.loads(data) if data else None

    # -- connecting -----------------------------------------------------------
    def connect(self, timeout=2.0, start=True, known=None):
        """Ask for the hello, check versions; start the firmware if the board sits at the REPL.

        known: (hello, board t_us, host monotonic s) of a connection to this port moments ago (`Link.known`):
        when the board's clock shows it has run on since, that hello is taken as this one, and the 3.7 KB of
        a new one (0.3 s at 115200 baud) are not asked for. A board restarted since gets asked."""
        hello = self._resume(known, timeout) if known else None
        if hello is not None:
            return hello
        hello = self._ask_hello(timeout)
        if hello is None and self.decoder.frames:  # our firmware streams but did not answer yet: a board still
            hello = self._ask_hello(2 * timeout)  # booting (an ESP32 compiles .py modules), a busy host under a sim
        if hello is None and start and self._looks_like_micropython():
            self._soft_reset()
            hello = self._wait_hello(timeout + 3.0) or self._ask_hello(timeout)
        if hello is None:
            raise DeviceError(self._diagnose())
        self._check_versions(hello)
        return hello

    @property
    def known(self):
        """What connect(known=...) needs to skip the next connection's hello; None before a hello and telemetry."""
        return (self.hello, *self.last_telemetry) if self.hello is not None and self.last_telemetry else None

    def _resume(self, known, timeout):
        """known's hello if a telemetry frame after the ping shows the same boot: its clock moved on by the host's
        time since known's frame, within RESUME_SLACK_S (a restarted board counts from 0), else None."""
        hello, t_us, then = known
        try:
            self._sync("hello", timeout / 3, 2)
        except DeviceError:
            if self.error:
                raise
            return None
        synced = time.monotonic()
        while time.monotonic() < synced + RESUME_WAIT_S and not self.error:
            seen = self.last_telemetry
            if seen and seen[1] >= synced:
                board_s = ((seen[0] - t_us) % P.TICKS_PERIOD) / 1e6
                if abs(board_s - (seen[1] - then)) > RESUME_SLACK_S:
                    return None
                self.hello, self.schema = hello, hello.schema
                return hello
            time.sleep(0.005)
        return None

    def _ask_hello(self, timeout):
        self._hello_event.clear()
        try:
            self.request("hello", timeout=timeout / 3, retries=2)
        except DeviceError:
            if self.error:
                raise
            return None
        return self._wait_hello(timeout)

    def _wait_hello(self, timeout):
        """The hello that came since the event was cleared, or None: never an earlier boot's."""
        came = self._hello_event.wait(timeout)
        if self.error:
            raise DeviceError(self.error)
        return self.hello if came else None

    def _looks_like_micropython(self):
        text = bytes(self._text)
        if any(m in text for m in (b">>>", b"raw REPL", b"MicroPython", b"Traceback", b"Error")):
            return True
        # Silent, or only echoing: a raw REPL swallowing our lines, or a prompt inside an open bracket (junk
        # typed at it). Ctrl-C cancels the statement, Ctrl-B leaves a raw REPL and prints the banner.
        self.send_raw(b"\r\x03\x02")
        time.sleep(0.3)
        return any(m in bytes(self._text) for m in (b">>>", b"MicroPython"))

    def _soft_reset(self):
        """Ctrl-D at the friendly REPL: boot.py then main.py run, as after power-on. Ctrl-C first: junk typed
        at the prompt (records in flight when the firmware stopped) can leave it inside an open bracket, where
        Ctrl-D only ends the statement; Ctrl-B leaves a raw REPL."""
        self._hello_event.clear()
        self.send_raw(b"\r\x03\x02\x04")

    def _diagnose(self):
        port = self.port_name
        if self._no_echo:
            return self._no_answer("hello", 0)
        if self.decoder.version_errors:
            return (
                f"the firmware on {port} speaks protocol v{self.decoder.peer_version}, this host v{P.PROTOCOL_VERSION}: "
                f"run `host flash --port {port}` to update it"
            )
        text = self.device_text()
        if any(m in text for m in (">>>", "raw REPL", "MicroPython", "Traceback")):
            tail = " | ".join(line.strip() for line in text.strip().splitlines()[-3:])
            return (
                f"{port} runs MicroPython but not the Polyniod firmware (it printed: {tail[-160:]!r}): "
                f"run `host flash --port {port}`"
            )
        if self.rx_bytes:
            return (
                f"{port} sends data that is neither our firmware's frames nor MicroPython "
                f"({self.rx_bytes} bytes, {self.decoder.crc_errors} bad frames): check the port and baud rate, "
                f"then `host flash --port {port}`"
            )
        return (
            f"no answer from {port}: is it an ESP32 running MicroPython? Check `host ports`, "
            f"then `host flash --port {port}` (or `host flash --micropython FIRMWARE.bin --port {port}` for a blank board)"
        )

    def _check_versions(self, hello):
        port = self.port_name
        proto = hello.proto
        if proto != P.PROTOCOL_VERSION:
            raise DeviceError(
                f"the firmware on {port} speaks protocol v{proto}, this host v{P.PROTOCOL_VERSION}: "
                f"run `host flash --port {port}` to update it"
            )
        fw = str(hello.fw or "?")
        if _version_tuple(fw) < _version_tuple(FIRMWARE_VERSION):
            raise DeviceError(
                f"the firmware on {port} is v{fw}, older than this host's v{FIRMWARE_VERSION}: "
                f"run `host flash --port {port}` to update it"
            )

    # -- telemetry ------------------------------------------------------------
    def next_telemetry(self, timeout=1.0):
        """(host time, seq, t_us, {field: value in units}) of the next telemetry frame, or None."""
        try:
            now, seq, t_us, payload = self.telemetry.get(timeout=timeout)
        except queue.Empty:
            return None
        raw = self.schema.unpack(payload) if self.schema else None
        if raw is None:
            return None
        return now, seq, t_us, self.schema.to_units(raw)


def _version_tuple(text):
    parts = []
    for p in text.split("."):
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)

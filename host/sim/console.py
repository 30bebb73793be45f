"""The VM's console output as an ESP32 prints it: the unix port's banner swapped for the ESP32's, and
which REPL mode (friendly or raw) the port shows, read from that output. The supervisor (vm.py)
feeds it everything the VM prints."""

import re

RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n"
UNIX_BANNER = re.compile(rb"MicroPython \S+ on (\S+); linux [^\r\n]*\r\nType \"help\(\)\" for more information\.\r\n")
BANNER_START = re.compile(rb"MicroPython [^\r\n]*(\r(\n(T[^\r\n]*(\r)?)?)?)?\Z")  # could still become one
HOLD_S = 0.05  # a partial banner is held back at most this long


class Console:
    """The VM's output as an ESP32 prints it: ESP32 banner, and which REPL mode is showing.

    In a raw boot the VM's friendly banner and prompt are swallowed, `enter_raw()` is
    called (the supervisor sends Ctrl-A) and output resumes at "raw REPL; CTRL-B to exit"."""

    def __init__(self, version, enter_raw):
        self.banner = b"MicroPython v%d.%d.%d on %%s; Generic ESP32 module with ESP32\r\n" % version[:3]
        self.banner += b'Type "help()" for more information.\r\n'
        self.enter_raw = enter_raw
        self.mode = "friendly"
        self.raw_boot = False  # waiting for the VM's REPL to start, to switch it to raw
        self.swallow = None  # bytes seen since the swallowed banner, until the raw prompt
        self.hold = b""
        self.held_since = 0.0
        self._tail = b""

    def feed(self, data, now):
        buf = self.hold + data
        cut = len(buf)
        start = buf.rfind(b"MicroPython ")
        if start >= 0 and len(buf) - start < 200 and BANNER_START.match(buf, start):
            cut = start
        else:
            for k in range(min(11, len(buf)), 0, -1):
                if buf.endswith(b"MicroPython "[:k]):
                    cut = len(buf) - k
                    break
        if cut < len(buf) and not self.hold:
            self.held_since = now
        self.hold = buf[cut:]
        return self._emit(buf[:cut])

    def flush(self, now, force=False):
        """Release a held partial banner that did not turn into one."""
        if self.hold and (force or now - self.held_since > HOLD_S):
            data, self.hold = self.hold, b""
            return self._emit(data)
        return b""

    def _emit(self, buf):
        out = bytearray()
        pos = 0
        for m in UNIX_BANNER.finditer(buf):
            out += self._pass(buf[pos:m.start()])
            if self.raw_boot:
                self.raw_boot, self.swallow = False, b""
                self.enter_raw()
            else:
                out += self._pass(self.banner % m.group(1))
                self.mode = "friendly"
            pos = m.end()
        out += self._pass(buf[pos:])
        seen = self._tail + out
        if RAW_PROMPT in seen and seen.rfind(RAW_PROMPT) > seen.rfind(b"Type \"help()\""):
            self.mode = "raw"
        self._tail = seen[-40:]
        return bytes(out)

    def _pass(self, data):
        if self.swallow is None:
            return data
        self.swallow += data
        at = self.swallow.find(RAW_PROMPT)
        if at < 0:
            self.swallow = self.swallow[-len(RAW_PROMPT):]
            return b""
        data, self.swallow = self.swallow[at:], None
        return data
